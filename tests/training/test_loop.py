"""The whole loop on the local trainer: feedback → threshold trigger → dataset → trained version →
evaluation → (A/B) → awaiting approval → approve → live, with an event at each step."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from assistants.models import Deployment
from dashboard.management.commands.simulate import simulate
from training import services, tasks
from training.models import TrainingJob
from training.policy import retrain_metrics
from training.services import policy_ensure, policy_update

S = TrainingJob.Status
pytestmark = pytest.mark.django_db


def _customers(assistant, n: int, seed: int) -> dict:
    return simulate(assistant=assistant, interactions=n, correction_rate=1.0, seed=seed)


def _success(report: dict) -> float:
    rows = report["versions"].values()
    return sum(r["helpful"] for r in rows) / sum(r["feedback"] for r in rows)


def _trigger(assistant, django_capture_on_commit_callbacks) -> TrainingJob:
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.check_retraining(assistant.pk)
    return TrainingJob.objects.get(pk=result["job"])


def _transitions(job: TrainingJob) -> list[str]:
    return list(job.events.filter(kind="transition").values_list("to_status", flat=True))


def test_feedback_to_a_better_live_version_without_ab(
    assistant, live_v1, alice, django_capture_on_commit_callbacks
):
    policy_update(policy=policy_ensure(assistant=assistant), ab_enabled=False, auto_deploy_threshold=1.0)
    before = _customers(assistant, 150, seed=1)

    job = _trigger(assistant, django_capture_on_commit_callbacks)
    assert job.trigger == "threshold"
    assert job.reasons[0] == "Feedback count (150) >= threshold (100)"
    assert job.status == S.AWAITING_APPROVAL, job.error
    assert job.dataset.is_valid and job.dataset.train_count > 0
    candidate = job.new_model_version
    assert candidate.status == "candidate" and candidate.base_version == live_v1
    assert {
        "validation_accuracy",
        "coverage",
        "train_examples",
        "eval_candidate_accuracy",
        "eval_live_accuracy",
    } <= set(job.metrics)
    # Both versions answered the held-out prompts (a handful here: the customers below are the real test).
    assert job.metrics["eval_prompts"] == job.dataset.validation_count > 0
    assert job.metrics["eval_live_accuracy"] is not None

    services.job_approve(job=job, user=alice)
    job.refresh_from_db()
    assert job.status == S.DEPLOYED
    assistant.refresh_from_db()
    assert assistant.live_version == candidate
    assert Deployment.objects.filter(
        assistant=assistant, version=candidate, reason="approval", user=alice
    ).exists()
    assert _transitions(job) == [
        "pending",
        "preparing",
        "training",
        "evaluating",
        "awaiting_approval",
        "deploying",
        "deployed",
    ]

    after = _customers(assistant, 150, seed=2)
    assert _success(after) > _success(before) + 0.1  # the retrain visibly helps the customers
    # Feedback now counts from the new deployment.
    assert retrain_metrics(assistant)["feedback_count"] == 150


def test_feedback_to_live_through_an_ab_test(assistant, live_v1, alice, django_capture_on_commit_callbacks):
    from abtesting.models import Experiment
    from abtesting.signals import experiment_concluded

    policy_update(
        policy=policy_ensure(assistant=assistant),
        auto_deploy_threshold=1.0,
        ab_look_interval_minutes=5,
        ab_max_duration_days=0.25,
    )
    _customers(assistant, 150, seed=3)
    job = _trigger(assistant, django_capture_on_commit_callbacks)
    assert job.status == S.TESTING, job.error
    experiment = job.experiment
    assert (experiment.control, experiment.variant, experiment.status) == (
        live_v1,
        job.new_model_version,
        "running",
    )
    # The policy's look cadence and horizon are copied onto the experiment.
    assert (experiment.look_interval_minutes, experiment.max_duration_days) == (5, 0.25)

    # The experiment concludes (as abtesting's analysis would decide): the job reacts to the signal.
    results = {
        "controlSuccessRate": 0.6,
        "variantSuccessRate": 0.9,
        "improvement": 0.5,
        "sampleSize": 400,
        "pValue": 0.001,
    }
    Experiment.objects.filter(pk=experiment.pk).update(
        status="concluded", decision="variant_better", last_analysis={"ab_test_results": results}
    )
    experiment.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        experiment_concluded.send(sender=Experiment, experiment=experiment)
    job.refresh_from_db()
    assert job.status == S.AWAITING_APPROVAL
    assert job.ab_test_results == results

    services.job_approve(job=job, user=alice)
    job.refresh_from_db()
    assert job.status == S.DEPLOYED
    assert _transitions(job) == [
        "pending",
        "preparing",
        "training",
        "evaluating",
        "testing",
        "awaiting_approval",
        "deploying",
        "deployed",
    ]
    job.new_model_version.refresh_from_db()
    assert job.new_model_version.metrics["baseline_success_rate"] == 0.9


def test_the_demo_path_a_reviewer_stops_the_ab_test_and_approves_on_its_figures(
    assistant, live_v1, alice, django_capture_on_commit_callbacks
):
    """README's walk-through: customers reach both arms; rather than wait for the daily looks, a reviewer
    stops the test; the job waits for approval with the A/B figures of all traffic so far."""
    from abtesting import services as ab

    _customers(assistant, 150, seed=5)
    job = _trigger(assistant, django_capture_on_commit_callbacks)
    assert job.status == S.TESTING, job.error
    report = _customers(assistant, 300, seed=6)  # routed: both versions answer
    asked = {name: row["feedback"] for name, row in report["versions"].items()}
    assert set(asked) == {live_v1.name, job.new_model_version.name}

    with django_capture_on_commit_callbacks(execute=True):
        ab.experiment_stop(experiment=job.experiment, user=alice, reason="enough seen in the demo")
    job.refresh_from_db()
    assert job.status == S.AWAITING_APPROVAL
    results = job.ab_test_results
    assert results["interactions"] == sum(asked.values()) == 300
    assert results["controlSuccessRate"] == pytest.approx(
        report["versions"][live_v1.name]["helpful"] / asked[live_v1.name]
    )
    assert results["variantSuccessRate"] > results["controlSuccessRate"]
    # Stopping early is not a result: the timeline says so, and approving needs an explicit confirmation.
    timeline = " ".join(job.events.values_list("message", flat=True))
    assert "stopped early by alice: no decision" in timeline and "variant_better" not in timeline
    assert results["pValue"] is None and results["significant"] is False
    with pytest.raises(services.ConfirmationRequired, match="deploy without a significant result"):
        services.job_approve(job=job, user=alice)

    services.job_approve(job=job, user=alice, confirm_no_decision=True)
    job.refresh_from_db()
    assistant.refresh_from_db()
    assert job.status == S.DEPLOYED and assistant.live_version == job.new_model_version
    approval = job.events.get(to_status=S.DEPLOYING)
    assert approval.user == alice and approval.data["confirmed"] == "deploy without a significant result"


def test_a_run_with_no_usable_feedback_fails_with_the_reason(
    assistant, live_v1, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = services.trigger_training(assistant=assistant)
    job.refresh_from_db()
    assert job.status == S.FAILED
    assert job.error.startswith("The training data is not usable")
    assert _transitions(job) == ["pending", "preparing", "failed"]


# -- the testing stage in detail ------------------------------------------------------------------------


@pytest.fixture
def testing_job(assistant, live_v1):
    from .conftest import make_job, train_local

    policy_update(policy=policy_ensure(assistant=assistant), auto_deploy_threshold=1.0)
    candidate = train_local(assistant, ["How do I pay?"], ["By card."])
    return make_job(assistant, S.TESTING, new_model_version=candidate, base_version=live_v1)


def _conclude(experiment, decision: str, results: dict | None = None) -> None:
    from abtesting.models import Experiment

    Experiment.objects.filter(pk=experiment.pk).update(
        status="concluded",
        decision=decision,
        last_analysis={"ab_test_results": results or {"improvement": 0.0}},
    )


def test_a_job_waits_in_testing_while_another_experiment_runs(testing_job, assistant, live_v1, monkeypatch):
    from abtesting.services import experiment_start

    from .conftest import train_local

    other = train_local(assistant, ["x?"], ["y."])
    busy = experiment_start(assistant=assistant, control=live_v1, variant=other)
    job = services.job_advance(job=testing_job)
    assert job.status == S.TESTING and job.experiment is None
    assert (
        job.events.filter(kind="note", message__startswith="Waiting for the running experiment").count() == 1
    )
    assert job.next_check_at is not None  # the watchdog looks again

    _conclude(busy, "no_difference")
    job = services.job_advance(job=job)
    assert job.experiment is not None and job.experiment.variant == job.new_model_version


def test_a_variant_the_test_finds_worse_is_rejected_even_with_auto_approve(testing_job):
    TrainingJob.objects.filter(pk=testing_job.pk).update(options={"auto_approve": True})
    job = services.job_advance(job=testing_job)
    _conclude(job.experiment, "variant_worse", {"improvement": -0.2})
    job = services.job_advance(job=job)
    assert job.status == S.REJECTED
    assert "variant_worse" in job.decision_reason


def test_a_significant_big_win_deploys_itself(testing_job, assistant):
    policy_update(policy=policy_ensure(assistant=assistant), auto_deploy_threshold=0.15)
    job = services.job_advance(job=testing_job)
    _conclude(
        job.experiment,
        "variant_better",
        {"improvement": 0.3, "improvementLow": 0.18, "significant": True, "variantSuccessRate": 0.91},
    )
    job = services.job_advance(job=job)
    assert job.status == S.DEPLOYED
    assert assistant.deployments.first().reason == "auto_deploy"
    assert "+30.0% (at least +18.0%)" in job.events.get(to_status=S.DEPLOYING).message


def test_an_estimate_above_the_threshold_does_not_auto_deploy_when_the_lower_bound_is_below(
    testing_job, assistant
):
    """A true +10 % variant stopped early can show +17 %: the lower end of its interval (+3 %) decides."""
    policy_update(policy=policy_ensure(assistant=assistant), auto_deploy_threshold=0.15)
    job = services.job_advance(job=testing_job)
    _conclude(
        job.experiment, "variant_better", {"improvement": 0.17, "improvementLow": 0.03, "significant": True}
    )
    job = services.job_advance(job=job)
    assert job.status == S.AWAITING_APPROVAL
    assert assistant.deployments.filter(reason="auto_deploy").count() == 0


def test_without_approval_the_minimum_improvement_is_met_by_the_lower_bound(testing_job, assistant):
    policy_update(policy=policy_ensure(assistant=assistant), require_approval=False, ab_min_improvement=0.05)
    job = services.job_advance(job=testing_job)
    _conclude(
        job.experiment, "variant_better", {"improvement": 0.08, "improvementLow": 0.01, "significant": True}
    )
    job = services.job_advance(job=job)
    assert job.status == S.REJECTED
    assert "+8.0% (at least +1.0%) below the minimum 5%" in job.decision_reason


def test_the_watchdog_notices_a_concluded_experiment_without_the_signal(testing_job, monkeypatch):
    job = services.job_advance(job=testing_job)
    _conclude(job.experiment, "inconclusive")
    enqueued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, job_id, **k: enqueued.append(job_id))
    services.jobs_watch()
    assert enqueued == [job.pk]
    assert tasks.job_advance(job.pk) == S.AWAITING_APPROVAL


def test_cancelling_a_job_in_testing_stops_its_experiment(testing_job, alice):
    job = services.job_advance(job=testing_job)
    services.job_cancel(job=job, user=alice)
    job.experiment.refresh_from_db()
    assert job.experiment.status == "stopped"


def test_with_rollout_enabled_approval_ramps_the_version_up(testing_job, assistant, alice, live_v1):
    from abtesting.models import Experiment
    from assistants.services import deployment_make_live

    policy_update(policy=policy_ensure(assistant=assistant), rollout_enabled=True)
    job = services.job_advance(job=testing_job)
    _conclude(job.experiment, "variant_better", {"improvement": 0.1})
    job = services.job_advance(job=job)
    assert job.status == S.AWAITING_APPROVAL
    job = services.job_approve(job=job, user=alice)
    assert job.status == S.DEPLOYING
    rollout = Experiment.objects.get(pk=job.options["rollout_experiment"])
    assert rollout.purpose == "rollout" and rollout.variant == job.new_model_version
    # The rollout reaches 100 % (abtesting makes the version live and concludes).
    deployment_make_live(version=job.new_model_version, reason="rollout_stage")
    _conclude(rollout, "variant_better")
    job = services.job_advance(job=job)
    assert job.status == S.DEPLOYED


def test_cancelling_while_the_ab_test_starts_stops_that_experiment(testing_job, alice, monkeypatch):
    from abtesting import services as ab
    from abtesting.models import Experiment

    real_start = ab.experiment_start

    def start_then_cancel(**kwargs):
        experiment = real_start(**kwargs)
        # A reviewer cancels after the experiment exists but before the job records it.
        services.job_cancel(job=TrainingJob.objects.get(pk=testing_job.pk), user=alice)
        return experiment

    monkeypatch.setattr(ab, "experiment_start", start_then_cancel)
    job = services.job_advance(job=testing_job)
    job.refresh_from_db()
    assert job.status == S.CANCELLED
    experiment = Experiment.objects.get(assistant=job.assistant)
    assert experiment.status == "stopped"  # no traffic goes to a candidate nobody will deploy


def _approve_into_rollout(testing_job, assistant, alice, results: dict | None = None) -> TrainingJob:
    policy_update(policy=policy_ensure(assistant=assistant), rollout_enabled=True)
    job = services.job_advance(job=testing_job)
    _conclude(job.experiment, "variant_better", results or {"improvement": 0.1})
    job = services.job_advance(job=job)
    job = services.job_approve(job=job, user=alice)
    assert job.status == S.DEPLOYING
    return job


def test_a_completed_rollout_deploys_the_job_without_a_second_deployment(testing_job, assistant, alice):
    from abtesting import rollouts
    from abtesting.models import Experiment

    job = _approve_into_rollout(
        testing_job, assistant, alice, {"improvement": 0.1, "variantSuccessRate": 0.93}
    )
    rollout = Experiment.objects.get(pk=job.options["rollout_experiment"])
    # Without feedback each stage is held its longest, then advanced; the last one makes the version live.
    while rollout.is_running:
        held = rollout.stage_hours * rollouts.MAX_STAGE_HOLD_FACTOR + 1
        rollouts.rollout_advance(experiment=rollout, now=rollout.stage_started_at + timedelta(hours=held))
    assistant.refresh_from_db()
    assert assistant.live_version == job.new_model_version

    job = services.job_advance(job=job)
    assert job.status == S.DEPLOYED
    assert job.events.get(to_status=S.DEPLOYED).message.endswith("is live after the progressive rollout.")
    made_live = Deployment.objects.filter(version=job.new_model_version, traffic_share=1.0)
    assert list(made_live.values_list("reason", flat=True)) == ["approval"]  # abtesting's, and only that
    job.new_model_version.refresh_from_db()
    assert job.new_model_version.metrics["baseline_success_rate"] == 0.93


def test_the_job_outlasts_a_rollout_whose_stages_hold_longest(testing_job, assistant, alice):
    from abtesting import rollouts
    from abtesting.models import Experiment

    job = _approve_into_rollout(testing_job, assistant, alice)
    rollout = Experiment.objects.get(pk=job.options["rollout_experiment"])
    held = rollout.stage_hours * rollouts.MAX_STAGE_HOLD_FACTOR
    longest = timedelta(hours=held * (len(rollout.stages) - 1))
    assert job.deadline_at > rollout.started_at + longest


def test_a_job_failed_during_its_rollout_rolls_the_rollout_back(testing_job, assistant, alice, live_v1):
    from abtesting.models import Experiment

    job = _approve_into_rollout(testing_job, assistant, alice)
    TrainingJob.objects.filter(pk=job.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    services.jobs_watch()
    job.refresh_from_db()
    assert job.status == S.FAILED
    assert "progressive rollout did not finish" in job.error and "training_timeout" not in job.error
    rollout = Experiment.objects.get(pk=job.options["rollout_experiment"])
    assert rollout.status == "stopped"  # it can no longer make the failed job's version live
    assistant.refresh_from_db()
    assert assistant.live_version == live_v1


def test_a_job_failed_while_its_rollout_starts_rolls_that_rollout_back(
    testing_job, assistant, alice, live_v1, monkeypatch
):
    from abtesting import rollouts
    from abtesting.models import Experiment

    real_start = rollouts.rollout_start

    def start_then_fail(**kwargs):
        rollout = real_start(**kwargs)
        # The watchdog fails the job after the rollout exists but before the job records it.
        services.job_fail(job=TrainingJob.objects.get(pk=testing_job.pk), error="Timed out.")
        return rollout

    monkeypatch.setattr(rollouts, "rollout_start", start_then_fail)
    policy_update(policy=policy_ensure(assistant=assistant), rollout_enabled=True)
    job = services.job_advance(job=testing_job)
    _conclude(job.experiment, "variant_better", {"improvement": 0.1})
    job = services.job_advance(job=job)
    services.job_approve(job=job, user=alice)
    job.refresh_from_db()
    assert job.status == S.FAILED
    rollout = Experiment.objects.get(assistant=assistant, purpose="rollout")
    assert rollout.status == "stopped"
    assistant.refresh_from_db()
    assert assistant.live_version == live_v1
