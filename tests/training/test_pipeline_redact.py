"""Redaction in dataset_build: on for provider datasets, a policy option for downloads, never the originals
in the stored files (nor in what is uploaded), counts per type in the stats."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.utils import timezone

from assistants.services import deployment_make_live, model_version_create
from feedback.models import Feedback, Interaction
from training.models import RetrainPolicy, TrainingJob
from training.pipeline import dataset_build

pytestmark = pytest.mark.django_db

T0 = timezone.now() - timedelta(days=1)
EMAIL, PHONE, CARD = "dana.fox@example.com", "+44 20 7946 0958", "4111 1111 1111 1111"
ORIGINALS = (EMAIL, PHONE, CARD, "4111111111111111", "dana.fox", "7946 0958")
NO_DEDUP = {"deduplicate": False, "validation_share": 0.0}


def _rows(assistant, n: int = 12) -> None:
    """``n`` good examples; the first carries an email, a phone number and a card number."""
    for k in range(n):
        if k == 0:
            question = f"I'm {EMAIL}, call me on {PHONE}. My card {CARD} was charged twice for order {k}."
            answer = f"Sorry! We refunded card {CARD} and will write to {EMAIL.upper()} today."
        else:
            question, answer = f"Where is parcel {k}?", f"Parcel {k} ships tomorrow."
        i = Interaction.objects.create(
            assistant=assistant,
            request_id=f"r{k}",
            messages=[{"role": "user", "content": question}],
            response=answer,
            created_at=T0 + timedelta(seconds=k),
        )
        Feedback.objects.create(
            interaction=i, assistant=assistant, kind="rating", rating=5, helpful=True, created_at=i.created_at
        )


def _policy(assistant, **fields) -> RetrainPolicy:
    policy, _ = RetrainPolicy.objects.get_or_create(assistant=assistant)
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.save()
    return policy


def _file_text(ds) -> str:
    text = ""
    for path in (ds.train_file, ds.validation_file):
        if path:
            with default_storage.open(path, "rb") as fh:
                text += fh.read().decode()
    return text


def test_a_dataset_for_the_provider_never_contains_the_originals(assistant):
    _policy(assistant, backend="openai")  # redact_for_provider is on by default
    _rows(assistant)

    ds = dataset_build(assistant=assistant, options=NO_DEDUP)

    text = _file_text(ds)
    for original in ORIGINALS:
        assert original.lower() not in text.lower()
    [line] = [json.loads(raw) for raw in text.splitlines() if "<EMAIL>" in raw]
    user, assistant_msg = line["messages"][1]["content"], line["messages"][2]["content"]
    assert user == "I'm <EMAIL>, call me on <PHONE>. My card <CARD> was charged twice for order 0."
    # The same values in the answer get the same placeholders (the email in another case too).
    assert assistant_msg == "Sorry! We refunded card <CARD> and will write to <EMAIL> today."
    assert line["messages"][0]["content"] == "You help shop customers."  # our system prompt is kept
    assert ds.stats["redaction"] == {
        "enabled": True,
        "counts": {"EMAIL": 2, "PHONE": 1, "CARD": 2, "IBAN": 0, "IP": 0},
        "total": 5,
        "examples": 1,
    }
    assert ds.options["redact"] is True


def test_the_file_uploaded_to_the_provider_holds_placeholders_only(assistant, settings):
    from tests import fake_openai as module
    from training.trainers.openai import OpenAITrainer

    _policy(assistant, backend="openai")
    _rows(assistant)
    ds = dataset_build(assistant=assistant, options={"deduplicate": False, "validation_share": 0.0})
    base = model_version_create(assistant=assistant, name="shop-v1", backend="openai", provider_model="m")
    deployment_make_live(version=base, reason="initial")
    job = TrainingJob.objects.create(
        assistant=assistant,
        trigger="manual",
        status="training",
        backend="openai",
        base_model="gpt-4o-mini-2024-07-18",
        base_version=base,
        dataset=ds,
        deadline_at=timezone.now() + timedelta(hours=1),
    )
    with module.FakeOpenAIServer(time_limit=60) as fake:
        settings.OPENAI_BASE_URL = fake.url + "/v1"
        settings.OPENAI_API_KEY = "sk-test"
        assert OpenAITrainer().start(job).state == "running"
        [uploaded] = [f.content.decode() for f in fake.files.values()]
    assert "<EMAIL>" in uploaded and "<PHONE>" in uploaded and "<CARD>" in uploaded
    for original in ORIGINALS:
        assert original.lower() not in uploaded.lower()


def test_local_datasets_are_not_redacted_unless_the_policy_says_so(assistant):
    _policy(assistant, backend="local")
    _rows(assistant)

    plain = dataset_build(assistant=assistant, options=NO_DEDUP)
    assert EMAIL in _file_text(plain)
    assert plain.stats["redaction"]["enabled"] is False

    _policy(assistant, redact_downloads=True)
    redacted = dataset_build(assistant=assistant, options=NO_DEDUP)
    assert EMAIL not in _file_text(redacted) and "<EMAIL>" in _file_text(redacted)


def test_an_option_can_ask_for_redaction_but_not_turn_off_what_the_policy_requires(assistant):
    _policy(assistant, backend="local")
    _rows(assistant)
    asked = dataset_build(assistant=assistant, options={**NO_DEDUP, "redact": True})
    assert "<CARD>" in _file_text(asked)

    _policy(assistant, backend="openai")
    with pytest.raises(ValidationError) as exc:
        dataset_build(assistant=assistant, options={**NO_DEDUP, "redact": False})
    assert "requires redaction" in str(exc.value.message_dict["redact"])


def test_custom_patterns_of_the_policy_are_redacted(assistant):
    _policy(assistant, backend="openai", redaction_patterns="ORDER: order \\d+")
    _rows(assistant)
    ds = dataset_build(assistant=assistant, options=NO_DEDUP)
    assert "for <ORDER>." in _file_text(ds)
    assert ds.stats["redaction"]["counts"]["ORDER"] == 1


def test_counts_cover_only_the_examples_written(assistant):
    _policy(assistant, backend="openai")
    _rows(assistant)
    ds = dataset_build(assistant=assistant, options={**NO_DEDUP, "max_examples": 11})  # drops the oldest
    assert ds.stats["redaction"]["total"] == 0 and ds.stats["redaction"]["examples"] == 0


def test_the_api_builds_a_redacted_dataset_on_request(assistant, manager):
    _policy(assistant, backend="local")
    _rows(assistant)
    response = manager.post(
        "/api/v1/datasets",
        {"assistant": "shop", "options": {**NO_DEDUP, "redact": True}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["stats"]["redaction"]["counts"]["EMAIL"] == 2
    download = manager.get(f"/api/v1/datasets/{response.json()['id']}/download")
    body = b"".join(download.streaming_content).decode()
    assert "<EMAIL>" in body and EMAIL not in body


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("redaction_patterns", "ORDER ORD-\\d+", "Line 1"),
        ("redaction_phone_region", "XX", "not a country code"),
    ],
)
def test_the_policy_refuses_redaction_settings_no_build_could_use(assistant, field, value, message):
    policy = _policy(assistant)
    setattr(policy, field, value)
    with pytest.raises(ValidationError) as exc:
        policy.full_clean()
    assert message in str(exc.value.message_dict[field])
