"""Reads over interactions and feedback. Every aggregate is computed by the database."""

from __future__ import annotations

import datetime as dt
import re
from datetime import datetime
from typing import Any, NamedTuple

from django.db import connections, router
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from assistants.models import Assistant
from feedback import rollups
from feedback.models import CATEGORY_FIELDS, Feedback, Interaction


def _window(qs: QuerySet, since: datetime | None, until: datetime | None) -> QuerySet:
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    return qs


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def feedback_stats(
    *, assistant: Assistant, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """The seed's feedback stats for one assistant over [since, until).

    Rates are ``None`` (not 0) when there is nothing to divide by, so "no data" never reads as "all bad".
    ``success_rate`` is over feedback that carries a signal (helpful or rating): see ``SUCCESS_Q``.
    Built from the daily rollups plus the raw rows they don't hold (``feedback.rollups``): the cost
    does not grow with the window's traffic, and deleting old raw rows changes nothing.
    """
    sums = rollups.window_sums(assistant_id=assistant.pk, since=since, until=until)
    return {
        "total_feedback": sums["feedback"],
        "helpful_rate": _ratio(sums["helpful_yes"], sums["helpful_n"]),
        "avg_rating": _ratio(sums["rating_sum"], sums["rated"]),
        "rated_count": sums["rated"],
        "category_ratings": {
            name: _ratio(sums[f"{name}_sum"], sums[f"{name}_n"]) for name in CATEGORY_FIELDS
        },
        "category_counts": {name: sums[f"{name}_n"] for name in CATEGORY_FIELDS},
        "success_count": sums["successes"],
        "signal_count": sums["signals"],
        "success_rate": _ratio(sums["successes"], sums["signals"]),
        "total_interactions": sums["interactions"],
        "error_count": sums["errors"],
        "error_rate": _ratio(sums["errors"], sums["interactions"]),
        "excluded_count": sums["excluded"],
        "correction_count": sums["corrections"],
        "counts_by_kind": {kind: sums[f"kind_{kind}"] for kind in Feedback.Kind.values},
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }


def feedback_daily_series(*, assistant: Assistant, days: int = 30) -> list[dict[str, Any]]:
    """One row per day with feedback over the last ``days`` local days: count, success, helpful, rating."""
    first = timezone.localdate() - dt.timedelta(days=days - 1)
    per_day = rollups.daily_sums(
        assistant_id=assistant.pk,
        first=first,
        columns=("feedback", "signals", "successes", "helpful_n", "helpful_yes", "rated", "rating_sum"),
    )
    return [
        {
            "day": day.isoformat(),
            "total_feedback": row["feedback"],
            "success_rate": _ratio(row["successes"], row["signals"]),
            "helpful_rate": _ratio(row["helpful_yes"], row["helpful_n"]),
            "avg_rating": _ratio(row["rating_sum"], row["rated"]),
        }
        for day, row in per_day.items()
        if row["feedback"]
    ]


# Figures over raw rows for the admins' retrain conditions (training/conditions.py): one query each, with
# the rollups' definition of each count (``feedback.rollups``), so a count here and on the overview agree.
RATED_FIELDS = ("rating", *CATEGORY_FIELDS)


class Share(NamedTuple):
    """A ratio and the observations it rests on; ``value`` is None when there is nothing to divide by."""

    value: float | None
    observations: int


def interaction_error_count(
    *, assistant: Assistant, since: datetime | None = None, until: datetime | None = None
) -> int:
    """Interactions that ended in an error, over [since, until)."""
    qs = _window(Interaction.objects.filter(assistant=assistant), since, until)
    return qs.aggregate(n=rollups.INTERACTION_SUMS["errors"])["n"]


def feedback_correction_count(
    *, assistant: Assistant, since: datetime | None = None, until: datetime | None = None
) -> int:
    """Feedback carrying a corrected answer (the customer's or a reviewer's), over [since, until)."""
    qs = _window(Feedback.objects.filter(assistant=assistant), since, until)
    return qs.aggregate(n=rollups.FEEDBACK_SUMS["corrections"])["n"]


def feedback_rated_at_most_count(
    *,
    assistant: Assistant,
    field: str,
    at_most: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Feedback whose ``field`` (``rating`` or a category) is rated ``at_most`` or lower."""
    if field not in RATED_FIELDS:
        raise ValueError(f"Unknown rating field '{field}': use one of {', '.join(RATED_FIELDS)}.")
    qs = _window(Feedback.objects.filter(assistant=assistant), since, until)
    return qs.aggregate(n=Count("id", filter=Q(**{f"{field}__lte": at_most})))["n"]


def comment_words_pattern(words: list[str], vendor: str) -> str:
    """A regex matching any of ``words`` as whole words, in the dialect of the database ``vendor``.

    PostgreSQL's regexes mark a word boundary with ``\\y`` (its ``\\b`` is a backspace); SQLite's REGEXP
    is Python's ``re``, where it is ``\\b``. Both count letters of any script, digits and ``_`` as word
    characters. ``re.escape`` escapes only punctuation, which both dialects then read literally.
    """
    boundary = r"\y" if vendor == "postgresql" else r"\b"
    alternatives = "|".join(re.escape(word) for word in words)
    return f"{boundary}(?:{alternatives}){boundary}"


def feedback_comment_match_count(
    *, assistant: Assistant, words: list[str], since: datetime | None = None, until: datetime | None = None
) -> int:
    """Feedback whose comment mentions any of ``words`` as a whole word, in any case (once per comment)."""
    if not words:
        return 0
    vendor = connections[router.db_for_read(Feedback)].vendor
    qs = _window(Feedback.objects.filter(assistant=assistant), since, until)
    matching = Q(comment__iregex=comment_words_pattern(words, vendor))
    return qs.aggregate(n=Count("id", filter=matching))["n"]


def feedback_kind_share(
    *, assistant: Assistant, kind: str, since: datetime | None = None, until: datetime | None = None
) -> Share:
    """The share of feedback of ``kind`` among all feedback over [since, until)."""
    qs = _window(Feedback.objects.filter(assistant=assistant), since, until)
    sums = qs.aggregate(part=rollups.FEEDBACK_SUMS[f"kind_{kind}"], whole=rollups.FEEDBACK_SUMS["feedback"])
    return Share(_ratio(sums["part"], sums["whole"]), sums["whole"])


def feedback_rating_average(
    *, assistant: Assistant, field: str, since: datetime | None = None, until: datetime | None = None
) -> Share:
    """The average of ``field`` (``rating`` or a category) over the feedback that rated it."""
    if field not in RATED_FIELDS:
        raise ValueError(f"Unknown rating field '{field}': use one of {', '.join(RATED_FIELDS)}.")
    qs = _window(Feedback.objects.filter(assistant=assistant), since, until)
    sums = qs.aggregate(total=Sum(field), n=Count(field))
    return Share(_ratio(sums["total"] or 0, sums["n"]), sums["n"])


def interaction_get(
    *, assistant: Assistant, interaction_id: int | None, request_id: str | None
) -> Interaction | None:
    qs = Interaction.objects.filter(assistant=assistant)
    if interaction_id is not None:
        return qs.filter(pk=interaction_id).first()
    return qs.filter(request_id=request_id).first()


def interaction_with_assistant_get(*, interaction_id: int) -> Interaction | None:
    """The interaction with its assistant and model version, whichever assistant it belongs to."""
    return Interaction.objects.select_related("assistant", "model_version").filter(pk=interaction_id).first()


class InteractionRef(NamedTuple):
    """All that storing feedback needs of an interaction; the ingest path loads no more of it."""

    pk: int
    assistant_id: int
    # Whether its assistant redacts feedback at ingestion, read with the reference (None: not read), so
    # storing the feedback needs no query of its own to decide.
    redacts: bool | None = None


def interaction_refs(
    *, items: list[dict], assistant_ids: dict[str | None, int]
) -> list[InteractionRef | None]:
    """The interaction each feedback item refers to (None: no such interaction for its assistant), in order.

    ``items`` are validated feedback items (``interaction_id`` or ``request_id``, maybe ``assistant``);
    ``assistant_ids`` maps each item's ``assistant`` to the assistant it resolved to. Two queries per
    assistant, not one per item; each also reads whether the assistant redacts at ingestion.
    """
    by_id: dict[tuple[int, int], InteractionRef] = {}
    by_request: dict[tuple[int, str], InteractionRef] = {}
    for assistant_id in set(assistant_ids.values()):
        mine = [it for it in items if assistant_ids[it.get("assistant")] == assistant_id]
        ids = {it["interaction_id"] for it in mine if "interaction_id" in it}
        refs = {it["request_id"] for it in mine if "request_id" in it}
        for pk, _, redacts in _interaction_ids(assistant_id, "id", ids):
            by_id[(assistant_id, pk)] = InteractionRef(pk, assistant_id, bool(redacts))
        for request_id, pk, redacts in _interaction_ids(assistant_id, "request_id", refs):
            by_request[(assistant_id, request_id)] = InteractionRef(pk, assistant_id, bool(redacts))
    resolved: list[InteractionRef | None] = []
    for item in items:
        assistant_id = assistant_ids[item.get("assistant")]
        if "interaction_id" in item:
            resolved.append(by_id.get((assistant_id, item["interaction_id"])))
        else:
            resolved.append(by_request.get((assistant_id, item["request_id"])))
    return resolved


def _interaction_ids(assistant_id: int, column: str, values: set) -> list[tuple]:
    """``(value, id, redacts)`` of the assistant's interactions whose ``column`` is one of ``values``
    (``redacts``: the assistant's ``redact_at_ingestion``, read in the same statement).

    Plain SQL because building this one-line query with the ORM cost more CPU than everything else
    the single-feedback endpoint does (it was a third of the request); ``column`` is ours, not input.
    On PostgreSQL the values travel as one array literal: ``IN (%s, …)`` with a batch's 100 parameters
    cost the driver 2.6 µs a value to parse and quote (it caches only statements of up to 50).
    """
    if not values:
        return []
    connection = connections[router.db_for_read(Interaction)]
    qn = connection.ops.quote_name
    redacts = (
        f"(SELECT {qn('redact_at_ingestion')} FROM {qn(Assistant._meta.db_table)} WHERE {qn('id')} = %s)"
    )
    table = qn(Interaction._meta.db_table)
    sql = f"SELECT {qn(column)}, {qn('id')}, {redacts} FROM {table} WHERE {qn('assistant_id')} = %s"
    if connection.vendor == "postgresql":
        is_id = column == "id"
        sql += f" AND {qn(column)} = ANY(%s::{'bigint' if is_id else 'text'}[])"
        params = [assistant_id, assistant_id, _pg_array(values, numbers=is_id)]
    else:
        sql += f" AND {qn(column)} IN ({', '.join(['%s'] * len(values))})"
        params = [assistant_id, assistant_id, *values]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _pg_array(values: set, *, numbers: bool) -> str:
    """A PostgreSQL array literal of validated ints, or of any strings (each quoted, ``\\`` and ``"``
    escaped, so commas, braces, blanks and the word NULL are plain text)."""
    if numbers:
        return "{" + ",".join(str(int(v)) for v in values) + "}"
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def interaction_user_refs(*, ids: set[int]) -> dict[int, str]:
    """``{interaction id: user ref}`` for these interactions (one query)."""
    return dict(Interaction.objects.filter(pk__in=ids).values_list("pk", "user_ref"))


def feedback_for_explorer(
    *,
    assistant: Assistant | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    rating: int | None = None,
    helpful: bool | None = None,
    kind: str | None = None,
    model_version_id: int | None = None,
    category: str | None = None,
    category_max: int | None = None,
    join_assistant: bool = True,
) -> QuerySet[Feedback]:
    """Feedback with its interaction, newest first.

    ``join_assistant=False`` for a page that already holds the assistants: joined, SQLite's planner scans
    assistants first, then sorts all of an assistant's feedback instead of walking the
    (assistant, created_at) index.
    """
    related = ("interaction", "interaction__model_version", *(("assistant",) if join_assistant else ()))
    qs = Feedback.objects.select_related(*related)
    if assistant is not None:
        qs = qs.filter(assistant=assistant)
    qs = _window(qs, since, until)
    if rating is not None:
        qs = qs.filter(rating=rating)
    if helpful is not None:
        qs = qs.filter(helpful=helpful)
    if kind:
        qs = qs.filter(kind=kind)
    if model_version_id is not None:
        qs = qs.filter(interaction__model_version_id=model_version_id)
    if category in CATEGORY_FIELDS:
        qs = qs.filter(**{f"{category}__isnull": False})
        if category_max is not None:
            qs = qs.filter(**{f"{category}__lte": category_max})
    return qs.order_by("-created_at", "-id")
