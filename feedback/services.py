"""Writes for interactions and feedback: each accepted write is stored exactly once, even on retries."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from assistants.models import Assistant, ModelVersion
from feedback.models import CATEGORY_FIELDS, CurationLog, Feedback, Interaction
from feedback.redaction import feedback_items_redact, interaction_redact

FEEDBACK_FIELDS = (
    "kind",
    "helpful",
    "rating",
    *CATEGORY_FIELDS,
    "comment",
    "suggestion",
    "corrected_answer",
    "confidence",
)


class IdempotencyConflict(Exception):
    """The same idempotency key (or request id) was sent earlier with a different body."""


def body_hash(interaction_id: int, data: dict[str, Any]) -> str:
    """Fingerprint of what a feedback item says, to tell a retry (same body) from a conflict (another one).

    The fields are taken in their fixed FEEDBACK_FIELDS order and the values are validated JSON
    primitives (str, int, float, bool, None), whose ``repr`` is canonical: cheaper than sorted JSON, which
    cost more than a quarter of a batch's CPU time.
    """
    canonical = repr((interaction_id, *(data.get(name) for name in FEEDBACK_FIELDS)))
    return hashlib.sha256(canonical.encode()).hexdigest()


def infer_kind(data: dict[str, Any]) -> str:
    """The most specific kind the item carries, when the client didn't say."""
    if data.get("corrected_answer"):
        return Feedback.Kind.CORRECTION
    if data.get("suggestion"):
        return Feedback.Kind.IMPROVEMENT
    if any(data.get(name) is not None for name in CATEGORY_FIELDS):
        return Feedback.Kind.CATEGORY
    if data.get("rating") is not None:
        return Feedback.Kind.RATING
    if data.get("helpful") is not None:
        return Feedback.Kind.THUMBS
    return Feedback.Kind.TEXT


@dataclass(frozen=True)
class Logged:
    interaction: Interaction
    created: bool


def interaction_log(
    *,
    assistant: Assistant,
    request_id: str,
    messages: list[dict],
    response: str,
    user_ref: str = "",
    model_version: ModelVersion | None = None,
    latency_ms: int | None = None,
    first_token_ms: int | None = None,
    error: str | None = None,
    experiment_id: int | None = None,
    arm: str = "",
) -> Logged:
    """Store one interaction. The client's request id makes it idempotent: a retry returns the stored row."""
    if assistant.redact_at_ingestion:  # the originals are never stored (a retry redacts the same way)
        messages, response = interaction_redact(messages, response)
    fields = dict(
        user_ref=user_ref,
        messages=messages,
        response=response,
        model_version=model_version if model_version is not None else assistant.live_version,
        latency_ms=latency_ms,
        first_token_ms=first_token_ms,
        error=error or None,
        experiment_id=experiment_id,
        arm=arm,
    )
    try:
        with transaction.atomic():
            interaction = Interaction.objects.create(assistant=assistant, request_id=request_id, **fields)
        return Logged(interaction, True)
    except IntegrityError:
        existing = Interaction.objects.get(assistant=assistant, request_id=request_id)
        if existing.messages != messages or existing.response != response:
            raise IdempotencyConflict(
                f"request_id '{request_id}' was already logged with different messages or response."
            ) from None
        return Logged(existing, False)


def interaction_complete(
    *,
    interaction: Interaction,
    response: str,
    latency_ms: int | None,
    first_token_ms: int | None = None,
    error: str | None = None,
) -> Interaction:
    """Record how a streamed answer ended: the text, both latencies, and the error if it broke off.

    The gateway logs a streamed interaction when the stream opens (so every chunk can carry an id that
    feedback can name), with an empty response; this fills it in once, when the stream ends.
    """
    interaction.response = response
    interaction.latency_ms = latency_ms
    interaction.first_token_ms = first_token_ms
    interaction.error = error or None
    interaction.save(update_fields=("response", "latency_ms", "first_token_ms", "error"))
    return interaction


@dataclass(frozen=True)
class Submitted:
    feedback: Feedback
    created: bool


@dataclass(frozen=True)
class BatchSubmitted:
    """Ids of the batch's rows in item order; ``created`` of them are new, the rest were replayed."""

    ids: list[int]
    created: int


class InteractionRef(NamedTuple):
    """All that storing feedback needs of an interaction; the ingest path loads no more of it."""

    pk: int
    assistant_id: int


def _digest(interaction: Interaction | InteractionRef, data: dict[str, Any]) -> str:
    return body_hash(interaction.pk, data)


def _feedback_values(
    *, interaction: Interaction | InteractionRef, data: dict[str, Any], key: str | None, digest: str, now
) -> dict[str, Any]:
    """The column values of a new feedback row: the one place that maps a validated item to a row."""
    values = {name: data.get(name) for name in FEEDBACK_FIELDS}
    for text in ("comment", "suggestion", "corrected_answer"):
        values[text] = values[text] or ""
    values["kind"] = values["kind"] or infer_kind(data)
    values.update(
        interaction_id=interaction.pk,
        assistant_id=interaction.assistant_id,
        idempotency_key=key or None,
        request_hash=digest,
        excluded_from_training=False,
        created_at=now,
    )
    return values


_INSERT_COLUMNS = (
    "interaction_id",
    "assistant_id",
    *FEEDBACK_FIELDS,
    "excluded_from_training",
    "idempotency_key",
    "request_hash",
    "created_at",
)


def _insert_feedback(rows: list[dict[str, Any]]) -> list[int]:
    """INSERT the rows and return their ids, in order. Call inside ``transaction.atomic()``.

    This is ``bulk_create`` without its per-object, per-field machinery, which cost more than the
    database work itself at ingest rates. It relies on what ``_feedback_values`` guarantees: values are
    validated JSON primitives, and only the timestamp needs the backend's adaptation. The generated
    ``success`` column is computed by the database, as with the ORM.
    """
    connection = connections[router.db_for_write(Feedback)]
    if not connection.features.can_return_rows_from_bulk_insert:  # SQLite < 3.35
        objs = Feedback.objects.bulk_create([Feedback(**row) for row in rows])
        return [obj.pk for obj in objs]
    qn = connection.ops.quote_name
    meta = Feedback._meta
    columns = ", ".join(qn(meta.get_field(name).column) for name in _INSERT_COLUMNS)
    created_at = meta.get_field("created_at")
    placeholder = "(" + ", ".join(["%s"] * len(_INSERT_COLUMNS)) + ")"
    per_statement = max(1, (connection.features.max_query_params or 65535) // len(_INSERT_COLUMNS))
    prepared: dict[Any, Any] = {}  # a batch shares one timestamp: adapt it once
    ids: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            params: list[Any] = []
            for row in chunk:
                row_params = [row[name] for name in _INSERT_COLUMNS]
                when = row_params[-1]
                if when not in prepared:
                    prepared[when] = created_at.get_db_prep_save(when, connection)
                row_params[-1] = prepared[when]
                params += row_params
            cursor.execute(
                f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES {', '.join([placeholder] * len(chunk))}"
                f" RETURNING {qn(meta.pk.column)}",
                params,
            )
            ids += [row[0] for row in cursor.fetchall()]
    return ids


# (process, SQLite database file) -> descriptor of its writers' queue. Per process, because flock
# belongs to the open file: a descriptor inherited across fork would be one holder, not two.
_writer_queues: dict[tuple[int, str], int] = {}


@contextmanager
def _writer_turn(using: str) -> Iterator[None]:
    """On SQLite, wait for this write's turn in an OS file lock before taking the database's write lock.

    SQLite lets one writer in at a time, and a writer that finds the database locked sleeps 1, 2, 5,
    10… ms between tries, even when the lock is free again a fraction of a millisecond later. Two busy
    ingest workers then spend much of their time asleep. Queuing on ``flock`` wakes the next writer the
    moment the lock is released (bench/ingest.py: batches ~1.3x faster). SQLite's own locking still
    guards the data; other writers (the worker, admin) don't queue here and are served as before.

    Only an outermost transaction queues: one nested in a caller's transaction may already hold
    SQLite's lock, and waiting here while holding it could deadlock with a writer queued ahead of it.
    """
    connection = connections[using]
    if connection.vendor != "sqlite" or connection.in_atomic_block or connection.is_in_memory_db():
        yield
        return
    key = (os.getpid(), str(connection.settings_dict["NAME"]))
    fd = _writer_queues.get(key)
    if fd is None:
        fd = _writer_queues[key] = os.open(f"{key[1]}-writers", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _replay(existing: Feedback, digest: str) -> Submitted:
    if existing.request_hash != digest:
        raise IdempotencyConflict(
            f"Idempotency key '{existing.idempotency_key}' was already used with a different body."
        )
    return Submitted(existing, False)


def feedback_submit(
    *, interaction: Interaction | InteractionRef, data: dict[str, Any], idempotency_key: str | None = None
) -> Submitted:
    """Store one feedback item; a retry with the same idempotency key returns the stored row.

    The insert goes first and the unique constraint decides: a new key (the common case) costs one
    statement, and a retry, or a concurrent request with the same key, lands in the IntegrityError branch.
    """
    [(_, data, _)] = feedback_items_redact([(interaction, data, idempotency_key)])  # per assistant
    digest = _digest(interaction, data)
    values = _feedback_values(
        interaction=interaction, data=data, key=idempotency_key, digest=digest, now=timezone.now()
    )
    feedback = Feedback(**values)
    using = router.db_for_write(Feedback)
    # Outside a transaction one INSERT is atomic by itself (and BEGIN/COMMIT would cost two more round
    # trips); inside one, a savepoint keeps a key collision from spoiling the caller's transaction.
    guard = transaction.atomic(using=using) if connections[using].in_atomic_block else nullcontext()
    try:
        with guard:
            [feedback.pk] = _insert_feedback([values])
    except IntegrityError:
        existing = (
            Feedback.objects.filter(
                assistant_id=interaction.assistant_id, idempotency_key=idempotency_key
            ).first()
            if idempotency_key
            else None
        )
        if existing is None:
            raise  # not a key collision (e.g. the interaction was deleted meanwhile)
        return _replay(existing, digest)
    feedback._state.adding = False
    feedback._state.db = using
    return Submitted(feedback, True)


def _stored_by_key(keyed: list[tuple[int, str]]) -> dict[tuple[int, str], tuple[int, str]]:
    """(assistant id, key) -> (id, request hash) of the rows already stored under those keys."""
    by_assistant: dict[int, list[str]] = {}
    for assistant_id, key in keyed:
        by_assistant.setdefault(assistant_id, []).append(key)
    found: dict[tuple[int, str], tuple[int, str]] = {}
    for assistant_id, keys in by_assistant.items():
        rows = Feedback.objects.filter(assistant_id=assistant_id, idempotency_key__in=keys).values_list(
            "idempotency_key", "id", "request_hash"
        )
        for key, pk, request_hash in rows:
            found[(assistant_id, key)] = (pk, request_hash)
    return found


def feedback_submit_batch(
    *, items: list[tuple[Interaction | InteractionRef, dict[str, Any], str | None]]
) -> BatchSubmitted:
    """Store many items at once, all or nothing. Items whose key was seen before are returned, not stored.

    Raises IdempotencyConflict listing the items whose key was used with another body.

    Like ``feedback_submit``, the insert goes first: only when the unique constraint objects (a retried
    or overlapping batch) are the stored keys looked up, and the batch is tried again replaying them.
    """
    items = feedback_items_redact(items)  # for assistants that redact at ingestion
    now = timezone.now()
    digests = [_digest(interaction, data) for interaction, data, _ in items]
    keyed = [(it.assistant_id, key) for it, _, key in items if key]
    # A key repeated inside the batch is a conflict unless it is already stored (then both replay it):
    # that needs the stored keys in view from the start.
    look_up = len(set(keyed)) != len(keyed)
    for attempt in range(3):
        existing = _stored_by_key(keyed) if look_up else {}
        ids: list[int | None] = []
        rows: list[dict[str, Any]] = []
        conflicts: list[str] = []
        seen_in_batch: dict[tuple[int, str], int] = {}
        for index, ((interaction, data, key), digest) in enumerate(zip(items, digests, strict=True)):
            if key:
                found = existing.get((interaction.assistant_id, key))
                if found is not None:
                    if found[1] != digest:
                        conflicts.append(
                            f"item {index}: idempotency key '{key}' was used with a different body"
                        )
                    ids.append(found[0])
                    continue
                first = seen_in_batch.setdefault((interaction.assistant_id, key), index)
                if first != index:
                    conflicts.append(f"item {index}: idempotency key '{key}' repeats item {first}")
                    continue
            ids.append(None)
            rows.append(_feedback_values(interaction=interaction, data=data, key=key, digest=digest, now=now))
        if conflicts:
            raise IdempotencyConflict("; ".join(conflicts))
        using = router.db_for_write(Feedback)
        try:
            with _writer_turn(using), transaction.atomic(using=using):
                new_ids = iter(_insert_feedback(rows) if rows else [])
        except IntegrityError:
            if keyed and attempt < 2:
                look_up = True  # stored keys (a retry, or a concurrent batch): look again and replay them
                continue
            raise
        return BatchSubmitted(ids=[pk if pk is not None else next(new_ids) for pk in ids], created=len(rows))
    raise AssertionError("unreachable")


def should_ask_for_feedback(*, interaction: Interaction) -> bool:
    """Sample the assistant's feedback rate, and never ask twice about one interaction.

    The sample is a hash of the request id, so the same interaction always gets the same answer; the
    conditional update makes "ask" happen at most once even when two widgets ask concurrently.
    """
    rate = interaction.assistant.feedback_sample_rate
    digest = hashlib.sha256(f"{interaction.assistant_id}:{interaction.request_id}".encode()).digest()
    sampled = int.from_bytes(digest[:8], "big") / 2**64 < rate
    if not sampled:
        return False
    claimed = Interaction.objects.filter(pk=interaction.pk, feedback_requested_at__isnull=True).update(
        feedback_requested_at=timezone.now()
    )
    return claimed == 1


FEEDBACK_PROMPTS: dict[str, dict[str, Any]] = {
    Feedback.Kind.THUMBS: {"question": "Was this response helpful?", "options": ["👍", "👎"]},
    Feedback.Kind.RATING: {"question": "How would you rate this response?", "scale": [1, 5]},
    Feedback.Kind.CATEGORY: {
        "question": "How would you rate this response on each of these?",
        "categories": list(CATEGORY_FIELDS),
        "scale": [1, 5],
    },
    Feedback.Kind.TEXT: {"question": "Any other comments about this response?"},
    Feedback.Kind.IMPROVEMENT: {"question": "How could this response be improved?"},
    Feedback.Kind.CORRECTION: {"question": "What would the correct answer have been?"},
}


def feedback_prompt(kind: str) -> dict[str, Any]:
    if kind not in FEEDBACK_PROMPTS:
        raise ValueError(f"Unknown feedback kind '{kind}': use one of {', '.join(FEEDBACK_PROMPTS)}.")
    return {"kind": kind, **FEEDBACK_PROMPTS[kind]}


@transaction.atomic
def feedback_set_excluded(*, feedback: Feedback, excluded: bool, user=None) -> Feedback:
    Feedback.objects.filter(pk=feedback.pk).update(excluded_from_training=excluded)
    feedback.excluded_from_training = excluded
    CurationLog.objects.create(
        feedback=feedback, user=user, action="exclude" if excluded else "include", detail={}
    )
    return feedback


@transaction.atomic
def feedback_correct(*, feedback: Feedback, corrected_answer: str, user=None) -> Feedback:
    """A reviewer writes the answer the assistant should have given; the pipeline trains on it."""
    previous = feedback.corrected_answer
    feedback.corrected_answer = corrected_answer.strip()
    feedback.save(update_fields=("corrected_answer",))
    CurationLog.objects.create(
        feedback=feedback,
        user=user,
        action="correct",
        detail={"before": previous, "after": feedback.corrected_answer},
    )
    return feedback
