"""Each enabled retrain policy owns one django-q2 ``Schedule`` that runs ``check_retraining`` for it.

Called explicitly from the admin's save/delete and from ``training.services`` (not from signals), so the
schedule changes exactly when a person or a service changes the policy.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

from training.models import RetrainPolicy

CHECK_FUNC = "training.tasks.check_retraining"
WATCHDOG_FUNC = "training.tasks.watchdog"
WATCHDOG_NAME = "training.watchdog"
WATCHDOG_HALF_NAME = "training.watchdog.half"
RETENTION_FUNC = "training.tasks.retention_apply"
RETENTION_NAME = "training.retention"
# Local time of the nightly retention pass: after midnight, so the day it deletes is complete, and
# away from the default retrain checks (02:00).
RETENTION_TIME = dt.time(3, 30)

_TYPES = {
    RetrainPolicy.Schedule.EVERY_MINUTE: Schedule.MINUTES,
    RetrainPolicy.Schedule.HOURLY: Schedule.HOURLY,
    RetrainPolicy.Schedule.DAILY: Schedule.DAILY,
    RetrainPolicy.Schedule.WEEKLY: Schedule.WEEKLY,
    RetrainPolicy.Schedule.MONTHLY: Schedule.MONTHLY,
}


def schedule_name(assistant_id: int) -> str:
    return f"training.check_retraining:{assistant_id}"


def next_run_at(policy: RetrainPolicy, *, now: dt.datetime | None = None) -> dt.datetime:
    """The next time the policy's check should run, at ``schedule_time`` in the configured TIME_ZONE.

    Every minute: from the next whole minute. Hourly runs at the minute of ``schedule_time`` every hour;
    the others at ``schedule_time`` on the next
    day it has not yet passed (then every day, week or month from there, as django-q2 repeats them).
    """
    tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    local_now = (now or timezone.now()).astimezone(tz)
    at = policy.schedule_time
    if policy.schedule == RetrainPolicy.Schedule.EVERY_MINUTE:
        return local_now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    if policy.schedule == RetrainPolicy.Schedule.HOURLY:
        candidate = local_now.replace(minute=at.minute, second=0, microsecond=0)
        if candidate <= local_now:
            candidate += dt.timedelta(hours=1)
        return candidate
    candidate = dt.datetime.combine(local_now.date(), at, tzinfo=tz)
    if candidate <= local_now:
        candidate = dt.datetime.combine(local_now.date() + dt.timedelta(days=1), at, tzinfo=tz)
    return candidate


def policy_schedule_sync(*, policy: RetrainPolicy) -> Schedule | None:
    """Create or update the policy's schedule; delete it when the policy is disabled."""
    watchdog_schedule_ensure()  # jobs need the watchdog; a migration made it, this repairs a deletion
    retention_schedule_ensure()
    name = schedule_name(policy.assistant_id)
    if not policy.enabled:
        Schedule.objects.filter(name=name).delete()
        return None
    values = {
        "func": CHECK_FUNC,
        "args": repr((policy.assistant_id,)),
        "schedule_type": _TYPES[policy.schedule],
        "minutes": 1 if policy.schedule == RetrainPolicy.Schedule.EVERY_MINUTE else None,
        "repeats": -1,
        "next_run": next_run_at(policy),
    }
    schedule = Schedule.objects.filter(name=name).first()
    if schedule is None:
        return Schedule.objects.create(name=name, **values)
    for field, value in values.items():
        setattr(schedule, field, value)
    schedule.save()
    return schedule


def policy_schedule_delete(*, assistant_id: int) -> None:
    Schedule.objects.filter(name=schedule_name(assistant_id)).delete()


def watchdog_schedule_ensure() -> Schedule:
    """The watchdog's two schedules, half a minute apart: it runs twice a minute (django-q2 runs one
    schedule at most once a minute), so a dead worker's job is taken over within about a minute of its
    lease (30 s) running out. Also made by migrations; this repairs a deletion."""
    schedule, _ = Schedule.objects.get_or_create(
        name=WATCHDOG_NAME,
        defaults={"func": WATCHDOG_FUNC, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )
    Schedule.objects.get_or_create(
        name=WATCHDOG_HALF_NAME,
        defaults={
            "func": WATCHDOG_FUNC,
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
            "next_run": (schedule.next_run or timezone.now()) + dt.timedelta(seconds=30),
        },
    )
    return schedule


def retention_schedule_ensure(*, now: dt.datetime | None = None) -> Schedule:
    """The nightly retention pass (one for every policy: ``training.retention``), at RETENTION_TIME
    local time. Made by a migration; this repairs a deletion."""
    tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    local_now = (now or timezone.now()).astimezone(tz)
    at = dt.datetime.combine(local_now.date(), RETENTION_TIME, tzinfo=tz)
    schedule, _ = Schedule.objects.get_or_create(
        name=RETENTION_NAME,
        defaults={
            "func": RETENTION_FUNC,
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
            "next_run": at if at > local_now else at + dt.timedelta(days=1),
        },
    )
    return schedule
