"""The jobs API: list, start, detail with events, approve/reject/cancel, should-retrain, health, rollback."""

from __future__ import annotations

import pytest

from assistants.models import ApiKey
from assistants.services import api_key_create
from training import services
from training.models import TrainingJob

from ..conftest import client_for
from .conftest import give_feedback, make_job, train_local

S = TrainingJob.Status
pytestmark = pytest.mark.django_db


@pytest.fixture
def awaiting(assistant, live_v1):
    candidate = train_local(assistant, ["How do I pay?"], ["By card."])
    return make_job(
        assistant,
        S.AWAITING_APPROVAL,
        new_model_version=candidate,
        base_version=live_v1,
        reasons=["Feedback count (150) >= threshold (100)"],
    )


@pytest.fixture
def alice_manager(alice_manage_key):
    return client_for(alice_manage_key)


def test_it_starts_a_job(alice_manager, assistant):
    response = alice_manager.post("/api/v1/jobs", {"assistant": "shop", "skip_ab_test": True}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["assistant"] == "shop"
    assert body["trigger"] == "manual"
    assert body["status"] == "pending"
    assert body["options"]["skip_ab_test"] is True
    assert body["events"][0]["to_status"] == "pending"
    assert {
        "id",
        "reasons",
        "base_model",
        "new_model_version",
        "metrics",
        "ab_test_results",
        "error",
        "created_at",
        "deployed",
    } <= set(body)


def test_a_second_start_while_one_runs_is_a_conflict(alice_manager, assistant):
    alice_manager.post("/api/v1/jobs", {"assistant": "shop"}, format="json")
    response = alice_manager.post("/api/v1/jobs", {"assistant": "shop"}, format="json")
    assert response.status_code == 409
    assert "already has an active training job" in response.json()["detail"]


def test_starting_needs_the_manage_scope(reader, assistant):
    response = reader.post("/api/v1/jobs", {"assistant": "shop"}, format="json")
    assert response.status_code == 403


def test_bad_input_is_a_400(alice_manager, assistant):
    response = alice_manager.post(
        "/api/v1/jobs", {"assistant": "shop", "skip_ab_test": "maybe"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid input: see `errors` for what to fix.",
        "errors": {"skip_ab_test": ["Must be true or false (a JSON boolean)."]},
    }
    unknown = alice_manager.post("/api/v1/jobs", {"assistant": "nope"}, format="json")
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_starting_needs_a_key_acting_for_a_user_who_may_start_jobs(manager, assistant, bob):
    response = manager.post("/api/v1/jobs", {"assistant": "shop"}, format="json")
    assert response.status_code == 403
    assert "trigger_trainingjob" in response.json()["detail"]
    viewer = client_for(api_key_create(scope=ApiKey.Scope.MANAGE, user=bob)[1])
    response = viewer.post("/api/v1/jobs", {"assistant": "shop"}, format="json")
    assert response.status_code == 403
    assert "'bob' lacks" in response.json()["detail"]
    assert not TrainingJob.objects.exists()


def test_auto_approve_needs_the_right_to_approve(assistant, bob):
    from ..conftest import grant

    grant(bob, "trigger_trainingjob")  # may start jobs, may not approve them
    client = client_for(api_key_create(scope=ApiKey.Scope.MANAGE, user=bob)[1])
    body = {"assistant": "shop", "skip_ab_test": True, "auto_approve": True}
    response = client.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 403
    assert "approve_trainingjob" in response.json()["detail"]
    assert not TrainingJob.objects.exists()
    # Without auto_approve the same user may start it.
    body["auto_approve"] = False
    assert client.post("/api/v1/jobs", body, format="json").status_code == 201


def test_a_reviewers_auto_approve_is_recorded_in_their_name(alice_manager, alice, assistant):
    body = {"assistant": "shop", "skip_ab_test": True, "auto_approve": True}
    response = alice_manager.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["options"]["auto_approve_by"] == alice.pk


def test_it_lists_and_filters_jobs(reader, assistant, other_assistant):
    make_job(assistant, S.FAILED)
    make_job(assistant, S.TRAINING)
    make_job(other_assistant, S.DEPLOYED)
    assert len(reader.get("/api/v1/jobs").json()["results"]) == 3
    filtered = reader.get("/api/v1/jobs?assistant=shop&status=training").json()["results"]
    assert [j["status"] for j in filtered] == ["training"]
    assert len(reader.get("/api/v1/jobs?status=").json()["results"]) == 3  # empty: any status
    bogus = reader.get("/api/v1/jobs?status=bogus")
    assert bogus.status_code == 400
    assert bogus.json()["errors"]["status"] == [
        "Unknown status 'bogus': use one of pending, preparing, training, evaluating, testing, "
        "awaiting_approval, deploying, deployed, rejected, failed, cancelled."
    ]


def test_a_key_bound_to_another_assistant_sees_none_of_its_jobs(assistant, other_assistant):
    job = make_job(assistant, S.TRAINING)
    _, raw = api_key_create(scope=ApiKey.Scope.READ, assistant=other_assistant)
    client = client_for(raw)
    assert client.get("/api/v1/jobs").json()["results"] == []
    assert client.get(f"/api/v1/jobs/{job.pk}").status_code == 404


def test_the_detail_has_the_events(reader, awaiting):
    services.job_record_event(job=awaiting, kind="note", message="hello")
    body = reader.get(f"/api/v1/jobs/{awaiting.pk}").json()
    assert body["new_model_version"] == "shop-v2"
    assert body["reasons"] == ["Feedback count (150) >= threshold (100)"]
    assert [e["message"] for e in body["events"]] == ["hello"]
    assert reader.get("/api/v1/jobs/999999").status_code == 404


def test_a_reviewer_approves_through_the_api(alice_manager, awaiting, assistant):
    response = alice_manager.post(f"/api/v1/jobs/{awaiting.pk}/approve")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "deployed" and body["deployed"] is True
    assert body["decided_by"] == "alice"
    assistant.refresh_from_db()
    assert assistant.live_version.name == "shop-v2"
    assert alice_manager.post(f"/api/v1/jobs/{awaiting.pk}/approve").json()["status"] == "deployed"


def _without_a_decision(job, alice) -> None:
    """Give the job an A/B test that a reviewer stopped early: no significant result."""
    from abtesting.models import Experiment
    from assistants.services import model_version_create

    live = model_version_create(assistant=job.assistant, name="shop-v0")
    experiment = Experiment.objects.create(
        assistant=job.assistant,
        control=live,
        variant=job.new_model_version,
        status="stopped",
        stopped_by=alice,
    )
    TrainingJob.objects.filter(pk=job.pk).update(experiment=experiment)


def test_approving_without_a_significant_result_needs_the_explicit_confirmation(
    alice_manager, awaiting, alice
):
    _without_a_decision(awaiting, alice)
    response = alice_manager.post(f"/api/v1/jobs/{awaiting.pk}/approve")
    assert response.status_code == 409
    assert "stopped early by alice: no decision" in response.json()["detail"]
    assert "confirm_no_decision" in response.json()["detail"]
    bad = alice_manager.post(
        f"/api/v1/jobs/{awaiting.pk}/approve", {"confirm_no_decision": "maybe"}, format="json"
    )
    assert bad.status_code == 400 and "confirm_no_decision" in bad.json()["errors"]
    response = alice_manager.post(
        f"/api/v1/jobs/{awaiting.pk}/approve", {"confirm_no_decision": True}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "deployed"
    messages = [e["message"] for e in response.json()["events"]]
    assert any("confirmed 'deploy without a significant result'" in m for m in messages)


def test_approving_needs_a_key_made_for_a_user_with_the_permission(manager, awaiting, bob):
    assert manager.post(f"/api/v1/jobs/{awaiting.pk}/approve").status_code == 403
    _, raw = api_key_create(scope=ApiKey.Scope.MANAGE, user=bob)
    response = client_for(raw).post(f"/api/v1/jobs/{awaiting.pk}/approve")
    assert response.status_code == 403
    assert "approve_trainingjob" in response.json()["detail"]


def test_rejecting_needs_a_reason(alice_manager, awaiting):
    assert alice_manager.post(f"/api/v1/jobs/{awaiting.pk}/reject", {}, format="json").status_code == 400
    response = alice_manager.post(
        f"/api/v1/jobs/{awaiting.pk}/reject", {"reason": "Too small"}, format="json"
    )
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["decision_reason"]) == ("rejected", "Too small")


def test_an_illegal_decision_is_a_conflict(alice_manager, assistant):
    job = make_job(assistant, S.FAILED)
    response = alice_manager.post(f"/api/v1/jobs/{job.pk}/approve")
    assert response.status_code == 409
    assert "awaiting approval" in response.json()["detail"]


def test_cancelling_a_running_job(alice_manager, assistant):
    job = make_job(assistant, S.TRAINING)
    response = alice_manager.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_should_retrain_says_why(reader, assistant, live_v1):
    services.policy_update(policy=services.policy_ensure(assistant=assistant), min_feedback_count=3)
    give_feedback(assistant, 3)
    body = reader.get("/api/v1/assistants/shop/should-retrain").json()
    assert body["should_retrain"] is True
    assert body["reasons"] == ["Feedback count (3) >= threshold (3)"]
    assert body["trigger"] == "threshold"
    assert body["metrics"]["feedback_count"] == 3


def test_health_reports_the_training_loop_block(reader, awaiting):
    body = reader.get("/api/v1/health?assistant=shop").json()
    loop = body["training_loop"]
    assert body["training_loop_ready"] is True
    assert loop["active_job"]["id"] == awaiting.pk
    assert loop["total_jobs"] == 1 and loop["jobs_awaiting_approval"] == 1
    assert loop["live_version"] == "shop-v1"
    assert "total_feedback" in body["feedback"]
    assert len(reader.get("/api/v1/health").json()["assistants"]) == 1


def test_rollback_returns_to_the_previous_version(alice_manager, manager, awaiting, assistant):
    alice_manager.post(f"/api/v1/jobs/{awaiting.pk}/approve")
    assert manager.post("/api/v1/assistants/shop/rollback").status_code == 403
    response = alice_manager.post("/api/v1/assistants/shop/rollback", {}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["live_version"] == "shop-v1"
    assistant.refresh_from_db()
    assert assistant.live_version.name == "shop-v1"


def test_rollback_without_history_is_a_conflict(alice_manager, live_v1):
    response = alice_manager.post("/api/v1/assistants/shop/rollback", {}, format="json")
    assert response.status_code == 409


def test_a_retried_rollback_naming_the_old_live_version_is_a_conflict(alice_manager, awaiting, assistant):
    alice_manager.post(f"/api/v1/jobs/{awaiting.pk}/approve")
    assistant.refresh_from_db()
    seen = assistant.live_version.name
    body = {"from_version": seen}
    assert alice_manager.post("/api/v1/assistants/shop/rollback", body, format="json").status_code == 200
    retry = alice_manager.post("/api/v1/assistants/shop/rollback", body, format="json")
    assert retry.status_code == 409
    assert f"is now running shop-v1, not {seen}" in retry.json()["detail"]
    assistant.refresh_from_db()
    assert assistant.live_version.name == "shop-v1"


def test_cancelling_needs_the_trigger_permission(assistant):
    from django.contrib.auth.models import User

    from ..conftest import grant

    approver = User.objects.create_user("carol")
    grant(approver, "approve_trainingjob")
    carol = client_for(api_key_create(scope=ApiKey.Scope.MANAGE, user=approver)[1])
    job = make_job(assistant, S.TRAINING)
    response = carol.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert response.status_code == 403
    assert "training.trigger_trainingjob" in response.json()["detail"]
    job.refresh_from_db()
    assert job.status == S.TRAINING


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_dataset_options_outside_the_utc_range_are_a_400(alice_manager, assistant, since):
    response = alice_manager.post(
        "/api/v1/jobs", {"assistant": "shop", "dataset_options": {"since": since}}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "Out of range" in str(response.json())
    assert not TrainingJob.objects.exists()
