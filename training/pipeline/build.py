"""``dataset_build``: feedback → filtered, de-duplicated, validated, split, stored dataset.

Two streaming passes, so memory stays compact in the number of examples:

1. Read feedback rows in interaction order (``sources``), combine them per interaction, filter
   (``formats``), render each surviving example, redact it when the options say so (``redact``: before
   anything is checked or written), turn it into its JSONL line (appended to a temporary spool file),
   pre-flight check it (``validate``) and feed its text to the near-duplicate finder (``dedup``). Per
   example only a few numbers are kept (ids, rating, time) plus the finder's compact state.
2. Decide which examples stay (dedup, then ``max_examples`` newest first), then read the spool back and
   write each kept line to the train or validation file (``split``) while hashing it (``storage``).

**Counts.** ``filteredByReason`` counts *feedback rows* by why they did not become an example (an
interaction dropped for a reason counts all its rows), including ``combined_into_one_example`` for the
extra rows of kept interactions, so ``sum(filteredByReason) + exampleCount == sourceCount``.
``candidateCount`` is the number of interactions; ``filteredCount`` passed the filters;
``deduplicatedCount`` survived de-duplication; ``exampleCount`` were written (after ``max_examples``).
``filterRate = 1 − filteredCount / candidateCount``, ``dedupeRate = 1 − deduplicatedCount /
filteredCount``; ``avgRating`` and ``avgQuality`` (mean category rating, else the rating) are over the
written examples that have one.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import connection, transaction

from assistants.models import Assistant
from training.dataset_options import DatasetOptions
from training.models import DatasetExample, RetrainPolicy, TrainingDataset
from training.pipeline.dedup import NearDuplicateFinder
from training.pipeline.formats import FORMATS, common_drop_reason, question_drop_reason
from training.pipeline.redact import ExampleRedactor, redaction_stats_off
from training.pipeline.sources import candidates, feedback_queryset
from training.pipeline.split import TRAIN, VALIDATION, split_of
from training.pipeline.storage import JsonlWriter
from training.pipeline.validate import context_limit, tokenizer_name, too_few_message

DEDUP_CHUNK = 2000
PROGRESS_EVERY = 2000
MAX_REPORTED_ERRORS = 100
PROVENANCE_BATCH = 20_000


class DatasetInvalid(Exception):
    """A dataset failed the pre-flight checks; ``errors`` say which example and why."""

    def __init__(self, dataset: TrainingDataset) -> None:
        self.dataset = dataset
        self.errors = list(dataset.validation_errors)
        first = "; ".join(e["error"] for e in self.errors[:3])
        more = f" (and {len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
        super().__init__(f"Dataset {dataset.pk} is invalid: {first}{more}")


def dataset_require_valid(dataset: TrainingDataset) -> None:
    """Trainers call this before uploading: an invalid dataset is never sent anywhere."""
    if not dataset.is_valid:
        raise DatasetInvalid(dataset)


def options_resolve(assistant: Assistant, options: DatasetOptions | dict | None) -> DatasetOptions:
    if isinstance(options, DatasetOptions):
        options.check()
        return options
    policy = RetrainPolicy.objects.filter(assistant=assistant).first()
    return DatasetOptions.from_policy(policy, **(options or {}))


def dataset_build(
    *,
    assistant: Assistant,
    format: str = "chat_completion",
    options: DatasetOptions | dict | None = None,
    feedback_ids: Iterable[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingDataset:
    """Build, validate and store a dataset from the assistant's feedback (see the module docstring).

    Raises ``ValidationError`` for options no build could honour. A dataset that fails the pre-flight
    checks is still stored, with ``validation_errors`` and ``is_valid`` False, so reviewers see why.
    """
    fmt = FORMATS.get(format)
    if fmt is None:
        raise ValidationError({"format": [f"Unknown format '{format}'; use one of {', '.join(FORMATS)}."]})
    opts = options_resolve(assistant, options)
    started = time.perf_counter()
    system_prompt = opts.system_prompt or assistant.system_prompt
    limit = context_limit(opts.base_model)
    qs = feedback_queryset(assistant=assistant, since=opts.since, until=opts.until, feedback_ids=feedback_ids)
    total = qs.count() if progress else 0

    reasons: Counter[str] = Counter()
    counter = [0]
    # Compact per-example state (array module: 1–8 bytes a value, no Python objects).
    interaction_ids, feedback_id, rows = array("q"), array("q"), array("q")
    rating, newest, quality = array("b"), array("d"), array("d")
    provenance, provenance_end = array("q"), array("q")
    check_errors: dict[int, str] = {}
    tokens = array("q")
    finder = NearDuplicateFinder(threshold=opts.similarity_threshold) if opts.deduplicate else None
    texts: list[str] = []
    dedup_seconds = dedup_cpu = 0.0
    redactor = ExampleRedactor(opts) if opts.redact else None
    spool = tempfile.TemporaryFile()
    candidate_count = 0
    try:
        for c in candidates(qs, counter=counter):
            candidate_count += 1
            if progress and candidate_count % PROGRESS_EVERY == 0:
                progress(counter[0], total)
            reason = common_drop_reason(c, opts) or fmt.drop_reason(c, opts) or question_drop_reason(c)
            if reason:
                reasons[reason] += c.rows
                continue
            record = fmt.record(c, system_prompt)
            if redactor is not None:
                record = redactor.redact(record, system_prompt)
            error, n_tokens = fmt.check(record, limit)
            index = len(interaction_ids)
            if error:
                check_errors[index] = error
            spool.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
            interaction_ids.append(c.interaction_id)
            feedback_id.append(c.feedback_id)
            rows.append(c.rows)
            rating.append(c.rating if c.rating is not None else -1)
            newest.append(c.created_ts)
            q = c.quality
            quality.append(q if q is not None else float("nan"))
            tokens.append(n_tokens)
            provenance.extend(c.feedback_ids)
            provenance_end.append(len(provenance))
            if finder is not None:
                texts.append(fmt.dedup_text(c))
                if len(texts) >= DEDUP_CHUNK:
                    t0, c0 = time.perf_counter(), time.process_time()
                    finder.add(texts)
                    dedup_seconds += time.perf_counter() - t0
                    dedup_cpu += time.process_time() - c0
                    texts = []
        if progress:
            progress(counter[0], total)

        n = len(interaction_ids)
        rows_np = np.frombuffer(rows, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
        keep = np.ones(n, dtype=bool)
        dedup_stats: dict[str, Any] = {}
        if finder is not None and n:
            t0, c0 = time.perf_counter(), time.process_time()
            finder.add(texts)
            texts = []
            result = finder.resolve(
                rating=np.frombuffer(rating, dtype=np.int8),
                newest=np.frombuffer(newest, dtype=np.float64),
                tiebreak=np.frombuffer(feedback_id, dtype=np.int64),
            )
            dedup_seconds += time.perf_counter() - t0
            dedup_cpu += time.process_time() - c0
            keep = result.keep
            reasons["near_duplicate"] += int(rows_np[~keep].sum())
            dedup_stats = {
                "similarity": f"Jaccard over word {3}-shingles of question + answer",
                "threshold": opts.similarity_threshold,
                "numPerm": finder.num_perm,
                "bands": finder.bands,
                "rows": finder.rows,
                "candidatePairs": result.candidate_pairs,
                "verifiedPairs": result.verified_pairs,
                "exactDuplicates": result.exact_duplicates,
                "seconds": round(dedup_seconds, 3),
                "cpuSeconds": round(dedup_cpu, 3),
            }
            del finder
        deduplicated_count = int(keep.sum())
        if opts.max_examples and deduplicated_count > opts.max_examples:
            kept = np.nonzero(keep)[0]
            ts = np.frombuffer(newest, dtype=np.float64)[kept]
            ids = np.frombuffer(feedback_id, dtype=np.int64)[kept]
            order = np.lexsort((-ids, -ts))  # newest first, then highest id
            dropped = kept[order[opts.max_examples :]]
            keep[dropped] = False
            reasons["over_max_examples"] += int(rows_np[dropped].sum())
        reasons["combined_into_one_example"] += int((rows_np[keep] - 1).sum())

        # Pass 2: kept lines to their split files.
        writers = {TRAIN: JsonlWriter(), VALIDATION: JsonlWriter()}
        errors: list[dict[str, Any]] = []
        hidden_errors = 0
        prov_ids, prov_split = array("q"), array("b")
        rating_sum = rating_n = 0
        quality_sum, quality_n = 0.0, 0
        token_sum = 0
        spool.seek(0)
        start = 0
        for i, line in enumerate(spool):
            end = provenance_end[i]
            if keep[i]:
                split = split_of(interaction_ids[i], seed=opts.seed, validation_share=opts.validation_share)
                writer = writers[split]
                writer.write(line)
                if i in check_errors:
                    if len(errors) < MAX_REPORTED_ERRORS:
                        index = writer.count - 1
                        errors.append(
                            {
                                "example": index,
                                "split": split,
                                "error": f"Example {index} ({split}) {check_errors[i]}.",
                            }
                        )
                    else:
                        hidden_errors += 1
                code = 0 if split == TRAIN else 1
                for fid in provenance[start:end]:
                    prov_ids.append(fid)
                    prov_split.append(code)
                if rating[i] >= 0:
                    rating_sum += rating[i]
                    rating_n += 1
                if quality[i] == quality[i]:  # not NaN
                    quality_sum += quality[i]
                    quality_n += 1
                token_sum += tokens[i]
            start = end
    finally:
        spool.close()

    if hidden_errors:
        errors.append(
            {"example": None, "split": None, "error": f"…and {hidden_errors} more invalid examples."}
        )
    train_count, validation_count = writers[TRAIN].count, writers[VALIDATION].count
    if train_count < fmt.min_examples:
        errors.append(
            {"example": None, "split": TRAIN, "error": too_few_message(train_count, fmt.min_examples)}
        )
    example_count = train_count + validation_count
    filtered_count = n
    stats = {
        "sourceCount": counter[0],
        "candidateCount": candidate_count,
        "filteredCount": filtered_count,
        "deduplicatedCount": deduplicated_count,
        "exampleCount": example_count,
        "trainCount": train_count,
        "validationCount": validation_count,
        "avgRating": round(rating_sum / rating_n, 4) if rating_n else None,
        "avgQuality": round(quality_sum / quality_n, 4) if quality_n else None,
        "filterRate": round(1 - filtered_count / candidate_count, 4) if candidate_count else 0.0,
        "dedupeRate": round(1 - deduplicated_count / filtered_count, 4) if filtered_count else 0.0,
        "filteredByReason": dict(sorted((k, v) for k, v in reasons.items() if v)),
        "estimatedTokens": token_sum,
        "tokenizer": tokenizer_name(),
        "contextLimit": limit,
        "dedup": dedup_stats,
        "redaction": redactor.stats(keep) if redactor is not None else redaction_stats_off(),
        "seconds": None,
    }

    folder = f"datasets/{assistant.slug}/{uuid.uuid4().hex}"
    try:
        train_file = writers[TRAIN].save(f"{folder}/train.jsonl")
        validation_file = writers[VALIDATION].save(f"{folder}/validation.jsonl") if validation_count else ""
    finally:
        for w in writers.values():
            w.close()
    stats["seconds"] = round(time.perf_counter() - started, 3)
    try:
        dataset = _dataset_store(
            assistant=assistant,
            format=format,
            opts=opts,
            train_file=train_file,
            validation_file=validation_file,
            writers=writers,
            counts=(train_count, validation_count),
            stats=stats,
            errors=errors,
            provenance=(prov_ids, prov_split),
        )
    except Exception:
        # E.g. a customer erased while the build ran: their feedback rows are gone and the provenance
        # insert fails. The files hold their data: never leave them behind.
        for path in (train_file, validation_file):
            if path:
                default_storage.delete(path)
        raise
    return dataset


def _dataset_store(
    *, assistant, format, opts, train_file, validation_file, writers, counts, stats, errors, provenance
) -> TrainingDataset:
    train_count, validation_count = counts
    prov_ids, prov_split = provenance
    with transaction.atomic():
        dataset = TrainingDataset.objects.create(
            assistant=assistant,
            format=format,
            options=opts.to_dict(),
            train_file=train_file,
            validation_file=validation_file,
            train_sha256=writers[TRAIN].sha256,
            validation_sha256=writers[VALIDATION].sha256 if validation_count else "",
            train_count=train_count,
            validation_count=validation_count,
            stats=stats,
            validation_errors=errors,
        )
        _provenance_insert(dataset, prov_ids, prov_split)
    return dataset


def _provenance_insert(dataset: TrainingDataset, ids: array, splits: array) -> None:
    """Bulk insert of the provenance rows with executemany: model instances cost ~15 µs a row, and a
    1M-row dataset has a million of them."""
    names = (DatasetExample.Split.TRAIN.value, DatasetExample.Split.VALIDATION.value)
    meta = DatasetExample._meta
    q = connection.ops.quote_name
    sql = (
        f"INSERT INTO {q(meta.db_table)} ({q(meta.get_field('dataset').column)}, "
        f"{q(meta.get_field('feedback').column)}, {q(meta.get_field('split').column)}) VALUES (%s, %s, %s)"
    )
    pk = dataset.pk
    with connection.cursor() as cursor:
        for lo in range(0, len(ids), PROVENANCE_BATCH):
            cursor.executemany(
                sql,
                [
                    (pk, fid, names[code])
                    for fid, code in zip(
                        ids[lo : lo + PROVENANCE_BATCH], splits[lo : lo + PROVENANCE_BATCH], strict=True
                    )
                ],
            )
