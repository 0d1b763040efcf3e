"""The local trainer: learns the dataset on top of the live version, stores the artifact, honest metrics."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from assistants.backends import load_local_model
from training.models import TrainingJob
from training.trainers import get_trainer
from training.trainers.base import TrainingOutcome
from training.trainers.local import LocalTrainer, read_chat_jsonl

from .conftest import make_dataset, make_job, split_pairs

pytestmark = pytest.mark.django_db


def test_get_trainer_knows_the_backends():
    assert isinstance(get_trainer("local"), LocalTrainer)
    with pytest.raises(ValueError, match="Unknown training backend 'tpu'"):
        get_trainer("tpu")


def test_it_trains_a_candidate_version_with_honest_metrics(assistant, live_v1):
    train, validation = split_pairs()
    dataset = make_dataset(assistant, train, validation)
    job = make_job(assistant, TrainingJob.Status.TRAINING, dataset=dataset, base_version=live_v1)
    outcome = LocalTrainer().start(job)
    assert outcome.state == TrainingOutcome.SUCCEEDED
    version = outcome.model_version
    assert version.status == "candidate"
    assert version.base_version == live_v1
    assert version.name == "shop-v2"
    assert version.artifact == "models/shop/shop-v2.pkl"
    assert default_storage.exists(version.artifact)
    metrics = outcome.metrics
    assert metrics["train_examples"] == len(train)
    assert metrics["validation_examples"] == len(validation)
    assert 0 < metrics["validation_accuracy"] <= 1.0  # held-out paraphrases: honest, not perfect
    assert 0 < metrics["coverage"] <= 1
    assert "loss" not in " ".join(metrics)
    assert version.metrics == metrics


def test_the_new_version_keeps_what_the_live_version_knew(assistant, live_v1):
    dataset = make_dataset(assistant, [("Do you sell gift cards?", "Yes, from 10 to 200.")], [])
    job = make_job(assistant, TrainingJob.Status.TRAINING, dataset=dataset, base_version=live_v1)
    version = LocalTrainer().start(job).model_version
    model = load_local_model(version)
    assert model.answer("How can I track my order?").source == "fallback"
    assert model.answer("Do you sell gift cards?").text == "Yes, from 10 to 200."


def test_an_empty_training_split_fails_with_a_reason(assistant):
    dataset = make_dataset(assistant, [], [])
    job = make_job(assistant, TrainingJob.Status.TRAINING, dataset=dataset)
    outcome = LocalTrainer().start(job)
    assert outcome.state == TrainingOutcome.FAILED
    assert "no examples" in outcome.error


def test_it_reads_question_and_reference_from_chat_lines(assistant):
    dataset = make_dataset(assistant, [("Where is my order?", "In transit.")], [])
    [(prompt, question, answer)] = list(read_chat_jsonl(dataset.train_file))
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert (question, answer) == ("Where is my order?", "In transit.")


def test_a_tiny_validation_split_keeps_the_inherited_threshold(assistant, live_v1):
    from assistants.backends import load_local_model

    train, validation = split_pairs()
    dataset = make_dataset(assistant, train, validation[:3])
    job = make_job(assistant, TrainingJob.Status.TRAINING, dataset=dataset, base_version=live_v1)
    outcome = LocalTrainer().start(job)
    assert outcome.metrics["threshold"] == load_local_model(live_v1).threshold
    assert outcome.metrics["threshold_source"].startswith("kept from the base")
    assert outcome.metrics["validation_examples"] == 3
    assert outcome.metrics["coverage"] is not None


def _candidate(job: TrainingJob, settings: dict):
    from training.models import JobCandidate

    return JobCandidate.objects.create(job=job, position=1, label="X", backend="local", settings=settings)


def _validation_heavy_job(assistant, live_v1) -> TrainingJob:
    """Enough held-out paraphrases (at least MIN_TUNING_EXAMPLES) for the threshold strategies to differ."""
    from .conftest import all_faq_pairs

    pairs = all_faq_pairs()
    train, validation = pairs[::2], pairs[1::2]
    dataset = make_dataset(assistant, train, validation)
    return make_job(assistant, TrainingJob.Status.TRAINING, dataset=dataset, base_version=live_v1)


def test_a_candidates_threshold_strategy_changes_how_its_model_answers(assistant, live_v1):
    from training.trainers.local import MIN_TUNING_EXAMPLES

    job = _validation_heavy_job(assistant, live_v1)
    assert job.dataset.validation_count >= MIN_TUNING_EXAMPLES
    tuned = LocalTrainer().start(_candidate(job, {})).metrics
    covered = LocalTrainer().start(_candidate_at(job, 2, {"threshold": "coverage", "target_coverage": 1.0}))
    fixed = LocalTrainer().start(_candidate_at(job, 3, {"threshold": "fixed", "threshold_value": 0.99}))

    assert tuned["threshold_source"] == "tuned on the validation split"
    assert covered.metrics["threshold_source"] == "set to answer 100% of the validation split"
    assert covered.metrics["coverage"] == 1.0 and tuned["coverage"] < 1.0
    assert (
        fixed.metrics["threshold"] == 0.99
        and fixed.metrics["threshold_source"] == "fixed by the candidate's settings"
    )
    assert fixed.metrics["coverage"] < tuned["coverage"]
    # Tuning maximises validation accuracy: no other strategy beats it on the split it was tuned on.
    assert tuned["validation_accuracy"] >= covered.metrics["validation_accuracy"]
    assert tuned["validation_accuracy"] >= fixed.metrics["validation_accuracy"]
    # The stored model answers at that threshold.
    assert load_local_model(fixed.model_version).threshold == 0.99


def _candidate_at(job: TrainingJob, position: int, settings: dict):
    from training.models import JobCandidate

    return JobCandidate.objects.create(
        job=job, position=position, label=f"X{position}", backend="local", settings=settings
    )


def test_a_candidates_features_are_the_models(assistant, live_v1):
    job = _validation_heavy_job(assistant, live_v1)

    outcome = LocalTrainer().start(_candidate(job, {"features": "char"}))

    assert outcome.metrics["features"] == "char"
    assert load_local_model(outcome.model_version).features == "char"


def test_a_single_job_trains_with_the_defaults(assistant, live_v1):
    job = _validation_heavy_job(assistant, live_v1)
    job.options = {"features": "char"}  # not a setting of single jobs: ignored
    outcome = LocalTrainer().start(job)
    assert outcome.metrics["features"] == "word+char"
    assert outcome.metrics["threshold_source"] == "tuned on the validation split"
