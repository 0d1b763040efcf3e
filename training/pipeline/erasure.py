"""Datasets that contained an erased customer: rebuilt without them before they are used again.

``training.erasure.customer_erase`` marks every dataset whose provenance names the customer's feedback
(``erasure_marked_at``) in the same transaction that deletes those rows. The files still hold the
customer's words until the dataset is rebuilt, so everything that reads a dataset's files (downloads,
trainers, evaluation) asks ``dataset_ready`` first; the worker also rebuilds marked datasets right after
an erasure (``training.tasks.dataset_rebuild_after_erasure``), so the files do not wait for a next use
that may never come.

**Rebuilt how.** The same format and options (with redaction turned on if the policy now requires it)
over the feedback its provenance still names, which after the deletion is exactly the original selection
without the erased rows; the split is deterministic per interaction, so every remaining example stays in
its split. The row keeps its id (jobs and links keep pointing at it); files, checksums, counts, stats,
validation and provenance are replaced in one short transaction, and the old files are deleted once it
commits.

**Races.** The swap happens only if the mark is still the one the rebuild started from; a customer erased
meanwhile re-marks the dataset and the rebuild starts again. A build that read rows which are deleted
before it stores its provenance fails on the foreign key (and ``dataset_build`` removes its files), and is
retried here.
"""

from __future__ import annotations

import logging

from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from training.models import DatasetExample, TrainingDataset

logger = logging.getLogger(__name__)

ATTEMPTS = 5


def dataset_ready(dataset: TrainingDataset) -> TrainingDataset:
    """The dataset, rebuilt first when an erasure marked it; call before reading its files."""
    if dataset.erasure_marked_at is None:
        return dataset
    return dataset_rebuild(dataset)


def dataset_rebuild(dataset: TrainingDataset) -> TrainingDataset:
    """Rebuild a marked dataset in place without the erased rows (see the module docstring)."""
    from training.pipeline.build import dataset_build, options_resolve

    for _ in range(ATTEMPTS):
        dataset.refresh_from_db()
        marked = dataset.erasure_marked_at
        if marked is None:
            return dataset
        ids = list(DatasetExample.objects.filter(dataset=dataset).values_list("feedback_id", flat=True))
        stored = dict(dataset.options or {})
        stored["redact"] = stored.get("redact") or None  # the policy may require it by now
        options = options_resolve(dataset.assistant, stored)
        try:
            new = dataset_build(
                assistant=dataset.assistant, format=dataset.format, options=options, feedback_ids=ids
            )
        except IntegrityError:
            logger.info("Dataset %s: rows deleted during its rebuild; trying again", dataset.pk)
            continue
        if _swap(dataset, new, marked=marked):
            dataset.refresh_from_db()
            _mark_again_if_rows_vanished(dataset, expected=new.train_count + new.validation_count)
            dataset.refresh_from_db()
            if dataset.erasure_marked_at is None:
                return dataset
    raise RuntimeError(
        f"Dataset {dataset.pk} could not be rebuilt after {ATTEMPTS} attempts: customers are being "
        "erased from it right now; try again in a moment."
    )


def _swap(dataset: TrainingDataset, new: TrainingDataset, *, marked) -> bool:
    old_files = [dataset.train_file, dataset.validation_file]
    stats = {**new.stats, "rebuiltAfterErasure": timezone.now().isoformat()}
    with transaction.atomic():
        swapped = TrainingDataset.objects.filter(pk=dataset.pk, erasure_marked_at=marked).update(
            options=new.options,
            train_file=new.train_file,
            validation_file=new.validation_file,
            train_sha256=new.train_sha256,
            validation_sha256=new.validation_sha256,
            train_count=new.train_count,
            validation_count=new.validation_count,
            stats=stats,
            validation_errors=new.validation_errors,
            erasure_marked_at=None,
            erasure_rebuilt_at=timezone.now(),
        )
        if swapped:
            DatasetExample.objects.filter(dataset=dataset).delete()
            DatasetExample.objects.filter(dataset=new).update(dataset=dataset)
            TrainingDataset.objects.filter(pk=new.pk).delete()
            transaction.on_commit(lambda: _delete_files(old_files))
    if not swapped:  # marked again meanwhile: this build may hold the newly erased rows
        new_files = [new.train_file, new.validation_file]
        new.delete()
        _delete_files(new_files)
    return bool(swapped)


def _mark_again_if_rows_vanished(dataset: TrainingDataset, *, expected: int) -> None:
    """Feedback deleted between the build's read and the swap took its provenance rows with it (cascade),
    but its text is in the new files: fewer provenance rows than examples means rebuild once more."""
    examples = DatasetExample.objects.filter(dataset=dataset).values("feedback__interaction_id").distinct()
    if examples.count() < expected:
        TrainingDataset.objects.filter(pk=dataset.pk).update(erasure_marked_at=timezone.now())


def _delete_files(paths: list[str]) -> None:
    for path in paths:
        if path:
            default_storage.delete(path)
