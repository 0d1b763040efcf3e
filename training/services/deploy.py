"""Carrying a decision out: deploying at once or by a progressive rollout (which rolls back by itself
when the new version does worse), rejecting, or waiting for a reviewer."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from abtesting import rollouts
from abtesting.exceptions import ExperimentBusy
from abtesting.models import Experiment
from assistants.models import Deployment, ModelVersion
from assistants.services import deployment_make_live
from training.events import job_record_event
from training.exceptions import IllegalTransition
from training.models import JobEvent, RetrainPolicy, TrainingJob
from training.services.comparison import chosen_note
from training.services.decide import Action, Verdict
from training.services.permissions import APPROVE_PERM
from training.services.start import policy_ensure
from training.services.state import (
    DEPLOY_WINDOW,
    TESTING_GRACE,
    WAIT_RECHECK,
    experiment_stop_quietly,
    job_fail,
    job_save,
    job_transition,
    lease_claim,
    lease_release,
)

S = TrainingJob.Status


def verdict_apply(job: TrainingJob, verdict: Verdict) -> bool:
    """Move the job as ``verdict`` says; True when this call moved it."""
    if verdict.action == Action.AWAIT_APPROVAL:
        return job_transition(job=job, to=S.AWAITING_APPROVAL, data=verdict.data, message=verdict.message)
    if verdict.action == Action.DEPLOY:
        return start_deploying(
            job,
            reason=Deployment.Reason.AUTO_DEPLOY,
            data=verdict.data,
            message=verdict.message,
            cause=verdict.cause,
        )
    if verdict.action == Action.DEPLOY_IF_APPROVED_IN_ADVANCE:
        approver = _advance_approver(job)
        if approver is not None:
            return start_deploying(
                job,
                reason=Deployment.Reason.APPROVAL,
                user=approver,
                data=verdict.data,
                message=f"Approved in advance by {approver.get_username()} when the job was started "
                f"{verdict.approval_note}.",
            )
    return job_transition(
        job=job,
        to=S.REJECTED,
        data=verdict.data,
        message=verdict.message,
        fields={"decision_reason": verdict.reason},
    )


def _advance_approver(job: TrainingJob) -> AbstractBaseUser | None:
    """The user who approved ``job`` in advance (``auto_approve``), if they may still approve jobs."""
    if not job.options.get("auto_approve") or not job.options.get("auto_approve_by"):
        return None
    user = get_user_model().objects.filter(pk=job.options["auto_approve_by"], is_active=True).first()
    if user is None or not user.has_perm(APPROVE_PERM):
        job_record_event(
            job=job,
            kind=JobEvent.Kind.NOTE,
            message="The advance approval no longer counts: its user is gone or may no longer approve jobs.",
        )
        return None
    return user


def start_deploying(
    job: TrainingJob,
    *,
    reason: str,
    message: str,
    user: AbstractBaseUser | None = None,
    data: dict | None = None,
    cause: str = "",
) -> bool:
    """Move ``job`` to deploying. ``user`` (an approval) or ``cause`` (a policy rule) says who caused it."""
    now = timezone.now()
    if user is not None and user.is_authenticated:
        cause = f"approved by {user.get_username()}"
    fields = {
        "options": {**job.options, "deploy_reason": reason, "deploy_cause": cause},
        "decided_by": user if user is not None and user.is_authenticated else job.decided_by,
        "deadline_at": now + DEPLOY_WINDOW,
    }
    chosen = chosen_note(job)
    if chosen:
        # A comparison deploys one of several candidates: the decision says which one and why.
        fields["decision_reason"] = f"{cause or reason}: deploying {chosen}"
        message = f"{message} Deploying {chosen}."
    return job_transition(
        job=job,
        to=S.DEPLOYING,
        message=message,
        user=user,
        data={**(data or {}), "reason": reason, "cause": cause},
        fields=fields,
    )


def stage_deploying(job: TrainingJob) -> bool:
    if not lease_claim(job):
        return False
    version = job.new_model_version
    if version is None:
        return job_fail(job=job, error="There is no trained model version to deploy.")
    policy = policy_ensure(assistant=job.assistant)
    reason = job.options.get("deploy_reason") or Deployment.Reason.APPROVAL
    user = job.decided_by
    # A started rollout decides the job even once it made the version live (then live == version).
    live = job.assistant.live_version_id
    if job.options.get("rollout_experiment") or (policy.rollout_enabled and live not in (None, version.pk)):
        return _deploy_by_rollout(job, policy=policy, user=user)
    return _deploy_now(job, version=version, reason=reason, user=user)


def _deploy_now(
    job: TrainingJob, *, version: ModelVersion, reason: str, user: AbstractBaseUser | None
) -> bool:
    with transaction.atomic():
        cause = job.options.get("deploy_cause") or (
            f"approved by {user.get_username()}" if user is not None else "no cause recorded"
        )
        note = f"Training job {job.pk} ({job.trigger}): {cause}."
        if chosen_note(job):
            note += f" Chosen: {chosen_note(job)}."
        deployment = deployment_make_live(version=version, reason=reason, user=user, note=note)
        _record_baseline(job, version)
        moved = job_transition(
            job=job,
            to=S.DEPLOYED,
            user=user,
            data={"deployment": deployment.pk, "reason": reason},
            message=f"{version.name} is live ({reason}).",
        )
        if not moved:
            raise IllegalTransition("The job left 'deploying' while it was being deployed.")
    return False


def _record_baseline(job: TrainingJob, version: ModelVersion) -> None:
    """The success rate this version showed when it was deployed: the reference for "performance drop"."""
    baseline = (job.ab_test_results or {}).get("variantSuccessRate")
    if baseline is not None:
        ModelVersion.objects.filter(pk=version.pk).update(
            metrics={**version.metrics, "baseline_success_rate": baseline}
        )


def job_wait(job: TrainingJob, message: str) -> bool:
    """Note (once) what the job waits for, and look again after WAIT_RECHECK."""
    last = job.events.order_by("-created_at", "-id").first()
    if last is None or last.message != message:
        job_record_event(job=job, kind=JobEvent.Kind.NOTE, message=message)
    lease_release(job, recheck_in=WAIT_RECHECK)
    return False


def _deploy_by_rollout(job: TrainingJob, *, policy: RetrainPolicy, user: AbstractBaseUser | None) -> bool:
    rollout = job.options.get("rollout_experiment")
    if rollout is None:
        try:
            experiment = rollouts.rollout_start(
                assistant=job.assistant,
                version=job.new_model_version,
                stages=[float(x) for x in policy.rollout_stages.split(",") if x.strip()],
                stage_hours=policy.rollout_stage_hours,
                user=user,
                min_sample_size=policy.ab_min_sample_size,
                significance_level=policy.ab_significance_level,
                min_improvement=policy.ab_min_improvement,
            )
        except ExperimentBusy as exc:
            return job_wait(job, f"Waiting for the running experiment to finish before the rollout: {exc}")
        # abtesting holds a stage short of feedback up to MAX_STAGE_HOLD_FACTOR times its hold time; the job
        # must outlast that, or the watchdog fails it while the rollout goes on.
        hours = policy.rollout_stage_hours * len(experiment.stages) * rollouts.MAX_STAGE_HOLD_FACTOR
        if not job_save(
            job,
            options={**job.options, "rollout_experiment": experiment.pk},
            deadline_at=timezone.now() + timedelta(hours=hours) + TESTING_GRACE,
        ):
            # The job failed while the rollout started; its clean-up could not see the rollout: roll back.
            experiment_stop_quietly(
                experiment.pk, reason=f"Training job {job.pk} ended while its rollout started."
            )
            return False
        job_record_event(
            job=job,
            kind=JobEvent.Kind.NOTE,
            data={"experiment": experiment.pk},
            message=f"Progressive rollout {experiment.pk} started ({policy.rollout_stages}).",
        )
        lease_release(job, recheck_in=WAIT_RECHECK)
        return False
    experiment = Experiment.objects.get(pk=rollout)
    if experiment.status == "running":
        lease_release(job, recheck_in=WAIT_RECHECK)
        return False
    job.assistant.refresh_from_db(fields=("live_version",))
    if job.assistant.live_version_id == job.new_model_version_id:
        _record_baseline(job, job.new_model_version)
        job_transition(
            job=job,
            to=S.DEPLOYED,
            user=user,
            data={"experiment": experiment.pk},
            message=f"{job.new_model_version.name} is live after the progressive rollout.",
        )
        return False
    reason = experiment.decision_reason or f"rollout ended with decision '{experiment.decision or 'none'}'"
    return job_fail(job=job, error=f"Progressive rollout rolled back: {reason}")
