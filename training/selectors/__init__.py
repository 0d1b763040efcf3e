"""Reads over training jobs: lists, a job's page, the active job, jobs awaiting approval, the health
block, the overview's figures and the policy's own retrain conditions measured now. The training track
record's reads are ``training.selectors.track_record``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.cache import caches
from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from assistants.models import Assistant, Deployment, ModelVersion
from assistants.selectors import deployments_since
from feedback.rollups import local_midnight, version_sums
from feedback.selectors import feedback_daily_series, feedback_stats
from training.conditions import ConditionResult, conditions_measure
from training.evaluation.intervals import wilson_interval
from training.models import (
    EvaluationPrompt,
    JobCandidate,
    JobEvent,
    RetrainPolicy,
    TrainingDataset,
    TrainingJob,
)
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


def job_candidates(*, job: TrainingJob) -> list[JobCandidate]:
    """A comparison's candidates in their order, with their versions (empty for a single job)."""
    return list(JobCandidate.objects.filter(job=job).select_related("model_version").order_by("position"))


def comparison_get(*, job_id: int) -> TrainingJob | None:
    """A comparison job (None: no such job, or a single job) with what its API answer shows."""
    job = (
        TrainingJob.objects.select_related(
            "assistant", "new_model_version", "dataset", "decided_by", "experiment"
        )
        .prefetch_related(
            Prefetch("candidates", JobCandidate.objects.select_related("model_version")),
            "events__user",
        )
        .filter(pk=job_id)
        .first()
    )
    if job is None or not (job.options or {}).get("comparison"):
        return None
    return job


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
