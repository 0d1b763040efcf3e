"""The embedded trainer: fits the local retrieval model on the dataset, on top of the live version."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from assistants.backends.local import LocalRetrievalModel
from assistants.backends.quality import CORRECT_AT, answer_quality
from assistants.models import ModelVersion
from assistants.services import model_version_create, next_version_name
from training.comparison_spec import LocalSettings
from training.pipeline.erasure import dataset_ready
from training.trainers.base import Target, Trainer, TrainingOutcome, as_subject


def read_chat_jsonl(path: str) -> Iterator[tuple[list[dict], str, str]]:
    """(prompt messages, user question, reference answer) per line of a chat-completion JSONL file.

    The question is the last user message; the reference is the last assistant message; the prompt is
    everything before that assistant message.
    """
    if not path:
        return
    with default_storage.open(path, "rb") as fh:
        for raw in fh:
            line = raw.decode("utf-8").strip()
            if not line:
                continue
            messages = json.loads(line).get("messages") or []
            last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
            if last is None:
                continue
            prompt = messages[:last]
            question = next((m.get("content", "") for m in reversed(prompt) if m.get("role") == "user"), "")
            yield prompt, str(question), str(messages[last].get("content", ""))


def read_pairs(path: str) -> tuple[list[str], list[str]]:
    questions: list[str] = []
    answers: list[str] = []
    for _, question, answer in read_chat_jsonl(path):
        questions.append(question)
        answers.append(answer)
    return questions, answers


def load_version_model(version: ModelVersion) -> LocalRetrievalModel:
    """The fitted model of a local version (cached per process by assistants.backends, sha256 checked)."""
    from assistants.backends import load_local_model

    return load_local_model(version)


def save_version_model(
    *, model: LocalRetrievalModel, assistant, base_version: ModelVersion | None, metrics: dict
) -> ModelVersion:
    """Store the artifact at ``models/<assistant>/<version>.pkl`` and register a candidate version."""
    data = model.to_bytes()
    digest = hashlib.sha256(data).hexdigest()
    for attempt in range(5):
        name = next_version_name(assistant)
        if attempt:
            name = f"{name}-{attempt + 1}"
        if ModelVersion.objects.filter(assistant=assistant, name=name).exists():
            continue
        path = default_storage.save(f"models/{assistant.slug}/{name}.pkl", ContentFile(data))
        try:
            with transaction.atomic():
                return model_version_create(
                    assistant=assistant,
                    name=name,
                    backend=ModelVersion.Backend.LOCAL,
                    artifact=path,
                    artifact_sha256=digest,
                    base_version=base_version,
                    metrics=metrics,
                )
        except IntegrityError:  # another job took the name between our check and insert
            default_storage.delete(path)
    raise RuntimeError(f"Could not find a free version name for '{assistant.slug}'.")


# Fewer validation examples than this cannot tune the answer threshold (see LocalTrainer.start).
MIN_TUNING_EXAMPLES = 20


def measure(model: LocalRetrievalModel, questions: list[str], answers: list[str]) -> dict:
    """Accuracy and coverage of ``model`` at its current threshold (same definitions as tune_threshold)."""
    n = len(questions)
    if not n:
        return {
            "validation_accuracy": None,
            "coverage": None,
            "answered_accuracy": None,
            "threshold": model.threshold,
            "validation_examples": 0,
        }
    replies = model.answer_many(questions)
    answered = sum(r.text is not None for r in replies)
    right = sum(answer_quality(r.text, ref) >= CORRECT_AT for r, ref in zip(replies, answers, strict=True))
    return {
        "validation_accuracy": right / n,
        "coverage": answered / n,
        "answered_accuracy": right / answered if answered else None,
        "threshold": model.threshold,
        "validation_examples": n,
    }


class LocalTrainer(Trainer):
    """Trains in ``start`` (seconds for thousands of examples) and returns the finished candidate.

    Metrics are honest: validation accuracy (answer_quality ≥ CORRECT_AT on held-out examples), coverage
    (share answered at the chosen threshold), the threshold and example counts. There is no loss to report.

    A comparison's candidate may set ``LocalSettings`` (training/comparison_spec.py): how the answer
    threshold is chosen (tuned for accuracy on the validation split, set for a target coverage, or fixed)
    and which features compare questions. A single job uses the defaults.
    """

    backend = ModelVersion.Backend.LOCAL

    def start(self, target: Target) -> TrainingOutcome:
        subject = as_subject(target)
        options = LocalSettings.from_dict(subject.settings) if subject.candidate else LocalSettings()
        dataset = dataset_ready(subject.dataset)  # rebuilt first if an erased customer is in it
        questions, answers = read_pairs(dataset.train_file)
        if not questions:
            return TrainingOutcome(state=TrainingOutcome.FAILED, error="The training split has no examples.")
        val_q, val_a = read_pairs(dataset.validation_file)
        base_version = subject.base_version
        base = None
        if (
            base_version is not None
            and base_version.backend == ModelVersion.Backend.LOCAL
            and base_version.artifact
        ):
            base = load_version_model(base_version)
        model = LocalRetrievalModel.fit(questions, answers, base=base, features=options.features)
        threshold_source = _choose_threshold(model, options, val_q, val_a)
        tuned = measure(model, val_q, val_a)
        model.metrics = dict(tuned)
        metrics = {
            "validation_accuracy": tuned["validation_accuracy"],
            "coverage": tuned["coverage"],
            "answered_accuracy": tuned.get("answered_accuracy"),
            "threshold": tuned["threshold"],
            "threshold_source": threshold_source,
            "features": model.features,
            "train_examples": model.n_examples,
            "fallback_examples": model.n_fallback_examples,
            "validation_examples": tuned["validation_examples"],
        }
        version = save_version_model(
            model=model, assistant=subject.assistant, base_version=base_version, metrics=metrics
        )
        return TrainingOutcome(state=TrainingOutcome.SUCCEEDED, model_version=version, metrics=metrics)


def _choose_threshold(
    model: LocalRetrievalModel, options: LocalSettings, val_q: list[str], val_a: list[str]
) -> str:
    """Set the model's answer threshold as ``options`` say; returns how it was chosen, in words."""
    if options.threshold == "fixed":
        model.threshold = float(options.threshold_value)
        return "fixed by the candidate's settings"
    if len(val_q) < MIN_TUNING_EXAMPLES:
        # A handful of examples cannot choose a threshold: ties push it to "answer only exact matches".
        # Keep the inherited one and report accuracy and coverage at it, honestly.
        return f"kept from the base (fewer than {MIN_TUNING_EXAMPLES} validation examples)"
    if options.threshold == "coverage":
        model.threshold = model.threshold_for_coverage(val_q, float(options.target_coverage))
        return f"set to answer {options.target_coverage:.0%} of the validation split"
    model.tune_threshold(val_q, val_a)
    return "tuned on the validation split"
