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

from training import services
from training.models import JobEvent, TrainingJob

from .conftest import make_job
from .test_qcluster import _database_url

S = TrainingJob.Status


def _other_worker(job: TrainingJob) -> TrainingJob:
    """The same job as another worker sees it: its own object, no lease token."""
    return TrainingJob.objects.get(pk=job.pk)


@pytest.mark.django_db
def test_the_owners_renewal_extends_the_lease(assistant):
    job = make_job(assistant, S.PREPARING)
    assert services._claim(job)
    token = job._lease_token
    TrainingJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() + timedelta(seconds=1))
    assert services._renew(job, token)
    renewed = _other_worker(job)
    assert renewed.lease_until > timezone.now() + services.STAGE_LEASE - timedelta(seconds=5)
    assert not services._claim(renewed)


@pytest.mark.django_db
def test_a_worker_that_lost_its_lease_can_neither_renew_nor_write(assistant):
    job = make_job(assistant, S.PREPARING)
    assert services._claim(job)
    stale = job._lease_token
    # The owner stalled past its lease; another worker takes the job over.
    TrainingJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    taker = _other_worker(job)
    assert services._claim(taker)

    assert not services._renew(job, stale)
    assert not services._save(job, feedback_count=999)
    assert not services.job_transition(job=job, to=S.TRAINING, message="stale runner")
    services._release(job, recheck_in=timedelta(minutes=5))
    current = _other_worker(job)
    assert (current.status, current.feedback_count, current.lease_owner) == (
        S.PREPARING,
        taker.feedback_count,
        taker._lease_token,
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
    assert services.STAGE_LEASE <= timedelta(seconds=30)
    assert services.LEASE_HEARTBEAT * 2 < services.STAGE_LEASE  # one failed renewal is survivable
    now = timezone.now()
    dead = make_job(assistant, S.TRAINING, lease_until=now - timedelta(seconds=1), next_check_at=now)
    alive = make_job(
        assistant.__class__.objects.create(slug="b", name="b"),
        S.TRAINING,
        lease_until=now + services.STAGE_LEASE - services.LEASE_HEARTBEAT,  # renewed 10 s ago
        next_check_at=now + services.STAGE_LEASE - services.LEASE_HEARTBEAT,
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
    monkeypatch.setattr(services, "STAGE_LEASE", timedelta(seconds=1.5))
    monkeypatch.setattr(services, "LEASE_HEARTBEAT", timedelta(seconds=0.3))
    job = make_job(assistant, S.PREPARING)
    claims_by_others: list[bool] = []
    runs = []

    def long_stage(j: TrainingJob) -> bool:  # a stage that outlasts its lease several times over
        assert services._claim(j)
        runs.append(j.pk)
        until = time.monotonic() + 4
        while time.monotonic() < until:
            claims_by_others.append(services._claim(_other_worker(j)))
            time.sleep(0.2)
        return services.job_transition(job=j, to=S.CANCELLED, message="stage done")

    monkeypatch.setitem(services._STAGES, S.PREPARING, long_stage)
    services.job_advance(job=job)
    assert runs == [job.pk]
    assert claims_by_others and not any(claims_by_others)
    assert _other_worker(job).status == S.CANCELLED


CHILD = textwrap.dedent(
    """
    import sys, threading
    from datetime import timedelta
    import django
    django.setup()
    from training import services
    from training.models import TrainingJob

    services.STAGE_LEASE = timedelta(seconds=float(sys.argv[2]))
    services.LEASE_HEARTBEAT = timedelta(seconds=float(sys.argv[3]))

    def stuck(job):  # a training stage that runs until the worker is killed
        assert services._claim(job)
        print("claimed", job._lease_token, flush=True)
        threading.Event().wait(600)

    services._STAGES[TrainingJob.Status.TRAINING] = stuck
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
        assert not services._claim(_other_worker(job))

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
        assert services._claim(taker)  # the watchdog's job_advance would now run the stage, once
        assert not services._renew(job, dead_token)
        assert not services._claim(_other_worker(job))
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
