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
