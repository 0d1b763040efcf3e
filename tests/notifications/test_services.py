"""Job and experiment events become emails to the reviewers, with the figures and a link to the job."""

from __future__ import annotations

import pytest
from django.core import mail

from abtesting.models import Experiment
from notifications.models import Event, NotificationSettings
from training import services as training
from training.models import TrainingJob

from .conftest import AB_RESULTS

S = TrainingJob.Status


@pytest.fixture(autouse=True)
def _site_url(settings):
    settings.SITE_URL = "https://loop.example.com"


def test_awaiting_approval_emails_each_reviewer_with_the_figures_and_the_link(
    testing_job, carol, dave, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert training.job_transition(job=testing_job, to=S.AWAITING_APPROVAL, message="Awaiting.")

    assert [m.to for m in mail.outbox] == [["carol@example.com"]]  # not dave (viewer), not alice (no address)
    message = mail.outbox[0]
    assert message.subject == f"[Trainloop] Shop support: job {testing_job.pk} — job awaiting approval"
    assert f"https://loop.example.com/jobs/{testing_job.pk}/" in message.body
    assert "shop-v2 vs shop-v1" in message.body
    assert "improvement +8.7% (+0.4% to +17.0%), p = 0.016" in message.body
    event = Event.objects.get()
    assert (event.type, event.job_id, event.emailed_to) == ("job.awaiting_approval", testing_job.pk, 1)
    data = event.payload["data"]
    assert data["job"] == {
        "id": testing_job.pk,
        "url": f"https://loop.example.com/jobs/{testing_job.pk}/",
        "status": "awaiting_approval",
        "from_status": "testing",
        "trigger": "threshold",
        "reasons": ["Feedback count (150) >= threshold (100)"],
    }
    assert data["assistant"] == {"slug": "shop", "name": "Shop support"}
    assert (data["candidate_version"], data["live_version"]) == ("shop-v2", "shop-v1")
    assert data["improvement"] == AB_RESULTS["improvement"]
    assert data["improvement_interval"] == [0.004, 0.17]
    assert (data["p_value"], data["sequential_p_value"], data["srm_p_value"]) == (0.016, 0.0123, 0.65)


def test_nothing_is_sent_before_the_commit_nor_for_a_rolled_back_transition(testing_job, carol):
    from django.db import transaction

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        training.job_transition(job=testing_job, to=S.AWAITING_APPROVAL)
        raise Abort
    assert mail.outbox == [] and not Event.objects.exists()


def test_an_approval_says_who_deployed_it(testing_job, carol, django_capture_on_commit_callbacks):
    testing_job.status = S.AWAITING_APPROVAL
    testing_job.save()
    with django_capture_on_commit_callbacks(execute=True):
        training.job_approve(job=testing_job, user=carol)
    deployed = Event.objects.get(type="job.deployed")
    assert deployed.payload["data"]["decided_by"] == "carol"
    assert deployed.payload["data"]["decision"] == "deployed"
    assert f"job {testing_job.pk} deployed shop-v2 (approved by carol)" in deployed.summary
    assert mail.outbox[-1].subject.endswith("job deployed")


def test_an_automatic_deployment_names_the_policy_rule(
    testing_job, versions, carol, django_capture_on_commit_callbacks
):
    # The A/B test concluded in the candidate's favour above the auto-deploy threshold: no one clicks.
    training.policy_update(
        policy=training.policy_ensure(assistant=testing_job.assistant),
        auto_deploy_threshold=0.05,
        rollout_enabled=False,
    )
    experiment = _experiment(versions, status="concluded", decision="variant_better")
    TrainingJob.objects.filter(pk=testing_job.pk).update(experiment=experiment)
    with django_capture_on_commit_callbacks(execute=True):
        training.job_advance(job=testing_job)
    testing_job.refresh_from_db()
    assert testing_job.status == S.DEPLOYED
    data = Event.objects.get(type="job.deployed").payload["data"]
    assert data["decided_by"] is None
    assert data["deploy_cause"] == "policy: auto-deploy threshold met"
    assert data["experiment"] == {"id": experiment.pk, "status": "concluded", "decision": "variant_better"}


def test_a_rejection_carries_the_reviewers_reason(testing_job, carol, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        training.job_reject(job=testing_job, user=carol, reason="Refund answers read too curt.")
    event = Event.objects.get(type="job.rejected")
    assert event.payload["data"]["reason"] == "Refund answers read too curt."
    assert "rejected by carol: Refund answers read too curt." in event.summary


def test_a_failure_carries_the_error(testing_job, carol, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        training.job_fail(job=testing_job, error="Training failed: out of memory.")
    event = Event.objects.get(type="job.failed")
    assert event.payload["data"]["reason"] == "Training failed: out of memory."
    assert "failed: Training failed: out of memory." in mail.outbox[-1].body


def test_a_triggered_retrain_is_announced_with_its_reasons(
    assistant, versions, carol, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = training.trigger_training(
            assistant=assistant, trigger="threshold", reasons=["Success rate (60.0%) < threshold (80.0%)"]
        )
    event = Event.objects.filter(type="job.triggered").get()
    assert event.job_id == job.pk
    assert "retrain triggered" in event.summary and "Success rate (60.0%)" in event.summary
    # With no feedback to train on, the job fails at once (sync worker), and that is announced too.
    assert list(Event.objects.order_by("id").values_list("type", flat=True)) == [
        "job.triggered",
        "job.failed",
    ]


def test_intermediate_steps_are_not_announced(assistant, carol, django_capture_on_commit_callbacks):
    job = TrainingJob.objects.create(assistant=assistant, trigger="manual", status=S.PENDING)
    with django_capture_on_commit_callbacks(execute=True):
        training.job_transition(job=job, to=S.PREPARING)
        training.job_transition(job=job, to=S.TRAINING)
    assert not Event.objects.exists() and mail.outbox == []


def test_digest_only_settings_send_no_email_per_event(testing_job, carol, django_capture_on_commit_callbacks):
    NotificationSettings.objects.create(
        assistant=testing_job.assistant, email_each_event=False, daily_digest=True
    )
    with django_capture_on_commit_callbacks(execute=True):
        training.job_transition(job=testing_job, to=S.AWAITING_APPROVAL)
    assert Event.objects.get().emailed_to == 0 and mail.outbox == []


def _experiment(versions, **fields) -> Experiment:
    v1, v2 = versions
    return Experiment.objects.create(
        assistant=v1.assistant,
        control=v1,
        variant=v2,
        last_analysis={"ab_test_results": AB_RESULTS},
        **fields,
    )


def test_a_stopped_ab_test_is_announced_with_its_figures(
    versions, carol, testing_job, django_capture_on_commit_callbacks
):
    from abtesting import services as ab

    experiment = _experiment(versions)
    TrainingJob.objects.filter(pk=testing_job.pk).update(experiment=experiment)
    with django_capture_on_commit_callbacks(execute=True):
        ab.experiment_stop(experiment=experiment, user=carol, reason="Enough traffic.")
    event = Event.objects.get(type="experiment.concluded")
    data = event.payload["data"]
    assert data["experiment"]["status"] == "stopped"
    assert data["job"]["id"] == testing_job.pk
    assert data["candidate_version"] == "shop-v2" and data["live_version"] == "shop-v1"
    assert f"/jobs/{testing_job.pk}/" in mail.outbox[0].body


def _conclude(experiment: Experiment, *, decision: str, reason: str) -> None:
    """What abtesting does when an experiment ends: the row changes, then the signal goes out."""
    from abtesting.signals import experiment_concluded

    Experiment.objects.filter(pk=experiment.pk).update(
        status="concluded", decision=decision, decision_reason=reason
    )
    experiment.refresh_from_db()
    experiment_concluded.send(sender=Experiment, experiment=experiment)


def test_a_concluded_ab_test_carries_its_decision(versions, carol):
    experiment = _experiment(versions)
    _conclude(experiment, decision="variant_better", reason="Better.")
    data = Event.objects.get(type="experiment.concluded").payload["data"]
    assert data["decision"] == "variant_better"
    assert (data["improvement"], data["improvement_interval"], data["p_value"]) == (
        0.087,
        [0.004, 0.17],
        0.016,
    )


def test_a_concluded_multi_arm_test_names_its_winner_not_the_first_variant(versions, carol):
    from abtesting.models import ExperimentVariant
    from assistants.services import model_version_create

    v1, v2 = versions
    v3 = model_version_create(assistant=v1.assistant, name="shop-v3", base_version=v1)
    experiment = _experiment(versions, variant_count=2, traffic_split=2 / 3)
    ExperimentVariant.objects.create(experiment=experiment, arm="variant2", version=v3)
    Experiment.objects.filter(pk=experiment.pk).update(
        winner=v3, last_analysis={"ab_test_results": {**AB_RESULTS, "arm": "variant2"}}
    )
    experiment.refresh_from_db()
    _conclude(experiment, decision="variant_better", reason="variant2 is better.")
    data = Event.objects.get(type="experiment.concluded").payload["data"]
    assert (data["candidate_version"], data["arm"], data["winner"]) == ("shop-v3", "variant2", "shop-v3")
    assert "shop-v3 vs shop-v1" in mail.outbox[0].body


def test_a_rollout_rolled_back_by_its_guardrail_is_announced(versions, carol):
    experiment = _experiment(versions, purpose="rollout", stages=[0.1, 0.5, 1.0])
    _conclude(experiment, decision="variant_worse", reason="Rollout of shop-v2 rolled back at stage 1/3.")
    event = Event.objects.get()
    assert event.type == "rollout.rolled_back"
    assert "rolled back by its guardrail" in event.summary and "stage 1/3" in event.summary


def test_a_rollout_that_completes_is_left_to_the_jobs_deployed_event(versions, carol):
    experiment = _experiment(versions, purpose="rollout", stages=[0.1, 1.0])
    _conclude(experiment, decision="no_difference", reason="Done.")
    assert not Event.objects.exists()


def test_a_task_that_runs_twice_announces_once(testing_job, carol, django_capture_on_commit_callbacks):
    from notifications import tasks

    with django_capture_on_commit_callbacks(execute=True):
        training.job_transition(job=testing_job, to=S.AWAITING_APPROVAL)
    # django-q2 runs a task again when its worker died before reporting: nothing is sent twice.
    assert tasks.job_event(testing_job.pk, "testing", "awaiting_approval", None) is None
    assert Event.objects.count() == 1 and len(mail.outbox) == 1
