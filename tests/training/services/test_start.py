"""Starting a job (training/services/start.py): options, one job at a time, who may approve in advance."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from tests.conftest import grant
from tests.training.conftest import race
from training import services
from training.models import TrainingJob
from training.services import JobActive

S = TrainingJob.Status


@pytest.mark.django_db
def test_trigger_training_creates_a_pending_job_with_options(assistant, live_v1, alice):
    job = services.trigger_training(
        assistant=assistant,
        options={"skip_ab_test": True, "base_model": "gpt-x"},
        reasons=["because"],
        user=alice,
    )
    assert job.status == S.PENDING
    assert job.options == {"skip_ab_test": True, "auto_approve": False, "base_model": "gpt-x"}
    assert job.base_model == "gpt-x"
    assert job.base_version == live_v1
    assert job.deadline_at > timezone.now() + timedelta(minutes=59)
    event = job.events.get()
    assert event.user == alice and "because" in event.message


@pytest.mark.django_db
def test_the_first_stage_is_enqueued_once_the_job_is_committed(
    assistant, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = services.trigger_training(assistant=assistant)
        assert enqueued == []  # not before the job row is visible to the worker
    assert [call for call in enqueued if call[0] == "training.tasks.job_advance"] == [
        ("training.tasks.job_advance", job.pk)
    ]


@pytest.mark.django_db
def test_a_second_trigger_while_one_is_active_is_refused(assistant):
    first = services.trigger_training(assistant=assistant)
    with pytest.raises(JobActive) as err:
        services.trigger_training(assistant=assistant)
    assert err.value.job == first
    assert f"job {first.pk} is pending" in str(err.value)


@pytest.mark.django_db
def test_unknown_options_are_refused(assistant):
    with pytest.raises(ValueError, match="Unknown training option"):
        services.trigger_training(assistant=assistant, options={"epochs": 3})


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["nobody", "viewer"])
def test_only_a_user_who_may_approve_can_start_a_job_with_auto_approve(assistant, bob, who):
    grant(bob, "trigger_trainingjob")
    user = None if who == "nobody" else bob
    with pytest.raises(PermissionDenied, match="approve_trainingjob"):
        services.trigger_training(assistant=assistant, options={"auto_approve": True}, user=user)
    assert not TrainingJob.objects.exists()


@pytest.mark.django_db
def test_the_refused_advance_approval_says_what_to_do_instead(assistant, bob):
    grant(bob, "trigger_trainingjob")
    with pytest.raises(PermissionDenied) as err:
        services.trigger_training(assistant=assistant, options={"auto_approve": True}, user=bob)
    assert str(err.value) == (
        "auto_approve is approving in advance: User 'bob' lacks the 'training.approve_trainingjob' "
        "permission. Start the job without it and approve it when it is ready."
    )


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_triggers_make_one_job(assistant, enqueued):
    results = race(2, lambda: services.trigger_training(assistant=assistant))
    assert sorted(type(r).__name__ for r in results) == ["JobActive", "TrainingJob"]
    assert TrainingJob.objects.filter(assistant=assistant).count() == 1
