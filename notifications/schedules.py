"""The daily digests' django-q2 schedules: one per distinct ``digest_time`` among the assistants that
want a digest, so assistants sharing a time share one email ("3 jobs need review") instead of one each
(an assistant has at most one job in flight, so a digest per assistant would never count past 1).

Synced from the admin's save/delete and from ``services.notification_settings_update``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.utils import timezone
from django_q.models import Schedule

from notifications.models import NotificationSettings

DIGEST_FUNC = "notifications.tasks.digest"
PREFIX = "notifications.digest:"


def schedule_name(at: dt.time) -> str:
    return f"{PREFIX}{at:%H:%M}"


def next_digest_at(at: dt.time, *, now: dt.datetime | None = None) -> dt.datetime:
    """The next ``at`` o'clock in the configured TIME_ZONE that has not passed yet."""
    tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    local_now = (now or timezone.now()).astimezone(tz)
    candidate = dt.datetime.combine(local_now.date(), at, tzinfo=tz)
    if candidate <= local_now:
        candidate = dt.datetime.combine(local_now.date() + dt.timedelta(days=1), at, tzinfo=tz)
    return candidate


def digest_schedules_sync() -> list[Schedule]:
    """One daily schedule per digest time in use; schedules for times no longer used are deleted."""
    times = {
        at.replace(second=0, microsecond=0)
        for at in NotificationSettings.objects.filter(daily_digest=True).values_list("digest_time", flat=True)
    }
    wanted = {schedule_name(at): at for at in times}
    Schedule.objects.filter(name__startswith=PREFIX).exclude(name__in=list(wanted)).delete()
    schedules = []
    for name, at in sorted(wanted.items()):
        schedule = Schedule.objects.filter(name=name).first()
        if schedule is None:
            schedule = Schedule.objects.create(
                name=name,
                func=DIGEST_FUNC,
                args=repr((f"{at:%H:%M}",)),
                schedule_type=Schedule.DAILY,
                repeats=-1,
                next_run=next_digest_at(at),
            )
        schedules.append(schedule)
    return schedules
