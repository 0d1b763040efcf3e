"""The training track record: the page, the all-assistants view and the training-report API.

Over 400 lines because each of the report's figures is one aggregate query that must say what it
counts and why (the seed's definitions, the local weeks, the rollups); the figures share their helpers.

The seed's "Track training performance" report (jobs, deployed share, average improvement, jobs by week)
and more. Every figure is counted by the database, grouped by assistant where the all-assistants view
needs it, so a page runs the same queries whatever the history's size. Weeks are local weeks (Monday
first) of the site's time zone (settings.TIME_ZONE): assistants have no time zone of their own, and the
daily rollups that the success-rate chart reads are counted in local days of it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import (
    Avg,
    BooleanField,
    Case,
    CharField,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Coalesce, Lower, RowNumber, Trim, TruncWeek
from django.utils import timezone

from assistants.models import Assistant, Deployment, ModelVersion
from feedback.models import DailyRollup, Feedback, RollupMark
from feedback.rollups import FEEDBACK_SUMS, local_midnight
from training.models import JobEvent, TrainingJob

TRACK_RECORD_WEEKS = 12
TRACK_RECORD_MAX_WEEKS = 104
TRACK_RECORD_OUTCOMES = ("deployed", "rejected", "failed", "cancelled")
# The decision rule's own rejections (training.services.decide) begin with these words; the figures
# after them differ per job, so they are grouped by rule rather than by text.
AUTOMATIC_REJECTIONS = (
    ("The A/B test rules the candidate out", "The A/B test ruled the candidate out"),
    ("Not significant", "Not significant"),
    ("Improvement ", "Improvement below the policy's minimum"),
)
# A decision on a job awaiting approval: a person approved (deploying), rejected or cancelled it. The
# watchdog failing it after its deadline is nobody's decision.
DECISION_STATUSES = ("deploying", "rejected", "cancelled")
# Deployment rows that made a version fully live (not a rollout's partial stage) mark the chart.
FULLY_LIVE = 1.0


def track_record_week_start(day: dt.date) -> dt.date:
    """The Monday of ``day``'s week."""
    return day - dt.timedelta(days=day.weekday())


def track_record_weeks(*, weeks: int, today: dt.date | None = None) -> list[dt.date]:
    """The first days of the last ``weeks`` local weeks, oldest first, this week included."""
    current = track_record_week_start(today or timezone.localdate())
    return [current - dt.timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]


def _as_day(value: Any) -> dt.date:
    """A week's start as a date, whatever the backend returned (an aware datetime, a date, ISO text)."""
    if isinstance(value, dt.datetime):
        return timezone.localtime(value).date() if timezone.is_aware(value) else value.date()
    if isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    return value


def _json_float(key: str, source: Any) -> Cast:
    return Cast(KeyTextTransform(key, source), FloatField())


def _lift_annotations() -> dict[str, Any]:
    """A job's lift, its interval and where they come from, read from JSON in SQL.

    The A/B experiment's final analysis when the job has a finished one (its decision interval, at the
    test's own level), else the offline evaluation (the 95 % bootstrap interval of the relative change in
    validation accuracy: ``improvement_ci`` is [estimate, low, high]).
    """
    results = KeyTransform("ab_test_results", "experiment__last_analysis")
    ci = KeyTransform("improvement_ci", "evaluation")
    ab = (
        Q(experiment__isnull=False)
        & ~Q(experiment__status="running")
        & Q(experiment__last_analysis__has_key="ab_test_results")
    )
    offline = Q(offline_lift__isnull=False)
    return {
        "offline_lift": _json_float("0", ci),
        "lift_source": Case(
            When(ab, then=Value("ab_test")),
            When(offline, then=Value("offline_evaluation")),
            default=Value(None),
            output_field=CharField(),
        ),
        "lift": Case(
            When(ab, then=_json_float("improvement", results)),
            When(offline, then=F("offline_lift")),
            output_field=FloatField(),
        ),
        "lift_low": Case(
            When(ab, then=_json_float("improvementLow", results)),
            When(offline, then=_json_float("1", ci)),
            output_field=FloatField(),
        ),
        "lift_high": Case(
            When(ab, then=_json_float("improvementHigh", results)),
            When(offline, then=_json_float("2", ci)),
            output_field=FloatField(),
        ),
        "lift_level": Case(
            When(ab, then=_json_float("ciLevel", results)),
            When(offline, then=Value(0.95)),
            output_field=FloatField(),
        ),
    }


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def track_record_outcomes(*, assistant_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per assistant: jobs by outcome, the deployed shares and the average lift of deployed versions.

    ``share_deployed`` is the seed's "Success Rate" (deployed / all jobs); ``share_deployed_of_finished``
    leaves out the jobs still in progress. ``average_improvement`` is the mean lift of the deployed
    versions whose lift was measured (``improvement_measured`` of them), where the seed counted a
    missing one as 0. One query for any number of assistants.
    """
    deployed = Q(status=TrainingJob.Status.DEPLOYED)
    rows = (
        TrainingJob.objects.filter(assistant_id__in=assistant_ids)
        .annotate(**_lift_annotations())
        .order_by()
        .values("assistant_id")
        .annotate(
            total=Count("id"),
            **{name: Count("id", filter=Q(status=name)) for name in TRACK_RECORD_OUTCOMES},
            average_improvement=Avg("lift", filter=deployed),
            improvement_measured=Count("id", filter=deployed & Q(lift__isnull=False)),
            last_deployed_at=Max("finished_at", filter=deployed),
        )
    )
    empty = {
        "total": 0,
        **dict.fromkeys(TRACK_RECORD_OUTCOMES, 0),
        "average_improvement": None,
        "improvement_measured": 0,
        "last_deployed_at": None,
    }
    found = {row.pop("assistant_id"): row for row in rows}
    out = {}
    for assistant_id in assistant_ids:
        row = {**empty, **found.get(assistant_id, {})}
        finished = sum(row[name] for name in TRACK_RECORD_OUTCOMES)
        row["in_progress"] = row["total"] - finished
        row["share_deployed"] = _ratio(row["deployed"], row["total"])
        row["share_deployed_of_finished"] = _ratio(row["deployed"], finished)
        out[assistant_id] = row
    return out


def _medians(events: QuerySet[JobEvent], start: Any) -> dict[int, dict[str, Any]]:
    """Per assistant: the median time from ``start`` to each of ``events``, and how many there are.

    The database ranks the durations per assistant and keeps the middle one or two (window functions,
    which SQLite and PostgreSQL both have); the median is their mean.
    """
    took = ExpressionWrapper(F("created_at") - start, output_field=DurationField())
    by = [F("job__assistant_id")]
    rows = (
        events.annotate(assistant=F("job__assistant_id"), took=took)
        .annotate(
            rank=Window(RowNumber(), partition_by=by, order_by=[F("took").asc(), F("id").asc()]),
            n=Window(Count("id"), partition_by=by),
        )
        .annotate(twice=F("rank") * 2)
        .filter(twice__gte=F("n"), twice__lte=F("n") + 2)
        .values_list("assistant", "took", "n")
    )
    middle: dict[int, list[dt.timedelta]] = {}
    counts: dict[int, int] = {}
    for assistant_id, duration, n in rows:
        middle.setdefault(assistant_id, []).append(duration)
        counts[assistant_id] = n
    return {
        assistant_id: {"median": sum(values, dt.timedelta()) / len(values), "jobs": counts[assistant_id]}
        for assistant_id, values in middle.items()
    }


def track_record_durations(*, assistant_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per assistant, from the jobs' timelines: the median time from a job's trigger to its deployment,
    and from "awaiting approval" to a person's decision (approve, reject or cancel), with how many jobs
    each median is of. Two queries for any number of assistants.
    """
    transitions = JobEvent.objects.filter(kind=JobEvent.Kind.TRANSITION, job__assistant_id__in=assistant_ids)
    created = (
        JobEvent.objects.filter(
            job=OuterRef("job"),
            kind=JobEvent.Kind.TRANSITION,
            from_status="",
            to_status=TrainingJob.Status.PENDING,
        )
        .order_by("created_at", "id")
        .values("created_at")[:1]
    )
    awaiting = (
        JobEvent.objects.filter(job=OuterRef("job"), to_status=TrainingJob.Status.AWAITING_APPROVAL)
        .order_by("-created_at", "-id")
        .values("created_at")[:1]
    )
    # A job made before timelines recorded its creation falls back to its own creation time.
    to_deploy = _medians(
        transitions.filter(to_status=TrainingJob.Status.DEPLOYED),
        Coalesce(Subquery(created), F("job__created_at")),
    )
    to_decision = _medians(
        transitions.filter(from_status=TrainingJob.Status.AWAITING_APPROVAL, to_status__in=DECISION_STATUSES),
        Subquery(awaiting),
    )
    none = {"median": None, "jobs": 0}
    return {
        assistant_id: {
            "trigger_to_deployment": to_deploy.get(assistant_id, none),
            "awaiting_approval_to_decision": to_decision.get(assistant_id, none),
        }
        for assistant_id in assistant_ids
    }


def track_record_jobs_by_week(
    *, assistant: Assistant, weeks: int, today: dt.date | None = None
) -> list[dict[str, Any]]:
    """The seed's "Training jobs by week", by outcome: jobs triggered in each of the last ``weeks`` local
    weeks up to ``today``'s (oldest first, empty weeks included) and what became of them. One query."""
    starts = track_record_weeks(weeks=weeks, today=today)
    since, until = local_midnight(starts[0]), local_midnight(starts[-1] + dt.timedelta(weeks=1))
    rows = (
        TrainingJob.objects.filter(assistant=assistant, created_at__gte=since, created_at__lt=until)
        .annotate(week=TruncWeek("created_at", tzinfo=timezone.get_current_timezone()))
        .order_by()
        .values("week")
        .annotate(
            total=Count("id"), **{name: Count("id", filter=Q(status=name)) for name in TRACK_RECORD_OUTCOMES}
        )
    )
    found = {_as_day(row.pop("week")): row for row in rows}
    series = []
    for start in starts:
        row = found.get(start, {"total": 0, **dict.fromkeys(TRACK_RECORD_OUTCOMES, 0)})
        series.append(
            {"week": start, **row, "in_progress": row["total"] - sum(row[n] for n in TRACK_RECORD_OUTCOMES)}
        )
    return series


def track_record_lifts(*, assistant: Assistant) -> list[dict[str, Any]]:
    """Each deployed job, newest first: its version, when it went live, and the lift it brought with its
    interval, from the A/B test's final analysis where there is one, else from the offline evaluation
    (``lift_source`` says which; None when neither measured it). One query."""
    return list(
        TrainingJob.objects.filter(assistant=assistant, status=TrainingJob.Status.DEPLOYED)
        .annotate(**_lift_annotations())
        .order_by("-finished_at", "-id")
        .values(
            "id",
            "finished_at",
            "experiment_id",
            "lift_source",
            "lift",
            "lift_low",
            "lift_high",
            "lift_level",
            version=F("new_model_version__name"),
        )
    )


def track_record_rejections(*, assistant: Assistant) -> list[dict[str, Any]]:
    """Why jobs were rejected, most frequent first: the reviewers' reasons grouped by their text (case
    and surrounding spaces aside) and worded as the group's newest, the decision rule's by rule. Two
    queries."""
    rule = Case(
        *(
            When(decision_reason__startswith=prefix, then=Value(label))
            for prefix, label in AUTOMATIC_REJECTIONS
        ),
        default=Value("The decision rule rejected it"),
        output_field=CharField(),
    )
    by_person = Q(decided_by__isnull=False)
    rows = list(
        TrainingJob.objects.filter(assistant=assistant, status=TrainingJob.Status.REJECTED)
        .annotate(
            group=Case(
                When(by_person, then=Lower(Trim("decision_reason"))), default=rule, output_field=CharField()
            ),
            by_reviewer=Case(
                When(by_person, then=Value(True)), default=Value(False), output_field=BooleanField()
            ),
        )
        .order_by()
        .values("group", "by_reviewer")
        .annotate(count=Count("id"), last_at=Max("finished_at"), last_job=Max("id"))
        .order_by("-count", "-last_at", "group")
    )
    newest = dict(
        TrainingJob.objects.filter(pk__in=[row["last_job"] for row in rows if row["by_reviewer"]])
        .annotate(text=Trim("decision_reason"))
        .values_list("pk", "text")
    )
    return [
        {
            "reason": newest.get(row["last_job"], row["group"]) if row["by_reviewer"] else row["group"],
            "by_reviewer": row["by_reviewer"],
            "count": row["count"],
            "last_at": row["last_at"],
            "last_job": row["last_job"],
        }
        for row in rows
    ]


def track_record_success_series(
    *, assistant: Assistant, weeks: int, today: dt.date | None = None
) -> dict[str, Any]:
    """The cumulative success rate of each version across the last ``weeks`` local weeks, for one chart:
    ``{labels, datasets, markers}``.

    ``labels`` are the weeks' first days; each dataset is one version (in the order they were made), its
    ``data`` the share of successful answers among all its answers with feedback so far (from its first,
    however long ago) at each week's end, ``feedback`` how many that is; empty before its first week and
    after its last week with feedback. ``markers`` are the deployments that made a version fully live,
    at their week. Counted from the daily rollups plus the raw rows they do not hold yet (as
    ``feedback.rollups.window_sums`` does), so the cost does not grow with the traffic. Four queries.
    """
    starts = track_record_weeks(weeks=weeks, today=today)
    labels = [start.isoformat() for start in starts]
    rolled = (
        DailyRollup.objects.filter(assistant_id=assistant.pk)
        .annotate(week=TruncWeek("day"))
        .order_by()
        .values("model_version_id", "week")
        .annotate(signals=Sum("signals"), successes=Sum("successes"))
        .values_list("model_version_id", "week", "signals", "successes")
    )
    mark = Coalesce(Subquery(RollupMark.objects.filter(pk=1).values("feedback_id")[:1]), Value(0))
    recent = (
        Feedback.objects.filter(assistant_id=assistant.pk, id__gt=mark)
        .annotate(
            version=Coalesce("interaction__model_version_id", Value(0)),
            week=TruncWeek("created_at", tzinfo=timezone.get_current_timezone()),
        )
        .order_by()
        .values("version", "week")
        .annotate(signals=FEEDBACK_SUMS["signals"], successes=FEEDBACK_SUMS["successes"])
        .values_list("version", "week", "signals", "successes")
    )
    sums: dict[int, dict[dt.date, list[int]]] = {}
    for version_id, week, signals, successes in [*rolled, *recent]:
        if (day := _as_day(week)) > starts[-1]:
            continue  # after the window (a report as of an earlier day)
        cell = sums.setdefault(version_id, {}).setdefault(day, [0, 0])
        cell[0] += int(signals or 0)
        cell[1] += int(successes or 0)
    names = dict(ModelVersion.objects.filter(assistant=assistant).values_list("id", "name"))
    datasets = []
    for version_id in sorted(sums, key=lambda pk: (pk == 0, pk)):
        by_week = sums[version_id]
        first, last = min(by_week), max(by_week)
        signals = successes = 0
        for week in sorted(w for w in by_week if w < starts[0]):
            signals += by_week[week][0]
            successes += by_week[week][1]
        data: list[float | None] = []
        counts: list[int | None] = []
        for start in starts:
            if start in by_week:
                signals += by_week[start][0]
                successes += by_week[start][1]
            inside = first <= start <= last and signals > 0
            data.append(successes / signals if inside else None)
            counts.append(signals if inside else None)
        if any(value is not None for value in data):
            label = names.get(version_id, f"version {version_id}") if version_id else "no version recorded"
            datasets.append({"label": label, "data": data, "feedback": counts})
    markers: dict[str, list[str]] = {}
    for when, name, reason in (
        Deployment.objects.filter(
            assistant=assistant,
            traffic_share__gte=FULLY_LIVE,
            created_at__gte=local_midnight(starts[0]),
            created_at__lt=local_midnight(starts[-1] + dt.timedelta(weeks=1)),
        )
        .order_by("created_at", "id")
        .values_list("created_at", "version__name", "reason")
    ):
        week = track_record_week_start(timezone.localdate(when)).isoformat()
        markers.setdefault(week, []).append(f"{name} ({reason})")
    return {
        "labels": labels,
        "datasets": datasets,
        "markers": [{"label": week, "text": ", ".join(texts)} for week, texts in markers.items()],
    }


def training_report(
    *, assistant: Assistant, weeks: int = TRACK_RECORD_WEEKS, today: dt.date | None = None
) -> dict[str, Any]:
    """Everything the track-record page and ``GET /api/v1/assistants/{slug}/training-report`` show for
    one assistant. A constant number of queries (eleven) whatever the history's size."""
    ids = [assistant.pk]
    return {
        "assistant": assistant,
        "time_zone": timezone.get_current_timezone_name(),
        "weeks": weeks,
        "jobs": track_record_outcomes(assistant_ids=ids)[assistant.pk],
        "durations": track_record_durations(assistant_ids=ids)[assistant.pk],
        "jobs_by_week": track_record_jobs_by_week(assistant=assistant, weeks=weeks, today=today),
        "deployed_versions": track_record_lifts(assistant=assistant),
        "rejection_reasons": track_record_rejections(assistant=assistant),
        "success_rate": track_record_success_series(assistant=assistant, weeks=weeks, today=today),
    }


def training_report_all() -> list[dict[str, Any]]:
    """One row per assistant (by name) for the all-assistants view: its jobs by outcome, deployed shares,
    average lift and median durations. Four queries whatever the number of assistants."""
    assistants = list(Assistant.objects.select_related("live_version").order_by("name", "slug"))
    ids = [a.pk for a in assistants]
    outcomes = track_record_outcomes(assistant_ids=ids)
    durations = track_record_durations(assistant_ids=ids)
    return [{"assistant": a, **outcomes[a.pk], **durations[a.pk]} for a in assistants]
