"""A training job run by a real `manage.py qcluster` process on the configured broker (not sync mode).

The ORM broker on SQLite by default, Redis when REDIS_URL is set. The worker sees the test database: the
SQLite test database is a file (settings.DATABASES TEST NAME), and for PostgreSQL the test database's
name is passed through DATABASE_URL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection

from dashboard.management.commands.simulate import simulate
from training import services
from training.demo_data import launch_faq
from training.models import TrainingJob

from .conftest import train_local

WAIT_SECONDS = 90


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    original = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(original)
    return urlunsplit(parts._replace(path="/" + db["NAME"]))


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_job_to_deployment(assistant, monkeypatch, tmp_path):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    questions, answers = launch_faq()
    live = train_local(assistant, questions, answers, live=True)
    simulate(assistant=assistant, interactions=120, correction_rate=1.0, seed=5)
    # Three validation prompts: auto_approve is honoured only from the policy's minimum on.
    services.policy_update(policy=services.policy_ensure(assistant=assistant), eval_min_prompts=1)

    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": settings.SECRET_KEY,  # required by the settings whenever DATABASE_URL is set
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "Q_WORKERS": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    log = tmp_path / "qcluster.log"  # a file, not a pipe: a full pipe would block the cluster
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=Path(settings.BASE_DIR),
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # Enqueued on the broker (sync off): only the worker process can run it.
        # An approver approves in advance on a policy that does not require approval: no one to click.
        # (A superuser: this transactional test may run after others flushed the role groups.)
        approver = User.objects.create_superuser("approver", password="approver-password")
        services.policy_update(policy=services.policy_ensure(assistant=assistant), require_approval=False)
        job = services.trigger_training(
            assistant=assistant, options={"skip_ab_test": True, "auto_approve": True}, user=approver
        )
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and proc.poll() is None:
            job.refresh_from_db()
            if job.is_terminal:
                break
            time.sleep(0.5)
        job.refresh_from_db()
        output = ""
        if job.status != TrainingJob.Status.DEPLOYED:
            _stop(proc)
            output = log.read_text(errors="replace")[-3000:]
        assert job.status == TrainingJob.Status.DEPLOYED, f"{job.status} {job.error}\n{output}"
        assistant.refresh_from_db()
        assert assistant.live_version == job.new_model_version != live
        transitions = list(job.events.filter(kind="transition").values_list("to_status", flat=True))
        assert transitions == ["pending", "preparing", "training", "evaluating", "deploying", "deployed"]
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the cluster and its worker processes (its own process group)."""
    if proc.poll() is None:
        # The cluster stops its own workers on SIGTERM; the group kill below is the fallback.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:  # any worker left behind in the cluster's process group
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)
