"""Daily rollups: the dashboard's figures as sums per assistant, model version and local day.

Over 400 lines because maintaining the rollups (the high-water mark, late rows, deletions) and
reading them (whole days plus raw rows at the edges) must agree on one definition of each sum.

Counting a month of raw rows costs time in proportion to the traffic (≈ 0.5 s at a million rows, five
at ten million); adding up thirty rollup rows does not grow with it. The rollups are maintained from a
high-water mark (``RollupMark``): the worker (``rollups_refresh``, every minute) adds the rows stored
since its last run to their day's sums, by id, so a late-arriving row (an import, a clock-skewed client)
lands in its own day whenever it comes. The sums are only ever added to, so deleting old raw rows
(retention) does not change any figure.

Reads (``window_sums``) never depend on the worker having run: a window is the rollups of the local days
it covers whole, plus the raw rows the rollups don't hold yet (ids past the mark, found through the
primary key), plus raw rows at partial days at the window's edges. So figures are exact at any time;
the worker only keeps them cheap.

On PostgreSQL, ids are drawn when a row is inserted but become visible when its transaction commits,
so a row with a smaller id can appear after a larger one. The refresh therefore takes its mark under
``LOCK TABLE … IN SHARE MODE`` (which waits for the transactions writing to the table, and holds new
ones back for the moment it takes to read MAX(id)): every id up to that mark is then final.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Count, F, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from feedback.models import CATEGORY_FIELDS, SIGNAL_Q, DailyRollup, Feedback, Interaction, RollupMark

# Rollup column -> how it is counted over raw rows. THE definition of each figure: the refresh and the
# reads of raw rows use the same expressions, so rollups and raw rows always add up.
FEEDBACK_SUMS: dict[str, Any] = {
    "feedback": Count("id"),
    "helpful_n": Count("id", filter=Q(helpful__isnull=False)),
    "helpful_yes": Count("id", filter=Q(helpful=True)),
    "rated": Count("id", filter=Q(rating__isnull=False)),
    "rating_sum": Sum("rating"),
    "signals": Count("id", filter=SIGNAL_Q),
    "successes": Count("id", filter=SIGNAL_Q & Q(success=True)),
    "excluded": Count("id", filter=Q(excluded_from_training=True)),
    "corrections": Count("id", filter=~Q(corrected_answer="")),
    **{f"{name}_n": Count(name) for name in CATEGORY_FIELDS},
    **{f"{name}_sum": Sum(name) for name in CATEGORY_FIELDS},
    **{f"kind_{kind}": Count("id", filter=Q(kind=kind)) for kind in Feedback.Kind.values},
}
INTERACTION_SUMS: dict[str, Any] = {
    "interactions": Count("id"),
    "errors": Count("id", filter=Q(error__isnull=False) & ~Q(error="")),
}
# How many new raw rows one refresh transaction counts: bounds its time when it catches up on a backlog.
REFRESH_CHUNK = 500_000


def _mark(using: str) -> RollupMark:
    mark, _ = RollupMark.objects.using(using).select_for_update().get_or_create(pk=1)
    return mark


def _final_max_id(model, using: str) -> int:
    """The largest id below which no row of ``model`` can still appear (see the module's docstring)."""
    connection = connections[using]
    table = connection.ops.quote_name(model._meta.db_table)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One table per transaction: holding one table's lock while waiting for another's could
            # deadlock with a writer that inserts into both.
            cursor.execute(f"LOCK TABLE {table} IN SHARE MODE")
        cursor.execute(f"SELECT MAX({connection.ops.quote_name('id')}) FROM {table}")
        return cursor.fetchone()[0] or 0


def _local_day(field: str) -> TruncDate:
    return TruncDate(field, tzinfo=timezone.get_current_timezone())


def _upsert(using: str, queryset: QuerySet, columns: Iterable[str]) -> int:
    """Add the grouped sums of ``queryset`` (assistant, version, day, *columns) to the rollup rows."""
    connection = connections[using]
    qn = connection.ops.quote_name
    columns = list(columns)
    sql, params = queryset.query.get_compiler(using=using).as_sql()
    table = qn(DailyRollup._meta.db_table)
    keys = ("assistant_id", "model_version_id", "day")
    names = ", ".join(qn(c) for c in (*keys, *columns))
    updates = ", ".join(f"{qn(c)} = {table}.{qn(c)} + excluded.{qn(c)}" for c in columns)
    with connection.cursor() as cursor:
        # Every other rollup column takes its default on a new row: spell the zeros out, since the
        # database has no defaults of Django's.
        others = [
            f.column for f in DailyRollup._meta.concrete_fields if f.column not in (*keys, *columns, "id")
        ]
        cursor.execute(
            f"INSERT INTO {table} ({names}{''.join(', ' + qn(c) for c in others)}) "
            f"SELECT *{', 0' * len(others)} FROM ({sql}) AS counted WHERE 1 = 1 "
            f"ON CONFLICT ({', '.join(qn(k) for k in keys)}) DO UPDATE SET {updates}",
            params,
        )
        return cursor.rowcount


def _grouped(queryset: QuerySet, *, version: str, created: str, sums: dict[str, Any]) -> QuerySet:
    return (
        queryset.order_by()
        .annotate(
            r_assistant=F("assistant_id"),
            r_version=Coalesce(F(version), Value(0)),
            r_day=_local_day(created),
        )
        .values("r_assistant", "r_version", "r_day")
        .annotate(**{f"r_{name}": Coalesce(aggregate, Value(0)) for name, aggregate in sums.items()})
        .values_list("r_assistant", "r_version", "r_day", *(f"r_{name}" for name in sums))
    )


def rollups_refresh(*, chunk: int = REFRESH_CHUNK) -> dict[str, int]:
    """Add the raw rows stored since the last refresh to the daily rollups; returns how many it counted.

    Safe to run concurrently (the mark's row lock serialises runs) and to retry: a run counts each row
    exactly once, in the same transaction that moves the mark past it.
    """
    using = router.db_for_write(DailyRollup)
    counted = {"feedback": 0, "interactions": 0}
    for model, mark_field, key in (
        (Interaction, "interaction_id", "interactions"),
        (Feedback, "feedback_id", "feedback"),
    ):
        final = _final_max_id(model, using)
        while True:
            with transaction.atomic(using=using):
                mark = _mark(using)
                low = getattr(mark, mark_field)
                if final <= low:
                    break
                # Chunks count rows, not ids: ids can jump far ahead of the mark (a sequence is not
                # rolled back with a transaction, rows get deleted), and stepping through an empty id
                # range one chunk at a time would take a transaction per chunk for nothing.
                first = (
                    model.objects.using(using)
                    .filter(id__gt=low, id__lte=final)
                    .order_by("id")
                    .values_list("id", flat=True)
                    .first()
                )
                high = final if first is None else min(final, first - 1 + chunk)
                rows = model.objects.using(using).filter(id__gt=low, id__lte=high)
                if model is Feedback:
                    grouped = _grouped(
                        rows,
                        version="interaction__model_version_id",
                        created="created_at",
                        sums=FEEDBACK_SUMS,
                    )
                    _upsert(using, grouped, FEEDBACK_SUMS)
                else:
                    grouped = _grouped(
                        rows, version="model_version_id", created="created_at", sums=INTERACTION_SUMS
                    )
                    _upsert(using, grouped, INTERACTION_SUMS)
                counted[key] += rows.count()
                setattr(mark, mark_field, high)
                mark.updated_at = timezone.now()
                mark.save(update_fields=(mark_field, "updated_at"))
    return counted


def rollup_adjust_feedback(
    *, feedback_id: int, excluded: bool | None = None, corrected: bool | None = None
) -> None:
    """Keep the sums right when a reviewer changes a counted row (exclusion, corrected answer).

    Call inside the transaction that changes the row, before changing it; ``excluded``/``corrected`` are
    the row's new states. The row's current state is read after taking the mark's lock, so concurrent
    edits and a concurrent refresh each see the others' effects. Rows past the mark are left to the
    refresh, which will count them as they are then.
    """
    using = router.db_for_write(DailyRollup)
    mark = _mark(using)  # waits for a running refresh, and holds the next one back until we commit
    if feedback_id > mark.feedback_id:
        return
    row = (
        Feedback.objects.using(using)
        .filter(pk=feedback_id)
        .values(
            "assistant_id",
            "created_at",
            "excluded_from_training",
            "corrected_answer",
            "interaction__model_version_id",
        )
        .first()
    )
    if row is None:
        return
    delta: dict[str, int] = {}
    if excluded is not None and excluded != row["excluded_from_training"]:
        delta["excluded"] = 1 if excluded else -1
    if corrected is not None and corrected != bool(row["corrected_answer"]):
        delta["corrections"] = 1 if corrected else -1
    if not delta:
        return
    DailyRollup.objects.using(using).filter(
        assistant_id=row["assistant_id"],
        model_version_id=row["interaction__model_version_id"] or 0,
        day=timezone.localtime(row["created_at"]).date(),
    ).update(**{name: F(name) + change for name, change in delta.items()})


# -- reads ------------------------------------------------------------------------------------------


def local_midnight(day: dt.date) -> datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _whole_days(since: datetime | None, until: datetime | None) -> tuple[dt.date | None, dt.date | None]:
    """The first and last local day lying wholly inside [since, until) (None: unbounded on that side).

    An unbounded ``until`` covers today whole: nothing after now exists yet.
    """
    first = None
    if since is not None:
        day = timezone.localtime(since).date()
        first = day if local_midnight(day) == since else day + dt.timedelta(days=1)
    last = None
    if until is not None:
        last = timezone.localtime(until).date() - dt.timedelta(days=1)
    return first, last


def _filter_window(qs: QuerySet, since: datetime | None, until: datetime | None) -> QuerySet:
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    return qs


def _marks() -> dict[type, tuple[int, int]]:
    """Per raw model: (the rollups' mark, the largest id stored); rows past the mark exist if they differ."""
    connection = connections[router.db_for_read(DailyRollup)]
    qn = connection.ops.quote_name
    mark = RollupMark.objects.filter(pk=1).values_list("feedback_id", "interaction_id").first() or (0, 0)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT MAX({qn('id')}) FROM {qn(Feedback._meta.db_table)}),"
            f" (SELECT MAX({qn('id')}) FROM {qn(Interaction._meta.db_table)})"
        )
        top = cursor.fetchone()
    return {Feedback: (mark[0], top[0] or 0), Interaction: (mark[1], top[1] or 0)}


_ROLLUP_COLUMNS = (*FEEDBACK_SUMS, *INTERACTION_SUMS)


def _rollup_totals(assistant_id: int, first: dt.date | None, last: dt.date | None) -> dict[str, int]:
    """The rollup columns summed over days [first, last]. Plain SQL: the ORM took longer to compile
    31 sums than the database took to add up a month of rows."""
    connection = connections[router.db_for_read(DailyRollup)]
    qn = connection.ops.quote_name
    where, params = [f"{qn('assistant_id')} = %s"], [assistant_id]
    if first is not None:
        where.append(f"{qn('day')} >= %s")
        params.append(first)
    if last is not None:
        where.append(f"{qn('day')} <= %s")
        params.append(last)
    sums = ", ".join(f"SUM({qn(name)})" for name in _ROLLUP_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {sums} FROM {qn(DailyRollup._meta.db_table)} WHERE {' AND '.join(where)}", params
        )
        return dict(zip(_ROLLUP_COLUMNS, (int(v or 0) for v in cursor.fetchone()), strict=True))


def window_sums(
    *, assistant_id: int, since: datetime | None = None, until: datetime | None = None
) -> dict[str, int]:
    """Every rollup column summed over [since, until) for one assistant, exact whatever the mark."""
    marks = _marks()
    first, last = _whole_days(since, until)
    totals = dict.fromkeys(_ROLLUP_COLUMNS, 0)

    def add(values: dict[str, Any], sign: int = 1) -> None:
        for name, value in values.items():
            totals[name] += sign * int(value or 0)  # PostgreSQL sums bigints as numeric (Decimal)

    # (low, high, sign): raw rows the rollups hold, counted over [low, high) and added or subtracted.
    edges: list[tuple[datetime | None, datetime | None, int]] = []
    if first is None or last is None or first <= last:
        rollup_first = first
        # The partial days at the edges, from raw rows the rollups hold.
        if since is not None and first is not None and local_midnight(first) > since:
            day = first - dt.timedelta(days=1)
            if _complement_is_cheaper(since, day) and _raw_rows_kept_from(assistant_id, local_midnight(day)):
                # A window from a deployment at 07:00 reads 7 hours of raw rows rather than 17: its
                # first day's rollup less the hours before it. The cost of a partial day is then at most
                # half a day's traffic.
                rollup_first = day
                edges.append((local_midnight(day), since, -1))
            else:
                edges.append((since, local_midnight(first), 1))
        if until is not None and last is not None and local_midnight(last + dt.timedelta(days=1)) < until:
            edges.append((local_midnight(last + dt.timedelta(days=1)), until, 1))
        add(_rollup_totals(assistant_id, rollup_first, last))
    else:
        edges = [(since, until, 1)]  # within one day: all from raw rows
    for model, sums in ((Feedback, FEEDBACK_SUMS), (Interaction, INTERACTION_SUMS)):
        mark, top = marks[model]
        rows = model.objects.filter(assistant_id=assistant_id)
        for low, high, sign in edges:
            add(_filter_window(rows.filter(id__lte=mark), low, high).aggregate(**sums), sign)
        if top > mark:
            # Rows the rollups don't hold yet: found through the primary key, a minute's worth normally.
            recent = _filter_window(rows.filter(id__gt=mark), since, until).order_by()
            for values in _past_mark(recent.values("assistant_id").annotate(**sums).values_list(*sums)):
                add(dict(zip(sums, values, strict=True)))
    return totals


def _complement_is_cheaper(since: datetime, day: dt.date) -> bool:
    """Whether ``since`` lies in the first half of its local ``day``: fewer raw rows before it than after."""
    start, end = local_midnight(day), local_midnight(day + dt.timedelta(days=1))
    return since - start < end - since


def _raw_rows_kept_from(assistant_id: int, start: datetime) -> bool:
    """Whether the assistant's raw rows from ``start`` on are all still stored, as a day's rollup less
    some of its raw rows needs. Retention deletes whole days from the oldest (``feedback.retention``), so
    rows older than ``start`` still being there means its day was not deleted. One query on the
    (assistant, created_at) indexes. (A customer's erasure deletes rows anywhere, and the rollups keep
    counting them: a day's complement can then count an erased row of its hours before ``since``.)"""
    connection = connections[router.db_for_read(DailyRollup)]
    qn = connection.ops.quote_name
    oldest = ", ".join(
        f"(SELECT MIN({qn('created_at')}) FROM {qn(model._meta.db_table)} WHERE {qn('assistant_id')} = %s)"
        for model in (Feedback, Interaction)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {oldest}", [assistant_id, assistant_id])
        values = cursor.fetchone()
    for value in values:
        if value is None:
            return False  # no rows: none yet (nothing to save), or all deleted (the rollups remember them)
        if isinstance(value, str):  # SQLite returns the aggregate of a datetime column as text
            value = dt.datetime.fromisoformat(value)
            if timezone.is_naive(value):
                value = timezone.make_aware(value, dt.UTC)
        if value >= start:
            return False
    return True


def _past_mark(queryset: QuerySet) -> list[tuple]:
    """Run a query over rows past the mark so that it finds them through the primary key.

    SQLite's planner, having no histogram to tell that ``id > mark`` holds a minute's rows, prefers the
    (assistant, created_at) index and reads the whole window (12 ms at 100,000 rows, growing with the
    data); NOT INDEXED leaves it the primary key's range. PostgreSQL sees the range's true size.
    """
    using = queryset.db
    connection = connections[using]
    sql, params = queryset.query.get_compiler(using=using).as_sql()
    if connection.vendor == "sqlite":
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        sql = sql.replace(f"FROM {table}", f"FROM {table} NOT INDEXED", 1)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def daily_sums(*, assistant_id: int, first: dt.date, columns: Iterable[str]) -> dict[dt.date, dict[str, int]]:
    """``columns`` summed per local day from ``first`` to today, for one assistant (days with rows only)."""
    columns = list(columns)
    high, top = _marks()[Feedback]
    days: dict[dt.date, dict[str, int]] = {}

    def add(day: dt.date, values: dict[str, Any]) -> None:
        slot = days.setdefault(day, dict.fromkeys(columns, 0))
        for name in columns:
            slot[name] += int(values[name] or 0)

    for row in (
        DailyRollup.objects.filter(assistant_id=assistant_id, day__gte=first)
        .values("day")
        .annotate(**{name: Sum(name) for name in columns})
        .order_by()
    ):
        add(row["day"], row)
    recent = (
        Feedback.objects.filter(assistant_id=assistant_id, id__gt=high, created_at__gte=local_midnight(first))
        .order_by()
        .annotate(r_day=_local_day("created_at"))
        .values("r_day")
        .annotate(**{name: FEEDBACK_SUMS[name] for name in columns})
        .values_list("r_day", *columns)
    )
    for day, *values in _past_mark(recent) if top > high else []:
        if isinstance(day, str):  # SQLite's raw cursor gives the date as text
            day = dt.date.fromisoformat(day)
        add(day, dict(zip(columns, values, strict=True)))
    return dict(sorted(days.items()))


def version_sums(
    *, assistant_id: int, columns: Iterable[str] = ("feedback", "signals", "successes")
) -> dict[int, dict[str, int]]:
    """``columns`` summed over all time per model version of one assistant (0: rows without a version).

    Two queries: the mark, then one statement adding the rollups to the raw rows past the mark. That
    statement reads the mark again itself, so both halves see the same moment and a refresh committing
    meanwhile can neither count a row twice nor lose one; the mark read first (never ahead of the one
    inside) is there for PostgreSQL's planner, which cannot size ``id > (subquery)`` and, assuming a
    third of the table, hash-joins every interaction. A version's sums cover its whole life, however
    long ago it served and after retention has deleted its old raw rows.
    """
    columns = list(columns)
    using = router.db_for_read(DailyRollup)
    connection = connections[using]
    qn = connection.ops.quote_name
    summed = (
        DailyRollup.objects.using(using)
        .filter(assistant_id=assistant_id)
        .order_by()
        .values(r_version=F("model_version_id"))
        .annotate(**{f"r_{name}": Sum(name) for name in columns})
        .values_list("r_version", *(f"r_{name}" for name in columns))
    )
    marks = RollupMark.objects.using(using).filter(pk=1).values("feedback_id")
    floor = marks.values_list("feedback_id", flat=True).first() or 0
    recent = (
        Feedback.objects.using(using)
        .filter(assistant_id=assistant_id, id__gt=floor)
        .filter(id__gt=Coalesce(Subquery(marks), Value(0)))
        .order_by()
        .values(r_version=Coalesce(F("interaction__model_version_id"), Value(0)))
        .annotate(**{f"r_{name}": FEEDBACK_SUMS[name] for name in columns})
        .values_list("r_version", *(f"r_{name}" for name in columns))
    )
    summed_sql, summed_params = summed.query.get_compiler(using=using).as_sql()
    recent_sql, recent_params = recent.query.get_compiler(using=using).as_sql()
    if connection.vendor == "sqlite":
        # As in ``_past_mark``: leave SQLite's planner the primary key's range for the rows past the mark.
        table = qn(Feedback._meta.db_table)
        recent_sql = recent_sql.replace(f"FROM {table}", f"FROM {table} NOT INDEXED", 1)
    names = ", ".join(f"SUM({qn('r_' + name)})" for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {qn('r_version')}, {names} FROM ("
            f"SELECT * FROM ({summed_sql}) AS summed UNION ALL SELECT * FROM ({recent_sql}) AS recent"
            f") AS parts GROUP BY {qn('r_version')}",
            (*summed_params, *recent_params),
        )
        return {
            int(version): dict(zip(columns, (int(v or 0) for v in values), strict=True))
            for version, *values in cursor.fetchall()
        }
