"""The one interface every trainer implements; the orchestrator (training.services) only talks to this.

A trainer trains a **subject**: a single job, or one candidate of a comparison job (``TrainingSubject``).
Both train on the job's dataset on top of the job's base version; each has its own backend, base model,
settings, provider job id, metrics and bookkeeping, and writes to the job's timeline (a candidate's
entries name it and start with its label). So one trainer serves both, with no second copy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from training.events import job_record_event
from training.models import JobCandidate, JobEvent, TrainingJob

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from assistants.models import Assistant, ModelVersion
    from training.models import TrainingDataset


class TrainerError(Exception):
    """A failure the job should record as its readable error (raised from start/poll)."""


@dataclass
class TrainingOutcome:
    state: str  # "running" | "succeeded" | "failed" | "cancelled"
    model_version: ModelVersion | None = None
    metrics: dict = field(default_factory=dict)  # merged into job.metrics
    error: str = ""  # readable reason when failed
    poll_after: float = 30.0  # seconds until the orchestrator should poll again (running only)
    # Running only: the trainer has not started yet and says why (e.g. every provider slot is in use).
    waiting: str = ""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TrainingSubject:
    """What a trainer trains: a job (``candidate`` None) or one candidate of a comparison job."""

    def __init__(self, target: TrainingJob | JobCandidate) -> None:
        if isinstance(target, JobCandidate):
            self.candidate: JobCandidate | None = target
            self.job: TrainingJob = target.job
        else:
            self.candidate = None
            self.job = target
        self.row: TrainingJob | JobCandidate = target  # where its own fields live

    # -- shared with the job --------------------------------------------------------------------------

    @property
    def assistant(self) -> Assistant:
        return self.job.assistant

    @property
    def dataset(self) -> TrainingDataset | None:
        return self.job.dataset

    @property
    def base_version(self) -> ModelVersion | None:
        return self.job.base_version

    # -- its own --------------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self.row.backend

    @property
    def base_model(self) -> str:
        return self.row.base_model

    @property
    def settings(self) -> dict[str, Any]:
        """A candidate's settings; a job's options (where a single provider job's hyperparameters are)."""
        source = self.candidate.settings if self.candidate is not None else self.job.options
        return source if isinstance(source, dict) else {}

    @property
    def provider_job_id(self) -> str:
        return self.row.provider_job_id

    def provider_job_id_save(self, value: str) -> None:
        self.row.provider_job_id = value
        self.row.save(update_fields=("provider_job_id",))

    @property
    def metrics(self) -> dict[str, Any]:
        return self.row.metrics if isinstance(self.row.metrics, dict) else {}

    @property
    def label(self) -> str:
        return self.candidate.label if self.candidate is not None else ""

    @property
    def metadata(self) -> dict[str, str]:
        """What a provider job is tagged with, to find it again after a restart: job and candidate."""
        tags = {"trainloop_job": str(self.job.pk)}
        if self.candidate is not None:
            tags["trainloop_candidate"] = str(self.candidate.pk)
        return tags

    def state(self, name: str) -> dict[str, Any]:
        """The trainer's own bookkeeping that must survive restarts (saved with ``state_save``)."""
        holder = self.candidate.trainer_state if self.candidate is not None else self.job.options
        if not isinstance(holder, dict):
            holder = {}
            if self.candidate is not None:
                self.candidate.trainer_state = holder
            else:
                self.job.options = holder
        return holder.setdefault(name, {})

    def state_save(self) -> None:
        if self.candidate is not None:
            self.candidate.save(update_fields=("trainer_state",))
        else:
            self.job.save(update_fields=("options",))

    def shared_state(self, name: str) -> dict[str, Any]:
        """Bookkeeping of the whole job that every candidate uses (e.g. the dataset's uploaded files)."""
        if not isinstance(self.job.options, dict):
            self.job.options = {}
        return self.job.options.setdefault(name, {})

    def shared_state_save(self) -> None:
        self.job.save(update_fields=("options",))

    # -- the job's timeline ---------------------------------------------------------------------------

    def record(
        self, *, kind: str, message: str, data: dict | None = None, provider_event_id: str = ""
    ) -> JobEvent | None:
        """An entry on the job's timeline; a candidate's starts with its label and is linked to it."""
        if self.candidate is not None:
            message = f"{self.candidate.label}: {message}"
        return job_record_event(
            job=self.job,
            candidate=self.candidate,
            kind=kind,
            message=message,
            data=data,
            provider_event_id=provider_event_id,
        )

    def note(self, message: str, *, data: dict | None = None) -> None:
        self.record(kind=JobEvent.Kind.NOTE, message=message, data=data)

    def events(self) -> QuerySet[JobEvent]:
        """Its own entries on the job's timeline."""
        return JobEvent.objects.filter(job_id=self.job.pk, candidate=self.candidate)


Target = TrainingJob | JobCandidate | TrainingSubject


def as_subject(target: Target) -> TrainingSubject:
    return target if isinstance(target, TrainingSubject) else TrainingSubject(target)


class Trainer(ABC):
    """Turns a valid dataset into a candidate ModelVersion.

    ``start`` may finish synchronously (local: returns ``succeeded`` with the version) or hand off to a
    provider (returns ``running``); the orchestrator then calls ``poll`` every ``poll_after`` seconds
    until the outcome is terminal. Neither method changes the job's status: the orchestrator owns the
    state machine. Each takes a job, a comparison's candidate or a ``TrainingSubject`` of either; trainers
    may write the subject's ``provider_job_id`` and its bookkeeping, and record timeline entries.
    """

    backend: str

    @abstractmethod
    def start(self, target: Target) -> TrainingOutcome:  # the job's dataset is set and valid
        ...

    def poll(self, target: Target) -> TrainingOutcome:
        raise NotImplementedError(
            f"The {self.backend} trainer finishes in start(); there is nothing to poll."
        )

    def cancel(self, target: Target) -> None:  # noqa: B027 - optional hook, default no-op
        return None
