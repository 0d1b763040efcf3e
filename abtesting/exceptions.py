"""What the A/B services refuse with (the base classes: ``assistants.exceptions``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistants.exceptions import Conflict, DomainError

if TYPE_CHECKING:
    from abtesting.models import Experiment


class ExperimentBusy(Conflict):
    """The assistant already runs an experiment (A/B test or rollout); only one may run at a time.

    The training orchestrator keeps a job that wants to A/B test in ``testing`` and retries on its next
    tick, so jobs queue behind the running experiment instead of failing.
    """


class ExperimentError(DomainError, ValueError):
    """Settings that cannot make a valid experiment; the message says what to change."""


class ExperimentNotRunning(Conflict):
    """The experiment already ended (stopped or concluded): there is nothing to stop."""

    def __init__(self, experiment: Experiment):
        self.experiment = experiment
        status = experiment.status
        if experiment.status == "concluded" and experiment.decision:
            status = f"{status} ({experiment.decision})"
        super().__init__(f"Experiment {experiment.pk} is already {status}; nothing to stop.")
