"""Stream feedback from the database, one combined candidate per interaction.

Rows are read with ``values_list(...).iterator(chunk_size=...)`` ordered by interaction, so memory is
constant in the number of rows and consecutive rows of one interaction are folded together here. The
messages and the timestamp are read as text (``Cast``) and parsed only when needed: Django's JSON and
datetime converters were half the cost of a build, and most dropped rows never need their messages.

**How several feedback rows of one interaction combine** (rows taken oldest → newest):

- a row marked ``excluded_from_training`` excludes the whole interaction: a reviewer's "never train on
  this" (PII, abuse, a wrong answer) outranks any customer's thumbs-up on the same answer. This holds
  even when the excluded row itself is not read (outside the date window, not among ``feedback_ids``):
  a narrower build must not resurrect an interaction a reviewer took out;
- ``helpful``, ``rating`` and each category rating: the latest non-null value wins (people change their
  minds; the newest opinion is the one that stands);
- ``corrected_answer``: the latest non-empty correction wins, "latest" by the feedback row's creation
  (a reviewer who corrects the newest row supersedes the customer; one who corrects an older row while a
  newer row carries its own correction does not: edit the newest row in the explorer);
- ``confidence``: the minimum of the non-null values (the least certain signal bounds the example);
- the example's representative feedback row (metadata, provenance "feedback id", newest-first ordering)
  is the latest row; every contributing row is recorded as provenance.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db import connections
from django.db.models import Exists, F, OuterRef, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from assistants.models import Assistant
from feedback.models import CATEGORY_FIELDS, Feedback

CHUNK_SIZE = 2000
SQLITE_IN_LIMIT = 900

_COLUMNS = (
    "id",
    "interaction_id",
    "helpful",
    "rating",
    *CATEGORY_FIELDS,
    "corrected_answer",
    "confidence",
    "excluded_any",
    "created_text",
    "messages_text",
    "interaction__response",
    "interaction__error",
)
_ID, _IID, _HELPFUL, _RATING = 0, 1, 2, 3
_CAT = slice(4, 4 + len(CATEGORY_FIELDS))
_CORR, _CONF, _EXCL, _CREATED, _MSGS, _RESP, _ERR = range(4 + len(CATEGORY_FIELDS), 11 + len(CATEGORY_FIELDS))


@dataclass(slots=True)
class Candidate:
    """One interaction with its feedback combined (see the module docstring)."""

    interaction_id: int
    feedback_id: int
    feedback_ids: list[int]
    messages_raw: str | list | None
    response: str
    error: str | None
    helpful: bool | None
    rating: int | None
    categories: list[int | None]
    corrected_answer: str
    confidence: float | None
    excluded: bool
    created_raw: str | dt.datetime
    rows: int = 1
    _messages: list | None = None
    extra: dict = field(default_factory=dict)

    @property
    def messages(self) -> list:
        if self._messages is None:
            raw = self.messages_raw
            try:
                parsed = json.loads(raw) if isinstance(raw, str | bytes) else raw
            except ValueError:
                parsed = None
            self._messages = parsed if isinstance(parsed, list) else []
        return self._messages

    @property
    def created_ts(self) -> float:
        """POSIX time of the latest feedback row (SQLite gives naive UTC text, PostgreSQL an offset)."""
        raw = self.created_raw
        when = raw if isinstance(raw, dt.datetime) else dt.datetime.fromisoformat(str(raw).strip())
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.timestamp()

    @property
    def question(self) -> str:
        for message in reversed(self.messages or []):
            if isinstance(message, dict) and message.get("role") == "user":
                return str(message.get("content") or "")
        return ""

    @property
    def quality(self) -> float | None:
        """Mean of the category ratings given, else the rating (1–5); None without either."""
        given = [c for c in self.categories if c is not None]
        if given:
            return sum(given) / len(given)
        return float(self.rating) if self.rating is not None else None


def feedback_queryset(
    *,
    assistant: Assistant,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    feedback_ids: Iterable[int] | None = None,
):
    qs = Feedback.objects.filter(assistant=assistant)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    if feedback_ids is not None:
        # Ids outside the primary key's range match nothing (and SQLite refuses to bind them at all).
        ids = sorted({int(i) for i in feedback_ids if 0 < int(i) < 2**63})
        if connections[qs.db].vendor == "sqlite" and len(ids) > SQLITE_IN_LIMIT:
            # SQLite caps bound parameters (32,766 in most builds): one JSON array parameter instead.
            qs = qs.filter(id__in=RawSQL("SELECT value FROM json_each(%s)", (json.dumps(ids),)))
        else:
            qs = qs.filter(id__in=ids)
    if since is None and until is None and feedback_ids is None:
        # Every row of each interaction is read, so the row's own flag folds into the interaction's.
        return qs.annotate(excluded_any=F("excluded_from_training"))
    # Only some rows are read: an excluded row outside the selection must still exclude its interaction.
    excluded = Feedback.objects.filter(interaction_id=OuterRef("interaction_id"), excluded_from_training=True)
    return qs.annotate(excluded_any=Exists(excluded))


def candidates(
    queryset, *, chunk_size: int = CHUNK_SIZE, counter: list[int] | None = None
) -> Iterator[Candidate]:
    """Combined candidates in interaction order. ``counter[0]`` counts the feedback rows read."""
    if "excluded_any" not in queryset.query.annotations:  # not from feedback_queryset
        queryset = queryset.annotate(excluded_any=F("excluded_from_training"))
    rows = (
        queryset.annotate(
            created_text=Cast(F("created_at"), TextField()),
            messages_text=Cast(F("interaction__messages"), TextField()),
        )
        .order_by("interaction_id", "created_at", "id")
        .values_list(*_COLUMNS)
        .iterator(chunk_size=chunk_size)
    )
    current: Candidate | None = None
    read = 0
    for row in rows:
        read += 1
        if counter is not None:
            counter[0] = read
        if current is not None and current.interaction_id == row[_IID]:
            _fold(current, row)
            continue
        if current is not None:
            yield current
        current = Candidate(
            interaction_id=row[_IID],
            feedback_id=row[_ID],
            feedback_ids=[row[_ID]],
            messages_raw=row[_MSGS],
            response=row[_RESP] or "",
            error=row[_ERR] or None,
            helpful=row[_HELPFUL],
            rating=row[_RATING],
            categories=list(row[_CAT]),
            corrected_answer=(row[_CORR] or "").strip(),
            confidence=row[_CONF],
            excluded=bool(row[_EXCL]),
            created_raw=row[_CREATED],
        )
    if current is not None:
        yield current


def _fold(c: Candidate, row: tuple) -> None:
    c.rows += 1
    c.feedback_id = row[_ID]
    c.feedback_ids.append(row[_ID])
    c.created_raw = row[_CREATED]
    c.excluded = c.excluded or bool(row[_EXCL])
    if row[_HELPFUL] is not None:
        c.helpful = row[_HELPFUL]
    if row[_RATING] is not None:
        c.rating = row[_RATING]
    for i, value in enumerate(row[_CAT]):
        if value is not None:
            c.categories[i] = value
    corrected = (row[_CORR] or "").strip()
    if corrected:
        c.corrected_answer = corrected
    if row[_CONF] is not None:
        c.confidence = row[_CONF] if c.confidence is None else min(c.confidence, row[_CONF])
