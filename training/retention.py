"""The nightly retention pass: per retrain policy, raw rows older than ``retention_days`` are deleted, and
datasets built that long ago expire.

For each assistant whose policy sets ``retention_days`` (whether or not its retrain checks are enabled:
retention is a promise to customers, not a training setting), with the cut-off at the local midnight N
days back (``feedback.retention.retention_cutoff``):

1. **Raw rows.** Interactions created before the cut-off and their feedback are deleted in batches by
   ``feedback.retention.interactions_expire``, after the daily rollups have counted them, so the
   dashboard's figures for those days stay exactly as they were.
2. **What waits.** Rows that running work still reads are kept until it ends, and go at the first pass
   after: the interactions of a running A/B experiment or rollout (its analysis, SRM check and any
   recount read them), and the interactions whose feedback is in the dataset of a job in progress
   (pending to deploying: the job still reads its dataset, its provenance and the customers' ratings).
   While a job of the assistant is still building its dataset, no raw row of that assistant is deleted
   (the build reads them); the pass stops there and the next one carries on.
3. **Datasets.** A dataset created before the cut-off expires, unless a job in progress uses it: its
   files, its provenance rows and the evaluated prompts of the jobs trained on it (copies of the
   validation questions, answers and customer references) are deleted; the row stays, with its counts
   and stats and ``retention_expired_at`` set, so jobs and model versions still point at it and the job
   page says the data was removed by retention.
4. **A/B units.** The per-customer sums of experiments that ended before the cut-off
   (``ExperimentUnit``, keyed by user reference) are deleted; the experiment's analysis stays.
5. A ``feedback.RetentionRecord`` per assistant says what went and when (only when something did).

What is not deleted, on purpose: aggregates with no link to a person (daily rollups, job metrics,
experiment analyses, dataset stats), and model versions (a local model holds the answers it learnt;
retiring a version is an admin's decision, as after an erasure). A dataset's files are a copy taken
when it was built and follow the dataset's own age, so words written shortly before a build stay in
its files until the dataset is N days old.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from abtesting.models import Experiment, ExperimentUnit
from assistants.models import Assistant
from feedback.erasure import BATCH_SIZE
from feedback.models import RetentionRecord
from feedback.retention import Expired, interactions_expire, retention_cutoff
from training.models import DatasetExample, EvaluationPrompt, RetrainPolicy, TrainingDataset, TrainingJob

logger = logging.getLogger(__name__)

# One nightly pass stops starting new work after this long, or half the worker's task timeout if that is
# shorter (the worker kills a task at its timeout); the next night carries on where it stopped.
TIME_BUDGET_SECONDS = 3600
# Rows of provenance, prompts and A/B units deleted per statement: short transactions, like the batches.
DELETE_CHUNK = 2000


@dataclass
class Retention:
    """One assistant's pass."""

    assistant: Assistant
    days: int
    cutoff: datetime
    expired: Expired | None = None
    datasets: list[int] = field(default_factory=list)
    files_deleted: int = 0
    other_rows: dict[str, int] = field(default_factory=dict)
    complete: bool = True
    seconds: float = 0.0
    record: RetentionRecord | None = None

    def as_dict(self) -> dict[str, Any]:
        deleted = self.expired.deleted if self.expired else None
        return {
            "assistant": self.assistant.slug,
            "retention_days": self.days,
            "cutoff": self.cutoff.isoformat(),
            "interactions": deleted.interactions if deleted else 0,
            "feedback": deleted.feedback if deleted else 0,
            "kept": self.expired.kept if self.expired else 0,
            "datasets": list(self.datasets),
            "files_deleted": self.files_deleted,
            "other_rows": dict(self.other_rows),
            "complete": self.complete,
            "record": self.record.pk if self.record else None,
        }


def _in_flight() -> QuerySet[TrainingJob]:
    return TrainingJob.objects.exclude(status__in=TrainingJob.TERMINAL)


def retention_apply(
    *,
    policy: RetrainPolicy,
    now: datetime | None = None,
    deadline: float | None = None,
    batch_size: int = BATCH_SIZE,
) -> Retention:
    """Apply one policy's retention (see the module docstring). ``deadline``: a ``time.monotonic()``
    value after which no new batch starts. Idempotent: a second pass finds nothing to do."""
    if not policy.retention_days:
        raise ValueError(f"The policy of {policy.assistant} keeps everything (no retention_days).")
    started = time.monotonic()
    now = now or timezone.now()
    assistant = policy.assistant
    days = policy.retention_days
    result = Retention(assistant=assistant, days=days, cutoff=retention_cutoff(days=days, now=now))
    jobs = _in_flight().filter(assistant=assistant)

    def should_stop() -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            return True
        return jobs.filter(dataset__isnull=True).exists()  # a build is reading the raw rows

    result.expired = interactions_expire(
        assistant_id=assistant.pk,
        cutoff=result.cutoff,
        keep_experiments=list(
            Experiment.objects.filter(assistant=assistant, status=Experiment.Status.RUNNING).values_list(
                "pk", flat=True
            )
        ),
        keep_interactions=DatasetExample.objects.filter(dataset__in=jobs.values("dataset_id")).values(
            "feedback__interaction_id"
        ),
        batch_size=batch_size,
        should_stop=should_stop,
    )
    result.complete = result.expired.complete
    other: dict[str, int] = dict(result.expired.deleted.other)

    due = (
        TrainingDataset.objects.filter(assistant=assistant, created_at__lt=result.cutoff)
        .exclude(jobs__in=_in_flight())
        .filter(Q(retention_expired_at__isnull=True) | ~Q(train_file="") | ~Q(validation_file=""))
        .order_by("pk")
    )
    for dataset in due:
        if deadline is not None and time.monotonic() >= deadline:
            result.complete = False
            break
        files, rows = dataset_expire(dataset, now=now)
        if files is None:
            continue  # a job started using it meanwhile
        result.datasets.append(dataset.pk)
        result.files_deleted += files
        for label, n in rows.items():
            other[label] = other.get(label, 0) + n

    units = _delete_in_chunks(
        ExperimentUnit.objects.filter(
            experiment__assistant=assistant, experiment__ended_at__lt=result.cutoff
        ).exclude(experiment__status=Experiment.Status.RUNNING)
    )
    if units:
        other[ExperimentUnit._meta.label] = other.get(ExperimentUnit._meta.label, 0) + units
    result.other_rows = {label: n for label, n in sorted(other.items()) if n}
    result.seconds = time.monotonic() - started

    deleted = result.expired.deleted
    if deleted.interactions or result.datasets or result.other_rows or not result.complete:
        result.record = RetentionRecord.objects.create(
            assistant=assistant,
            retention_days=result.days,
            cutoff=result.cutoff,
            interactions=deleted.interactions,
            feedback=deleted.feedback,
            other_rows=result.other_rows,
            batches=deleted.batches,
            longest_batch_ms=round(deleted.longest_batch_seconds * 1000, 3),
            kept=result.expired.kept,
            datasets=result.datasets,
            seconds=round(result.seconds, 3),
            complete=result.complete,
        )
        logger.info(
            "Retention %s for %s (%s days, before %s): %s interactions, %s feedback rows, %s datasets "
            "expired, %s kept, longest batch %.3f s%s",
            result.record.pk,
            assistant.slug,
            result.days,
            result.cutoff.isoformat(),
            deleted.interactions,
            deleted.feedback,
            len(result.datasets),
            result.expired.kept,
            deleted.longest_batch_seconds,
            "" if result.complete else " (stopped early: the next pass carries on)",
        )
    return result


def retention_apply_all(*, now: datetime | None = None, budget: float | None = None) -> list[Retention]:
    """Every policy with a retention, one assistant after another, within one time budget."""
    if budget is None:
        budget = min(TIME_BUDGET_SECONDS, settings.TRAINING_TASK_TIMEOUT / 2)
    deadline = time.monotonic() + budget
    policies = RetrainPolicy.objects.filter(retention_days__isnull=False).select_related("assistant")
    return [retention_apply(policy=p, now=now, deadline=deadline) for p in policies.order_by("assistant_id")]


def dataset_expire(dataset: TrainingDataset, *, now: datetime) -> tuple[int | None, dict[str, int]]:
    """Delete a dataset's files, provenance and its jobs' evaluated prompts; keep the row, marked.

    Returns (files deleted, rows deleted per model label), or (None, {}) when a job in progress uses the
    dataset. Each step is idempotent and the row is marked first, so a pass that dies midway is finished
    by the next: a marked dataset with a file path left is picked up again. Marking clears an erasure's
    mark, so a pending rebuild (``training.pipeline.erasure``) finds nothing to do and no file comes back.
    """
    with transaction.atomic():
        marked = (
            TrainingDataset.objects.filter(pk=dataset.pk)
            .exclude(jobs__in=_in_flight())
            .update(retention_expired_at=dataset.retention_expired_at or now, erasure_marked_at=None)
        )
    if not marked:
        return None, {}
    rows = {
        DatasetExample._meta.label: _delete_in_chunks(DatasetExample.objects.filter(dataset_id=dataset.pk)),
        EvaluationPrompt._meta.label: _delete_in_chunks(
            EvaluationPrompt.objects.filter(job__dataset_id=dataset.pk)
        ),
    }
    # Marked, the dataset's paths no longer change (an erasure's rebuild swaps files in only while its
    # mark stands): delete the files, then forget their paths.
    paths = TrainingDataset.objects.filter(pk=dataset.pk).values_list("train_file", "validation_file").first()
    files = 0
    for path in paths or ():
        if path and default_storage.exists(path):
            default_storage.delete(path)
            files += 1
    TrainingDataset.objects.filter(pk=dataset.pk).update(train_file="", validation_file="")
    return files, rows


def _delete_in_chunks(queryset: QuerySet) -> int:
    """Delete the rows of ``queryset`` DELETE_CHUNK at a time, each its own short transaction."""
    total = 0
    while True:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:DELETE_CHUNK])
        if not ids:
            return total
        total += queryset.model.objects.filter(pk__in=ids).delete()[0]
