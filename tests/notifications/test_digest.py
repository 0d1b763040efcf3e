"""The daily digest: "3 jobs need review" across the assistants whose digest is due at that time."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django_q.models import Schedule

from assistants.services import assistant_create, model_version_create
from notifications import services, tasks
from notifications.models import NotificationSettings
from notifications.schedules import next_digest_at
from training.models import TrainingJob

S = TrainingJob.Status


def _awaiting(assistant) -> TrainingJob:
    version = model_version_create(assistant=assistant, name=f"{assistant.slug}-v2")
    return TrainingJob.objects.create(
        assistant=assistant,
        trigger="manual",
        status=S.AWAITING_APPROVAL,
        new_model_version=version,
        ab_test_results={"improvement": 0.12},
    )


@pytest.fixture
def three_assistants(assistant, other_assistant):
    third = assistant_create(slug="travel", name="Travel support")
    for a in (assistant, other_assistant, third):
        NotificationSettings.objects.create(assistant=a, daily_digest=True, digest_time=dt.time(9, 0))
    return [assistant, other_assistant, third]


def test_the_digest_counts_the_jobs_that_need_review_and_links_each(three_assistants, carol, settings):
    settings.SITE_URL = "https://loop.example.com"
    jobs = [_awaiting(a) for a in three_assistants]
    assert services.digest_send(at="09:00") == 1
    [message] = mail.outbox
    assert message.to == ["carol@example.com"]
    assert message.subject == "[Trainloop] 3 jobs need review"
    for job in jobs:
        assert f"job {job.pk}: {job.assistant.slug}-v2, improvement +12.0%" in message.body
        assert f"https://loop.example.com/jobs/{job.pk}/" in message.body


def test_only_assistants_due_at_that_time_are_in_it(three_assistants, carol):
    NotificationSettings.objects.filter(assistant=three_assistants[2]).update(digest_time=dt.time(18, 0))
    for a in three_assistants:
        _awaiting(a)
    services.digest_send(at="09:00")
    assert mail.outbox[0].subject == "[Trainloop] 2 jobs need review"
    assert "Travel support" not in mail.outbox[0].body


def test_nothing_to_review_sends_nothing(three_assistants, carol):
    assert tasks.digest("09:00") == 0
    assert mail.outbox == []


def test_one_schedule_per_digest_time_in_use(assistant, other_assistant, settings):
    settings.TIME_ZONE = "UTC"
    services.notification_settings_update(assistant=assistant, daily_digest=True, digest_time=dt.time(7, 30))
    services.notification_settings_update(
        assistant=other_assistant, daily_digest=True, digest_time=dt.time(7, 30)
    )
    [schedule] = Schedule.objects.filter(name__startswith="notifications.digest:")
    assert (schedule.name, schedule.func, schedule.args) == (
        "notifications.digest:07:30",
        "notifications.tasks.digest",
        "('07:30',)",
    )
    assert schedule.schedule_type == Schedule.DAILY
    assert (schedule.next_run.hour, schedule.next_run.minute) == (7, 30)
    services.notification_settings_update(assistant=assistant, daily_digest=False)
    assert Schedule.objects.filter(name="notifications.digest:07:30").exists()  # still used by the other
    services.notification_settings_update(assistant=other_assistant, daily_digest=False)
    assert not Schedule.objects.filter(name__startswith="notifications.digest:").exists()


def test_unknown_settings_are_refused(assistant):
    with pytest.raises(ValueError, match="no field 'colour'"):
        services.notification_settings_update(assistant=assistant, colour="red")


def test_the_next_digest_is_today_or_tomorrow(settings):
    settings.TIME_ZONE = "Europe/Paris"
    now = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)  # 09:00 in Paris
    assert next_digest_at(dt.time(10, 0), now=now) == dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    assert next_digest_at(dt.time(9, 0), now=now) == dt.datetime(2026, 3, 3, 8, 0, tzinfo=dt.UTC)
