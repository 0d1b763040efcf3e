"""The stage lease: a heartbeat keeps it while a stage runs, a dead worker's job is taken over within
about a minute, and a worker that lost its lease can neither renew it nor apply any result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

from tests.training.conftest import make_job
from tests.training.test_qcluster import _database_url
from training import services
from training.models import JobEvent, TrainingJob
from training.services import state
from training.trainers.base import TrainingOutcome

S = TrainingJob.Status


def _other_worker(job: TrainingJob) -> TrainingJob:
    """The same job as another worker sees it: its own object, no lease token."""
    return TrainingJob.objects.get(pk=job.pk)


@pytest.mark.django_db
def test_the_owners_renewal_extends_the_lease(assistant):
    job = make_job(assistant, S.PREPARING)
    assert state.lease_claim(job)
    token = job.lease_owner
    TrainingJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() + timedelta(seconds=1))
    assert state.lease_renew(job, token)
    renewed = _other_worker(job)
    assert renewed.lease_until > timezone.now() + state.STAGE_LEASE - timedelta(seconds=5)
    assert not state.lease_claim(renewed)


@pytest.mark.django_db
def test_a_worker_that_lost_its_lease_can_neither_renew_nor_write(assistant):
    job = make_job(assistant, S.PREPARING)
    assert state.lease_claim(job)
    stale = job.lease_owner
    # The owner stalled past its lease; another worker takes the job over.
    TrainingJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    taker = _other_worker(job)
    assert state.lease_claim(taker)

    assert not state.lease_renew(job, stale)
    assert not state.job_save(job, feedback_count=999)
    assert not services.job_transition(job=job, to=S.TRAINING, message="stale runner")
    state.lease_release(job, recheck_in=timedelta(minutes=5))
    current = _other_worker(job)
    assert (current.status, current.feedback_count, current.lease_owner) == (
        S.PREPARING,
        taker.feedback_count,
        taker.lease_owner,
    )
    assert current.lease_until == taker.lease_until  # the stale release did not free the new owner's lease
    assert not JobEvent.objects.filter(job=job, message="stale runner").exists()
    # The new owner's work goes through.
    assert services.job_transition(job=taker, to=S.TRAINING, message="new runner")
    assert _other_worker(job).lease_owner == ""


@pytest.mark.django_db
def test_a_lease_not_renewed_within_its_window_is_taken_over_by_the_watchdog(assistant, monkeypatch):
    enqueued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, job_id, **k: enqueued.append(job_id))
    assert state.STAGE_LEASE <= timedelta(seconds=30)
    assert state.LEASE_HEARTBEAT * 2 < state.STAGE_LEASE  # one failed renewal is survivable
    now = timezone.now()
    dead = make_job(assistant, S.TRAINING, lease_until=now - timedelta(seconds=1), next_check_at=now)
    alive = make_job(
        assistant.__class__.objects.create(slug="b", name="b"),
        S.TRAINING,
        lease_until=now + state.STAGE_LEASE - state.LEASE_HEARTBEAT,  # renewed 10 s ago
        next_check_at=now + state.STAGE_LEASE - state.LEASE_HEARTBEAT,
    )
    services.jobs_watch()
    assert enqueued == [dead.pk]
    assert alive.pk not in enqueued


@pytest.mark.django_db
def test_the_watchdog_looks_twice_a_minute():
    from training.schedules import watchdog_schedule_ensure

    Schedule.objects.filter(func="training.tasks.watchdog").delete()
    watchdog_schedule_ensure()
    runs = sorted(
        Schedule.objects.filter(
            func="training.tasks.watchdog", schedule_type=Schedule.MINUTES, minutes=1
        ).values_list("next_run", flat=True)
    )
    assert len(runs) == 2
    assert (runs[1] - runs[0]).total_seconds() == 30


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_keeps_a_long_stage_to_its_worker(assistant, monkeypatch):
    monkeypatch.setattr(state, "STAGE_LEASE", timedelta(seconds=1.5))
    monkeypatch.setattr(state, "LEASE_HEARTBEAT", timedelta(seconds=0.3))
    job = make_job(assistant, S.TRAINING)
    claims_by_others: list[bool] = []
    runs = []

    class LongTrainer:  # a training stage that outlasts its lease several times over
        def start(self, j: TrainingJob) -> TrainingOutcome:
            runs.append(j.pk)
            until = time.monotonic() + 4
            while time.monotonic() < until:
                claims_by_others.append(state.lease_claim(_other_worker(j)))
                time.sleep(0.2)
            return TrainingOutcome(TrainingOutcome.FAILED, error="stage done")

    monkeypatch.setattr("training.trainers.get_trainer", lambda backend: LongTrainer())
    services.job_advance(job=job)
    assert runs == [job.pk]
    assert claims_by_others and not any(claims_by_others)
    assert (_other_worker(job).status, _other_worker(job).error) == (S.FAILED, "stage done")


CHILD = textwrap.dedent(
    """
    import sys, threading
    from datetime import timedelta
    import django
    django.setup()
    from training import services, trainers
    from training.models import TrainingJob
    from training.services import state

    state.STAGE_LEASE = timedelta(seconds=float(sys.argv[2]))
    state.LEASE_HEARTBEAT = timedelta(seconds=float(sys.argv[3]))

    class Stuck:  # a training stage that runs until the worker is killed
        def start(self, job):
            print("claimed", job.lease_owner, flush=True)
            threading.Event().wait(600)

    trainers.get_trainer = lambda backend: Stuck()
    services.job_advance(job=TrainingJob.objects.get(pk=int(sys.argv[1])))
    """
)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_stage_loses_its_job_within_the_lease(assistant, monkeypatch):
    """A real worker process renews its lease, is killed with SIGKILL, and its job is taken over once."""
    lease, beat = 3.0, 0.5
    job = make_job(assistant, S.TRAINING)
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(job.pk), str(lease), str(beat)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = worker.stdout.readline()
        assert line.startswith("claimed"), worker.stderr.read()[-2000:]
        dead_token = line.split()[1]
        first = _other_worker(job).lease_until
        time.sleep(lease + 1)  # longer than the lease: only the heartbeat can keep it
        assert _other_worker(job).lease_until > first
        assert not state.lease_claim(_other_worker(job))

        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        killed = time.monotonic()
        enqueued: list[int] = []
        monkeypatch.setattr("django_q.tasks.async_task", lambda func, job_id, **k: enqueued.append(job_id))
        while not enqueued:
            assert time.monotonic() - killed < lease + 2, "the dead worker's lease did not lapse"
            services.jobs_watch()
            time.sleep(0.2)
        taker = _other_worker(job)
        assert state.lease_claim(taker)  # the watchdog's job_advance would now run the stage, once
        assert not state.lease_renew(job, dead_token)
        assert not state.lease_claim(_other_worker(job))
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)


@pytest.mark.django_db
def test_a_lease_keeps_a_second_worker_out_of_a_stage(assistant):
    job = make_job(assistant, S.PREPARING)
    assert state.lease_claim(job)
    assert not state.lease_claim(TrainingJob.objects.get(pk=job.pk))
