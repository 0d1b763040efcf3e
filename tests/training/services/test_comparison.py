"""Comparisons end to end on the local trainer: one dataset, every candidate trained on it, ranked with
intervals, the best becomes the job's version; failed candidates; the policy's setting; the decision."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from assistants.models import Deployment
from dashboard.management.commands.simulate import simulate
from training import services, tasks
from training.models import JobCandidate, JobEvent, TrainingDataset, TrainingJob
from training.services import policy_ensure, policy_update

S = TrainingJob.Status
pytestmark = pytest.mark.django_db

THREE_LOCAL = [
    {"label": "A", "backend": "local", "settings": {}},
    {"label": "B", "backend": "local", "settings": {"features": "word"}},
    # Answers only near-exact matches: many validation paraphrases go unanswered, so it ranks last.
    {"label": "C", "backend": "local", "settings": {"threshold": "fixed", "threshold_value": 0.95}},
]


@pytest.fixture
def customers(assistant, live_v1):
    """300 customers' feedback on v1 (with corrections), a third held out for validation, no A/B test."""
    policy_update(
        policy=policy_ensure(assistant=assistant),
        ab_enabled=False,
        auto_deploy_threshold=1.0,  # a reviewer decides, whatever the split (it differs by database)
        validation_share=0.3,
        max_feedback_count=1000,
        eval_min_prompts=30,
    )
    simulate(assistant=assistant, interactions=300, correction_rate=1.0, seed=7)


def _run(assistant, capture, **kwargs) -> TrainingJob:
    with capture(execute=True):
        job = services.trigger_training(assistant=assistant, **kwargs)
    job.refresh_from_db()
    return job


def test_three_local_candidates_train_on_one_dataset_and_are_ranked(
    assistant, live_v1, customers, django_capture_on_commit_callbacks
):
    job = _run(assistant, django_capture_on_commit_callbacks, comparison={"candidates": THREE_LOCAL})

    assert job.status == S.AWAITING_APPROVAL, job.error
    assert TrainingDataset.objects.filter(assistant=assistant).count() == 1  # one build for all
    candidates = list(job.candidates.order_by("position"))
    assert [c.status for c in candidates] == ["succeeded"] * 3
    # Same dataset and split: each learned the same training examples on top of live v1.
    assert len({c.metrics["train_examples"] for c in candidates}) == 1
    assert len({c.metrics["validation_examples"] for c in candidates}) == 1
    assert {c.model_version.base_version_id for c in candidates} == {live_v1.pk}
    assert len({c.model_version_id for c in candidates}) == 3
    # The settings changed how each model answers.
    assert [c.metrics["features"] for c in candidates] == ["word+char", "word", "word+char"]
    assert candidates[2].metrics["threshold"] == 0.95

    assert sorted(c.rank for c in candidates) == [1, 2, 3]
    ranking = job.evaluation["comparison"]
    assert ranking["prompts"] == job.dataset.validation_count > 0
    for entry in ranking["entries"]:
        low, high = entry["score_ci"]
        assert 0 <= low <= entry["score"] <= high <= 1
    assert [e["rank"] for e in ranking["entries"]] == [1, 2, 3]
    scores = [e["score"] for e in ranking["entries"]]
    assert scores == sorted(scores, reverse=True)
    assert ranking["entries"][-1]["label"] == "C"  # the near-exact matcher answers least
    # "Best distinguishable from runner-up" = the paired interval of their difference excludes 0.
    estimate, low, high = ranking["difference"]
    assert estimate == pytest.approx(scores[0] - scores[1])
    assert ranking["distinguishable"] is (low > 0 or high < 0)

    best = next(c for c in candidates if c.rank == 1)
    assert job.new_model_version == best.model_version
    assert job.evaluation["candidate"]["version"] == best.model_version.name
    assert job.options["chosen"]["label"] == best.label
    assert f"candidate {best.label}" in job.options["chosen"]["why"]
    assert job.evaluation_prompts.count() == ranking["prompts"]
    messages = list(job.events.values_list("message", flat=True))
    assert any(m.startswith(f"{best.label}: Trained {best.model_version.name}") for m in messages)
    assert any(m.startswith("Ranked on ") for m in messages)
    assert any(m.startswith(f"Chosen offline: candidate {best.label}") for m in messages)


def test_approving_deploys_the_chosen_candidate_and_says_why(
    assistant, live_v1, customers, alice, django_capture_on_commit_callbacks
):
    job = _run(assistant, django_capture_on_commit_callbacks, comparison={"candidates": THREE_LOCAL})
    chosen = job.new_model_version

    services.job_approve(job=job, user=alice)

    job.refresh_from_db()
    assert job.status == S.DEPLOYED
    assistant.refresh_from_db()
    assert assistant.live_version == chosen
    label = job.options["chosen"]["label"]
    assert job.decision_reason.startswith(f"approved by {alice.username}: deploying candidate {label}")
    assert "offline rank 1 of 3" in job.decision_reason
    deployment = Deployment.objects.get(version=chosen)
    assert f"Chosen: candidate {label}" in deployment.note


def test_a_failed_candidate_does_not_fail_the_comparison(
    assistant, live_v1, customers, settings, django_capture_on_commit_callbacks
):
    settings.OPENAI_API_KEY = ""  # the provider candidate cannot start
    candidates = [*THREE_LOCAL[:2], {"label": "P", "backend": "openai", "base_model": "gpt-4o-mini"}]

    job = _run(assistant, django_capture_on_commit_callbacks, comparison={"candidates": candidates})

    assert job.status == S.AWAITING_APPROVAL, job.error
    failed = job.candidates.get(label="P")
    assert failed.status == "failed" and "Set OPENAI_API_KEY" in failed.error
    assert failed.rank is None and failed.model_version is None
    assert sorted(job.candidates.exclude(label="P").values_list("rank", flat=True)) == [1, 2]
    assert job.events.filter(candidate=failed, message__startswith="P: Failed: Set OPENAI_API_KEY").exists()
    assert job.events.filter(message__contains="Trained 2 of 3 candidates").exists()
    # The dataset was redacted as for any provider-bound dataset.
    assert job.dataset.options["redact"] is True


def test_the_comparison_fails_when_every_candidate_failed(
    assistant, live_v1, customers, settings, django_capture_on_commit_callbacks
):
    settings.OPENAI_API_KEY = ""
    candidates = [
        {"label": "P1", "backend": "openai", "base_model": "gpt-4o-mini", "settings": {"n_epochs": 1}},
        {"label": "P2", "backend": "openai", "base_model": "gpt-4o-mini", "settings": {"n_epochs": 3}},
    ]

    job = _run(assistant, django_capture_on_commit_callbacks, comparison={"candidates": candidates})

    assert job.status == S.FAILED
    assert job.error.startswith("Every candidate failed. P1: Set OPENAI_API_KEY")
    assert "; P2: Set OPENAI_API_KEY" in job.error
    assert set(job.candidates.values_list("status", flat=True)) == {"failed"}


def test_the_policy_setting_makes_a_triggered_job_a_comparison(
    assistant, live_v1, django_capture_on_commit_callbacks
):
    policy = policy_update(
        policy=policy_ensure(assistant=assistant),
        ab_enabled=False,
        auto_deploy_threshold=1.0,  # a reviewer decides, whatever the split (it differs by database)
        compare_candidates=THREE_LOCAL[:2],
        compare_online="multi_arm",
        compare_top_k=2,
    )
    assert policy.compare_candidates[1] == {
        "label": "B",
        "backend": "local",
        "base_model": "",
        "settings": {"features": "word"},
    }
    simulate(assistant=assistant, interactions=150, correction_rate=1.0, seed=3)

    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.check_retraining(assistant.pk)
    job = TrainingJob.objects.get(pk=result["job"])

    assert job.trigger == "threshold"
    assert job.options["comparison"] == {"online": "multi_arm", "top_k": 2}
    assert list(job.candidates.values_list("label", "status")) == [("A", "succeeded"), ("B", "succeeded")]
    assert job.status == S.AWAITING_APPROVAL, job.error


def test_a_manual_job_stays_a_single_job_under_a_comparison_policy(assistant, live_v1):
    policy_update(policy=policy_ensure(assistant=assistant), compare_candidates=THREE_LOCAL[:2])

    job = services.trigger_training(assistant=assistant)

    assert not job.candidates.exists() and "comparison" not in job.options


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"compare_candidates": THREE_LOCAL[:1]}, "compare_candidates", "2 to 6 candidates; 1 given"),
        (
            {"compare_candidates": [THREE_LOCAL[0], {**THREE_LOCAL[0], "label": "Z"}]},
            "compare_candidates",
            "Candidates 'A' and 'Z' are the same trainer",
        ),
        (
            {"compare_candidates": THREE_LOCAL[:2], "compare_online": "multi_arm", "compare_top_k": 3},
            "compare_top_k",
            "top_k (3) cannot exceed the number of candidates (2)",
        ),
        (
            {"compare_candidates": [THREE_LOCAL[0], {"label": "B", "settings": {"threshold": "coverage"}}]},
            "compare_candidates",
            'Candidate 2 (B): threshold "coverage" needs target_coverage',
        ),
    ],
)
def test_the_policy_refuses_a_comparison_no_job_could_run(assistant, values, field, message):
    with pytest.raises(ValidationError) as exc:
        policy_update(policy=policy_ensure(assistant=assistant), **values)

    assert message in " ".join(exc.value.message_dict[field])


def test_cancelling_a_comparison_marks_its_unfinished_candidates(assistant, live_v1, alice):
    job = services.trigger_training(assistant=assistant, comparison={"candidates": THREE_LOCAL[:2]})

    services.job_cancel(job=job, user=alice)

    assert set(job.candidates.values_list("status", "error")) == {
        ("failed", "Stopped: the job ended (cancelled).")
    }
    assert JobCandidate.objects.filter(job=job).count() == 2
    assert not JobEvent.objects.filter(job=job, candidate__isnull=False).exists()
