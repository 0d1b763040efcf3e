"""Reads over training jobs: lists, a job's page, the active job, jobs awaiting approval, the health
block, the overview's figures, the policy's own retrain conditions measured now and the training track
record."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.cache import caches
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
from assistants.selectors import deployments_since
from feedback.models import DailyRollup, Feedback, RollupMark
from feedback.rollups import FEEDBACK_SUMS, local_midnight, version_sums
from feedback.selectors import feedback_daily_series, feedback_stats
from training.conditions import ConditionResult, conditions_measure
from training.evaluation.intervals import wilson_interval
from training.models import EvaluationPrompt, JobEvent, RetrainPolicy, TrainingDataset, TrainingJob
from training.policy import last_deployment, retrain_metrics
from training.services import ACTIVE_STATUSES


def job_list(
    *,
    assistant: Assistant | None = None,
    status: str | None = None,
    assistants: QuerySet | list | None = None,
    trigger: str | None = None,
) -> QuerySet[TrainingJob]:
    qs = TrainingJob.objects.select_related("assistant", "new_model_version", "dataset", "decided_by")
    if assistant is not None:
        qs = qs.filter(assistant=assistant)
    if assistants is not None:
        qs = qs.filter(assistant__in=assistants)
    if status:
        qs = qs.filter(status=status)
    if trigger:
        qs = qs.filter(trigger=trigger)
    return qs.order_by("-created_at", "-id")


def job_get(*, job_id: int) -> TrainingJob | None:
    return (
        TrainingJob.objects.select_related(
            "assistant", "new_model_version", "dataset", "decided_by", "experiment"
        )
        .prefetch_related("events__user")
        .filter(pk=job_id)
        .first()
    )


def job_detail_get(*, job_id: int) -> TrainingJob | None:
    """A job with everything its page shows beside it (the page reads its events with ``job_events``)."""
    return (
        TrainingJob.objects.select_related(
            "assistant",
            "assistant__live_version",
            "dataset",
            "new_model_version",
            "base_version",
            "experiment",
            "experiment__control",
            "experiment__variant",
            "decided_by",
        )
        .filter(pk=job_id)
        .first()
    )


def job_charts_get(*, job_id: int) -> TrainingJob | None:
    """A job with what its charts read: its metrics (the loss curve), its A/B test and stored results."""
    return (
        TrainingJob.objects.select_related(
            "experiment", "experiment__control", "experiment__variant", "experiment__stopped_by"
        )
        .filter(pk=job_id)
        .first()
    )


def job_events(*, job: TrainingJob) -> QuerySet[JobEvent]:
    """The job's timeline, oldest first."""
    return JobEvent.objects.filter(job=job).select_related("user").order_by("created_at", "id")


def job_counts(*, assistant: Assistant) -> dict[str, Any]:
    """How many jobs the assistant has, how many await approval, and when one last deployed (one query)."""
    return TrainingJob.objects.filter(assistant=assistant).aggregate(
        total=Count("id"),
        awaiting=Count("id", filter=Q(status=TrainingJob.Status.AWAITING_APPROVAL)),
        last_retrained=Max("finished_at", filter=Q(status=TrainingJob.Status.DEPLOYED)),
    )


def assistants_with_awaiting() -> list[Assistant]:
    """All assistants, by slug, each with ``awaiting``: how many of its jobs await approval (one query)."""
    return list(
        Assistant.objects.select_related("live_version")
        .annotate(
            awaiting=Count(
                "training_jobs", filter=Q(training_jobs__status=TrainingJob.Status.AWAITING_APPROVAL)
            )
        )
        .order_by("slug")
    )


def policy_get(*, assistant: Assistant) -> RetrainPolicy | None:
    """The assistant's saved retrain policy; None when the defaults apply (reading never creates one)."""
    return RetrainPolicy.objects.filter(assistant=assistant).first()


def job_active_get(*, assistant: Assistant) -> TrainingJob | None:
    return job_list(assistant=assistant).filter(status__in=ACTIVE_STATUSES).first()


def jobs_awaiting_approval(*, assistant: Assistant | None = None) -> QuerySet[TrainingJob]:
    return job_list(assistant=assistant, status=TrainingJob.Status.AWAITING_APPROVAL)


def training_loop_health(*, assistant: Assistant) -> dict[str, Any]:
    """The seed's ``trainingLoop`` block plus feedback stats since the last deployment."""
    from feedback.selectors import feedback_stats
    from training.policy import last_deployment

    counts = TrainingJob.objects.filter(assistant=assistant).aggregate(
        total=Count("id"),
        awaiting=Count("id", filter=Q(status=TrainingJob.Status.AWAITING_APPROVAL)),
        deployed=Count("id", filter=Q(status=TrainingJob.Status.DEPLOYED)),
        failed=Count("id", filter=Q(status=TrainingJob.Status.FAILED)),
        last_retrained=Max("finished_at", filter=Q(status=TrainingJob.Status.DEPLOYED)),
    )
    last_deploy = Deployment.objects.filter(assistant=assistant).aggregate(at=Max("created_at"))["at"]
    active = job_active_get(assistant=assistant)
    policy = RetrainPolicy.objects.filter(assistant=assistant).first()
    deployment = last_deployment(assistant)
    return {
        "assistant": assistant.slug,
        # Ready = there is a live version to improve on; a missing policy means the seed's defaults.
        "training_loop_ready": assistant.live_version_id is not None,
        "training_loop": {
            "enabled": policy.enabled if policy is not None else True,
            "active_job": {"id": active.pk, "status": active.status, "trigger": active.trigger}
            if active
            else None,
            "total_jobs": counts["total"],
            "jobs_awaiting_approval": counts["awaiting"],
            "deployed_jobs": counts["deployed"],
            "failed_jobs": counts["failed"],
            "last_retrained_at": counts["last_retrained"],
            "last_deployment_at": last_deploy,
            "live_version": assistant.live_version.name if assistant.live_version_id else None,
        },
        "feedback": feedback_stats(assistant=assistant),
        "feedback_since_deployment": feedback_stats(
            assistant=assistant, since=deployment.created_at if deployment else None
        ),
    }


def retrain_conditions_preview(*, policy: RetrainPolicy) -> list[ConditionResult]:
    """The policy's own retrain conditions measured now, as its next check would, disabled ones listed
    unmeasured: the feedback stats since the last deployment (a fixed number of queries over the rollups)
    and at most one query per condition."""
    deployment = last_deployment(policy.assistant)
    since = deployment.created_at if deployment is not None else None
    stats = feedback_stats(assistant=policy.assistant, since=since)
    return conditions_measure(
        assistant=policy.assistant, policy=policy, stats=stats, since=since, include_disabled=True
    )


OVERVIEW_DAYS = 30
# The worker refreshes the figures every minute; they expire only if it stops, so a page never shows
# figures more than a few minutes old.
OVERVIEW_FIGURES_TTL = 300


VERSIONS_SHOWN = 5


def version_success_rates(*, assistant: Assistant) -> list[dict[str, Any]]:
    """Each recent model version's success rate over its whole life, most recently live first.

    The versions: the live one, those live before it, and the candidates A/B tested since it was
    trained (never live), at most VERSIONS_SHOWN, the live one always among them. ``success_rate`` is
    the overview's (``feedback_stats``): successes over feedback that says whether the answer helped
    (``signals``), with a 95 % Wilson interval; the counts come from the daily rollups and the raw rows
    past their mark (``feedback.rollups.version_sums``), so they survive retention. "Live" is a
    deployment taking all traffic (a rollout's partial stages are not); a version made live twice, by a
    rollback, shows its first start and its last end. Three queries, whatever the history.
    """
    sums = version_sums(assistant_id=assistant.pk)
    full = Deployment.objects.filter(assistant=assistant, traffic_share__gte=1)
    mine = full.filter(version=OuterRef("pk"))
    tested = Q(pk__in=[pk for pk, figures in sums.items() if pk and figures["signals"]])
    if assistant.live_version_id is not None:
        live_created = ModelVersion.objects.filter(pk=assistant.live_version_id).values("created_at")
        tested &= Q(created_at__gt=Subquery(live_created))
    versions = (
        ModelVersion.objects.filter(assistant=assistant)
        .annotate(
            live_from=Subquery(mine.order_by("created_at", "id").values("created_at")[:1]),
            last_live=Subquery(mine.order_by("-created_at", "-id").values("created_at")[:1]),
            live_until=Subquery(
                full.filter(created_at__gt=OuterRef("last_live"))
                .exclude(version=OuterRef("pk"))
                .order_by("created_at", "id")
                .values("created_at")[:1]
            ),
            is_live=ExpressionWrapper(Q(pk=assistant.live_version_id), output_field=BooleanField()),
            shown_at=Coalesce(F("last_live"), F("created_at")),
        )
        .filter(Q(live_from__isnull=False) | tested)
        .order_by("-is_live", "-shown_at", "-id")
        .values("id", "name", "live_from", "live_until", "is_live", "shown_at")[:VERSIONS_SHOWN]
    )
    rows = []
    for version in sorted(versions, key=lambda v: (v["shown_at"], v["id"]), reverse=True):
        figures = sums.get(version["id"], {"feedback": 0, "signals": 0, "successes": 0})
        judged, successes = figures["signals"], figures["successes"]
        low, high = wilson_interval(successes, judged) if judged else (None, None)
        rows.append(
            {
                **{k: version[k] for k in ("id", "name", "live_from", "live_until", "is_live")},
                "feedback": figures["feedback"],
                "judged": judged,
                "successes": successes,
                "success_rate": successes / judged if judged else None,
                "success_low": low,
                "success_high": high,
            }
        )
    return rows


def overview_figures(*, assistant: Assistant, refresh: bool = False) -> dict[str, Any]:
    """The overview page's aggregates: 30-day feedback stats, the daily series, the retrain metrics and
    the success rate of each recent version (``version_success_rates``).

    The window is the last OVERVIEW_DAYS local days, today included, for the stats as for the chart:
    whole days, which the daily rollups answer without reading raw rows (``feedback.rollups``), so a
    cold computation costs about the same at ten million rows as at ten thousand. The figures still
    live in the shared "figures" cache, refreshed every minute by
    ``training.tasks.refresh_overview_figures`` (which first brings the rollups up to date).
    """
    key = f"overview:{assistant.pk}"
    figures = None if refresh else caches["figures"].get(key)
    # An entry cached by a release that computed fewer figures is computed afresh.
    if figures is None or "versions" not in figures:
        now = timezone.now()
        since = local_midnight(timezone.localdate() - dt.timedelta(days=OVERVIEW_DAYS - 1))
        figures = {
            "stats": feedback_stats(assistant=assistant, since=since),
            "series": feedback_daily_series(assistant=assistant, days=OVERVIEW_DAYS),
            "retrain_metrics": retrain_metrics(assistant),
            "versions": version_success_rates(assistant=assistant),
            "computed_at": now,
        }
        caches["figures"].set(key, figures, OVERVIEW_FIGURES_TTL)
    return figures


def overview_deployments(*, assistant: Assistant) -> list[Deployment]:
    """The deployments of the overview's last OVERVIEW_DAYS days, oldest first, with their version."""
    since = timezone.now() - dt.timedelta(days=OVERVIEW_DAYS)
    return list(deployments_since(assistant=assistant, since=since))


def evaluation_prompts(*, job: TrainingJob, only_differing: bool = False) -> QuerySet[EvaluationPrompt]:
    """The job's evaluated prompts in order; ``only_differing``: where the versions' grades differ or the
    pairwise verdict is not a tie."""
    qs = EvaluationPrompt.objects.filter(job=job)
    if only_differing:
        qs = qs.filter(differs=True)
    return qs.order_by("position")


def latest_calibration(*, assistant_id: int) -> tuple[TrainingJob | None, dict | None]:
    """The newest job of the assistant whose evaluation calibrated the graders, and that calibration."""
    job = (
        TrainingJob.objects.filter(assistant_id=assistant_id, evaluation__calibration__items__gt=0)
        .order_by("-created_at", "-id")
        .only("id", "created_at", "evaluation")
        .first()
    )
    return (job, job.evaluation["calibration"]) if job is not None else (None, None)


# --- Reads of the REST API (training/api_*.py) ------------------------------------------------------


def dataset_list(*, assistant: Assistant | None = None) -> QuerySet[TrainingDataset]:
    """Datasets, newest first (the model's order), of one assistant or of all."""
    qs = TrainingDataset.objects.select_related("assistant")
    if assistant is not None:
        qs = qs.filter(assistant=assistant)
    return qs


def dataset_get(*, dataset_id: int) -> TrainingDataset | None:
    return TrainingDataset.objects.select_related("assistant").filter(pk=dataset_id).first()


def training_loop_health_all() -> list[dict[str, Any]]:
    """``training_loop_health`` of every assistant."""
    return [
        training_loop_health(assistant=assistant)
        for assistant in Assistant.objects.select_related("live_version", "policy")
    ]


# --- The training track record (issue 13): the page, the all-assistants view and the training-report API
#
# The seed's "Track training performance" report (jobs, deployed share, average improvement, jobs by week)
# and more. Every figure is counted by the database, grouped by assistant where the all-assistants view
# needs it, so a page runs the same queries whatever the history's size. Weeks are local weeks (Monday
# first) of the site's time zone (settings.TIME_ZONE): assistants have no time zone of their own, and the
# daily rollups that the success-rate chart reads are counted in local days of it.

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
