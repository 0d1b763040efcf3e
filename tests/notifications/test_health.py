"""The worker or a schedule stops: reviewers hear it once, and again when it is back."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule, Task

from notifications import services
from notifications.models import Event
from training.models import RetrainPolicy
from training.schedules import WATCHDOG_FUNC, WATCHDOG_NAME, schedule_name
from training.services import policy_ensure


@pytest.fixture
def watchdog(db) -> Schedule:
    schedule = Schedule.objects.get(name=WATCHDOG_NAME)  # made by a training migration
    schedule.next_run = timezone.now() + timedelta(seconds=30)
    schedule.save()
    return schedule


def _watchdog_ran(*, ago: timedelta, success: bool = True, result: str = "") -> None:
    at = timezone.now() - ago
    Task.objects.create(
        id=uuid.uuid4().hex,
        name=f"watchdog-{at.timestamp()}",
        func=WATCHDOG_FUNC,
        started=at,
        stopped=at,
        success=success,
        result=result or None,
    )


def test_a_running_loop_has_no_problems(watchdog, assistant):
    policy_ensure(assistant=assistant)
    _watchdog_ran(ago=timedelta(seconds=40))
    assert services.loop_health_check() == []
    assert not Event.objects.exists()


def test_a_stopped_worker_is_reported_once_then_its_recovery(watchdog, carol):
    watchdog.next_run = timezone.now() - timedelta(minutes=12)
    watchdog.save()
    [problem] = services.loop_health_check()
    assert problem.startswith("The worker is not running")
    assert "manage.py qcluster" in problem
    assert [m.subject for m in mail.outbox] == ["[Trainloop] Training loop: worker or schedule not running"]
    assert problem in mail.outbox[0].body

    services.loop_health_check()  # still down: no second email
    assert len(mail.outbox) == 1

    watchdog.next_run = timezone.now() + timedelta(seconds=30)
    watchdog.save()
    assert services.loop_health_check() == []
    assert [e.type for e in Event.objects.order_by("id")] == ["loop.unhealthy", "loop.recovered"]
    assert mail.outbox[-1].subject == "[Trainloop] Training loop: worker and schedules running again"


def test_a_missing_policy_schedule_is_reported(watchdog, assistant):
    policy_ensure(assistant=assistant)
    Schedule.objects.filter(name=schedule_name(assistant.pk)).delete()
    assert services.loop_health_check() == [
        "The retrain check of 'shop' has no schedule: save its retrain policy in the admin to recreate it."
    ]
    RetrainPolicy.objects.filter(assistant=assistant).update(enabled=False)
    assert services.loop_health_check() == []  # a disabled policy has no schedule on purpose


def test_a_failing_watchdog_is_reported_with_its_error(watchdog):
    _watchdog_ran(ago=timedelta(minutes=3))
    _watchdog_ran(ago=timedelta(minutes=1), success=False, result="OperationalError: database is locked\n...")
    assert services.loop_health_check() == ["The watchdog fails: OperationalError: database is locked"]


def test_a_starved_worker_is_reported(watchdog):
    _watchdog_ran(ago=timedelta(minutes=40))
    [problem] = services.loop_health_check()
    assert "busy or stuck" in problem


def test_a_missing_watchdog_is_reported(watchdog):
    watchdog.delete()
    [problem] = services.loop_health_check()
    assert problem.startswith("The watchdog schedule is missing")


def test_the_command_delivers_from_its_own_process(watchdog, receiver, carol, monkeypatch):
    # Run from cron when the worker is down: the webhook goes out from the command, not the queue.
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)  # a queued task would not run: the command must not need one
    endpoint, secret = services.endpoint_create(url=receiver.url)
    receiver.secret = secret
    watchdog.next_run = timezone.now() - timedelta(hours=1)
    watchdog.save()
    out = StringIO()
    call_command("check_loop_health", stdout=out)
    assert "PROBLEM: The worker is not running" in out.getvalue()
    [received] = receiver.requests
    assert received.verified
    assert endpoint.deliveries.get().status == "succeeded"
    assert len(mail.outbox) == 1
