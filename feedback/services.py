"""Writes for interactions and feedback: each accepted write is stored exactly once, even on retries.

Over 400 lines because single and batch writes share one idempotency path (request hash, conflict
check, the SQLite writer lock) whose pieces only make sense together.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from assistants.models import Assistant, ModelVersion
from config import metrics
from feedback.exceptions import IdempotencyConflict
from feedback.models import CATEGORY_FIELDS, CurationLog, Feedback, Interaction
from feedback.redaction import feedback_items_redact, interaction_redact
from feedback.rollups import rollup_adjust_feedback
from feedback.sampling import unit_interval
from feedback.selectors import InteractionRef

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


def body_hash(interaction_id: int, data: dict[str, Any]) -> str:
    """Fingerprint of what a feedback item says, to tell a retry (same body) from a conflict (another one).

    The fields are taken in their fixed FEEDBACK_FIELDS order and the values are validated JSON
    primitives (str, int, float, bool, None), whose ``repr`` is canonical: cheaper than sorted JSON, which
    cost more than a quarter of a batch's CPU time. Stored rows keep their hash, so this must never change.
    """
    return _said_hash(interaction_id, list(map(data.get, FEEDBACK_FIELDS)))


def _said_hash(interaction_id: int, said: list[Any]) -> str:
    """``body_hash`` of the item whose FEEDBACK_FIELDS values are ``said``, in that order."""
    return hashlib.sha256(repr((interaction_id, *said)).encode()).hexdigest()


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
        metrics.rows_ingested("interaction")
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


_INSERT_COLUMNS = (
    "interaction_id",
    "assistant_id",
    *FEEDBACK_FIELDS,
    "excluded_from_training",
    "idempotency_key",
    "request_hash",
    "created_at",
)
# Where in a row (see _feedback_row) the request hash is, and where its FEEDBACK_FIELDS values are.
_HASH = _INSERT_COLUMNS.index("request_hash")
_KIND = FEEDBACK_FIELDS.index("kind")
_TEXTS = tuple(FEEDBACK_FIELDS.index(name) for name in ("comment", "suggestion", "corrected_answer"))


def _feedback_row(interaction: Interaction | InteractionRef, data: dict[str, Any], key: str | None) -> tuple:
    """A new feedback row's values in ``_INSERT_COLUMNS`` order, all but ``created_at`` (one per statement).

    The one place that maps a validated item to a row, its request hash (``body_hash``) included: both
    read the item's FEEDBACK_FIELDS once, which is most of what a row of a batch costs to build.
    """
    said = list(map(data.get, FEEDBACK_FIELDS))
    digest = _said_hash(interaction.pk, said)
    said[_KIND] = said[_KIND] or infer_kind(data)
    for i in _TEXTS:
        said[i] = said[i] or ""
    return (interaction.pk, interaction.assistant_id, *said, False, key or None, digest)


_encode_rows = json.JSONEncoder(separators=(",", ":")).encode

# (vendor, skip stored keys, placeholder) -> the INSERT statement's text around its rows, built once.
_insert_statements: dict[tuple[str, bool, str], tuple[str, str, str]] = {}


def _insert_statement(connection, skip_stored_keys: bool, mark: str = "%s") -> tuple[str, str, str]:
    """``(head, one row's placeholders, tail)`` of the INSERT for ``connection``'s vendor.

    On PostgreSQL the head is the whole statement up to ``ON CONFLICT`` and takes two parameters: the
    rows' timestamp and the rows as one JSON array of arrays; elsewhere the rows go in a multi-row VALUES
    with ``mark`` as each value's placeholder.
    """
    cache_key = (connection.vendor, skip_stored_keys, mark)
    cached = _insert_statements.get(cache_key)
    if cached is not None:
        return cached
    qn = connection.ops.quote_name
    meta = Feedback._meta
    columns = ", ".join(qn(meta.get_field(name).column) for name in _INSERT_COLUMNS)
    tail = (
        f" ON CONFLICT ({qn('assistant_id')}, {qn('idempotency_key')})"
        f" WHERE {qn('idempotency_key')} IS NOT NULL DO NOTHING"
        if skip_stored_keys
        else ""
    )
    tail += f" RETURNING {qn(meta.pk.column)}, {qn('assistant_id')}, {qn('idempotency_key')}"
    if connection.vendor == "postgresql":
        # jsonb parses the document once, after which ``->>`` reads an element by position: measured
        # cheaper for the database than json_to_recordset over objects (a lookup by name per column and row),
        # and arrays are half the work of objects for the json module to encode.
        values = ", ".join(
            f"(r->>{i})::{meta.get_field(name).db_type(connection)}"
            for i, name in enumerate(_INSERT_COLUMNS[:-1])
        )
        head = (
            f"INSERT INTO {qn(meta.db_table)} ({columns}) SELECT {values}, %s"
            f" FROM jsonb_array_elements(%s::jsonb) AS r"
        )
        placeholder = ""
    else:
        head = f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES "
        placeholder = "(" + ", ".join([mark] * len(_INSERT_COLUMNS)) + ")"
    _insert_statements[cache_key] = (head, placeholder, tail)
    return head, placeholder, tail


def _insert_feedback(rows: list[tuple], *, created_at, skip_stored_keys: bool = False) -> list[int | None]:
    """INSERT the rows in one statement and return their ids in order. Call inside ``transaction.atomic()``.

    ``rows`` are ``_feedback_row`` tuples; they all get ``created_at``. With ``skip_stored_keys`` a row
    whose idempotency key is already stored (or is being stored by a concurrent transaction, which
    PostgreSQL waits for) is skipped instead of failing the statement, and its id is ``None``: the
    caller looks the stored row up. The unique index still decides, so one key never gets two rows.

    This is ``bulk_create`` without its per-object, per-field machinery, which cost more than the
    database work itself at ingest rates. It relies on what ``_feedback_row`` guarantees: values are
    validated JSON primitives, and only the timestamp needs the backend's adaptation. The generated
    ``success`` column is computed by the database, as with the ORM.
    """
    connection = connections[router.db_for_write(Feedback)]
    if not connection.features.can_return_rows_from_bulk_insert:  # SQLite < 3.35
        if skip_stored_keys:
            raise NotImplementedError("skipping stored keys needs INSERT … RETURNING (SQLite >= 3.35)")
        objs = Feedback.objects.bulk_create(
            [Feedback(**dict(zip(_INSERT_COLUMNS, (*row, created_at), strict=True))) for row in rows]
        )
        return [obj.pk for obj in objs]
    stored: list[tuple[int, int, str | None]] = []
    if connection.vendor == "postgresql":
        head, _, tail = _insert_statement(connection, skip_stored_keys)
        # One statement per batch, whatever its size, with the rows as one JSON document that
        # PostgreSQL unpacks in bulk: a short statement parsed and planned once, one parameter encoded
        # by the json module's C code. Per-row parameters (a multi-row VALUES of 1,800 of them) or one
        # array per column cost more to build, send and plan in the web process than the rows cost to
        # store.
        with _server_binding_cursor(connection) as cursor:
            cursor.execute(head + tail, [created_at, _encode_rows(rows)])
            stored = cursor.fetchall()
    else:
        connection.ensure_connection()
        stamp = Feedback._meta.get_field("created_at").get_db_prep_save(created_at, connection)
        # The library's own limit (32,766 here), not Django's conservative 999: a batch of 100 in
        # one statement rather than two.
        limit = (
            connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            if connection.vendor == "sqlite"
            else connection.features.max_query_params or 65535
        )
        per_statement = max(1, limit // len(_INSERT_COLUMNS))
        # On SQLite the driver's own cursor, unless queries are being logged (DEBUG, tests): Django's
        # rewrites every ``%s`` of a statement into ``?`` with a regular expression, which for a batch
        # of 100 (1,800 placeholders) cost 1.6 µs a row.
        direct = connection.vendor == "sqlite" and not connection.queries_logged
        head, placeholder, tail = _insert_statement(connection, skip_stored_keys, "?" if direct else "%s")
        cursor = connection.connection.cursor() if direct else connection.cursor()
        try:
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                params: list[Any] = []
                for row in chunk:
                    params += row
                    params.append(stamp)
                with connection.wrap_database_errors:
                    cursor.execute(head + ", ".join([placeholder] * len(chunk)) + tail, params)
                    stored += cursor.fetchall()
        finally:
            cursor.close()
    if not skip_stored_keys and len(stored) == len(rows):
        # RETURNING's order is not promised, but ids are drawn in the order the rows are inserted.
        return sorted(pk for pk, _, _ in stored)
    # Rows skipped for a stored key are missing: match keyed rows by key and the others by order.
    key_at = _INSERT_COLUMNS.index("idempotency_key")
    by_key = {(assistant_id, key): pk for pk, assistant_id, key in stored if key is not None}
    unkeyed = iter(sorted(pk for pk, _, key in stored if key is None))
    return [by_key.get((row[1], row[key_at])) if row[key_at] is not None else next(unkeyed) for row in rows]


def _server_binding_cursor(connection):
    """A Django cursor on ``connection`` whose parameters travel apart from the statement (PostgreSQL).

    Django's cursors merge parameters into the statement's text, so a batch's JSON document would be
    escaped by the driver and then read again by PostgreSQL's SQL parser; sent as a parameter it is
    neither. Not prepared (``prepare_threshold`` stays Django's None), so connection poolers in
    transaction mode still work. Query logging and execute wrappers apply as to any Django cursor.
    """
    import psycopg

    connection.ensure_connection()
    cursor = psycopg.Cursor(connection.connection)
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    return wrap(cursor)


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
    row = _feedback_row(interaction, data, idempotency_key)
    now = timezone.now()
    feedback = Feedback(**dict(zip(_INSERT_COLUMNS, (*row, now), strict=True)))
    using = router.db_for_write(Feedback)
    # Outside a transaction one INSERT is atomic by itself (and BEGIN/COMMIT would cost two more round
    # trips); inside one, a savepoint keeps a key collision from spoiling the caller's transaction.
    guard = transaction.atomic(using=using) if connections[using].in_atomic_block else nullcontext()
    try:
        with guard:
            [feedback.pk] = _insert_feedback([row], created_at=now)
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
        return _replay(existing, row[_HASH])
    feedback._state.adding = False
    feedback._state.db = using
    metrics.rows_ingested("feedback")
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

    One INSERT stores the batch and skips the rows whose key is already stored (a retried or overlapping
    batch; on PostgreSQL it waits for a concurrent batch holding the same key): only then are the stored
    rows read, to replay them or to refuse a different body, which rolls the whole batch back.
    """
    items = feedback_items_redact(items)  # for assistants that redact at ingestion
    now = timezone.now()
    rows: list[tuple] = []
    digests: list[str] = []
    conflicts: list[str] = []
    first_of_key: dict[tuple[int, str], int] = {}
    repeats: dict[int, int] = {}  # item index -> index of the earlier item with its key
    for index, (interaction, data, key) in enumerate(items):
        row = _feedback_row(interaction, data, key)
        digests.append(row[_HASH])
        if key:
            first = first_of_key.setdefault((interaction.assistant_id, key), index)
            if first != index:
                repeats[index] = first
                continue
        rows.append(row)
    using = router.db_for_write(Feedback)
    with _writer_turn(using), transaction.atomic(using=using):
        new_ids = _insert_feedback(rows, created_at=now, skip_stored_keys=True) if rows else []
        if not repeats and None not in new_ids:  # the common case: every key is new
            metrics.rows_ingested("feedback", len(new_ids))
            return BatchSubmitted(ids=new_ids, created=len(new_ids))
        inserted = iter(new_ids)
        ids: list[int | None] = [None if index in repeats else next(inserted) for index in range(len(items))]
        fresh = {index for index, pk in enumerate(ids) if pk is not None}  # stored by this batch
        skipped = [(items[i][0].assistant_id, items[i][2]) for i, pk in enumerate(ids) if pk is None]
        stored = _stored_by_key(skipped) if skipped else {}
        for index, ((interaction, _, key), digest) in enumerate(zip(items, digests, strict=True)):
            if index in fresh:
                continue
            found = stored.get((interaction.assistant_id, key))
            if index in repeats and (found is None or repeats[index] in fresh):
                # A key repeated inside the batch is ambiguous unless it was stored before (then both
                # items replay it).
                conflicts.append(f"item {index}: idempotency key '{key}' repeats item {repeats[index]}")
            elif found is None:
                # Skipped for a row that was gone by the time we looked: rare, and safe to send again.
                conflicts.append(f"item {index}: idempotency key '{key}' was being stored concurrently")
            elif found[1] != digest:
                conflicts.append(f"item {index}: idempotency key '{key}' was used with a different body")
            else:
                ids[index] = found[0]
        if conflicts:
            raise IdempotencyConflict("; ".join(conflicts))  # rolls back what this batch inserted
    metrics.rows_ingested("feedback", len(fresh))
    return BatchSubmitted(ids=ids, created=len(fresh))


def should_ask_for_feedback(*, interaction: Interaction) -> bool:
    """Sample the assistant's feedback rate, and never ask twice about one interaction.

    The sample is a hash of the request id, so the same interaction always gets the same answer; the
    conditional update makes "ask" happen at most once even when two widgets ask concurrently.
    """
    rate = interaction.assistant.feedback_sample_rate
    sampled = unit_interval(f"{interaction.assistant_id}:{interaction.request_id}") < rate
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
    rollup_adjust_feedback(feedback_id=feedback.pk, excluded=excluded)
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
    rollup_adjust_feedback(feedback_id=feedback.pk, corrected=bool(corrected_answer.strip()))
    feedback.corrected_answer = corrected_answer.strip()
    feedback.save(update_fields=("corrected_answer",))
    CurationLog.objects.create(
        feedback=feedback,
        user=user,
        action="correct",
        detail={"before": previous, "after": feedback.corrected_answer},
    )
    return feedback
