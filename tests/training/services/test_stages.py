"""Running a job's stages (training/services/stages.py) and the decision after an offline evaluation."""

from __future__ import annotations

import pytest

from assistants.models import Deployment
from tests.training.conftest import give_feedback, make_job, train_local
from training import services
from training.models import TrainingJob
from training.services import policy_ensure, policy_update
from training.trainers.base import TrainingOutcome

S = TrainingJob.Status


@pytest.mark.django_db
@pytest.mark.parametrize(("max_examples", "expected"), [(0, 40), (25, 25), (100, 40)])
def test_the_job_dataset_uses_the_jobs_base_model_and_caps_examples(
    assistant, live_v1, max_examples, expected
):
    # The examples are checked against the model the job will fine-tune; max_examples 0 ("no limit of
    # its own") still leaves max_feedback_count as the cap of a training run.
    give_feedback(assistant, 12)
    policy_update(
        policy=policy_ensure(assistant=assistant),
        max_examples=max_examples,
        max_feedback_count=40,
        min_feedback_count=10,
    )
    job = services.trigger_training(assistant=assistant, options={"base_model": "gpt-3.5-turbo-0125"})
    services.job_advance(job=job)
    job.refresh_from_db()
    assert job.dataset.options["base_model"] == "gpt-3.5-turbo-0125"
    assert job.dataset.options["max_examples"] == expected


@pytest.mark.django_db
def test_cancelling_while_the_trainer_creates_the_provider_job_still_cancels_it(
    assistant, alice, monkeypatch
):
    cancelled = []

    class SlowStartTrainer:
        def start(self, job):
            # The reviewer clicks Cancel while the upload runs, before the provider job exists ...
            services.job_cancel(job=TrainingJob.objects.get(pk=job.pk), user=alice)
            # ... then the provider job is created and its id written (as the OpenAI trainer does).
            job.provider_job_id = "ftjob-late"
            job.save(update_fields=("provider_job_id",))
            return TrainingOutcome(TrainingOutcome.RUNNING)

        def cancel(self, job):
            cancelled.append(job.provider_job_id)

    monkeypatch.setattr("training.trainers.get_trainer", lambda backend: SlowStartTrainer())
    job = make_job(assistant, S.TRAINING, backend="openai")
    services.job_advance(job=job)
    job.refresh_from_db()
    assert job.status == S.CANCELLED
    assert cancelled == ["ftjob-late"]  # it does not train (and bill) on for a cancelled job


# -- the decision rule after evaluation (no A/B) ---------------------------------------------------------


def _report(*, candidate: float, live: float | None, prompts: int = 50):
    from training.evaluation import EvaluationReport, VersionScore

    live_score = VersionScore("live", live, live, 1.0, prompts) if live is not None else None
    report = EvaluationReport(
        prompts=prompts, candidate=VersionScore("cand", candidate, candidate, 1.0, prompts), live=live_score
    )
    report.enough_prompts = prompts >= report.min_prompts
    report.significant = report.enough_prompts
    if live:
        report.improvement = (candidate - live) / live
        # A tight interval: the decision rule reads its lower end.
        report.improvement_ci = [report.improvement, report.improvement, report.improvement]
    return report


@pytest.fixture
def evaluating(assistant, live_v1, monkeypatch):
    def build(report, *, ab: bool = False, options: dict | None = None, **policy):
        services.policy_update(policy=services.policy_ensure(assistant=assistant), ab_enabled=ab, **policy)
        monkeypatch.setattr("training.evaluation.evaluate_job", lambda job, settings: report)
        candidate = train_local(assistant, ["How do I pay?"], ["By card."])
        return make_job(
            assistant, S.EVALUATING, new_model_version=candidate, base_version=live_v1, options=options or {}
        )

    return build


@pytest.mark.django_db
def test_without_ab_the_job_waits_for_approval(evaluating):
    job = services.job_advance(job=evaluating(_report(candidate=0.9, live=0.8)))
    assert job.status == S.AWAITING_APPROVAL
    assert job.metrics["eval_improvement"] == pytest.approx(0.125)


@pytest.mark.django_db
def test_a_big_evaluated_improvement_deploys_itself(evaluating, assistant):
    job = services.job_advance(job=evaluating(_report(candidate=0.9, live=0.6)))
    assert job.status == S.DEPLOYED
    assistant.refresh_from_db()
    assert assistant.live_version == job.new_model_version
    assert assistant.deployments.first().reason == "auto_deploy"


@pytest.mark.django_db
def test_auto_approve_never_overrides_a_policy_that_requires_approval(evaluating, alice):
    options = {"auto_approve": True, "auto_approve_by": alice.pk}
    job = services.job_advance(job=evaluating(_report(candidate=0.81, live=0.8), options=options))
    assert job.status == S.AWAITING_APPROVAL
    assert not Deployment.objects.filter(reason="approval").exists()


@pytest.mark.django_db
def test_an_advance_approval_deploys_in_the_approvers_name(evaluating, alice, assistant):
    options = {"auto_approve": True, "auto_approve_by": alice.pk}
    job = services.job_advance(
        job=evaluating(_report(candidate=0.81, live=0.8), options=options, require_approval=False)
    )
    assert job.status == S.DEPLOYED
    assert job.decided_by == alice
    deployment = assistant.deployments.first()
    assert (deployment.reason, deployment.user) == ("approval", alice)
    assert "approved by alice" in deployment.note


@pytest.mark.django_db
def test_an_advance_approval_lapses_when_its_user_may_no_longer_approve(evaluating, alice):
    from django.contrib.auth.models import Group

    options = {"auto_approve": True, "auto_approve_by": alice.pk}
    job = evaluating(_report(candidate=0.81, live=0.8), options=options, require_approval=False)
    alice.groups.set([Group.objects.get(name="viewer")])
    job = services.job_advance(job=job)
    assert job.status == S.REJECTED  # 0.81 vs 0.8 is below the minimum improvement
    assert job.events.filter(message__startswith="The advance approval no longer counts").exists()


@pytest.mark.django_db
def test_a_policy_deployment_names_the_rule_that_deployed_it(evaluating, assistant):
    job = services.job_advance(job=evaluating(_report(candidate=0.9, live=0.6)))
    assert job.status == S.DEPLOYED
    deployment = assistant.deployments.first()
    assert deployment.user is None
    assert "policy: auto-deploy threshold met" in deployment.note


@pytest.mark.django_db
def test_a_candidate_evaluated_on_fewer_prompts_than_the_minimum_is_never_auto_approved(
    evaluating, assistant
):
    report = _report(candidate=0.9, live=0.5, prompts=49)
    job = services.job_advance(job=evaluating(report, options={"auto_approve": True}, require_approval=False))
    assert job.status == S.AWAITING_APPROVAL
    assert job.options["auto_approve"] is False
    assert "fewer than the policy's minimum of 50" in job.options["auto_approve_withdrawn"]
    assert job.events.filter(message__contains="no automatic decision").exists()
    assert not assistant.deployments.filter(reason="auto_deploy").exists()


@pytest.mark.django_db
def test_too_few_prompts_withdraw_auto_approve_before_an_ab_test_too(evaluating):
    job = services.job_advance(
        job=evaluating(_report(candidate=0.9, live=0.5, prompts=10), ab=True, options={"auto_approve": True})
    )
    assert job.status == S.TESTING
    assert job.options["auto_approve"] is False


@pytest.mark.django_db
def test_the_policy_sets_the_minimum_number_of_prompts(evaluating):
    report = _report(candidate=0.9, live=0.6, prompts=30)
    report.min_prompts = 20
    report.enough_prompts = report.significant = True
    job = services.job_advance(job=evaluating(report, eval_min_prompts=20))
    assert job.status == S.DEPLOYED


@pytest.mark.django_db
def test_an_improvement_whose_interval_reaches_below_the_threshold_does_not_auto_deploy(evaluating):
    report = _report(candidate=0.9, live=0.6)  # +50 % point estimate
    report.improvement_ci = [0.5, 0.10, 0.9]  # but "at least +10 %" is below the 15 % threshold
    job = services.job_advance(job=evaluating(report))
    assert job.status == S.AWAITING_APPROVAL
    assert job.metrics["eval_improvement_low"] == pytest.approx(0.10)


@pytest.mark.django_db
def test_an_evaluation_stopped_by_the_judge_budget_fails_the_job_with_the_reason(evaluating):
    report = _report(candidate=0.9, live=0.6)
    report.stopped_reason = "The judge budget of $0.01 is spent ($0.0100 used in 12 calls)."
    job = services.job_advance(job=evaluating(report))
    assert job.status == S.FAILED
    assert job.error == "Evaluation stopped: The judge budget of $0.01 is spent ($0.0100 used in 12 calls)."


@pytest.mark.django_db
def test_without_approval_a_small_improvement_is_rejected_with_the_reason(evaluating):
    job = services.job_advance(job=evaluating(_report(candidate=0.81, live=0.8), require_approval=False))
    assert job.status == S.REJECTED
    assert "below the minimum 5%" in job.decision_reason


@pytest.mark.django_db
def test_without_approval_a_sufficient_improvement_deploys(evaluating):
    job = services.job_advance(job=evaluating(_report(candidate=0.88, live=0.8), require_approval=False))
    assert job.status == S.DEPLOYED


@pytest.mark.django_db
def test_a_clearly_worse_candidate_fails_before_any_traffic(evaluating, assistant, live_v1):
    from training.evaluation import evaluate_versions

    report = _report(candidate=0.5, live=0.8)
    report.clearly_worse, report.worse_reason = True, "The candidate cand is clearly worse than the live live"
    job = services.job_advance(job=evaluating(report, ab=True))
    assert job.status == S.FAILED
    assert job.error.startswith("The candidate cand is clearly worse")
    assert evaluate_versions  # the real rule is tested in test_evaluation.py
    assistant.refresh_from_db()
    assert assistant.live_version == live_v1


@pytest.mark.django_db
def test_with_ab_enabled_the_job_goes_to_testing(evaluating):
    job = services.job_advance(job=evaluating(_report(candidate=0.9, live=0.8), ab=True))
    assert job.status == S.TESTING
    assert job.events.filter(to_status="testing").exists()
