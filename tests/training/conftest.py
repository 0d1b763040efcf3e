"""Fixtures for the orchestrator tests: a live local v1, datasets on storage, feedback, jobs in any state."""

from __future__ import annotations

import itertools
import json
import threading

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone

from assistants.backends.local import LocalRetrievalModel
from assistants.models import Assistant, Deployment, ModelVersion
from assistants.services import deployment_make_live
from feedback.models import Feedback
from feedback.services import feedback_submit, interaction_log
from training.demo_data import FAQ, launch_faq
from training.models import TrainingDataset, TrainingJob
from training.trainers.local import save_version_model

_seq = itertools.count(1)


def train_local(
    assistant: Assistant, questions: list[str], answers: list[str], *, live: bool = False
) -> ModelVersion:
    model = LocalRetrievalModel.fit(questions, answers)
    version = save_version_model(
        model=model, assistant=assistant, base_version=None, metrics={"train_examples": model.n_examples}
    )
    if live:
        deployment_make_live(version=version, reason=Deployment.Reason.INITIAL)
        version.refresh_from_db()
        assistant.refresh_from_db()
    return version


@pytest.fixture
def live_v1(assistant) -> ModelVersion:
    """The shop's v1, trained on the launch FAQ and live."""
    questions, answers = launch_faq()
    return train_local(assistant, questions, answers, live=True)


def chat_line(question: str, answer: str, system: str = "You help shop customers.") -> str:
    return json.dumps(
        {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
        }
    )


def make_dataset(
    assistant: Assistant, train: list[tuple[str, str]], validation: list[tuple[str, str]]
) -> TrainingDataset:
    n = next(_seq)
    train_path = default_storage.save(
        f"datasets/test/{n}-train.jsonl", ContentFile("\n".join(chat_line(q, a) for q, a in train).encode())
    )
    val_path = default_storage.save(
        f"datasets/test/{n}-validation.jsonl",
        ContentFile("\n".join(chat_line(q, a) for q, a in validation).encode()),
    )
    return TrainingDataset.objects.create(
        assistant=assistant,
        format="chat_completion",
        train_file=train_path,
        validation_file=val_path,
        train_count=len(train),
        validation_count=len(validation),
    )


def all_faq_pairs() -> list[tuple[str, str]]:
    """Every (customer question, true answer), FAQ wording and paraphrases."""
    return [(q, item["answer"]) for item in FAQ for q in [item["question"], *item["paraphrases"]]]


def split_pairs() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Paraphrases split so every topic has training and validation questions."""
    train, validation = [], []
    for item in FAQ:
        questions = [item["question"], *item["paraphrases"]]
        for i, q in enumerate(questions):
            (validation if i % 3 == 2 else train).append((q, item["answer"]))
    return train, validation


def give_feedback(
    assistant: Assistant,
    n: int,
    *,
    helpful: bool | None = True,
    rating: int | None = None,
    corrected: bool = False,
    error: str | None = None,
    pairs: list[tuple[str, str]] | None = None,
    version: ModelVersion | None = None,
) -> list[Feedback]:
    """``n`` logged interactions with one feedback item each; ``corrected`` attaches the true answer."""
    pairs = pairs or all_faq_pairs()
    rows = []
    for i in range(n):
        question, truth = pairs[i % len(pairs)]
        response = truth if helpful else "Sorry, I do not know."
        logged = interaction_log(
            assistant=assistant,
            request_id=f"t-{next(_seq)}",
            messages=[{"role": "user", "content": question}],
            response=response,
            model_version=version,
            error=error,
            user_ref=f"u{i}",
        )
        data = {"helpful": helpful, "rating": rating, "confidence": 0.9}
        if corrected:
            data["corrected_answer"] = truth
        rows.append(feedback_submit(interaction=logged.interaction, data=data).feedback)
    return rows


def make_job(assistant: Assistant, status: str = TrainingJob.Status.PENDING, **fields) -> TrainingJob:
    now = timezone.now()
    values = dict(
        assistant=assistant,
        trigger=TrainingJob.Trigger.MANUAL,
        status=status,
        created_at=now,
        updated_at=now,
        deadline_at=now + timezone.timedelta(hours=1),
    )
    values.update(fields)
    return TrainingJob.objects.create(**values)


@pytest.fixture
def reviewer(alice):
    return alice


@pytest.fixture
def enqueued(monkeypatch) -> list[tuple]:
    """What was handed to the worker, as (task, *args): django-q2's ``async_task`` records instead of
    running the task (sync mode would run the whole job inside the test). Tasks enqueued on commit
    arrive only inside ``django_capture_on_commit_callbacks(execute=True)`` or a transactional test."""
    calls: list[tuple] = []
    monkeypatch.setattr(
        "django_q.tasks.async_task", lambda func, *args, **kwargs: calls.append((func, *args))
    )
    return calls


def race(n: int, fn) -> list:
    """Run ``fn`` in ``n`` threads at once, each on its own database connection; results or exceptions."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = fn()
        except Exception as exc:  # collected for the assertions
            results[i] = exc
        finally:
            connection.close()  # this thread's own connection; left open it would block dropping the test DB

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results
