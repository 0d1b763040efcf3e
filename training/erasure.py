"""Erasure of one customer on request (``DELETE /api/v1/users/{user_ref}`` and the admin action).

``customer_erase`` deletes the customer's interactions and their feedback in batches
(``feedback.erasure``), marks every dataset that contained them in the same transaction as each batch
(they are rebuilt without them before their next use and by the worker: ``training.pipeline.erasure``),
lists the model versions trained on those datasets (and versions trained on top of them, which inherit
their examples) for an admin to judge, and keeps an ``ErasureRecord`` that names the customer only by a
keyed hash. It lives here, not in ``feedback``, because datasets and jobs are this app's.

Idempotent: a second call finds no rows, erases nothing, writes no record, and says so (with the earlier
erasure it found by the same keyed hash).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from assistants.models import Assistant, ModelVersion
from feedback.erasure import BATCH_SIZE, interactions_delete_in_batches, user_ref_digest
from feedback.models import ErasureRecord, Interaction
from training.models import DatasetExample, JobCandidate, TrainingDataset, TrainingJob

logger = logging.getLogger(__name__)

ERASE_PERM = "feedback.erase_customer"
MAX_USER_REF = 200  # Interaction.user_ref's max_length


@dataclass
class Erasure:
    subject: str
    interactions: int = 0
    feedback: int = 0
    other_rows: dict[str, int] = field(default_factory=dict)
    datasets: list[int] = field(default_factory=list)
    model_versions: list[dict[str, Any]] = field(default_factory=list)
    record: ErasureRecord | None = None
    previous: ErasureRecord | None = None
    longest_batch_seconds: float = 0.0  # the longest any one batch's transaction held its locks

    @property
    def erased(self) -> bool:
        return self.record is not None

    def describe(self) -> str:
        if not self.erased:
            if self.previous is not None:
                return (
                    "Nothing to erase: this customer's data was already erased "
                    f"(erasure {self.previous.pk}, {self.previous.created_at:%Y-%m-%d %H:%M} UTC)."
                )
            return "Nothing to erase: no interaction is stored for this customer."
        text = f"Erased {self.interactions} interactions and {self.feedback} feedback rows."
        if self.datasets:
            text += (
                f" {len(self.datasets)} datasets contained them and are rebuilt without them before "
                "their next use."
            )
        if self.model_versions:
            names = ", ".join(v["name"] for v in self.model_versions)
            text += f" Model versions trained on them (an admin decides whether to retire them): {names}."
        return text


def customer_erase(
    *,
    user_ref: str,
    assistants: Iterable[Assistant] | None = None,
    user=None,
    via: str = ErasureRecord.Via.API,
    batch_size: int = BATCH_SIZE,
) -> Erasure:
    """Erase everything stored about ``user_ref`` in ``assistants`` (None: every assistant).

    Raises ValueError for an empty or overlong reference (an empty one would be every anonymous request).
    """
    if not user_ref or not user_ref.strip():
        raise ValueError(
            "Send the customer's user reference: an empty one would match every anonymous request."
        )
    if len(user_ref) > MAX_USER_REF:
        raise ValueError(f"A user reference has at most {MAX_USER_REF} characters.")
    subject = user_ref_digest(user_ref)
    scope = list(assistants) if assistants is not None else None
    rows = Interaction.objects.filter(user_ref=user_ref)
    if scope is not None:
        rows = rows.filter(assistant__in=scope)
    # One read of the ids (no index on user_ref: an erasure is rare, and an index would cost every
    # ingested row), then deletion by primary key, batch by batch.
    ids = list(rows.order_by("pk").values_list("pk", flat=True))
    marked: set[int] = set()

    def mark_datasets(batch: list[int]) -> None:
        found = set(
            # A dataset that retention expired has no files left to rebuild.
            DatasetExample.objects.filter(
                feedback__interaction_id__in=batch, dataset__retention_expired_at__isnull=True
            )
            .values_list("dataset_id", flat=True)
            .distinct()
        )
        if found:
            TrainingDataset.objects.filter(pk__in=found).update(erasure_marked_at=timezone.now())
            marked.update(found)

    deleted = interactions_delete_in_batches(ids, batch_size=batch_size, before_each=mark_datasets)
    result = Erasure(
        subject=subject,
        interactions=deleted.interactions,
        feedback=deleted.feedback,
        other_rows=dict(deleted.other),
        datasets=sorted(marked),
        model_versions=model_versions_trained_on(marked),
        longest_batch_seconds=deleted.longest_batch_seconds,
    )
    previous_qs = ErasureRecord.objects.filter(subject=subject)
    if not deleted.interactions and not marked:
        result.previous = previous_qs.first()
        return result
    result.record = ErasureRecord.objects.create(
        user=user if getattr(user, "is_authenticated", False) else None,
        via=via,
        subject=subject,
        assistants=[a.slug for a in scope] if scope is not None else [],
        interactions=deleted.interactions,
        feedback=deleted.feedback,
        other_rows=result.other_rows,
        batches=deleted.batches,
        datasets=result.datasets,
        model_versions=result.model_versions,
    )
    result.previous = previous_qs.exclude(pk=result.record.pk).first()
    logger.info(
        "Erasure %s: %s interactions, %s feedback rows, %s datasets marked, longest batch %.3f s",
        result.record.pk,
        deleted.interactions,
        deleted.feedback,
        len(marked),
        deleted.longest_batch_seconds,
    )
    for dataset_id in result.datasets:
        transaction.on_commit(lambda pk=dataset_id: _enqueue_rebuild(pk))
    return result


def model_versions_trained_on(dataset_ids: Iterable[int]) -> list[dict[str, Any]]:
    """Versions a job (or a comparison's candidate) trained on these datasets, and every version trained
    on top of one of them (the local trainer fits on top of its base, so a descendant still holds the
    examples)."""
    dataset_ids = list(dataset_ids)
    if not dataset_ids:
        return []
    found = set(
        TrainingJob.objects.filter(dataset_id__in=dataset_ids, new_model_version__isnull=False).values_list(
            "new_model_version_id", flat=True
        )
    )
    # A comparison trained every candidate on the job's dataset, not only the one it kept.
    found |= set(
        JobCandidate.objects.filter(job__dataset_id__in=dataset_ids, model_version__isnull=False).values_list(
            "model_version_id", flat=True
        )
    )
    frontier = set(found)
    while frontier:
        children = set(ModelVersion.objects.filter(base_version_id__in=frontier).values_list("pk", flat=True))
        frontier = children - found
        found |= frontier
    versions = ModelVersion.objects.filter(pk__in=found).select_related("assistant").order_by("pk")
    return [{"id": v.pk, "name": v.name, "assistant": v.assistant.slug, "status": v.status} for v in versions]


def _enqueue_rebuild(dataset_id: int) -> None:
    from django_q.tasks import async_task

    async_task("training.tasks.dataset_rebuild_after_erasure", dataset_id)
