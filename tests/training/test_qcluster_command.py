"""`manage.py qcluster` stops within 10 s, leaving no process behind, however it is told to stop.

django-q2's own command hung for good when SIGTERM went to its whole process group (how systemd stops a
service): the main process waited in a futex beside its dead sentinel. Each test starts a real cluster on
the configured broker (ORM on SQLite, Redis when REDIS_URL is set) in its own session and times the stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings

from .test_qcluster import _database_url

STOP_WITHIN = 10.0
START_WITHIN = 60.0


def block(marker: str) -> None:
    """A task that holds its worker, as a long training stage does (enqueued by a test below)."""
    Path(marker).touch()
    threading.Event().wait(300)


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "Q_WORKERS": "2",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    log = tmp_path / "qcluster.log"
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as under systemd
            )
        started.append(proc)
        deadline = time.monotonic() + START_WITHIN
        while "running." not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        return proc

    yield start, log
    for proc in started:  # whatever a failed test left behind
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _stopped_within(proc: subprocess.Popen, log: Path) -> float:
    began = time.monotonic()
    try:
        proc.wait(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired:
        pytest.fail(f"qcluster still running {STOP_WITHIN:.0f} s after the signal\n{log.read_text()[-2000:]}")
    took = time.monotonic() - began
    print(f"stopped in {took:.1f} s")
    assert proc.returncode == 0, log.read_text(errors="replace")[-2000:]
    # Nothing of the cluster is left: no worker, sentinel, monitor or pusher, not even a zombie.
    time.sleep(0.3)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)
    return took


@pytest.mark.django_db(transaction=True)
def test_sigterm_to_the_process_group_stops_it(cluster):
    start, log = cluster
    proc = start()
    os.killpg(proc.pid, signal.SIGTERM)
    _stopped_within(proc, log)
    assert "stopping (SIGTERM)" in log.read_text()


@pytest.mark.django_db(transaction=True)
def test_sigint_to_the_process_group_stops_it_gracefully(cluster):
    start, log = cluster
    proc = start()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal
    _stopped_within(proc, log)
    text = log.read_text()
    assert "stopping (SIGINT)" in text
    assert "stopped doing work" in text  # the workers took their poison pill: a graceful stop


@pytest.mark.django_db(transaction=True)
def test_a_busy_worker_does_not_hold_the_stop_past_the_grace_period(cluster, tmp_path):
    from django_q.tasks import async_task

    start, log = cluster
    proc = start()
    marker = tmp_path / "task-started"
    async_task("tests.training.test_qcluster_command.block", str(marker))
    deadline = time.monotonic() + START_WITHIN
    while not marker.exists():
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # to the main process only, as `start` does
    took = _stopped_within(proc, log)
    assert took >= settings.Q_STOP_GRACE - 1  # it did wait for the task first
