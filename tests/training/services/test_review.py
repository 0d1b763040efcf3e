"""People's decisions (training/services/review.py): approve, reject, cancel; permissions and races."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from assistants.models import Deployment
from tests.conftest import grant
from tests.training.conftest import make_job, race, train_local
from training import services
from training.models import TrainingJob
from training.services import IllegalTransition

S = TrainingJob.Status


@pytest.fixture
def awaiting(assistant, live_v1):
    candidate = train_local(assistant, ["How do I pay?"], ["By card."])
    return make_job(assistant, S.AWAITING_APPROVAL, new_model_version=candidate, base_version=live_v1)


@pytest.mark.django_db
def test_approving_deploys_the_version_and_records_the_user(awaiting, alice, assistant):
    job = services.job_approve(job=awaiting, user=alice)
    assert job.status == S.DEPLOYED
    assistant.refresh_from_db()
    assert assistant.live_version == awaiting.new_model_version
    deployment = Deployment.objects.filter(assistant=assistant).first()
    assert (deployment.reason, deployment.user) == ("approval", alice)
    events = list(job.events.filter(kind="transition").values_list("to_status", "user__username"))
    assert events == [("deploying", "alice"), ("deployed", "alice")]


@pytest.mark.django_db
def test_approving_again_returns_the_job_unchanged(awaiting, alice):
    services.job_approve(job=awaiting, user=alice)
    again = services.job_approve(job=awaiting, user=alice)
    assert again.status == S.DEPLOYED
    assert Deployment.objects.filter(reason="approval").count() == 1


@pytest.mark.django_db
def test_approving_needs_the_permission(awaiting, bob):
    with pytest.raises(PermissionDenied, match="approve_trainingjob"):
        services.job_approve(job=awaiting, user=bob)
    awaiting.refresh_from_db()
    assert awaiting.status == S.AWAITING_APPROVAL


@pytest.mark.django_db
def test_a_failed_job_cannot_be_approved(assistant, alice):
    job = make_job(assistant, S.FAILED)
    with pytest.raises(IllegalTransition, match="only a job awaiting approval"):
        services.job_approve(job=job, user=alice)


@pytest.mark.django_db
def test_rejecting_needs_a_reason_and_records_it(awaiting, alice):
    with pytest.raises(ValueError, match="Say why"):
        services.job_reject(job=awaiting, user=alice, reason=" ")
    job = services.job_reject(job=awaiting, user=alice, reason="Improvement too small")
    assert (job.status, job.decision_reason, job.decided_by) == (S.REJECTED, "Improvement too small", alice)
    assert services.job_reject(job=job, user=alice, reason="again").decision_reason == "Improvement too small"


@pytest.mark.django_db
def test_cancelling_stops_provider_work(assistant, alice, monkeypatch):
    cancelled = []

    class FakeTrainer:
        def cancel(self, job):
            cancelled.append(job.provider_job_id)

    monkeypatch.setattr("training.trainers.get_trainer", lambda backend: FakeTrainer())
    job = make_job(assistant, S.TRAINING, provider_job_id="ftjob-1", backend="openai")
    services.job_cancel(job=job, user=alice)
    job.refresh_from_db()
    assert job.status == S.CANCELLED
    assert cancelled == ["ftjob-1"]
    with pytest.raises(IllegalTransition):
        services.job_cancel(job=make_job(assistant, S.DEPLOYED), user=alice)


@pytest.mark.django_db
def test_cancelling_needs_the_start_and_cancel_permission_not_approval(assistant, bob):
    job = make_job(assistant, S.TRAINING)
    grant(bob, "approve_trainingjob")  # approving is a different right: not enough to cancel
    with pytest.raises(PermissionDenied, match="trigger_trainingjob"):
        services.job_cancel(job=job, user=bob)
    bob = type(bob).objects.get(pk=bob.pk)  # permissions are cached per user object
    grant(bob, "trigger_trainingjob")
    assert services.job_cancel(job=job, user=bob).status == S.CANCELLED


@pytest.fixture
def approver(transactional_db):
    # Transactional tests flush the database, which removes the groups a migration made; grant directly.
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("carol")
    user.user_permissions.add(Permission.objects.get(codename="approve_trainingjob"))
    return user


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_approvals_deploy_once(assistant, live_v1, approver):
    candidate = train_local(assistant, ["How do I pay?"], ["By card."])
    awaiting = make_job(assistant, S.AWAITING_APPROVAL, new_model_version=candidate, base_version=live_v1)
    results = race(
        2, lambda: services.job_approve(job=TrainingJob.objects.get(pk=awaiting.pk), user=approver)
    )
    assert all(isinstance(r, TrainingJob) for r in results), results
    awaiting.refresh_from_db()
    assert awaiting.status == S.DEPLOYED
    assert Deployment.objects.filter(reason="approval").count() == 1
    assert awaiting.events.filter(to_status="deploying").count() == 1
