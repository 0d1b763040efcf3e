"""People's decisions on a job: approve (and deploy), reject, cancel. Each is idempotent: doing it again
returns the job unchanged; doing it when the job's status no longer allows it raises IllegalTransition."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from assistants.models import Deployment
from training.exceptions import ConfirmationRequired, IllegalTransition
from training.models import TrainingJob
from training.services.deploy import start_deploying
from training.services.permissions import APPROVE_PERM, TRIGGER_PERM, require_permission
from training.services.stages import job_advance
from training.services.state import CANCELLABLE, TRANSITIONS, after_stop, job_transition

S = TrainingJob.Status

NO_DECISION_CONFIRMATION = "deploy without a significant result"


def job_approve(
    *, job: TrainingJob, user: AbstractBaseUser, confirm_no_decision: bool = False
) -> TrainingJob:
    """Approve a job awaiting approval and deploy its version. Approving again returns the job unchanged.

    A job whose A/B test reached no significant result (stopped early, inconclusive, no difference)
    needs ``confirm_no_decision``: the reviewer confirms "deploy without a significant result", and the
    job's timeline records it.
    """
    require_permission(user, APPROVE_PERM)
    job.refresh_from_db()
    if job.status in (S.DEPLOYING, S.DEPLOYED):
        return job
    if job.status != S.AWAITING_APPROVAL:
        raise IllegalTransition(
            f"Job {job.pk} is {job.status}; only a job awaiting approval can be approved."
        )
    experiment = job.experiment if job.experiment_id else None
    unproven = experiment is not None and experiment.decision != "variant_better"
    if unproven and not confirm_no_decision:
        raise ConfirmationRequired(
            f"A/B test {experiment.pk} reached no significant result ({experiment.outcome}). To deploy "
            f"anyway, confirm '{NO_DECISION_CONFIRMATION}' (dashboard checkbox, or "
            '"confirm_no_decision": true in the API).'
        )
    message = f"Approved by {user.get_username()}."
    data: dict[str, Any] = {}
    if unproven:
        message = (
            f"Approved by {user.get_username()}, who confirmed '{NO_DECISION_CONFIRMATION}': "
            f"A/B test {experiment.pk} {experiment.outcome}."
        )
        data = {
            "confirmed": NO_DECISION_CONFIRMATION,
            "experiment": experiment.pk,
            "outcome": experiment.outcome,
        }
    if not start_deploying(
        job,
        reason=Deployment.Reason.APPROVAL,
        user=user,
        message=message,
        data=data,
    ):
        job.refresh_from_db()
        if job.status in (S.DEPLOYING, S.DEPLOYED):  # a concurrent approval won
            return job
        raise IllegalTransition(f"Job {job.pk} is {job.status}; it can no longer be approved.")
    return job_advance(job=job)


def job_reject(*, job: TrainingJob, user: AbstractBaseUser, reason: str) -> TrainingJob:
    """Reject a job awaiting approval (or still being tested). Rejecting again returns it unchanged."""
    require_permission(user, APPROVE_PERM)
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("Say why the job is rejected: the reason is shown in its timeline.")
    job.refresh_from_db()
    if job.status == S.REJECTED:
        return job
    if S.REJECTED not in TRANSITIONS[job.status] or job.status == S.EVALUATING:
        raise IllegalTransition(f"Job {job.pk} is {job.status}; it cannot be rejected now.")
    moved = job_transition(
        job=job,
        to=S.REJECTED,
        user=user,
        message=f"Rejected by {user.get_username()}: {reason}",
        fields={"decided_by": user, "decision_reason": reason},
    )
    if not moved:
        job.refresh_from_db()
        if job.status == S.REJECTED:
            return job
        raise IllegalTransition(f"Job {job.pk} is {job.status}; it can no longer be rejected.")
    after_stop(job)
    return job


def job_cancel(*, job: TrainingJob, user: AbstractBaseUser | None) -> TrainingJob:
    """Cancel a job that has not started deploying. Cancelling again returns it unchanged."""
    if user is not None:
        # Whoever may start a job may cancel it ("Can start and cancel training jobs"), as on the dashboard.
        require_permission(user, TRIGGER_PERM)
    job.refresh_from_db()
    if job.status == S.CANCELLED:
        return job
    if job.status not in CANCELLABLE:
        raise IllegalTransition(f"Job {job.pk} is {job.status}; it can no longer be cancelled.")
    name = user.get_username() if user is not None and user.is_authenticated else "the system"
    moved = job_transition(
        job=job,
        to=S.CANCELLED,
        user=user,
        message=f"Cancelled by {name}.",
        fields={"decided_by": user if user is not None and user.is_authenticated else None},
    )
    if not moved:
        job.refresh_from_db()
        if job.status == S.CANCELLED:
            return job
        raise IllegalTransition(f"Job {job.pk} is {job.status}; it can no longer be cancelled.")
    after_stop(job)
    return job
