"""The job state machine: guarded transitions, the stage lease, deadlines, and ending a job early.

Every status change goes through ``job_transition``: one conditional UPDATE
(``filter(pk=…, status=from).update(status=to, …)``) plus a ``JobEvent`` in the same transaction, so a
double click, two workers or a retried task can never move a job twice. Stage work (building the dataset,
training, evaluating, deploying) is done by whoever holds the job's lease (``lease_claim``), renewed by a
heartbeat while the stage runs; a worker that dies stops renewing, the lease expires within
``STAGE_LEASE`` and the watchdog enqueues the job again, or fails it once its deadline passes. The lease
has an owner token: a worker that lost its lease can neither renew it nor write the stage's results.

The lease functions are public because they are the contract between workers: the stages use them, and
the tests check it directly (a stale worker can neither renew, save nor move the job).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import django_q.tasks
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from abtesting import services as ab
from abtesting.exceptions import ExperimentError, ExperimentNotRunning
from abtesting.models import Experiment
from assistants.models import Assistant
from training import trainers
from training.events import job_record_event
from training.exceptions import IllegalTransition
from training.models import JobCandidate, JobEvent, TrainingJob
from training.signals import job_status_changed

logger = logging.getLogger(__name__)

S = TrainingJob.Status

# The job state machine (docs/ARCHITECTURE.md). Anything not listed here raises IllegalTransition.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.PREPARING, S.FAILED, S.CANCELLED}),
    S.PREPARING: frozenset({S.TRAINING, S.FAILED, S.CANCELLED}),
    S.TRAINING: frozenset({S.EVALUATING, S.FAILED, S.CANCELLED}),
    S.EVALUATING: frozenset({S.TESTING, S.AWAITING_APPROVAL, S.DEPLOYING, S.REJECTED, S.FAILED, S.CANCELLED}),
    S.TESTING: frozenset({S.AWAITING_APPROVAL, S.DEPLOYING, S.REJECTED, S.FAILED, S.CANCELLED}),
    S.AWAITING_APPROVAL: frozenset({S.DEPLOYING, S.REJECTED, S.FAILED, S.CANCELLED}),
    S.DEPLOYING: frozenset({S.DEPLOYED, S.FAILED}),
    S.DEPLOYED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
ACTIVE_STATUSES = tuple(s for s in S.values if s not in TrainingJob.TERMINAL)
CANCELLABLE = tuple(s for s, targets in TRANSITIONS.items() if S.CANCELLED in targets)

# How long a stage runner holds the job without renewing it. While a stage runs, a heartbeat thread renews
# the lease every LEASE_HEARTBEAT (so one failed renewal, e.g. a busy SQLite, still leaves 10 s); a worker
# that dies (SIGKILL, OOM, power) stops renewing, its lease lapses within STAGE_LEASE, and the watchdog,
# which looks twice a minute, hands the job to another worker: about a minute after the death at most.
STAGE_LEASE = timedelta(seconds=30)
LEASE_HEARTBEAT = timedelta(seconds=10)
# A deployment that has not finished within this is failed by the watchdog (the live version unchanged).
DEPLOY_WINDOW = timedelta(minutes=30)
# How often a job that waits on something outside (an A/B test, a busy experiment slot, a rollout) is
# looked at again by the watchdog, besides the experiment_concluded signal.
WAIT_RECHECK = timedelta(minutes=5)
# A job may wait for a reviewer this long before the watchdog fails it: nothing stays non-terminal forever.
APPROVAL_WINDOW = timedelta(days=14)
# Extra time after an experiment's max duration before a job stuck in testing is failed.
TESTING_GRACE = timedelta(days=1)


# -- the state machine ----------------------------------------------------------------------------------


def job_transition(
    *,
    job: TrainingJob,
    to: str,
    message: str = "",
    user: AbstractBaseUser | None = None,
    data: dict | None = None,
    fields: dict[str, Any] | None = None,
    from_status: str | None = None,
) -> bool:
    """Move ``job`` from its current status (or ``from_status``) to ``to`` with one guarded UPDATE.

    Returns True when this call moved the job (and updates ``job`` in memory), False when the job was no
    longer in the expected status because someone else moved it first. Raises IllegalTransition when the
    state machine has no such edge.
    """
    source = from_status or job.status
    if to not in TRANSITIONS.get(source, frozenset()):
        raise IllegalTransition(f"A training job cannot go from '{source}' to '{to}'.")
    now = timezone.now()
    values: dict[str, Any] = {"status": to, "updated_at": now, "lease_until": None, "next_check_at": now}
    if to in TrainingJob.TERMINAL:
        values["finished_at"] = now
        values["next_check_at"] = None
    if to == S.PREPARING:
        values["started_at"] = now
    if to == S.TESTING:
        values["next_check_at"] = now
    if to == S.AWAITING_APPROVAL:
        values["deadline_at"] = now + APPROVAL_WINDOW
        values["next_check_at"] = None
    values.update(fields or {})
    values["lease_owner"] = ""
    with transaction.atomic():
        moved = _owned(job, TrainingJob.objects.filter(pk=job.pk, status=source)).update(**values)
        if moved != 1:
            return False
        job_record_event(
            job=job,
            kind=JobEvent.Kind.TRANSITION,
            message=message,
            data=data,
            user=user,
            from_status=source,
            to_status=to,
        )
        announce(job, source, to, user, message=message)
    for name, value in values.items():
        setattr(job, name, value)
    job._lease_token = None
    return True


def announce(
    job: TrainingJob, from_status: str, to_status: str, user: AbstractBaseUser | None, *, message: str = ""
) -> None:
    """Once the status change is committed (a rolled-back one did not happen): log it as one line, and
    tell listeners (notifications), whose errors are logged by ``send_robust`` and never undo or fail it."""
    job_id = job.pk
    user_id = user.pk if user is not None and getattr(user, "is_authenticated", False) else None
    fields = {
        "job_id": job_id,
        "assistant_id": job.assistant_id,
        "from_status": from_status,
        "to_status": to_status,
    }
    level = logging.WARNING if to_status == S.FAILED else logging.INFO
    moved = f"{from_status} -> {to_status}" if from_status else f"created ({to_status})"
    why = f": {message}" if message else ""

    def committed() -> None:
        logger.log(level, "Job %s %s%s", job_id, moved, why, extra=fields)
        job_status_changed.send_robust(
            sender=TrainingJob, job_id=job_id, from_status=from_status, to_status=to_status, user_id=user_id
        )

    transaction.on_commit(committed)


def enqueue_advance(job_id: int) -> None:
    """Run the job's next stage in the worker once the current transaction commits."""
    transaction.on_commit(
        lambda: django_q.tasks.async_task("training.tasks.job_advance", job_id, group="training")
    )


def job_active(*, assistant: Assistant) -> TrainingJob | None:
    """The assistant's job in flight, if any (the database allows one at a time)."""
    return TrainingJob.objects.filter(assistant=assistant, status__in=ACTIVE_STATUSES).first()


# -- the lease: who runs the job's current stage ----------------------------------------------------------
# ``lease_claim`` stores a random token in ``lease_owner`` and keeps it on the job object (``_lease_token``,
# not a field, so ``refresh_from_db`` cannot replace it with another worker's). Renewals, releases, stage
# results and transitions made through that object match the token: once another worker has taken the
# job over, the old runner's writes change nothing, so no stage's result is applied twice. Writes without
# a token (a reviewer's decision, a cancel, the watchdog's timeout) are not bound to the lease.


def _owned(job: TrainingJob, queryset):
    token = getattr(job, "_lease_token", None)
    return queryset.filter(lease_owner=token) if token else queryset


def _lease_end(job: TrainingJob, now) -> Any:
    until = now + STAGE_LEASE
    if job.deadline_at is not None:
        until = max(now + timedelta(seconds=5), min(until, job.deadline_at))
    return until


def lease_claim(job: TrainingJob) -> bool:
    """Take the job's lease for the current stage; False when another worker holds it."""
    now = timezone.now()
    until = _lease_end(job, now)
    token = uuid.uuid4().hex
    claimed = (
        TrainingJob.objects.filter(pk=job.pk, status=job.status)
        .exclude(lease_until__gt=now)
        .update(lease_until=until, lease_owner=token, next_check_at=until, updated_at=now)
    )
    if claimed:
        job.lease_until = until
        job.next_check_at = until
        job.lease_owner = token
        job._lease_token = token
    return claimed == 1


def lease_renew(job: TrainingJob, token: str) -> bool:
    """Extend the lease held with ``token``; False once it is not ours (taken over, or the job moved on)."""
    now = timezone.now()
    until = _lease_end(job, now)
    return (
        TrainingJob.objects.filter(pk=job.pk, lease_owner=token).update(
            lease_until=until, next_check_at=until
        )
        == 1
    )


@contextmanager
def lease_heartbeat(job: TrainingJob) -> Iterator[None]:
    """Renew whatever lease ``job`` holds every LEASE_HEARTBEAT while the block runs (a stage's work).

    A thread, because a stage spends its time in one long call (fitting a model, a provider upload). It
    uses its own database connection and only renews: if a renewal finds the lease taken over, the
    stage's own guarded writes are what stop it from applying anything.
    """
    stop = threading.Event()

    def beat() -> None:
        lost: str | None = None
        try:
            while not stop.wait(LEASE_HEARTBEAT.total_seconds()):
                token = getattr(job, "_lease_token", None)
                if not token or token == lost:
                    continue
                try:
                    if not lease_renew(job, token):
                        lost = token
                        if getattr(job, "_lease_token", None) == token:  # not just released meanwhile
                            logger.warning("Job %s: the lease was taken over; this worker stops.", job.pk)
                except Exception:  # a busy or unreachable database: try again at the next beat
                    logger.exception("Job %s: could not renew the lease", job.pk)
        finally:
            connection.close()  # this thread's connection

    # In this thread's log context (the job, the request that led here), so its lines name them too.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(beat,), name=f"lease-heartbeat-{job.pk}", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1.0)


def lease_release(job: TrainingJob, *, recheck_in: timedelta | None) -> None:
    """Give the lease back and say when the job should be looked at again (None: only on a signal)."""
    now = timezone.now()
    next_check = now + recheck_in if recheck_in is not None else None
    _owned(job, TrainingJob.objects.filter(pk=job.pk, status=job.status)).update(
        lease_until=None, lease_owner="", next_check_at=next_check, updated_at=now
    )
    job.lease_until = None
    job.lease_owner = ""
    job._lease_token = None
    job.next_check_at = next_check


def job_save(job: TrainingJob, **values: Any) -> bool:
    """Write stage results onto the job, but only while it is still in the status we worked on.

    Returns False when the job left that status meanwhile (cancelled, failed), or when this worker lost
    the job's lease to another: nothing was written.
    """
    values["updated_at"] = timezone.now()
    saved = _owned(job, TrainingJob.objects.filter(pk=job.pk, status=job.status)).update(**values) == 1
    for name, value in values.items():
        setattr(job, name, value)
    return saved


# -- deadlines and ending early ---------------------------------------------------------------------------


def timeout_reason(job: TrainingJob) -> str:
    """Why a job past its deadline is failed, in the words of the stage it was stuck in."""
    if job.status == S.AWAITING_APPROVAL:
        return f"No reviewer approved or rejected the job within {APPROVAL_WINDOW.days} days."
    if job.status == S.TESTING:
        return "The A/B test did not conclude before its maximum duration (plus a day of grace) passed."
    if job.status == S.DEPLOYING and job.options.get("rollout_experiment"):
        return (
            "The progressive rollout did not finish within its stages' longest hold time (plus a day of "
            "grace); it is stopped and all traffic is back on the live version."
        )
    if job.status == S.DEPLOYING:
        return "Deploying did not finish before its deadline; the live version is unchanged."
    timeout = (job.deadline_at - job.created_at).total_seconds() if job.deadline_at else 0
    return f"Timed out in '{job.status}': the job passed its deadline ({timeout:.0f} s training_timeout)."


def job_fail(*, job: TrainingJob, error: str, data: dict | None = None) -> bool:
    """Fail a non-terminal job with a readable reason (and cancel provider work)."""
    job.refresh_from_db()
    if job.is_terminal:
        return False
    moved = job_transition(job=job, to=S.FAILED, message=error, data=data, fields={"error": error})
    if moved:
        after_stop(job)
    return moved


def after_stop(job: TrainingJob) -> None:
    """Clean up outside work of a job that ended early: provider training (its own, or its candidates'),
    its A/B test, its rollout."""
    if job.provider_job_id:
        provider_job_cancel(job)
    candidates_stop(job)
    reason = f"Training job {job.pk} ended ({job.status})."
    # A rollout left running would go on to make the version of a failed job live; stopping it rolls back.
    for experiment_id in (job.experiment_id, (job.options or {}).get("rollout_experiment")):
        if experiment_id:
            experiment_stop_quietly(experiment_id, reason=reason)


def provider_job_cancel(job: TrainingJob) -> None:
    try:
        trainers.get_trainer(job.backend).cancel(job)
    except Exception as exc:  # the job is already failed/cancelled; a stuck provider job is only logged
        logger.warning("Could not cancel provider job %s of job %s: %s", job.provider_job_id, job.pk, exc)
        job_record_event(job=job, kind=JobEvent.Kind.NOTE, message=f"Could not cancel provider job: {exc}")


def candidate_provider_cancel(candidate: JobCandidate) -> None:
    """Cancel a comparison candidate's provider job; a refusal is noted on the timeline, never raised."""
    try:
        trainers.get_trainer(candidate.backend).cancel(candidate)
    except Exception as exc:  # the job already ended; a stuck provider job is only noted
        logger.warning("Could not cancel provider job of %s: %s", candidate, exc)
        trainers.as_subject(candidate).note(f"Could not cancel provider job: {exc}")


def candidates_stop(job: TrainingJob) -> None:
    """A comparison ended early: cancel its candidates' provider jobs and mark the unfinished ones failed."""
    unfinished = list(job.candidates.exclude(status__in=JobCandidate.TERMINAL))
    for candidate in unfinished:
        candidate.job = job
        if candidate.provider_job_id:
            candidate_provider_cancel(candidate)
    if unfinished:
        now = timezone.now()
        JobCandidate.objects.filter(pk__in=[c.pk for c in unfinished]).exclude(
            status__in=JobCandidate.TERMINAL
        ).update(
            status=JobCandidate.Status.FAILED,
            error=f"Stopped: the job ended ({job.status}).",
            next_poll_at=None,
            finished_at=now,
            updated_at=now,
        )


def experiment_stop_quietly(experiment_id: int, *, reason: str) -> None:
    """Stop the job's experiment if it still runs; a refusal is logged, never the job's error."""
    experiment = Experiment.objects.filter(pk=experiment_id, status=Experiment.Status.RUNNING).first()
    if experiment is None:
        return
    try:
        ab.experiment_stop(experiment=experiment, reason=reason)
    except (ExperimentError, ExperimentNotRunning) as exc:
        # The job has already ended; a refusal to stop (e.g. the experiment just concluded) is not its error.
        logger.warning("Could not stop experiment %s: %s", experiment_id, exc)
