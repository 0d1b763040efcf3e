"""What the training services refuse with (the base classes: ``assistants.exceptions``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistants.exceptions import Conflict

if TYPE_CHECKING:
    from assistants.models import Assistant
    from training.models import TrainingJob


class IllegalTransition(Conflict):
    """The state machine does not allow this move (e.g. approving a failed job)."""


class ConfirmationRequired(IllegalTransition):
    """Approving would deploy without a significant A/B result: the reviewer must say so explicitly."""


class JobActive(Conflict):
    """The assistant already has a job in flight (the database allows one at a time)."""

    def __init__(self, job: TrainingJob | None, assistant: Assistant):
        self.job = job
        where = f"job {job.pk} is {job.status}" if job is not None else "another job is in flight"
        super().__init__(
            f"'{assistant.slug}' already has an active training job ({where}); "
            "wait for it to finish or cancel it."
        )
