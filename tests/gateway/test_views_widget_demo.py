"""The feedback widget's demo page: a real answer of the demo assistant, with the widget and its key."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils.html import escape

from assistants.models import ApiKey
from assistants.services import api_key_revoke, assistant_create
from feedback.models import Feedback, Interaction
from feedback.services import interaction_log
from feedback.tokens import feedback_token
from tests.conftest import client_for
from training.demo import demo_ensure

URL = reverse("gateway-widget-demo")
QUESTION = "How can I track my order?"


@pytest.fixture
def demo(db):
    return demo_ensure()


def _ask(client, question: str = QUESTION):
    return client.post(URL, {"question": question})


def _attribute(html: str, name: str) -> str:
    return re.search(rf'{name}="([^"]*)"', html).group(1)


def test_it_asks_the_demo_assistant_and_shows_the_answer_with_the_widget(client, bob, demo):
    client.force_login(bob)

    asked = _ask(client)
    interaction = Interaction.objects.get()
    page = client.get(asked["Location"])

    assert asked.status_code == 302 and asked["Location"] == f"{URL}?interaction={interaction.pk}"
    assert interaction.assistant == demo and interaction.question == QUESTION
    assert (
        interaction.request_id.startswith("widget-demo-") and interaction.user_ref == f"widget-demo:{bob.pk}"
    )
    assert interaction.model_version == demo.live_version and interaction.response
    html = page.content.decode()
    assert page.status_code == 200
    assert escape(interaction.response) in html
    assert _attribute(html, "data-trainloop-request-id") == interaction.request_id
    assert _attribute(html, "data-feedback-token") == feedback_token(interaction.pk)
    assert 'src="/static/widget/feedback.js"' in html
    key = ApiKey.objects.get(hashed_key=ApiKey.hash(_attribute(html, "data-key")))
    assert key.is_publishable and key.assistant == demo and key.scope == "ingest"


def test_the_widget_can_send_feedback_with_what_the_page_gives_it(client, bob, demo):
    client.force_login(bob)
    html = client.get(_ask(client)["Location"]).content.decode()
    widget = client_for(_attribute(html, "data-key"))
    item = {
        "assistant": "demo",
        "request_id": _attribute(html, "data-trainloop-request-id"),
        "kind": "thumbs",
        "helpful": True,
        "feedback_token": _attribute(html, "data-feedback-token"),
    }

    response = widget.post("/api/v1/feedback", item, format="json", HTTP_ORIGIN="http://testserver")

    assert response.status_code == 201, response.json()
    assert Feedback.objects.get().interaction == Interaction.objects.get()
    # The key only sends feedback: it cannot log interactions or chat.
    chat = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    assert widget.post("/v1/chat/completions", chat, format="json").status_code == 403


def test_the_page_shows_the_same_key_on_every_visit(client, bob, demo):
    client.force_login(bob)
    first = client.get(_ask(client)["Location"]).content.decode()
    second = client.get(_ask(client, "Do you ship internationally?")["Location"]).content.decode()

    assert _attribute(first, "data-key") == _attribute(second, "data-key")
    assert ApiKey.objects.count() == 1


def test_a_revoked_key_is_not_shown_again(client, bob, demo):
    client.force_login(bob)
    location = _ask(client)["Location"]
    raw = _attribute(client.get(location).content.decode(), "data-key")
    api_key_revoke(key=ApiKey.objects.get())

    html = client.get(location).content.decode()

    assert raw not in html and 'id="demo-widget"' not in html
    assert '<script src="/static/widget/feedback.js"' not in html and "was revoked" in html
    assert ApiKey.objects.count() == 1


def test_it_shows_no_token_for_interactions_not_asked_here(client, bob, demo):
    other = interaction_log(
        assistant=demo, request_id="cust-1", messages=[{"role": "user", "content": "Hi"}], response="Hello."
    ).interaction
    client.force_login(bob)

    for raw in (str(other.pk), "x", "9" * 40):
        page = client.get(URL, {"interaction": raw})
        assert page.status_code == 200
        assert feedback_token(other.pk) not in page.content.decode()
        assert "data-trainloop-request-id" not in page.content.decode()


def test_without_the_demo_assistant_it_asks_nothing(client, bob, assistant):
    client.force_login(bob)

    page = client.get(URL)
    asked = _ask(client)

    assert page.status_code == 200 and "no demo assistant" in page.content.decode()
    assert asked.status_code == 302
    assert "no demo assistant" in client.get(asked["Location"]).content.decode()
    assert not Interaction.objects.exists()


def test_a_gateway_refusal_is_shown(client, bob, db):
    assistant_create(slug="demo", name="Demo")  # nothing live
    client.force_login(bob)

    page = client.get(_ask(client)["Location"])

    assert "has no live model version yet" in page.content.decode()
    assert not Interaction.objects.exists()


@pytest.mark.parametrize("question", ["", "   ", "x" * 1001])
def test_it_refuses_a_question_it_cannot_ask(client, bob, demo, question):
    client.force_login(bob)

    page = client.get(_ask(client, question)["Location"])

    assert "Write a question of 1 to 1000 characters" in page.content.decode()
    assert not Interaction.objects.exists()


def test_it_requires_login(client, demo):
    assert client.get(URL).status_code == 302
    assert _ask(client).status_code == 302
    assert not Interaction.objects.exists()


def test_it_refuses_a_user_without_the_view_permission(client, django_user_model, demo):
    client.force_login(django_user_model.objects.create_user("mallory", password="x"))

    assert client.get(URL).status_code == 403
    assert _ask(client).status_code == 403
    assert not Interaction.objects.exists()


def test_it_rejects_put(client, bob, demo):
    client.force_login(bob)
    assert client.put(URL).status_code == 405
