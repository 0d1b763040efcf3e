"""A comparison of provider candidates against the fake OpenAI-compatible server (tests/fake_openai.py, the
real SDK): each candidate its own provider job and hyperparameters, trained concurrently within the
provider's concurrency limit (``TRAINING_PROVIDER_CONCURRENCY``), found again after a restart by its own
metadata."""

from __future__ import annotations

import pytest

from tests.fake_openai import FakeOpenAIServer
from tests.training.conftest import make_dataset, make_job, split_pairs
from training.models import JobCandidate, JobEvent, TrainingJob
from training.services import job_advance, job_cancel
from training.trainers import openai as openai_trainer
from training.trainers.openai import OpenAITrainer
from training.trainers.slots import provider_url

pytestmark = pytest.mark.django_db
S = TrainingJob.Status


@pytest.fixture
def fake(settings, monkeypatch):
    # Poll as often as the test advances the job (the trainer waits 30 s between polls otherwise).
    monkeypatch.setattr(openai_trainer, "POLL_INTERVAL", 0.0)
    with FakeOpenAIServer(time_limit=120) as server:
        settings.OPENAI_BASE_URL = server.url + "/v1"
        settings.OPENAI_API_KEY = "sk-test"
        yield server


def _comparison(assistant, live_v1, *specs) -> TrainingJob:
    """A comparison job in ``training`` on a dataset of the FAQ's paraphrases, with these candidates."""
    train, validation = split_pairs()
    job = make_job(
        assistant,
        S.TRAINING,
        backend="openai",
        base_version=live_v1,
        dataset=make_dataset(assistant, train, validation),
        options={"comparison": {"online": "best_ab", "top_k": 2}, "skip_ab_test": True},
    )
    for position, (label, settings) in enumerate(specs, 1):
        JobCandidate.objects.create(
            job=job,
            position=position,
            label=label,
            backend="openai",
            base_model="gpt-4o-mini-2024-07-18",
            settings=settings,
        )
    return job


def _advance_until_trained(job: TrainingJob, limit: int = 20) -> TrainingJob:
    for _ in range(limit):
        job_advance(job=job)
        job.refresh_from_db()
        if job.status != S.TRAINING:
            return job
    raise AssertionError("the comparison never finished training")


def test_two_provider_candidates_train_concurrently(fake, assistant, live_v1, settings):
    settings.TRAINING_PROVIDER_CONCURRENCY = 2
    job = _comparison(assistant, live_v1, ("E1", {"n_epochs": 1}), ("E2", {"n_epochs": 2}))

    job = _advance_until_trained(job)

    assert fake.max_active_jobs == 2  # both provider jobs were running at the same time
    assert job.status not in (S.TRAINING, S.FAILED), job.error
    e1, e2 = job.candidates.order_by("position")
    assert (e1.status, e2.status) == ("succeeded", "succeeded")
    # Each candidate its own provider job, hyperparameters, metrics and version.
    assert e1.provider_job_id != e2.provider_job_id
    created = [r[2] for r in fake.requests_to("POST", "/v1/fine_tuning/jobs")]
    assert [c["method"]["supervised"]["hyperparameters"] for c in created] == [
        {"n_epochs": 1},
        {"n_epochs": 2},
    ]
    assert [c["metadata"] for c in created] == [
        {"trainloop_job": str(job.pk), "trainloop_candidate": str(e1.pk)},
        {"trainloop_job": str(job.pk), "trainloop_candidate": str(e2.pk)},
    ]
    assert fake.jobs[e1.provider_job_id].total_steps * 2 == fake.jobs[e2.provider_job_id].total_steps
    assert e1.model_version != e2.model_version
    assert e1.model_version.provider_model.startswith("ft:gpt-4o-mini-2024-07-18:fake-org:shop:")
    assert len(e1.metrics["loss_curve"]) == e1.metrics["total_steps"]
    assert len(e2.metrics["loss_curve"]) == e2.metrics["total_steps"] == 2 * e1.metrics["total_steps"]
    # The dataset was uploaded once and shared.
    assert len(fake.requests_to("POST", "/v1/files")) == 2
    # The provider's events are on the job's timeline, each under its candidate, with its label.
    for candidate in (e1, e2):
        provider_events = JobEvent.objects.filter(candidate=candidate).exclude(provider_event_id="")
        assert provider_events.count() == len(fake.jobs[candidate.provider_job_id].events)
        assert all(
            m.startswith(f"{candidate.label}: ") for m in provider_events.values_list("message", flat=True)
        )
    assert job.candidates.filter(rank__isnull=False).count() == 2
    assert job.new_model_version in (e1.model_version, e2.model_version)


def test_with_a_limit_of_one_the_provider_sees_one_job_at_a_time(fake, assistant, live_v1, settings):
    settings.TRAINING_PROVIDER_CONCURRENCY = 1
    job = _comparison(assistant, live_v1, ("E1", {"n_epochs": 1}), ("E2", {"n_epochs": 2}))

    job = _advance_until_trained(job)

    assert fake.max_active_jobs == 1
    assert len(fake.jobs) == 2
    assert set(job.candidates.values_list("status", flat=True)) == {"succeeded"}
    waited = job.events.filter(message__startswith="E2: Waiting for a provider slot: 1 of 1 fine-tuning jobs")
    assert waited.count() == 1  # said once, however often it was polled


def test_the_limit_counts_single_provider_jobs_too(fake, assistant, other_assistant, live_v1, settings):
    settings.TRAINING_PROVIDER_CONCURRENCY = 1
    # Another assistant's single provider job holds the only slot at this provider.
    single = make_job(
        other_assistant, S.TRAINING, backend="openai", options={"openai": {"provider_url": provider_url()}}
    )
    job = _comparison(assistant, live_v1, ("E1", {"n_epochs": 1}), ("E2", {"n_epochs": 2}))

    job_advance(job=job)

    assert not fake.jobs
    assert set(job.candidates.values_list("status", flat=True)) == {"pending"}
    job.refresh_from_db()
    assert job.status == S.TRAINING
    TrainingJob.objects.filter(pk=single.pk).update(status=S.EVALUATING)  # it finished: the slot is free
    JobCandidate.objects.filter(job=job).update(next_poll_at=None)

    job_advance(job=job)

    assert len(fake.jobs) == 1
    assert list(job.candidates.values_list("status", flat=True)) == ["training", "pending"]


def test_a_restarted_candidate_finds_its_own_provider_job_not_its_siblings(
    fake, assistant, live_v1, settings
):
    settings.TRAINING_PROVIDER_CONCURRENCY = 2
    job = _comparison(assistant, live_v1, ("E1", {"n_epochs": 1}), ("E2", {"n_epochs": 2}))
    job_advance(job=job)
    e1, e2 = job.candidates.order_by("position")
    created = e2.provider_job_id
    JobCandidate.objects.filter(pk=e2.pk).update(provider_job_id="", status="pending")  # died before saving
    e2.refresh_from_db()
    e2.job = job

    OpenAITrainer().start(e2)

    e2.refresh_from_db()
    assert e2.provider_job_id == created != e1.provider_job_id
    assert len(fake.jobs) == 2


def test_cancelling_a_comparison_cancels_its_candidates_provider_jobs(
    fake, assistant, live_v1, alice, settings
):
    settings.TRAINING_PROVIDER_CONCURRENCY = 2
    fake.hang_job = True
    job = _comparison(assistant, live_v1, ("E1", {"n_epochs": 1}), ("E2", {"n_epochs": 2}))
    job_advance(job=job)

    job_cancel(job=job, user=alice)

    for candidate in job.candidates.all():
        assert fake.jobs[candidate.provider_job_id].obj["status"] == "cancelled"
        assert candidate.status == "failed" and candidate.error == "Stopped: the job ended (cancelled)."
        assert job.events.filter(
            message=f"{candidate.label}: Cancelled provider job {candidate.provider_job_id}."
        )
