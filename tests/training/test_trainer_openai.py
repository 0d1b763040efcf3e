"""The openai trainer against a local fake of OpenAI's fine-tuning API (tests/fake_openai.py), real SDK."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from assistants.models import ModelVersion
from assistants.services import deployment_make_live, model_version_create
from tests.fake_openai import FakeOpenAIServer
from training.models import JobEvent, TrainingDataset, TrainingJob
from training.trainers import get_trainer
from training.trainers.openai import OpenAITrainer, describe_job_error

pytestmark = pytest.mark.django_db


QA = [
    ("How do I reset my password?", "Click 'Forgot password' on the login page."),
    ("Where is my order?", "Open Orders and click Track."),
    ("Do you ship abroad?", "Yes, to over 40 countries."),
    ("How do I get a refund?", "Request it within 30 days from the Orders page."),
]


def _jsonl(pairs) -> bytes:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "You help shop customers."},
                {"role": "user", "content": q},
                {"role": "assistant", "content": a},
            ]
        }
        for q, a in pairs
    ]
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


@pytest.fixture
def fake(settings):
    with FakeOpenAIServer(time_limit=60) as server:
        settings.OPENAI_BASE_URL = server.url + "/v1"
        settings.OPENAI_API_KEY = "sk-test"
        yield server


@pytest.fixture
def job(assistant) -> TrainingJob:
    train = default_storage.save("datasets/shop/train.jsonl", ContentFile(_jsonl(QA * 5)))
    valid = default_storage.save("datasets/shop/validation.jsonl", ContentFile(_jsonl(QA[:2])))
    dataset = TrainingDataset.objects.create(
        assistant=assistant,
        format="chat_completion",
        train_file=train,
        validation_file=valid,
        train_count=20,
        validation_count=2,
    )
    base = model_version_create(
        assistant=assistant, name="shop-v1", backend="openai", provider_model="gpt-4o-mini"
    )
    deployment_make_live(version=base, reason="initial")
    return TrainingJob.objects.create(
        assistant=assistant,
        trigger="manual",
        status="training",
        backend="openai",
        base_model="gpt-4o-mini-2024-07-18",
        base_version=base,
        dataset=dataset,
        deadline_at=timezone.now() + timedelta(hours=1),
    )


def _poll_until_done(trainer: OpenAITrainer, job: TrainingJob, limit: int = 10):
    for _ in range(limit):
        outcome = trainer.poll(job)
        job.metrics = {**job.metrics, **outcome.metrics}
        job.save(update_fields=("metrics",))
        if outcome.state != "running":
            return outcome
    raise AssertionError("the provider job never finished")


def test_the_registry_gives_the_openai_trainer():
    assert isinstance(get_trainer("openai"), OpenAITrainer)


def test_it_uploads_both_files_and_creates_the_provider_job(fake, job):
    outcome = OpenAITrainer().start(job)

    assert outcome.state == "running"
    job.refresh_from_db()
    assert job.provider_job_id.startswith("ftjob-")
    uploads = fake.requests_to("POST", "/v1/files")
    assert [u[2]["purpose"] for u in uploads] == ["fine-tune", "fine-tune"]
    [(_, _, created)] = fake.requests_to("POST", "/v1/fine_tuning/jobs")
    assert created["model"] == "gpt-4o-mini-2024-07-18"
    assert created["suffix"] == "shop"
    assert created["seed"] == job.pk
    assert created["validation_file"] and created["training_file"] != created["validation_file"]
    assert created["method"]["type"] == "supervised"


def test_it_registers_the_fine_tuned_model_with_checkpoint_metrics(fake, job):
    trainer = OpenAITrainer()
    trainer.start(job)
    outcome = _poll_until_done(trainer, job)

    assert outcome.state == "succeeded"
    version = outcome.model_version
    assert version.backend == ModelVersion.Backend.OPENAI
    assert version.provider_model.startswith("ft:gpt-4o-mini-2024-07-18:fake-org:shop:")
    assert version.base_version == job.base_version
    assert version.status == ModelVersion.Status.CANDIDATE
    assert version.name == "shop-v2"
    metrics = outcome.metrics
    for name in (
        "train_loss",
        "valid_loss",
        "valid_mean_token_accuracy",
        "full_valid_loss",
        "trained_tokens",
    ):
        assert metrics[name] is not None, name
    curve = metrics["loss_curve"]
    assert [p["step"] for p in curve] == list(range(1, metrics["total_steps"] + 1))
    assert all(p["train_loss"] > 0 and p["valid_loss"] > 0 for p in curve)
    assert len(metrics["checkpoints"]) == 3  # one per epoch, the last three kept


def test_it_records_each_provider_event_once_even_when_polled_again(fake, job):
    trainer = OpenAITrainer()
    trainer.start(job)
    first = _poll_until_done(trainer, job)
    again = trainer.poll(job)  # e.g. a retried task after success

    assert again.state == "succeeded"
    assert again.model_version == first.model_version  # no second version
    assert ModelVersion.objects.filter(provider_model=first.model_version.provider_model).count() == 1
    provider_ids = list(
        JobEvent.objects.filter(job=job)
        .exclude(provider_event_id="")
        .values_list("provider_event_id", flat=True)
    )
    fake_events = fake.jobs[job.provider_job_id].events
    assert sorted(provider_ids) == sorted(e["id"] for e in fake_events)
    assert len(provider_ids) == len(set(provider_ids))
    metric_events = JobEvent.objects.filter(job=job, kind=JobEvent.Kind.METRIC)
    assert metric_events.count() == first.metrics["total_steps"]
    # the timeline reads in the provider's order
    messages = list(
        JobEvent.objects.filter(job=job).exclude(provider_event_id="").values_list("message", flat=True)
    )
    assert messages[0].startswith("Created fine-tuning job")
    assert messages[-1] == "The job has successfully completed"


def test_it_pages_through_long_event_histories(fake, job, monkeypatch):
    from training.trainers import openai as module

    monkeypatch.setattr(module, "EVENT_PAGE", 4)
    trainer = OpenAITrainer()
    trainer.start(job)
    outcome = _poll_until_done(trainer, job)

    recorded = JobEvent.objects.filter(job=job).exclude(provider_event_id="").count()
    assert recorded == len(fake.jobs[job.provider_job_id].events)
    assert any("after" in (r[2] or {}) for r in fake.requests_to("GET", "/v1/fine_tuning/jobs/"))
    assert len(outcome.metrics["loss_curve"]) == outcome.metrics["total_steps"]


def test_the_loss_curve_survives_an_unsaved_poll(fake, job):
    trainer = OpenAITrainer()
    trainer.start(job)
    for _ in range(3):
        trainer.poll(job)  # metrics of these polls are never saved (say the worker died each time)

    outcome = _poll_until_done(trainer, job)

    assert len(outcome.metrics["loss_curve"]) == outcome.metrics["total_steps"]


def test_it_maps_a_provider_failure_to_a_readable_error(fake, job):
    fake.fail_job_with = {
        "code": "invalid_training_file",
        "message": "The file has 3 examples with missing assistant messages.",
        "param": "training_file",
    }
    trainer = OpenAITrainer()
    trainer.start(job)
    outcome = _poll_until_done(trainer, job)

    assert outcome.state == "failed"
    assert outcome.error == (
        "The provider rejected the training file (invalid_training_file): "
        "The file has 3 examples with missing assistant messages. [param: training_file]"
    )
    assert not ModelVersion.objects.filter(backend="openai").exclude(pk=job.base_version_id).exists()


def test_it_fails_readably_when_the_provider_rejects_the_upload(fake, job):
    default_storage.delete(job.dataset.train_file)
    default_storage.save(job.dataset.train_file, ContentFile(b"not json\n"))

    outcome = OpenAITrainer().start(job)

    assert outcome.state == "failed"
    assert "400" in outcome.error and "line 1 is not valid JSON" in outcome.error
    assert not fake.requests_to("POST", "/v1/fine_tuning/jobs")


def test_it_says_how_to_configure_a_missing_key(fake, job, settings):
    settings.OPENAI_API_KEY = ""

    outcome = OpenAITrainer().start(job)

    assert outcome.state == "failed"
    assert "Set OPENAI_API_KEY" in outcome.error


def test_it_asks_for_a_base_model_when_none_is_set(fake, job):
    job.base_model = ""

    outcome = OpenAITrainer().start(job)

    assert outcome.state == "failed"
    assert "set one in the assistant's retrain policy" in outcome.error
    assert not fake.requests


def test_transient_errors_while_polling_back_off_without_losing_the_job(fake, job):
    trainer = OpenAITrainer()
    trainer.start(job)
    # three 5xx/429 in a row exhaust the SDK's two retries on one poll
    fake.transient_failures = {"GET /v1/fine_tuning/jobs/{id}": [500, 503, 429, 502, 500, 500]}

    first = trainer.poll(job)
    second = trainer.poll(job)

    assert (first.state, second.state) == ("running", "running")
    assert second.poll_after == 2 * first.poll_after  # exponential backoff
    job.refresh_from_db()
    assert job.options["openai"]["transient_failures"] == 2
    notes = JobEvent.objects.filter(
        job=job, kind=JobEvent.Kind.NOTE, message__contains="temporarily unavailable"
    )
    assert notes.count() == 2
    outcome = _poll_until_done(trainer, job)  # the provider recovers
    assert outcome.state == "succeeded"
    job.refresh_from_db()
    assert job.options["openai"]["transient_failures"] == 0


def test_a_rate_limited_create_is_retried_without_uploading_twice(fake, job):
    fake.transient_failures = {"POST /v1/fine_tuning/jobs": [429, 429, 429]}
    trainer = OpenAITrainer()

    outcome = trainer.start(job)

    assert outcome.state == "running"
    job.refresh_from_db()
    assert job.provider_job_id == ""
    outcome = trainer.start(job)  # the orchestrator starts again while no provider job exists
    assert outcome.state == "running"
    job.refresh_from_db()
    assert job.provider_job_id
    assert len(fake.requests_to("POST", "/v1/files")) == 2
    assert len(fake.jobs) == 1


def test_backoff_is_capped(fake, job):
    from training.trainers import openai as module

    trainer = OpenAITrainer()
    trainer.start(job)
    job.options["openai"]["transient_failures"] = 30
    job.save(update_fields=("options",))
    fake.transient_failures = {"GET /v1/fine_tuning/jobs/{id}": [500, 500, 500]}

    assert trainer.poll(job).poll_after == module.BACKOFF_CAP


def test_start_after_a_restart_resumes_instead_of_creating_a_second_job(fake, job):
    trainer = OpenAITrainer()
    trainer.start(job)
    job.refresh_from_db()

    outcome = OpenAITrainer().start(job)  # a new worker runs start again

    assert outcome.state == "running"
    assert len(fake.requests_to("POST", "/v1/fine_tuning/jobs")) == 1
    assert len(fake.requests_to("POST", "/v1/files")) == 2


def test_it_finds_a_provider_job_whose_id_was_never_saved(fake, job):
    trainer = OpenAITrainer()
    trainer.start(job)
    created = job.provider_job_id
    TrainingJob.objects.filter(pk=job.pk).update(provider_job_id="")  # the worker died before saving it
    job.refresh_from_db()

    trainer.start(job)

    job.refresh_from_db()
    assert job.provider_job_id == created
    assert len(fake.requests_to("POST", "/v1/fine_tuning/jobs")) == 1


def test_cancel_cancels_the_provider_job(fake, job):
    fake.hang_job = True
    trainer = OpenAITrainer()
    trainer.start(job)
    for _ in range(4):
        assert trainer.poll(job).state == "running"

    trainer.cancel(job)

    assert fake.requests_to("POST", f"/v1/fine_tuning/jobs/{job.provider_job_id}/cancel")
    assert fake.jobs[job.provider_job_id].obj["status"] == "cancelled"
    assert trainer.poll(job).state == "cancelled"


def test_a_timed_out_job_cancels_its_provider_job(fake, job):
    from training.services import job_advance

    fake.hang_job = True
    trainer = OpenAITrainer()
    trainer.start(job)
    trainer.poll(job)
    TrainingJob.objects.filter(pk=job.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))

    job_advance(job=job)

    job.refresh_from_db()
    assert job.status == "failed"
    assert fake.jobs[job.provider_job_id].obj["status"] == "cancelled"
    assert fake.requests_to("POST", f"/v1/fine_tuning/jobs/{job.provider_job_id}/cancel")


def test_cancel_of_a_finished_provider_job_is_harmless(fake, job):
    trainer = OpenAITrainer()
    trainer.start(job)
    _poll_until_done(trainer, job)

    trainer.cancel(job)  # provider answers 400 "already completed"

    assert JobEvent.objects.filter(job=job, message__contains="was not cancelled").exists()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            {"code": "invalid_validation_file", "message": "Bad line 3.", "param": "validation_file"},
            "The provider rejected the validation file (invalid_validation_file): Bad line 3. "
            "[param: validation_file]",
        ),
        (
            {"code": "quota_exceeded", "message": "Out of credits.", "param": None},
            "The provider failed the fine-tuning job (quota_exceeded): Out of credits.",
        ),
        (None, "The provider reported the fine-tuning job as failed without a reason."),
    ],
)
def test_describe_job_error(error, expected):
    assert describe_job_error(error) == expected


def test_the_orchestrator_drives_the_provider_job_to_a_candidate(fake, job):
    from training.services import job_advance

    for _ in range(8):  # each advance is one start or poll (the fake finishes on its 4th retrieve)
        job_advance(job=job)
        job.refresh_from_db()
        if job.status != "training":
            break

    assert job.status not in ("training", "failed"), job.error
    assert job.new_model_version.provider_model.startswith("ft:")
    assert job.metrics["valid_loss"] is not None and job.metrics["loss_curve"]
