"""POST /v1/chat/completions with ``stream: true``: OpenAI's chunk format, driven by the ``openai`` SDK."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta

import openai
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from assistants import backends
from assistants.backends.local import LocalRetrievalModel
from assistants.services import deployment_make_live, model_version_create
from feedback.models import Feedback, Interaction
from feedback.services import interaction_log
from gateway.services import GatewayError, StreamEnd, chat_completion_stream
from tests.fake_openai import FakeOpenAIServer

URL = "/v1/chat/completions"
ANSWER = "Open Orders and click Track; every shipped order has a tracking link."
FAQ = {
    "Where is my order?": ANSWER,
    "How do I reset my password?": "Click 'Forgot password' on the login page.",
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    backends.clear_model_cache()
    yield
    backends.clear_model_cache()


@pytest.fixture
def live(assistant):
    data = LocalRetrievalModel.fit(list(FAQ), list(FAQ.values())).to_bytes()
    artifact = default_storage.save(f"models/{assistant.slug}/shop-v1.pkl", ContentFile(data))
    version = model_version_create(
        assistant=assistant,
        name="shop-v1",
        backend="local",
        artifact=artifact,
        artifact_sha256=hashlib.sha256(data).hexdigest(),
    )
    deployment_make_live(version=version, reason="initial")
    return version


@pytest.fixture
def fake_provider(settings):
    with FakeOpenAIServer(time_limit=60) as fake:
        settings.OPENAI_BASE_URL = fake.url + "/v1"
        settings.OPENAI_API_KEY = "sk-test"
        yield fake


@pytest.fixture
def provider_live(assistant, fake_provider):
    version = model_version_create(
        assistant=assistant, name="shop-ft", backend="openai", provider_model="gpt-4o-mini"
    )
    deployment_make_live(version=version, reason="initial")
    return version


@pytest.fixture
def sdk(transactional_db, live_server, ingest_key):
    # Closing the client closes its keep-alive sockets, so the live server's request threads end and
    # release their database connections (PostgreSQL refuses to drop a test database still in use).
    with openai.OpenAI(base_url=live_server.url + "/v1", api_key=ingest_key, max_retries=0, timeout=20) as c:
        yield c


def _ask(text: str, **extra) -> dict:
    return {"model": "shop", "messages": [{"role": "user", "content": text}], **extra}


def _events(response) -> list:
    """The ``data:`` payloads of an event-stream response (JSON decoded, ``[DONE]`` kept as text)."""
    body = b"".join(response.streaming_content).decode()
    assert body.endswith("\n\n")
    events = []
    for block in body.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


# -- the OpenAI SDK against the running server ----------------------------------------------------------


def test_the_sdk_streams_an_answer_that_is_logged_once_it_ends(sdk, live):
    stream = sdk.chat.completions.create(
        model="shop", messages=[{"role": "user", "content": "where is my order?"}], user="cust-7", stream=True
    )
    chunks = list(stream)

    interaction = Interaction.objects.get()
    assert {c.id for c in chunks} == {f"chatcmpl-{interaction.pk}"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {"shop-v1"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    pieces = [c.choices[0].delta.content or "" for c in chunks]
    assert len([p for p in pieces if p]) == len(ANSWER.split())  # in word-sized chunks, not one block
    assert "".join(pieces) == ANSWER
    assert all(c.usage is None for c in chunks)
    assert interaction.response == ANSWER
    assert interaction.user_ref == "cust-7" and interaction.model_version == live
    assert interaction.error is None
    assert 0 <= interaction.first_token_ms <= interaction.latency_ms


def test_include_usage_adds_a_last_chunk_with_the_token_counts(sdk, live):
    stream = sdk.chat.completions.create(
        model="shop",
        messages=[{"role": "user", "content": "where is my order?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == len(ANSWER.split())
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_feedback_about_a_streamed_answer_lands_on_its_interaction(sdk, live, ingest):
    chunks = list(
        sdk.chat.completions.create(
            model="shop", messages=[{"role": "user", "content": "where is my order"}], stream=True
        )
    )
    interaction_id = chunks[0].model_extra["interaction_id"]

    response = ingest.post(
        "/api/v1/feedback",
        {"assistant": "shop", "interaction_id": interaction_id, "helpful": False, "rating": 2},
        format="json",
    )

    assert response.status_code == 201, response.json()
    feedback = Feedback.objects.get()
    assert feedback.interaction_id == interaction_id
    assert chunks[0].id == f"chatcmpl-{interaction_id}"
    assert feedback.interaction.response == ANSWER


def test_a_provider_stream_is_relayed_as_it_arrives(sdk, provider_live, fake_provider):
    fake_provider.stream_hold = threading.Event()  # the provider sends one word, then waits
    stream = sdk.chat.completions.create(
        model="shop",
        messages=[{"role": "user", "content": "Where is my order?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    try:
        first = next(stream)
        second = next(stream)
        held_back = not fake_provider.stream_hold.is_set()
    finally:
        fake_provider.stream_hold.set()
    rest = list(stream)

    assert first.choices[0].delta.role == "assistant"
    assert second.choices[0].delta.content == "[gpt-4o-mini]"
    assert held_back  # the first word reached the client before the provider sent the second
    text = "".join(c.choices[0].delta.content or "" for c in [first, second, *rest] if c.choices)
    assert text == "[gpt-4o-mini] You asked: Where is my order?"
    # The provider's own count, passed on: it includes the system prompt the gateway added (4 + 4 words).
    assert (rest[-1].usage.prompt_tokens, rest[-1].usage.completion_tokens) == (8 + 8 + 3, 7)
    sent = fake_provider.requests_to("POST", "/v1/chat/completions")[0][2]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["messages"][0] == {"role": "system", "content": "You help shop customers."}
    interaction = Interaction.objects.get()
    assert interaction.response == text and interaction.model_version == provider_live
    assert interaction.first_token_ms <= interaction.latency_ms


def test_a_provider_failure_mid_stream_ends_with_an_error_event_and_is_logged(
    sdk, provider_live, fake_provider
):
    fake_provider.stream_fail_after = 2
    stream = sdk.chat.completions.create(
        model="shop", messages=[{"role": "user", "content": "Where is my order?"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "[gpt-4o-mini] You"
    assert caught.value.code == "backend_error"
    assert "mid-stream" in caught.value.message
    interaction = Interaction.objects.get()
    assert interaction.response == "[gpt-4o-mini] You"  # what the customer saw
    assert "The provider" in interaction.error
    assert interaction.latency_ms is not None


def test_a_provider_that_refuses_before_streaming_gets_a_plain_error(sdk, assistant, fake_provider):
    version = model_version_create(
        assistant=assistant, name="shop-ft", backend="openai", provider_model="ft:x"
    )
    deployment_make_live(version=version, reason="initial")

    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="shop", messages=[{"role": "user", "content": "hi"}], stream=True)

    assert caught.value.status_code == 502
    assert caught.value.code == "backend_error"
    interaction = Interaction.objects.get()
    assert "404" in interaction.error and interaction.response == ""


# -- the wire format and edge cases, through the test client -------------------------------------------


@pytest.mark.django_db
def test_it_answers_an_event_stream_ending_with_done(ingest, live):
    response = ingest.post(URL, _ask("where is my order", stream=True), format="json")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    interaction = Interaction.objects.get()
    assert response["x-interaction-id"] == str(interaction.pk)
    events = _events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    for chunk in chunks:
        assert chunk["interaction_id"] == interaction.pk
        assert chunk["request_id"] == interaction.request_id
        assert chunk["experiment"] is None and chunk["arm"] == ""
        assert "usage" not in chunk


@pytest.mark.django_db
def test_the_chunks_carry_the_same_metadata_as_a_plain_answer(ingest, live):
    plain = ingest.post(URL, _ask("where is my order", metadata={"request_id": "a"}), format="json").json()
    streamed = _events(
        ingest.post(URL, _ask("where is my order", stream=True, metadata={"request_id": "b"}), format="json")
    )[0]

    shared = set(plain) - {"object", "choices", "usage"}
    assert shared == set(streamed) - {"object", "choices"}
    assert streamed["interaction_id"] == plain["interaction_id"] + 1


@pytest.mark.django_db
def test_a_repeated_request_id_streams_the_logged_answer_again(ingest, live):
    first = _events(
        ingest.post(URL, _ask("where is my order", stream=True, metadata={"request_id": "r"}), format="json")
    )
    again = _events(
        ingest.post(URL, _ask("where is my order", stream=True, metadata={"request_id": "r"}), format="json")
    )

    assert Interaction.objects.count() == 1
    assert again == first


# -- a stream whose process died: the lease -----------------------------------------------------------


def _abandoned(assistant, request_id: str, text: str, *, age_seconds: float) -> Interaction:
    """What a process that died mid-stream leaves: the interaction logged when its stream opened, never
    completed, begun ``age_seconds`` ago."""
    assistant.refresh_from_db()  # its live version
    logged = interaction_log(
        assistant=assistant, request_id=request_id, messages=_ask(text)["messages"], response=""
    ).interaction
    began = timezone.now() - timedelta(seconds=age_seconds)
    Interaction.objects.filter(pk=logged.pk).update(created_at=began)
    return logged


@pytest.mark.django_db
def test_a_request_id_still_streaming_is_refused_with_409_and_when_to_retry(
    ingest, assistant, live, settings
):
    settings.OPENAI_TIMEOUT = 1  # the lease: 10 timeouts for the answer + 2 = 12 s
    _abandoned(assistant, "r-1", "hi", age_seconds=4)

    response = ingest.post(URL, _ask("hi", stream=True, metadata={"request_id": "r-1"}), format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "request_in_progress"
    assert 7 <= int(response["Retry-After"]) <= 8
    assert f"in {response['Retry-After']} s" in error["message"]
    assert "is still being answered" in error["message"] and "Retry after" in error["message"]
    assert Interaction.objects.get().response == ""


@pytest.mark.django_db
@pytest.mark.parametrize("stream", [True, False])
def test_a_retry_after_the_lease_answers_the_abandoned_interaction_once(
    ingest, assistant, live, settings, stream
):
    settings.OPENAI_TIMEOUT = 1
    abandoned = _abandoned(assistant, "r-2", "where is my order", age_seconds=13)

    body = _ask("where is my order", stream=stream, metadata={"request_id": "r-2"})
    response = ingest.post(URL, body, format="json")

    assert response.status_code == 200
    if stream:
        events = _events(response)
        assert events[-1] == "[DONE]"
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"])
        assert {e["interaction_id"] for e in events[:-1]} == {abandoned.pk}
    else:
        text = response.json()["choices"][0]["message"]["content"]
        assert response.json()["interaction_id"] == abandoned.pk
    assert text == ANSWER
    interaction = Interaction.objects.get()  # the same row, answered: stored once
    assert interaction.pk == abandoned.pk and interaction.response == ANSWER
    assert interaction.error is None and interaction.latency_ms is not None
    assert interaction.model_version == live
    assert timezone.now() - interaction.created_at < timedelta(seconds=5)  # its retry's start
    # Another retry now replays the answer.
    again = ingest.post(URL, _ask("where is my order", metadata={"request_id": "r-2"}), format="json")
    assert again.json()["choices"][0]["message"]["content"] == ANSWER
    assert Interaction.objects.count() == 1


@pytest.mark.django_db
def test_of_two_retries_after_the_lease_one_answers_and_the_other_waits_for_its_new_lease(
    ingest, assistant, live, settings
):
    settings.OPENAI_TIMEOUT = 1
    _abandoned(assistant, "r-3", "where is my order", age_seconds=60)

    first = chat_completion_stream(
        assistant=assistant, messages=_ask("where is my order")["messages"], request_id="r-3"
    )
    second = ingest.post(URL, _ask("where is my order", metadata={"request_id": "r-3"}), format="json")
    events = list(first.events)

    assert second.status_code == 409
    assert 11 <= int(second["Retry-After"]) <= 12  # the whole lease of the first retry
    assert "".join(e for e in events if isinstance(e, str)) == ANSWER
    assert Interaction.objects.get().response == ANSWER


@pytest.mark.django_db
def test_a_retry_after_the_lease_whose_backend_fails_is_logged_on_the_same_row(
    ingest, assistant, fake_provider, settings
):
    version = model_version_create(
        assistant=assistant, name="shop-ft", backend="openai", provider_model="ft:x"
    )
    deployment_make_live(version=version, reason="initial")
    settings.OPENAI_TIMEOUT = 1
    abandoned = _abandoned(assistant, "r-4", "hi", age_seconds=13)

    response = ingest.post(URL, _ask("hi", metadata={"request_id": "r-4"}), format="json")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "backend_error"
    assert response["x-interaction-id"] == str(abandoned.pk)
    interaction = Interaction.objects.get()
    assert "404" in interaction.error and interaction.response == ""


@pytest.mark.django_db
def test_an_abandoned_stream_whose_version_was_deleted_is_a_404_once_its_lease_is_over(
    ingest, assistant, live, settings
):
    settings.OPENAI_TIMEOUT = 1
    _abandoned(assistant, "r-5", "hi", age_seconds=13)
    Interaction.objects.update(model_version=None)

    response = ingest.post(URL, _ask("hi", metadata={"request_id": "r-5"}), format="json")

    assert response.status_code == 404
    assert "logged without a model version" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_a_stream_is_cut_off_at_its_deadline_so_it_never_outlives_its_lease(ingest, live, settings):
    settings.OPENAI_TIMEOUT = 1e-9  # a deadline no answer can meet

    events = _events(ingest.post(URL, _ask("where is my order", stream=True), format="json"))

    assert "[DONE]" not in events
    error = events[-1]["error"]
    assert error["code"] == "backend_error" and "took longer than" in error["message"]
    interaction = Interaction.objects.get()
    assert "took longer than" in interaction.error and interaction.latency_ms is not None


@pytest.mark.django_db
def test_a_customer_who_hangs_up_leaves_an_errored_interaction_with_what_they_saw(assistant, live):
    assistant.refresh_from_db()
    stream = chat_completion_stream(assistant=assistant, messages=_ask("where is my order")["messages"])
    first = next(stream.events)
    stream.events.close()

    interaction = Interaction.objects.get()
    assert interaction.response == first == "Open"
    assert interaction.error == "The client closed the stream before the answer ended."


@pytest.mark.django_db
def test_the_service_yields_deltas_then_the_end(assistant, live):
    assistant.refresh_from_db()
    stream = chat_completion_stream(assistant=assistant, messages=_ask("where is my order")["messages"])
    events = list(stream.events)

    assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "stop"
    assert "".join(events[:-1]) == ANSWER


@pytest.mark.django_db
def test_nothing_live_is_a_plain_404_before_any_stream(ingest, assistant):
    response = ingest.post(URL, _ask("hi", stream=True), format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    with pytest.raises(GatewayError):
        chat_completion_stream(assistant=assistant, messages=_ask("hi")["messages"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"stream_options": {"include_usage": True}}, "only allowed with stream=true"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "include_usage must be true or false"),
        ({"stream": True, "stream_options": "usage"}, "dictionary"),
        ({"stream": "sometimes"}, "boolean"),
    ],
)
def test_bad_stream_options_are_a_bad_request(ingest, live, extra, fragment):
    response = ingest.post(URL, _ask("hi", **extra), format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert fragment in error["message"]
    assert error["param"] in ("stream", "stream_options")
    assert not Interaction.objects.exists()
