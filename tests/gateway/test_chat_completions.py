"""POST /v1/chat/completions: the OpenAI-compatible gateway, driven by the real ``openai`` SDK."""

from __future__ import annotations

import hashlib

import openai
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from abtesting.models import Experiment
from assistants import backends
from assistants.backends.local import LocalRetrievalModel
from assistants.models import ApiKey
from assistants.services import api_key_create, deployment_make_live, model_version_create
from feedback.models import Feedback, Interaction
from tests.fake_openai import FakeOpenAIServer

URL = "/v1/chat/completions"
FAQ = {
    "How do I reset my password?": "Click 'Forgot password' on the login page.",
    "Where is my order?": "Open Orders and click Track.",
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    backends.clear_model_cache()
    yield
    backends.clear_model_cache()


def _local_version(assistant, name: str, faq: dict[str, str]):
    data = LocalRetrievalModel.fit(list(faq), list(faq.values())).to_bytes()
    artifact = default_storage.save(f"models/{assistant.slug}/{name}.pkl", ContentFile(data))
    return model_version_create(
        assistant=assistant,
        name=name,
        backend="local",
        artifact=artifact,
        artifact_sha256=hashlib.sha256(data).hexdigest(),
    )


@pytest.fixture
def live(assistant):
    version = _local_version(assistant, "shop-v1", FAQ)
    deployment_make_live(version=version, reason="initial")
    return version


def _client(raw_key: str | None) -> APIClient:
    client = APIClient()
    if raw_key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def _ask(text: str, **extra) -> dict:
    return {"model": "shop", "messages": [{"role": "user", "content": text}], **extra}


# -- through the real SDK, over HTTP ------------------------------------------------------------------


@pytest.fixture
def sdk(transactional_db, live_server, live, ingest_key):
    # Closing the client closes its keep-alive sockets, so the live server's request threads end and
    # release their database connections (PostgreSQL refuses to drop a test database still in use).
    url = live_server.url + "/v1"
    with openai.OpenAI(base_url=url, api_key=ingest_key, max_retries=0, timeout=20) as client:
        yield client


def test_the_openai_sdk_gets_an_answer_that_is_logged(sdk, live):
    completion = sdk.chat.completions.create(
        model="shop",
        messages=[{"role": "user", "content": "where is my order?"}],
        user="cust-42",
    )

    assert completion.object == "chat.completion"
    assert completion.model == "shop-v1"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Open Orders and click Track."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens > 0
    interaction = Interaction.objects.get()
    assert completion.id == f"chatcmpl-{interaction.pk}"
    assert completion.model_extra["interaction_id"] == interaction.pk
    assert completion._request_id == interaction.request_id
    assert interaction.model_version == live
    assert interaction.user_ref == "cust-42"
    assert interaction.response == "Open Orders and click Track."
    assert interaction.messages == [{"role": "user", "content": "where is my order?"}]
    assert interaction.latency_ms is not None and interaction.error is None


def test_the_client_request_id_makes_retries_safe(sdk):
    kwargs = dict(
        model="shop", messages=[{"role": "user", "content": "reset password"}], metadata={"request_id": "r-1"}
    )

    first = sdk.chat.completions.create(**kwargs)
    second = sdk.chat.completions.create(**kwargs)

    assert first.id == second.id
    assert first.choices[0].message.content == second.choices[0].message.content
    assert Interaction.objects.get().request_id == "r-1"


def test_a_wrong_key_raises_the_sdks_authentication_error(transactional_db, live_server, live):
    with (
        openai.OpenAI(base_url=live_server.url + "/v1", api_key="tl_in_wrong", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.chat.completions.create(model="shop", messages=[{"role": "user", "content": "hi"}])

    assert caught.value.code == "invalid_api_key"
    assert "Unknown API key" in caught.value.message
    assert not Interaction.objects.exists()


def test_an_unknown_assistant_raises_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])

    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


# -- behaviour, through the test client ---------------------------------------------------------------


@pytest.mark.django_db
def test_it_hands_off_when_the_model_is_unsure(ingest, live):
    response = ingest.post(URL, _ask("Can you write me a poem about cheese?"), format="json")

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == backends.HANDOFF_TEXT
    assert Interaction.objects.get().response == backends.HANDOFF_TEXT


@pytest.mark.django_db
def test_it_answers_with_the_users_experiment_arm_and_logs_it(ingest, assistant, live):
    variant = _local_version(assistant, "shop-v2", {"Where is my order?": "It ships tomorrow."})
    experiment = Experiment.objects.create(
        assistant=assistant, control=live, variant=variant, traffic_split=0.5
    )

    bodies = [
        ingest.post(URL, _ask("where is my order", user=f"u-{i}"), format="json").json() for i in range(30)
    ]

    answers = {"control": "Open Orders and click Track.", "variant": "It ships tomorrow."}
    models = {"control": "shop-v1", "variant": "shop-v2"}
    for body in bodies:
        assert body["experiment"] == experiment.pk
        assert body["choices"][0]["message"]["content"] == answers[body["arm"]]
        assert body["model"] == models[body["arm"]]
    assert {b["arm"] for b in bodies} == {"control", "variant"}
    logged = Interaction.objects.filter(experiment_id=experiment.pk)
    assert logged.count() == 30
    assert logged.filter(arm="variant", model_version=variant).count() == sum(
        b["arm"] == "variant" for b in bodies
    )


@pytest.mark.django_db
def test_the_interaction_id_is_good_for_feedback(ingest, live):
    body = ingest.post(URL, _ask("where is my order"), format="json").json()

    response = ingest.post(
        "/api/v1/feedback",
        {"assistant": "shop", "interaction_id": body["interaction_id"], "helpful": True},
        format="json",
    )

    assert response.status_code == 201, response.json()
    feedback = response.json()
    assert feedback["interaction_id"] == body["interaction_id"]
    assert (feedback["kind"], feedback["helpful"], feedback["success"]) == ("thumbs", True, True)
    stored = Feedback.objects.get(pk=feedback["id"])
    assert stored.interaction.response == body["choices"][0]["message"]["content"]


@pytest.mark.django_db
def test_a_backend_failure_is_logged_and_answered_in_openai_shape(ingest, live):
    default_storage.delete(live.artifact)

    response = ingest.post(URL, _ask("where is my order", metadata={"request_id": "r-9"}), format="json")

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "api_error" and error["code"] == "backend_error"
    assert "missing from storage" in error["message"]
    interaction = Interaction.objects.get(request_id="r-9")
    assert "missing from storage" in interaction.error
    assert interaction.model_version == live
    assert response["x-interaction-id"] == str(interaction.pk)
    assert response["x-should-retry"] == "false"  # the SDK would otherwise log three failures


@pytest.mark.django_db
def test_it_answers_through_an_openai_backend(ingest, assistant, settings):
    with FakeOpenAIServer(time_limit=60) as fake:
        settings.OPENAI_BASE_URL = fake.url + "/v1"
        settings.OPENAI_API_KEY = "sk-test"
        version = model_version_create(
            assistant=assistant, name="shop-ft", backend="openai", provider_model="gpt-4o-mini"
        )
        deployment_make_live(version=version, reason="initial")

        body = ingest.post(URL, _ask("Where is my order?"), format="json").json()

    assert body["choices"][0]["message"]["content"] == "[gpt-4o-mini] You asked: Where is my order?"
    assert body["usage"]["prompt_tokens"] > 0
    assert Interaction.objects.get().model_version == version


@pytest.mark.django_db
def test_it_404s_while_nothing_is_live(ingest, assistant):
    response = ingest.post(URL, _ask("hi"), format="json")

    assert response.status_code == 404
    assert "no live model version" in response.json()["error"]["message"]
    assert not Interaction.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model", "required"),
        ({"model": "shop", "messages": []}, "messages", "empty"),
        (
            {"model": "shop", "messages": [{"role": "robot", "content": "hi"}]},
            "messages",
            "role must be one of",
        ),
        ({"model": "shop", "messages": [{"role": "system", "content": "x"}]}, "messages", "role 'user'"),
        ({"model": "shop", "messages": [{"role": "user", "content": {"a": 1}}]}, "messages", "text parts"),
        (
            {"model": "shop", "messages": [{"role": "user", "content": "hi"}], "metadata": {"request_id": 5}},
            "metadata",
            "request_id",
        ),
    ],
)
def test_it_rejects_bad_input_in_openai_shape(ingest, live, body, param, fragment):
    response = ingest.post(URL, body, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]


@pytest.mark.django_db
def test_it_accepts_content_as_text_parts(ingest, live):
    body = _ask("")
    body["messages"][0]["content"] = [{"type": "text", "text": "where is my order"}]

    response = ingest.post(URL, body, format="json")

    assert response.status_code == 200
    assert Interaction.objects.get().messages == [{"role": "user", "content": "where is my order"}]


@pytest.mark.django_db
def test_it_rejects_a_request_id_reused_for_other_messages(ingest, live):
    ingest.post(URL, _ask("where is my order", metadata={"request_id": "r-1"}), format="json")

    response = ingest.post(URL, _ask("reset my password", metadata={"request_id": "r-1"}), format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "request_id_conflict"


@pytest.mark.django_db
def test_it_rejects_missing_and_wrong_scope_keys(client_anon, reader, live):
    anonymous = client_anon.post(URL, _ask("hi"), format="json")
    read_only = reader.post(URL, _ask("hi"), format="json")

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    assert read_only.status_code == 403
    assert "ingest" in read_only.json()["error"]["message"]


@pytest.mark.django_db
def test_a_key_bound_to_another_assistant_is_refused(other_assistant, live):
    _, raw = api_key_create(scope=ApiKey.Scope.INGEST, assistant=other_assistant)

    response = _client(raw).post(URL, _ask("hi"), format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


@pytest.mark.django_db
def test_it_rejects_get(ingest, live):
    response = ingest.get(URL)

    assert response.status_code == 405
    assert "error" in response.json()


@pytest.mark.django_db
def test_malformed_json_is_a_bad_request(ingest, live):
    response = ingest.generic("POST", URL, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert "could not parse" in response.json()["error"]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        # Raw JSON: json.dumps would escape the same way; APIClient's renderer cannot encode "\ud800".
        (
            '{"model": "shop", "messages": [{"role": "user", "content": "hi\\u0000there"}]}',
            "'messages[0].content': This text contains a NUL",
        ),
        ('{"model": "shop", "messages": [{"role": "user", "content": "hi \\ud800"}]}', "unpaired surrogate"),
        (
            '{"model": "shop", "messages": [{"role": "user", "content": "hi"}], '
            '"metadata": {"request_id": "a\\u0000b"}}',
            "'metadata.request_id': This text contains a NUL",
        ),
    ],
)
def test_it_rejects_text_the_database_cannot_store_in_openai_shape(ingest, live, raw, fragment):
    response = ingest.post(URL, raw, content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and fragment in error["message"]
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_the_answer_carries_the_feedback_token_a_browser_widget_needs(ingest, assistant, live):
    from feedback.tokens import feedback_token
    from tests.conftest import client_for

    body = ingest.post(URL, _ask("Where is my order?"), format="json").json()
    assert body["feedback_token"] == feedback_token(body["interaction_id"])

    _, raw = api_key_create(scope="ingest", allowed_origins=["https://shop.example"])
    thumbs = {"interaction_id": body["interaction_id"], "helpful": True, "assistant": "shop"}
    widget = client_for(raw)
    sent = widget.post(
        "/api/v1/feedback", {**thumbs, "feedback_token": body["feedback_token"]}, format="json"
    )
    assert sent.status_code == 201, sent.content
