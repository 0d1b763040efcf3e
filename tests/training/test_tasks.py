"""django-q2 entry points: they take ids and call services."""

from __future__ import annotations

import pytest

from training import tasks
from training.models import TrainingJob
from training.services import policy_ensure, policy_update

from .conftest import give_feedback, make_job

pytestmark = pytest.mark.django_db


def test_the_scheduled_check_starts_a_job_when_retraining_is_due(
    assistant, live_v1, enqueued, django_capture_on_commit_callbacks
):
    policy_update(policy=policy_ensure(assistant=assistant), min_feedback_count=4)
    give_feedback(assistant, 4)
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.check_retraining(assistant.pk)
    job = TrainingJob.objects.get(pk=result["job"])
    assert job.trigger == "threshold"
    assert job.reasons == ["Feedback count (4) >= threshold (4)"]
    assert [call for call in enqueued if call[0] == "training.tasks.job_advance"] == [
        ("training.tasks.job_advance", job.pk)
    ]


def test_the_scheduled_check_does_nothing_when_not_due(assistant, live_v1, enqueued):
    result = tasks.check_retraining(assistant.pk)
    assert result["should_retrain"] is False
    assert not TrainingJob.objects.exists()


def test_the_scheduled_check_leaves_an_active_job_alone(assistant, live_v1, enqueued):
    policy_update(policy=policy_ensure(assistant=assistant), min_feedback_count=1)
    give_feedback(assistant, 2)
    job = make_job(assistant, TrainingJob.Status.TESTING)
    result = tasks.check_retraining(assistant.pk)
    assert result["should_retrain"] is False and str(job.pk) in result["blocked_by"]
    assert TrainingJob.objects.count() == 1


def test_a_missing_job_or_assistant_is_not_an_error():
    assert tasks.job_advance(987654) == "missing"
    assert tasks.check_retraining(987654)["should_retrain"] is False


def test_job_advance_fails_a_job_whose_stage_crashes(assistant, monkeypatch):
    job = make_job(assistant, TrainingJob.Status.EVALUATING)

    def boom(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("training.evaluation.evaluate_job", boom)
    assert tasks.job_advance(job.pk) == "failed"
    job.refresh_from_db()
    assert job.error == "evaluating failed: RuntimeError: disk full"


def test_the_watchdog_gives_new_assistants_a_policy_and_a_schedule(assistant, enqueued):
    from django_q.models import Schedule

    assert tasks.watchdog() == {"failed": [], "enqueued": [], "policies_created": [assistant.pk]}
    assert Schedule.objects.filter(name=f"training.check_retraining:{assistant.pk}").exists()
    assert tasks.watchdog()["policies_created"] == []


def test_a_migration_installs_the_watchdog_schedule():
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="training.watchdog")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == ("training.tasks.watchdog", "I", 1)
