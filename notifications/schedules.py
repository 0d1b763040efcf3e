"""Each assistant with a daily digest owns one django-q2 ``Schedule`` at its ``digest_time``.

Called from the admin's save/delete and from ``services.notification_settings_update``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

from notifications.models import NotificationSettings

DIGEST_FUNC = "notifications.tasks.digest"


def schedule_name(assistant_id: int) -> str:
    return f"notifications.digest:{assistant_id}"


def next_digest_at(at: dt.time, *, now: dt.datetime | None = None) -> dt.datetime:
    """The next ``at`` o'clock in the configured TIME_ZONE that has not passed yet."""
    tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    local_now = (now or timezone.now()).astimezone(tz)
    candidate = dt.datetime.combine(local_now.date(), at, tzinfo=tz)
    if candidate <= local_now:
        candidate = dt.datetime.combine(local_now.date() + dt.timedelta(days=1), at, tzinfo=tz)
    return candidate


def digest_schedule_sync(*, row: NotificationSettings) -> Schedule | None:
    name = schedule_name(row.assistant_id)
    if not row.daily_digest:
        Schedule.objects.filter(name=name).delete()
        return None
    values = {
        "func": DIGEST_FUNC,
        "args": repr((row.assistant_id,)),
        "schedule_type": Schedule.DAILY,
        "repeats": -1,
        "next_run": next_digest_at(row.digest_time),
    }
    schedule, _ = Schedule.objects.update_or_create(name=name, defaults=values)
    return schedule


def digest_schedule_delete(*, assistant_id: int) -> None:
    Schedule.objects.filter(name=schedule_name(assistant_id)).delete()
