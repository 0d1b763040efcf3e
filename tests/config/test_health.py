"""``/healthz`` (the process answers) and ``/readyz`` (it can work: database, migrations, caches, broker,
a worker's heartbeat), each failure named in the answer. Failures are real: a cache or broker at a port
where nothing listens, a migration recorded as not applied, a database that cannot be reached."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django_q.models import Task

from training.schedules import WATCHDOG_FUNC

ROOT = Path(settings.BASE_DIR)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the block ends


def _watchdog_ran(seconds_ago: float, *, success: bool = True) -> None:
    """A worker ran the watchdog task that long ago (as django-q2 records it)."""
    stopped = timezone.now() - timedelta(seconds=seconds_ago)
    Task.objects.create(
        id=f"watchdog-{seconds_ago}-{success}",
        name="watchdog",
        func=WATCHDOG_FUNC,
        started=stopped - timedelta(seconds=1),
        stopped=stopped,
        success=success,
    )


@pytest.fixture
def worker_alive(db):
    _watchdog_ran(30)


def _ready(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


# -- liveness --------------------------------------------------------------------------------------------


def test_healthz_answers_without_a_key_and_without_the_database(client, django_assert_num_queries, db):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# -- readiness -------------------------------------------------------------------------------------------


def test_ready_when_everything_answers_and_a_worker_ran_the_watchdog_lately(client, worker_alive):
    status, body = _ready(client)
    assert status == 200, body
    assert body["status"] == "ready" and body["failed"] == []
    assert body["checks"] == {
        name: {"ok": True, "detail": ""} for name in ("database", "migrations", "cache", "broker", "worker")
    }


def test_a_watchdog_run_that_failed_still_shows_the_worker_is_alive(client, db):
    _watchdog_ran(10, success=False)
    assert _ready(client)[0] == 200


def test_not_ready_when_no_worker_ever_ran(client, db):
    status, body = _ready(client)
    assert status == 503
    assert body["status"] == "not ready" and body["failed"] == ["worker"]
    assert body["checks"]["worker"]["detail"] == (
        "No worker has run the watchdog yet: start one with `manage.py qcluster`."
    )


def test_not_ready_when_the_worker_heartbeat_is_older_than_two_minutes(client, db):
    _watchdog_ran(125)
    status, body = _ready(client)
    assert status == 503 and body["failed"] == ["worker"]
    detail = body["checks"]["worker"]["detail"]
    assert detail.startswith("No worker has run the watchdog for 12") and "(more than 120 s)" in detail


def test_not_ready_when_a_migration_is_not_applied(client, worker_alive):
    latest = MigrationRecorder(connection).migration_qs.filter(app="training").latest("id")
    MigrationRecorder(connection).record_unapplied("training", latest.name)
    status, body = _ready(client)
    assert status == 503 and body["failed"] == ["migrations"]
    assert body["checks"]["migrations"]["detail"] == (
        f"Migrations not applied: training.{latest.name}. Run `manage.py migrate`."
    )


def test_not_ready_when_a_cache_does_not_answer(client, worker_alive, settings):
    settings.CACHES = {
        **settings.CACHES,
        "figures": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{_closed_port()}/0",
        },
    }
    status, body = _ready(client)
    assert status == 503 and body["failed"] == ["cache"]
    assert body["checks"]["cache"]["detail"].startswith("The 'figures' cache does not answer: ")


def test_not_ready_when_the_broker_does_not_answer(client, worker_alive, monkeypatch):
    from django_q.conf import Conf

    # django-q2's own configuration, pointed at a Redis where nothing listens.
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", f"redis://127.0.0.1:{_closed_port()}/0")
    status, body = _ready(client)
    assert status == 503 and body["failed"] == ["broker"]
    assert body["checks"]["broker"]["detail"].startswith("The task broker does not answer: ")


SCRIPT = """
import json
import django
django.setup()
from django.test.utils import setup_test_environment
setup_test_environment()
from django.test import Client
client = Client()
for path in ("/healthz", "/readyz"):
    response = client.get(path)
    print(json.dumps({"path": path, "status": response.status_code, "body": response.json()}))
"""


def test_not_ready_but_alive_when_the_database_does_not_answer(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LOG_FORMAT")}
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{_closed_port()}/trainloop",
        SECRET_KEY=settings.SECRET_KEY,
        TRAINLOOP_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="config.settings",
        LOG_LEVEL="CRITICAL",
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    healthz, readyz = (json.loads(line) for line in result.stdout.splitlines())
    assert (healthz["status"], healthz["body"]) == (200, {"status": "ok"})
    assert readyz["status"] == 503
    checks = readyz["body"]["checks"]
    assert "database" in readyz["body"]["failed"]
    assert checks["database"]["detail"].startswith("The database does not answer: ")
    for name in ("migrations", "worker"):
        assert checks[name] == {"ok": False, "detail": "Not checked: the database does not answer."}
