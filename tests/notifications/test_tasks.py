"""The django-q2 entry points: the names the schedules and receivers use resolve, and a real worker
delivers a webhook and retries it after a 500."""

from __future__ import annotations

import importlib
import os
import pydoc
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

from notifications import services
from notifications.models import WebhookDelivery
from notifications.schedules import DIGEST_FUNC

SCHEDULES = importlib.import_module("notifications.migrations.0002_webhook_retry_and_health_schedules")
WAIT_SECONDS = 120


@pytest.mark.parametrize(
    "func",
    sorted(
        [func for func, _ in SCHEDULES.SCHEDULES.values()]
        + [
            DIGEST_FUNC,
            "notifications.tasks.job_event",
            "notifications.tasks.experiment_event",
            "notifications.tasks.webhook_deliver",
        ]
    ),
)
def test_every_task_name_resolves(func):
    assert callable(pydoc.locate(func)), func


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_delivers_and_its_sweep_retries_after_a_500(receiver, monkeypatch, tmp_path):
    from django_q.conf import Conf

    from tests.training.test_qcluster import _database_url, _stop

    monkeypatch.setattr(Conf, "SYNC", False)
    endpoint, secret = services.endpoint_create(url=receiver.url)
    receiver.secret, receiver.statuses = secret, [500, 200]
    # The sweep's schedule (a migration makes it; an earlier transactional test may have flushed it).
    Schedule.objects.update_or_create(
        name="notifications.webhook_retries",
        defaults={
            "func": "notifications.tasks.webhooks_retry_due",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
            "next_run": timezone.now() + timedelta(hours=1),
        },
    )
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "Q_WORKERS": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    log = tmp_path / "qcluster.log"
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
        delivery = services.endpoint_send_test(endpoint=endpoint)  # enqueued on the broker at commit
        assert _wait_for(lambda: len(receiver.requests) >= 1, WAIT_SECONDS), log.read_text(errors="replace")[
            -3000:
        ]
        assert _wait_for(lambda: WebhookDelivery.objects.get(pk=delivery.pk).attempts == 1, 30)
        delivery.refresh_from_db()
        assert (delivery.status, delivery.last_status_code) == ("pending", 500)

        # A minute passes: the retry is due, and the scheduler's next pass runs the sweep.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        Schedule.objects.filter(name="notifications.webhook_retries").update(next_run=timezone.now())
        done = _wait_for(
            lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == "succeeded", WAIT_SECONDS
        )
        assert done, log.read_text(errors="replace")[-3000:]
    finally:
        _stop(proc)
    first, second = receiver.requests
    assert first.verified and second.verified
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert [entry["status_code"] for entry in WebhookDelivery.objects.get().log] == [500, 200]
