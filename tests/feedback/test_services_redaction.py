"""Redaction at ingestion (Assistant.redact_at_ingestion): only the redacted text is ever stored."""

from __future__ import annotations

import pytest

from feedback.models import Feedback, Interaction

pytestmark = pytest.mark.django_db

MESSAGES = [
    {"role": "user", "content": "I'm dana@example.com, card 4111 1111 1111 1111, call +44 20 7946 0958"}
]
RESPONSE = "We wrote to dana@example.com about card 4111 1111 1111 1111."


@pytest.fixture
def redacting(assistant):
    assistant.redact_at_ingestion = True
    assistant.save(update_fields=("redact_at_ingestion",))
    return assistant


def _log(server, request_id: str = "req-1"):
    return server.post(
        "/api/v1/interactions",
        {
            "assistant": "shop",
            "request_id": request_id,
            "user": "cust-1",
            "messages": MESSAGES,
            "response": RESPONSE,
        },
        format="json",
    )


def test_an_interaction_is_stored_redacted(ingest, redacting):
    assert _log(ingest).status_code == 201

    stored = Interaction.objects.get()
    assert stored.messages == [{"role": "user", "content": "I'm <EMAIL>, card <CARD>, call <PHONE>"}]
    assert stored.response == "We wrote to <EMAIL> about card <CARD>."
    assert stored.user_ref == "cust-1"  # the reference is the app's pseudonym, needed for erasure


def test_a_retry_of_a_redacted_interaction_is_still_a_retry(ingest, redacting):
    assert _log(ingest).status_code == 201
    assert _log(ingest).status_code == 200
    assert Interaction.objects.count() == 1


def test_without_the_setting_the_text_is_stored_as_sent(ingest, assistant):
    _log(ingest)
    assert Interaction.objects.get().response == RESPONSE


def test_feedback_text_is_stored_redacted_single_and_in_batches(ingest, redacting):
    _log(ingest)
    single = ingest.post(
        "/api/v1/feedback",
        {
            "assistant": "shop",
            "request_id": "req-1",
            "helpful": False,
            "comment": "Mail me: dana@example.com",
        },
        format="json",
    )
    batch = ingest.post(
        "/api/v1/feedback/batch",
        {
            "items": [
                {"assistant": "shop", "request_id": "req-1", "suggestion": "Call 415-555-0132 instead"},
                {"assistant": "shop", "request_id": "req-1", "rating": 2},
            ]
        },
        format="json",
    )
    assert single.status_code == 201 and batch.status_code == 201, (single.content, batch.content)
    texts = list(Feedback.objects.order_by("id").values_list("comment", "suggestion"))
    assert texts == [("Mail me: <EMAIL>", ""), ("", "Call <PHONE> instead"), ("", "")]


def test_feedback_text_of_other_assistants_is_untouched(ingest, assistant):
    _log(ingest)
    ingest.post(
        "/api/v1/feedback",
        {"assistant": "shop", "request_id": "req-1", "comment": "Mail me: dana@example.com"},
        format="json",
    )
    assert Feedback.objects.get().comment == "Mail me: dana@example.com"


def test_turning_redaction_on_applies_to_the_next_feedback(ingest, assistant):
    _log(ingest)
    first = {"assistant": "shop", "request_id": "req-1", "comment": "Mail me: dana@example.com"}
    assert ingest.post("/api/v1/feedback/batch", {"items": [first]}, format="json").status_code == 201
    assistant.redact_at_ingestion = True
    assistant.save(update_fields=("redact_at_ingestion",))
    second = {**first, "comment": "Or dana@example.org"}
    assert ingest.post("/api/v1/feedback/batch", {"items": [second]}, format="json").status_code == 201
    assert list(Feedback.objects.order_by("id").values_list("comment", flat=True)) == [
        "Mail me: dana@example.com",
        "Or <EMAIL>",
    ]


def test_a_reference_carrying_the_setting_costs_no_query(redacting, django_assert_num_queries):
    from feedback.redaction import feedback_items_redact
    from feedback.selectors import InteractionRef

    interaction = Interaction.objects.create(assistant=redacting, request_id="r", messages=[], response="")
    with django_assert_num_queries(1):  # a model instance does not carry it: the setting is read
        [(_, read, _)] = feedback_items_redact([(interaction, {"comment": "dana@example.com"}, None)])
    carried = InteractionRef(interaction.pk, redacting.pk, True)
    with django_assert_num_queries(0):
        [(_, data, _)] = feedback_items_redact([(carried, {"comment": "dana@example.com"}, None)])
    assert read["comment"] == data["comment"] == "<EMAIL>"
