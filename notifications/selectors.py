"""Reads: what an event says about a job or an experiment, who is told, and whether the loop runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.urls import reverse

from abtesting.formatting import signed_pct
from abtesting.models import Experiment
from assistants.models import Assistant
from notifications.models import NotificationSettings
from training.models import TrainingJob

APPROVE_PERM = "training.approve_trainingjob"
# Who holds a permission is asked of Django's model backend: the login throttle (django-axes) adds a
# backend of its own, and with_perm() refuses to guess among several.
PERMISSION_BACKEND = "django.contrib.auth.backends.ModelBackend"


def absolute_url(path: str) -> str:
    """``SITE_URL`` + path: emails and webhooks are read outside the site, so links must be absolute."""
    return settings.SITE_URL.rstrip("/") + path


def job_url(job_id: int) -> str:
    return absolute_url(reverse("training-job-detail", args=[job_id]))


def reviewers() -> QuerySet:
    """Who is emailed: active users who may approve jobs (the ``reviewer`` group, superusers) with an
    address. Approval is not per assistant, so every reviewer hears about every assistant."""
    return (
        get_user_model()
        .objects.with_perm(APPROVE_PERM, is_active=True, include_superusers=True, backend=PERMISSION_BACKEND)
        .exclude(email="")
        .order_by("pk")
    )


def settings_for(*, assistant: Assistant | None) -> NotificationSettings:
    """The assistant's settings, or the defaults (unsaved) when it has none."""
    if assistant is None:
        return NotificationSettings()
    found = NotificationSettings.objects.filter(assistant=assistant).first()
    return found or NotificationSettings(assistant=assistant)


def job_figures(job: TrainingJob) -> dict[str, Any]:
    """The review's figures: from the A/B test when there was one, else from the offline evaluation.

    ``improvement`` is relative; ``improvement_interval`` is the A/B test's sequential confidence interval
    of it (None for the offline evaluation, which has no interval).
    """
    ab = job.ab_test_results or {}
    if ab.get("improvement") is not None:
        ci = ab.get("ci") or [None, None]
        return {
            "source": "ab_test",
            "improvement": ab.get("improvement"),
            "improvement_interval": list(ci) if ci and None not in ci else None,
            "p_value": ab.get("pValue"),
            "sequential_p_value": ab.get("sequentialPValue"),
            "srm_p_value": ab.get("srmPValue"),
            "control_success_rate": ab.get("controlSuccessRate"),
            "variant_success_rate": ab.get("variantSuccessRate"),
            "sample_size": ab.get("sampleSize"),
        }
    metrics = job.metrics or {}
    if metrics.get("eval_improvement") is not None or metrics.get("eval_candidate_accuracy") is not None:
        return {
            "source": "offline_evaluation",
            "improvement": metrics.get("eval_improvement"),
            "improvement_interval": None,
            "p_value": None,
            "candidate_accuracy": metrics.get("eval_candidate_accuracy"),
            "live_accuracy": metrics.get("eval_live_accuracy"),
            "eval_prompts": metrics.get("eval_prompts"),
        }
    return {"source": None, "improvement": None, "improvement_interval": None, "p_value": None}


def job_data(*, job: TrainingJob, from_status: str, to_status: str, user_id: int | None) -> dict[str, Any]:
    """The ``data`` of a job event: what a reviewer needs to decide without opening the dashboard."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    experiment = job.experiment
    compared_with = experiment.control if experiment is not None else job.base_version
    decision = (experiment.decision if experiment is not None else "") or ""
    return {
        "job": {
            "id": job.pk,
            "url": job_url(job.pk),
            "status": to_status,
            "from_status": from_status,
            "trigger": job.trigger,
            "reasons": list(job.reasons or []),
        },
        "assistant": {"slug": job.assistant.slug, "name": job.assistant.name},
        "candidate_version": job.new_model_version.name if job.new_model_version_id else None,
        # The version the candidate was compared with (the live one when the job was decided).
        "live_version": compared_with.name if compared_with is not None else None,
        **job_figures(job),
        "experiment": {"id": experiment.pk, "status": experiment.status, "decision": decision}
        if experiment is not None
        else None,
        "decision": to_status if to_status in TrainingJob.TERMINAL else None,
        "decided_by": user.get_username() if user is not None else None,
        "deploy_cause": (job.options or {}).get("deploy_cause")
        if to_status == TrainingJob.Status.DEPLOYED
        else None,
        "reason": job.error or job.decision_reason or None,
    }


def job_summary(data: dict[str, Any], *, event_type: str) -> str:
    """One paragraph for the email's first line and Slack's text."""
    job, name = data["job"], data["assistant"]["name"]
    versions = f"{data['candidate_version'] or 'candidate'} vs {data['live_version'] or 'no live version'}"
    figures = f"improvement {signed_pct(data['improvement'])}"
    if data.get("improvement_interval"):
        low, high = data["improvement_interval"]
        figures += f" ({signed_pct(low)} to {signed_pct(high)})"
    if data.get("p_value") is not None:
        figures += f", p = {data['p_value']:.3g}"
    if event_type == "job.triggered":
        why = "; ".join(job["reasons"]) or job["trigger"]
        return f"{name}: retrain triggered, job {job['id']} ({why})."
    if event_type == "job.awaiting_approval":
        return f"{name}: job {job['id']} awaits approval — {versions}, {figures}."
    if event_type == "job.deployed":
        who = f"approved by {data['decided_by']}" if data["decided_by"] else (data["deploy_cause"] or "auto")
        return f"{name}: job {job['id']} deployed {data['candidate_version']} ({who}) — {figures}."
    if event_type == "job.rejected":
        who = f" by {data['decided_by']}" if data["decided_by"] else ""
        return f"{name}: job {job['id']} rejected{who}: {data['reason'] or 'no reason given'}"
    return f"{name}: job {job['id']} failed: {data['reason'] or 'no reason recorded'}"


def _described_version(experiment: Experiment, results: dict[str, Any]):
    """The version the figures describe: the variant of an A/B test; of a multi-arm experiment the arm
    its analysis names in ``ab_test_results`` (the winner, else the best arm so far)."""
    if not experiment.is_multi_arm:
        return experiment.variant
    versions = dict(experiment.arm_versions())
    return versions.get(results.get("arm"), experiment.variant)


def experiment_data(*, experiment: Experiment) -> dict[str, Any]:
    results = dict((experiment.last_analysis or {}).get("ab_test_results") or {})
    ci = results.get("ci") or [None, None]
    job = TrainingJob.objects.filter(experiment_id=experiment.pk).order_by("-pk").first()
    if job is None and experiment.purpose == Experiment.Purpose.ROLLOUT:
        job = TrainingJob.objects.filter(options__rollout_experiment=experiment.pk).order_by("-pk").first()
    return {
        "experiment": {
            "id": experiment.pk,
            "url": absolute_url(reverse("abtesting-experiment-detail", args=[experiment.pk])),
            "purpose": experiment.purpose,
            "status": experiment.status,
            "reason": experiment.decision_reason,
        },
        "job": {"id": job.pk, "url": job_url(job.pk)} if job is not None else None,
        "assistant": {"slug": experiment.assistant.slug, "name": experiment.assistant.name},
        "candidate_version": _described_version(experiment, results).name,
        "arm": results.get("arm", "variant"),
        "winner": experiment.winner.name if experiment.winner_id else None,
        "live_version": experiment.control.name,
        "improvement": results.get("improvement"),
        "improvement_interval": list(ci) if None not in ci else None,
        "p_value": results.get("pValue"),
        "sequential_p_value": results.get("sequentialPValue"),
        "srm_p_value": results.get("srmPValue"),
        "control_success_rate": results.get("controlSuccessRate"),
        "variant_success_rate": results.get("variantSuccessRate"),
        "sample_size": results.get("sampleSize"),
        "decision": experiment.decision or None,
    }


def experiment_summary(data: dict[str, Any], *, event_type: str) -> str:
    exp, name = data["experiment"], data["assistant"]["name"]
    if event_type == "rollout.rolled_back":
        return (
            f"{name}: rollout of {data['candidate_version']} rolled back by its guardrail — {exp['reason']}"
        )
    figures = f"improvement {signed_pct(data['improvement'])}"
    if data["improvement_interval"]:
        low, high = data["improvement_interval"]
        figures += f" ({signed_pct(low)} to {signed_pct(high)})"
    if data["p_value"] is not None:
        figures += f", p = {data['p_value']:.3g}"
    return (
        f"{name}: experiment {exp['id']} ({data['candidate_version']} vs {data['live_version']}) "
        f"{exp['status']}, decision {data['decision'] or 'none'} — {figures}."
    )


def jobs_needing_review(*, assistant_ids: list[int]) -> QuerySet[TrainingJob]:
    return TrainingJob.objects.filter(
        assistant_id__in=assistant_ids, status=TrainingJob.Status.AWAITING_APPROVAL
    ).order_by("assistant__name", "created_at", "pk")


def when(value: dt.datetime | None) -> str:
    return "never" if value is None else value.strftime("%Y-%m-%d %H:%M %Z")


# How late the every-minute watchdog may be before we say the worker is not running.
STALE = dt.timedelta(minutes=5)
# How long the watchdog may go without completing while its schedule still fires (workers all busy).
STARVED = dt.timedelta(minutes=15)


def worker_last_seen() -> dt.datetime | None:
    """When a worker last finished the watchdog (well or not): the cluster's heartbeat, or None.

    The watchdog is due every half minute (two schedules, half a minute apart), so on a running cluster
    this is at most about 30 s old; ``/readyz`` wants it younger than two minutes.
    """
    from django_q.models import Task

    from training.schedules import WATCHDOG_FUNC

    return (
        Task.objects.filter(func=WATCHDOG_FUNC).order_by("-stopped").values_list("stopped", flat=True).first()
    )


def loop_problems(*, now: dt.datetime) -> list[str]:
    """What keeps the loop from running on its own, as the watchdog's schedule shows it.

    django-q2's scheduler moves a schedule's ``next_run`` forward each time it fires it, so a watchdog
    (due every minute) that is minutes overdue means no cluster is running; one that fires but has not
    completed for a while means every worker process is busy or stuck. The wording is stable (no times)
    so the same problem is reported once, not at every check.
    """
    from django_q.models import Failure, Schedule, Success

    from training.models import RetrainPolicy
    from training.schedules import WATCHDOG_FUNC, WATCHDOG_NAME, schedule_name

    problems: list[str] = []
    watchdog = Schedule.objects.filter(name=WATCHDOG_NAME).first()
    if watchdog is None:
        problems.append(
            "The watchdog schedule is missing, so overdue jobs are never failed: save any retrain policy "
            "in the admin to recreate it."
        )
    elif watchdog.next_run is not None and watchdog.next_run < now - STALE:
        problems.append(
            "The worker is not running: the watchdog, due every minute, has not been run for over "
            f"{STALE.seconds // 60} minutes. Start it with `manage.py qcluster`."
        )
    else:
        last_ok = Success.objects.filter(func=WATCHDOG_FUNC).order_by("-stopped").first()
        last_bad = Failure.objects.filter(func=WATCHDOG_FUNC).order_by("-stopped").first()
        if last_bad is not None and (last_ok is None or last_bad.stopped > last_ok.stopped):
            first_line = str(last_bad.result or "").strip().splitlines()[:1]
            problems.append(f"The watchdog fails: {first_line[0] if first_line else 'no error recorded'}")
        elif last_ok is not None and last_ok.stopped < now - STARVED:
            problems.append(
                f"The worker has not completed the watchdog for over {STARVED.seconds // 60} minutes: every "
                "worker process is busy or stuck. Raise Q_WORKERS or restart the worker."
            )
    enabled = (
        RetrainPolicy.objects.filter(enabled=True).select_related("assistant").order_by("assistant__slug")
    )
    scheduled = set(
        Schedule.objects.filter(name__startswith="training.check_retraining:").values_list("name", flat=True)
    )
    for policy in enabled:
        if schedule_name(policy.assistant_id) not in scheduled:
            problems.append(
                f"The retrain check of '{policy.assistant.slug}' has no schedule: save its retrain policy "
                "in the admin to recreate it."
            )
    return problems
