"""Publishable keys (ingest keys with allowed origins) sit in web pages: they may only send feedback."""

from __future__ import annotations

import pytest

from assistants.models import ApiKey
from assistants.services import (
    api_key_create,
    api_key_publishable_derived,
    api_key_revoke,
    deployment_make_live,
    model_version_create,
)
from feedback.models import Feedback
from feedback.services import interaction_log
from feedback.tokens import feedback_token
from tests.conftest import client_for

SHOP = "https://shop.example"


@pytest.fixture
def publishable(assistant):
    return client_for(api_key_create(scope="ingest", allowed_origins=[SHOP])[1])


@pytest.fixture
def logged(assistant):
    return interaction_log(
        assistant=assistant, request_id="r1", messages=[{"role": "user", "content": "hi"}], response="yo"
    ).interaction


# Copied from the page source and used from curl: no Origin header, so the origin check cannot help.
@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        (
            "post",
            "/api/v1/interactions",
            {
                "assistant": "shop",
                "request_id": "x",
                "response": "",
                "messages": [{"role": "user", "content": "hi"}],
            },
        ),
        ("get", "/api/v1/route", {"assistant": "shop"}),
        ("post", "/v1/chat/completions", {"model": "shop", "messages": [{"role": "user", "content": "hi"}]}),
    ],
)
def test_a_publishable_key_is_refused_on_server_endpoints(publishable, assistant, method, url, body):
    deployment_make_live(version=model_version_create(assistant=assistant, name="shop-v1"), reason="initial")
    kwargs = {"format": "json"} if method == "post" else {}
    response = getattr(publishable, method)(url, body, **kwargs)
    assert response.status_code == 403
    assert "publishable key" in str(response.json())


def test_a_server_ingest_key_still_logs_interactions(ingest, assistant):
    body = {
        "assistant": "shop",
        "request_id": "x",
        "response": "",
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert ingest.post("/api/v1/interactions", body, format="json").status_code == 201


def test_a_publishable_key_still_sends_thumbs_and_suggestions(publishable, logged):
    token = feedback_token(logged.pk)
    thumbs = {
        "assistant": "shop",
        "request_id": "r1",
        "kind": "thumbs",
        "helpful": False,
        "feedback_token": token,
    }
    assert publishable.post("/api/v1/feedback", thumbs, format="json", HTTP_ORIGIN=SHOP).status_code == 201
    idea = {
        "items": [
            {"assistant": "shop", "request_id": "r1", "kind": "improvement", "suggestion": "Shorter"}
            | {"feedback_token": token}
        ]
    }
    assert publishable.post("/api/v1/feedback/batch", idea, format="json").status_code == 201
    assert publishable.get("/api/v1/feedback-prompt", {"assistant": "shop"}).status_code == 200


@pytest.mark.parametrize(
    "item",
    [
        {"corrected_answer": "Poisoned target"},
        {"kind": "correction", "corrected_answer": "Poisoned target"},
        {"helpful": False, "corrected_answer": "Poisoned target"},
    ],
)
def test_a_publishable_key_may_not_send_corrections(publishable, logged, item):
    item = {"assistant": "shop", "request_id": "r1", **item}
    single = publishable.post("/api/v1/feedback", item, format="json")
    batch = publishable.post("/api/v1/feedback/batch", {"items": [item]}, format="json")
    for response in (single, batch):
        assert response.status_code == 403
        assert "may not send corrections" in response.json()["detail"]
    assert not Feedback.objects.exists()


def test_a_server_ingest_key_may_send_corrections(ingest, logged):
    item = {"assistant": "shop", "request_id": "r1", "corrected_answer": "Better"}
    assert ingest.post("/api/v1/feedback", item, format="json").status_code == 201


def test_the_api_docs_page_may_call_the_api_with_its_own_origin(manager):
    # Swagger's "Try it out" sends the site's own Origin; that is not a foreign page using the key.
    assert manager.get("/api/v1/health", HTTP_ORIGIN="http://testserver").status_code == 200
    assert manager.get("/api/v1/health", HTTP_ORIGIN="http://evil.example").status_code == 403


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("https://Shop.example/", "https://shop.example"),
        ("HTTPS://shop.example:443", "https://shop.example"),
        ("http://localhost:8000/checkout?x=1", "http://localhost:8000"),
    ],
)
def test_origins_are_stored_as_browsers_send_them(assistant, typed, stored):
    key, raw = api_key_create(scope="ingest", allowed_origins=[typed])
    assert key.allowed_origins == [stored]
    response = client_for(raw).get("/api/v1/feedback-prompt", {"assistant": "shop"}, HTTP_ORIGIN=stored)
    assert response.status_code == 200


@pytest.mark.parametrize("typed", ["shop.example", "ftp://shop.example", "https://", "https://a b.example"])
def test_it_refuses_values_that_are_not_origins(assistant, typed):
    with pytest.raises(ValueError, match="is not a browser origin: write it as scheme://host"):
        api_key_create(scope="ingest", allowed_origins=[typed])


def test_a_derived_key_is_the_same_on_every_call_and_made_once(assistant, other_assistant):
    first, raw = api_key_publishable_derived(
        purpose="widget-demo", assistant=assistant, allowed_origins=[SHOP]
    )
    again, raw_again = api_key_publishable_derived(
        purpose="widget-demo", assistant=assistant, allowed_origins=[SHOP]
    )
    _, other = api_key_publishable_derived(
        purpose="widget-demo", assistant=other_assistant, allowed_origins=[SHOP]
    )
    _, elsewhere = api_key_publishable_derived(
        purpose="another-page", assistant=assistant, allowed_origins=[SHOP]
    )

    assert raw == raw_again and first == again and ApiKey.objects.count() == 3
    assert len({raw, other, elsewhere}) == 3
    assert raw.startswith("tl_in_") and len(raw) == len(api_key_create(scope="ingest")[1])
    assert first.is_publishable and first.scope == "ingest" and first.assistant == assistant
    assert first.allowed_origins == [SHOP]


def test_a_derived_key_changes_with_the_secret_key_and_stays_revoked(assistant, settings):
    key, raw = api_key_publishable_derived(purpose="widget-demo", assistant=assistant, allowed_origins=[SHOP])
    api_key_revoke(key=key)

    again, raw_again = api_key_publishable_derived(
        purpose="widget-demo", assistant=assistant, allowed_origins=[SHOP]
    )
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    _, rotated = api_key_publishable_derived(
        purpose="widget-demo", assistant=assistant, allowed_origins=[SHOP]
    )

    assert raw_again == raw and not again.is_active
    assert rotated != raw
