"""assistants.backends: answering with the local model (from storage, cached) and an OpenAI-compatible API."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from assistants import backends
from assistants.backends import HANDOFF_TEXT, BackendError, answer, answer_many
from assistants.backends.local import LocalRetrievalModel
from assistants.backends.openai_chat import ProviderNotConfigured, chat
from assistants.services import model_version_create
from tests.fake_openai import FakeOpenAIServer

pytestmark = pytest.mark.django_db


FAQ = {
    "How do I reset my password?": "Click 'Forgot password' on the login page.",
    "Where is my order?": "Open Orders and click Track.",
    "Do you ship internationally?": "Yes, to over 40 countries.",
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    backends.clear_model_cache()
    yield
    backends.clear_model_cache()


@pytest.fixture
def local_version(assistant):
    data = LocalRetrievalModel.fit(list(FAQ), list(FAQ.values())).to_bytes()
    path = default_storage.save("models/shop/v1.pkl", ContentFile(data))
    return model_version_create(
        assistant=assistant,
        name="shop-v1",
        backend="local",
        artifact=path,
        artifact_sha256=hashlib.sha256(data).hexdigest(),
    )


@pytest.fixture
def fake(settings):
    with FakeOpenAIServer(time_limit=60) as server:
        settings.OPENAI_BASE_URL = server.url + "/v1"
        settings.OPENAI_API_KEY = "sk-test"
        yield server


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_it_answers_with_the_local_model_loaded_from_storage(local_version):
    result = answer(version=local_version, messages=_ask("where is my order"))

    assert result.text == "Open Orders and click Track."
    assert result.source == "model"
    assert result.score > 0.5
    assert result.latency_ms >= 0
    assert result.usage["completion_tokens"] == 5


def test_it_hands_off_politely_when_the_local_model_is_unsure(local_version):
    result = answer(version=local_version, messages=_ask("What is the airspeed of a swallow?"))

    assert result.text == HANDOFF_TEXT
    assert result.abstained


def test_the_hand_off_line_can_be_chosen_by_the_caller(local_version):
    result = answer(
        version=local_version, messages=_ask("quantum chromodynamics"), fallback_text="Ask a human."
    )

    assert result.text == "Ask a human."


def test_it_answers_the_last_user_message(local_version):
    messages = [
        *_ask("Where is my order?"),
        {"role": "assistant", "content": "..."},
        *_ask("do you ship internationally"),
    ]

    assert answer(version=local_version, messages=messages).text == "Yes, to over 40 countries."


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """The artifacts read from storage, in order: a cache hit reads none."""
    paths: list[str] = []
    real_open = default_storage.open
    monkeypatch.setattr(default_storage, "open", lambda *a, **k: paths.append(a[0]) or real_open(*a, **k))
    return paths


def test_it_reads_the_artifact_once_and_then_uses_the_cache(local_version, opened):
    for _ in range(3):
        answer(version=local_version, messages=_ask("where is my order"))

    assert opened == [local_version.artifact]


def test_the_cache_keeps_only_the_most_recently_used_models(assistant, local_version, monkeypatch, opened):
    monkeypatch.setattr(backends, "MODEL_CACHE_SIZE", 2)
    others = [
        model_version_create(
            assistant=assistant,
            name=f"shop-x{i}",
            backend="local",
            artifact=local_version.artifact,
            artifact_sha256=local_version.artifact_sha256,
        )
        for i in range(2)
    ]
    answer(version=local_version, messages=_ask("where is my order"))
    for version in others:
        answer(version=version, messages=_ask("where is my order"))
    answer(version=local_version, messages=_ask("where is my order"))  # evicted: loaded again
    assert len(opened) == 4
    answer(version=others[1], messages=_ask("where is my order"))  # still cached: the most recent two
    answer(version=local_version, messages=_ask("where is my order"))
    assert len(opened) == 4


def test_a_changed_artifact_is_not_served_from_the_cache(local_version):
    answer(version=local_version, messages=_ask("where is my order"))
    data = LocalRetrievalModel.fit(["Where is my order?"], ["It is on its way."]).to_bytes()
    local_version.artifact = default_storage.save("models/shop/v1b.pkl", ContentFile(data))
    local_version.artifact_sha256 = hashlib.sha256(data).hexdigest()

    assert answer(version=local_version, messages=_ask("where is my order")).text == "It is on its way."


def test_a_missing_artifact_is_a_readable_error(local_version):
    default_storage.delete(local_version.artifact)

    with pytest.raises(BackendError, match="missing from storage"):
        answer(version=local_version, messages=_ask("where is my order"))


def test_a_tampered_artifact_is_refused(local_version):
    local_version.artifact_sha256 = "0" * 64

    with pytest.raises(BackendError, match="checksum mismatch"):
        answer(version=local_version, messages=_ask("where is my order"))


def test_answer_many_answers_a_batch_in_order_with_the_local_model(local_version):
    results = answer_many(
        version=local_version,
        conversations=[
            _ask("where is my order"),
            _ask("zebra migration patterns"),
            _ask("reset my password"),
        ],
    )

    assert [r.source for r in results] == ["model", "handoff", "model"]
    assert results[2].text == FAQ["How do I reset my password?"]


def test_it_answers_through_an_openai_compatible_provider(fake, assistant):
    version = model_version_create(
        assistant=assistant, name="shop-ft", backend="openai", provider_model="gpt-4o-mini"
    )

    result = answer(version=version, messages=_ask("Where is my order?"))

    assert result.text == "[gpt-4o-mini] You asked: Where is my order?"
    assert result.source == "openai"
    assert (
        result.usage["total_tokens"] == result.usage["prompt_tokens"] + result.usage["completion_tokens"] > 0
    )
    [(_, _, sent)] = fake.requests_to("POST", "/v1/chat/completions")
    # fine-tuned models were trained with the system prompt, so it is sent when the caller has none
    assert sent["messages"][0] == {"role": "system", "content": "You help shop customers."}
    assert sent["model"] == "gpt-4o-mini"


def test_the_callers_system_prompt_wins(fake, assistant):
    version = model_version_create(
        assistant=assistant, name="shop-ft", backend="openai", provider_model="gpt-4o-mini"
    )

    answer(version=version, messages=[{"role": "system", "content": "Be brief."}, *_ask("hi")])

    [(_, _, sent)] = fake.requests_to("POST", "/v1/chat/completions")
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["messages"][0]["content"] == "Be brief."


def test_answer_many_with_a_provider_keeps_order_and_reports_failed_items(fake, assistant):
    version = model_version_create(
        assistant=assistant,
        name="shop-ft",
        backend="openai",
        provider_model="ft:gpt-4o-mini:fake-org:shop:nope",
    )
    ok = model_version_create(
        assistant=assistant, name="shop-base", backend="openai", provider_model="gpt-4o-mini"
    )

    good = answer_many(version=ok, conversations=[_ask(f"question {i}") for i in range(6)])
    bad = answer_many(version=version, conversations=[_ask("hi")])

    assert [r.text for r in good] == [f"[gpt-4o-mini] You asked: question {i}" for i in range(6)]
    assert bad[0].source == "error"
    assert "404" in bad[0].error and "does not exist" in bad[0].error


def test_answer_many_reads_the_database_only_in_the_calling_thread(fake, assistant):
    from assistants.models import ModelVersion

    created = model_version_create(
        assistant=assistant, name="shop-ft", backend="openai", provider_model="gpt-4o-mini"
    )
    version = ModelVersion.objects.get(pk=created.pk)  # assistant not loaded yet, as in evaluation

    results = answer_many(version=version, conversations=[_ask("a"), _ask("b")])

    assert [r.source for r in results] == ["openai", "openai"]
    sent = [r[2]["messages"][0] for r in fake.requests_to("POST", "/v1/chat/completions")]
    assert sent == [{"role": "system", "content": "You help shop customers."}] * 2


def test_provider_errors_are_backend_errors_with_the_reason(fake, assistant):
    fake.api_key = "the-right-key"

    with pytest.raises(BackendError, match="rejected OPENAI_API_KEY"):
        chat("gpt-4o-mini", _ask("hi"))


def test_it_says_how_to_configure_a_missing_key(settings, assistant):
    settings.OPENAI_API_KEY = ""
    version = model_version_create(
        assistant=assistant, name="shop-ft", backend="openai", provider_model="gpt-4o-mini"
    )

    with pytest.raises(ProviderNotConfigured, match=r"Set OPENAI_API_KEY \(and OPENAI_BASE_URL"):
        answer(version=version, messages=_ask("hi"))
    with pytest.raises(ProviderNotConfigured):
        answer_many(version=version, conversations=[_ask("hi")])
