"""should_retrain: the seed's wording, the evidence rule, triggers, and the policy's schedule."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_q.models import Schedule

from assistants.models import Deployment
from training.models import RetrainPolicy, TrainingJob
from training.policy import retrain_metrics, should_retrain, should_retrain_metrics
from training.schedules import next_run_at, schedule_name
from training.services import policy_ensure, policy_update

from .conftest import give_feedback, make_job

pytestmark = pytest.mark.django_db


def test_the_seed_example_gives_exactly_its_four_reasons(assistant):
    policy = policy_ensure(assistant=assistant)
    decision = should_retrain_metrics(
        policy, {"feedback_count": 150, "success_rate": 0.75, "avg_rating": 3.2, "error_rate": 0.25}
    )
    assert decision.should_retrain
    assert decision.reasons == [
        "Feedback count (150) >= threshold (100)",
        "Success rate (75.0%) < threshold (80.0%)",
        "Avg rating (3.2) < threshold (3.5)",
        "Error rate (25.0%) > threshold (20.0%)",
    ]
    assert decision.trigger == TrainingJob.Trigger.THRESHOLD


def test_healthy_metrics_do_not_trigger(assistant):
    policy = policy_ensure(assistant=assistant)
    decision = should_retrain_metrics(
        policy, {"feedback_count": 99, "success_rate": 0.9, "avg_rating": 4.5, "error_rate": 0.01}
    )
    assert not decision.should_retrain
    assert decision.reasons == []
    assert decision.trigger is None


def test_one_bad_rating_never_triggers(assistant):
    policy = policy_ensure(assistant=assistant)
    decision = should_retrain_metrics(
        policy,
        {
            "feedback_count": 1,
            "success_rate": 0.0,
            "avg_rating": 1.0,
            "error_rate": 1.0,
            "signal_count": 1,
            "rated_count": 1,
            "total_interactions": 1,
        },
    )
    assert not decision.should_retrain


def test_quality_conditions_fire_once_there_is_enough_evidence(assistant):
    policy = policy_ensure(assistant=assistant)
    decision = should_retrain_metrics(
        policy,
        {"feedback_count": 30, "success_rate": 0.5, "signal_count": 30, "rated_count": 0, "avg_rating": 1.0},
    )
    assert decision.reasons == ["Success rate (50.0%) < threshold (80.0%)"]


def test_days_since_retrain_alone_is_a_scheduled_trigger(assistant):
    policy = policy_ensure(assistant=assistant)
    decision = should_retrain_metrics(policy, {"feedback_count": 3, "days_since_retrain": 31})
    assert decision.reasons == ["Days since retrain (31) >= threshold (30)"]
    assert decision.trigger == TrainingJob.Trigger.SCHEDULED


def test_a_performance_drop_is_a_performance_trigger(assistant):
    policy = policy_ensure(assistant=assistant)
    decision = should_retrain_metrics(
        policy, {"feedback_count": 120, "performance_drop": 0.125, "signal_count": 120, "success_rate": 0.85}
    )
    assert "Performance drop (12.5%) >= threshold (10.0%)" in decision.reasons
    assert decision.trigger == TrainingJob.Trigger.PERFORMANCE


def test_metrics_count_feedback_since_the_last_deployment(assistant, live_v1):
    old = give_feedback(assistant, 5, helpful=False)
    deployment = Deployment.objects.get(assistant=assistant)
    Deployment.objects.filter(pk=deployment.pk).update(created_at=timezone.now() - timedelta(days=2))
    for row in old:
        type(row).objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(days=3))
    give_feedback(assistant, 4, helpful=True)
    metrics = retrain_metrics(assistant)
    assert metrics["feedback_count"] == 4
    assert metrics["success_rate"] == 1.0
    assert metrics["days_since_retrain"] == 2


def test_the_database_variant_reads_feedback_and_reasons(assistant, live_v1):
    policy_update(policy=policy_ensure(assistant=assistant), min_feedback_count=40, min_quality_evidence=10)
    give_feedback(assistant, 30, helpful=True, rating=5)
    give_feedback(assistant, 20, helpful=False, rating=1)
    decision = should_retrain(assistant)
    assert decision.should_retrain
    assert decision.reasons == [
        "Feedback count (50) >= threshold (40)",
        "Success rate (60.0%) < threshold (80.0%)",
        "Avg rating (3.4) < threshold (3.5)",
    ]


def test_nothing_triggers_while_a_job_is_active(assistant, live_v1):
    policy_update(policy=policy_ensure(assistant=assistant), min_feedback_count=5)
    give_feedback(assistant, 6)
    job = make_job(assistant, TrainingJob.Status.TRAINING)
    decision = should_retrain(assistant)
    assert not decision.should_retrain
    assert decision.reasons == ["Feedback count (6) >= threshold (5)"]
    assert str(job.pk) in decision.blocked_by


def test_the_policy_rejects_rates_outside_their_ranges(assistant):
    policy = policy_ensure(assistant=assistant)
    with pytest.raises(ValidationError) as err:
        policy_update(policy=policy, ab_traffic_split=1.0, min_success_rate=1.5, min_avg_rating=6)
    assert {"ab_traffic_split", "min_success_rate", "min_avg_rating"} <= set(err.value.message_dict)


def test_the_policy_refuses_data_filters_no_build_could_honour(assistant):
    # The pipeline's own rules, applied when the admin saves, not when the nightly build fails.
    policy = policy_ensure(assistant=assistant)
    with pytest.raises(ValidationError) as err:
        policy_update(policy=policy, validation_share=1.0, similarity_threshold=0.0)
    assert {"validation_share", "similarity_threshold"} <= set(err.value.message_dict)
    policy_update(policy=policy, validation_share=0.2, similarity_threshold=0.8)  # sensible values pass


def test_saving_a_policy_creates_its_schedule_and_disabling_removes_it(assistant, settings):
    policy = policy_ensure(assistant=assistant)
    schedule = Schedule.objects.get(name=schedule_name(assistant.pk))
    assert schedule.func == "training.tasks.check_retraining"
    assert schedule.args == f"({assistant.pk},)"
    assert schedule.schedule_type == Schedule.DAILY
    policy_update(policy=policy, schedule=RetrainPolicy.Schedule.WEEKLY, schedule_time=dt.time(3, 30))
    schedule.refresh_from_db()
    assert schedule.schedule_type == Schedule.WEEKLY
    assert schedule.next_run.astimezone(dt.UTC).time() == dt.time(3, 30)
    policy_update(policy=policy, enabled=False)
    assert not Schedule.objects.filter(name=schedule_name(assistant.pk)).exists()


def test_the_next_run_is_at_schedule_time_in_the_configured_time_zone(assistant, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    policy = policy_ensure(assistant=assistant)
    now = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)  # 13:00 in Berlin
    run = next_run_at(policy, now=now)
    assert run.astimezone(dt.UTC) == dt.datetime(2026, 1, 11, 1, 0, tzinfo=dt.UTC)
    policy.schedule = RetrainPolicy.Schedule.HOURLY
    policy.schedule_time = dt.time(2, 15)
    assert next_run_at(policy, now=now).astimezone(dt.UTC) == dt.datetime(2026, 1, 10, 12, 15, tzinfo=dt.UTC)


def test_the_training_timeout_must_fit_in_the_worker_task_timeout(assistant, settings):
    settings.TRAINING_TASK_TIMEOUT = 7200
    policy = policy_ensure(assistant=assistant)
    with pytest.raises(ValidationError) as err:
        policy_update(policy=policy, training_timeout=7200)
    assert "raise TRAINING_TASK_TIMEOUT" in err.value.message_dict["training_timeout"][0]
