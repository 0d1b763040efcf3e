"""A comparison online: "best_ab" A/B tests the best offline candidate as a single job would; "multi_arm"
puts the top k into one multi-arm experiment, whose winner (another candidate than the offline best)
becomes the job's version; the decision and the deployment say which candidate and why."""

from __future__ import annotations

import pytest

from abtesting.models import Experiment
from abtesting.signals import experiment_concluded
from assistants.models import Deployment
from dashboard.management.commands.simulate import simulate
from training import selectors, services
from training.api_comparisons import ComparisonSerializer
from training.models import JobEvent, TrainingJob
from training.services import comparison as comparison_service
from training.services import policy_ensure, policy_update

S = TrainingJob.Status
pytestmark = pytest.mark.django_db

CANDIDATES = [
    {"label": "A", "backend": "local", "settings": {}},
    {"label": "B", "backend": "local", "settings": {"features": "word"}},
    {"label": "C", "backend": "local", "settings": {"threshold": "coverage", "target_coverage": 0.95}},
]
RESULTS = {
    "controlSuccessRate": 0.6,
    "variantSuccessRate": 0.8,
    "improvement": 0.33,
    "improvementLow": 0.1,
    "sampleSize": 400,
    "pValue": 0.001,
}


@pytest.fixture
def comparison(assistant, live_v1, django_capture_on_commit_callbacks):
    """Start a comparison with the A/B test on (the job waits in ``testing``)."""
    policy_update(
        policy=policy_ensure(assistant=assistant),
        validation_share=0.3,
        auto_deploy_threshold=1.0,
        ab_look_interval_minutes=5,
        ab_max_duration_days=0.25,
    )
    simulate(assistant=assistant, interactions=200, correction_rate=1.0, seed=5)

    def start(online: str, top_k: int = 2, candidates: list[dict] = CANDIDATES) -> TrainingJob:
        spec = {"candidates": candidates, "online": online, "top_k": top_k}
        with django_capture_on_commit_callbacks(execute=True):
            job = services.trigger_training(assistant=assistant, comparison=spec)
        job.refresh_from_db()
        assert job.status == S.TESTING, job.error
        return job

    return start


def _conclude(experiment: Experiment, capture, **fields) -> None:
    Experiment.objects.filter(pk=experiment.pk).update(status="concluded", **fields)
    experiment.refresh_from_db()
    with capture(execute=True):
        experiment_concluded.send(sender=Experiment, experiment=experiment)


def test_best_ab_tests_the_best_candidate_against_live(
    comparison, live_v1, alice, django_capture_on_commit_callbacks
):
    job = comparison("best_ab")

    best = job.candidates.get(rank=1)
    experiment = job.experiment
    assert (experiment.control, experiment.variant) == (live_v1, best.model_version)
    assert job.new_model_version == best.model_version
    assert job.events.filter(message__startswith=f"A/B test {experiment.pk} started").exists()

    analysis = {"ab_test_results": RESULTS}
    _conclude(
        experiment, django_capture_on_commit_callbacks, decision="variant_better", last_analysis=analysis
    )
    job.refresh_from_db()
    assert job.status == S.AWAITING_APPROVAL
    assert job.new_model_version == best.model_version
    why = job.options["chosen"]["why"]
    assert why.startswith(f"candidate {best.label}") and "offline rank 1 of 3" in why
    assert why.endswith(f"; A/B test {experiment.pk}: variant_better")

    services.job_approve(job=job, user=alice)

    job.refresh_from_db()
    assert job.status == S.DEPLOYED
    assert job.decision_reason == f"approved by {alice.username}: deploying {why}"
    assert Deployment.objects.get(version=best.model_version).note.endswith(f"Chosen: {why}.")


def test_multi_arm_puts_the_top_k_in_one_experiment_and_its_winner_is_deployed(
    comparison, live_v1, alice, django_capture_on_commit_callbacks
):
    job = comparison("multi_arm", top_k=2)

    first, second = job.candidates.get(rank=1), job.candidates.get(rank=2)
    experiment = job.experiment
    assert [(arm, version) for arm, version in experiment.arm_versions()] == [
        ("control", live_v1),
        ("variant", first.model_version),
        ("variant2", second.model_version),
    ]
    assert job.events.filter(message__startswith=f"Multi-arm experiment {experiment.pk} started").exists()

    # The experiment finds the offline runner-up better than live (and than the offline best).
    analysis = {"ab_test_results": {**RESULTS, "arm": "variant2"}, "winner": "variant2"}
    _conclude(
        experiment,
        django_capture_on_commit_callbacks,
        decision="variant_better",
        decision_reason="variant2 better than control",
        winner=second.model_version,
        last_analysis=analysis,
    )
    job.refresh_from_db()

    assert job.status == S.AWAITING_APPROVAL
    assert job.new_model_version == second.model_version
    switch = job.events.get(kind=JobEvent.Kind.DECISION, message__startswith="The multi-arm experiment chose")
    assert f"candidate {second.label}" in switch.message and first.model_version.name in switch.message
    why = job.options["chosen"]["why"]
    assert f"experiment {experiment.pk} declared {second.model_version.name} the winner" in why
    # A retry of the step (the worker lost its lease before the verdict) keeps the winner's reason.
    assert comparison_service.winner_adopt(job, experiment) is False
    job.refresh_from_db()
    assert job.options["chosen"]["why"] == why
    # The job's evaluation is now the winner's; the per-prompt rows say whose answers they are.
    assert job.evaluation["candidate"]["version"] == second.model_version.name
    assert job.evaluation["prompts_of"] == first.model_version.name
    assert job.evaluation["comparison"]["best"] == first.label
    shown = ComparisonSerializer(selectors.comparison_get(job_id=job.pk)).data  # GET /api/v1/comparisons/{id}
    assert (shown["experiment"], shown["experiment_winner"]) == (experiment.pk, second.model_version.name)

    services.job_approve(job=job, user=alice)

    job.refresh_from_db()
    assert job.status == S.DEPLOYED
    job.assistant.refresh_from_db()
    assert job.assistant.live_version == second.model_version
    assert job.decision_reason.startswith(f"approved by {alice.username}: deploying candidate {second.label}")
    assert "offline rank 2" in job.decision_reason


def test_multi_arm_takes_at_most_the_candidates_that_were_ranked(comparison, live_v1, settings):
    settings.OPENAI_API_KEY = ""  # the provider candidate fails
    job = comparison(
        "multi_arm",
        top_k=4,
        candidates=[*CANDIDATES, {"label": "P", "backend": "openai", "base_model": "gpt-4o-mini"}],
    )

    assert job.candidates.get(label="P").status == "failed"
    ranked = [c.model_version for c in job.candidates.filter(rank__isnull=False).order_by("rank")]
    assert [version for _, version in job.experiment.arm_versions()] == [live_v1, *ranked]


def test_an_inconclusive_multi_arm_test_keeps_the_job_candidates_own_figures(
    comparison, live_v1, alice, django_capture_on_commit_callbacks
):
    """No winner: the job keeps the offline best, so its A/B figures (what the reviewer reads, and the
    deployment's baseline) must be that candidate's arm, not the arm with the highest rate."""
    job = comparison("multi_arm", top_k=2)
    first = job.candidates.get(rank=1)
    experiment = job.experiment
    own = {
        **RESULTS,
        "arm": "variant",
        "variantSuccessRate": 0.58,
        "improvement": -0.03,
        "significant": False,
    }
    best = {
        **RESULTS,
        "arm": "variant2",
        "variantSuccessRate": 0.63,
        "improvement": 0.05,
        "significant": False,
    }
    analysis = {
        "multi_arm": True,
        "winner": None,
        "ab_test_results": best,  # the headline describes the best arm
        "ab_test_results_by_arm": {"variant": own, "variant2": best},
    }
    _conclude(
        experiment,
        django_capture_on_commit_callbacks,
        decision="inconclusive",
        decision_reason="no arm decided",
        last_analysis=analysis,
    )
    job.refresh_from_db()

    assert job.status == S.AWAITING_APPROVAL
    assert job.new_model_version == first.model_version
    assert job.ab_test_results["arm"] == "variant"
    assert job.ab_test_results["improvement"] == -0.03

    services.job_approve(job=job, user=alice, confirm_no_decision=True)

    first.model_version.refresh_from_db()
    assert first.model_version.metrics["baseline_success_rate"] == 0.58


def test_a_candidate_found_clearly_worse_offline_is_not_put_before_customers(comparison):
    job = comparison("multi_arm", top_k=3)
    first, second, third = (job.candidates.get(rank=r) for r in (1, 2, 3))
    assert comparison_service.experiment_variants(job) == [
        first.model_version,
        second.model_version,
        third.model_version,
    ]
    second.evaluation = {
        **second.evaluation,
        "report": {**second.evaluation["report"], "clearly_worse": True},
    }
    second.save(update_fields=["evaluation"])

    assert comparison_service.experiment_variants(job) == [first.model_version, third.model_version]
