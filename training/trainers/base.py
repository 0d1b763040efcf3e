"""The one interface every trainer implements; the orchestrator (training.services) only talks to this."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistants.models import ModelVersion
    from training.models import TrainingJob


class TrainerError(Exception):
    """A failure the job should record as its readable error (raised from start/poll)."""


@dataclass
class TrainingOutcome:
    state: str  # "running" | "succeeded" | "failed" | "cancelled"
    model_version: ModelVersion | None = None
    metrics: dict = field(default_factory=dict)  # merged into job.metrics
    error: str = ""  # readable reason when failed
    poll_after: float = 30.0  # seconds until the orchestrator should poll again (running only)

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Trainer(ABC):
    """Turns a valid dataset into a candidate ModelVersion.

    ``start`` may finish synchronously (local: returns ``succeeded`` with the version) or hand off to a
    provider (returns ``running``); the orchestrator then calls ``poll`` every ``poll_after`` seconds
    until the outcome is terminal. Neither method changes the job's status: the orchestrator owns the
    state machine. Trainers may write ``job.provider_job_id`` and record events through
    ``training.events.job_record_event``.
    """

    backend: str

    @abstractmethod
    def start(self, job: TrainingJob) -> TrainingOutcome:  # job.dataset is set and valid
        ...

    def poll(self, job: TrainingJob) -> TrainingOutcome:
        raise NotImplementedError(
            f"The {self.backend} trainer finishes in start(); there is nothing to poll."
        )

    def cancel(self, job: TrainingJob) -> None:  # noqa: B027 - optional hook, default no-op
        return None
