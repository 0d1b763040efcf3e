from __future__ import annotations

import pytest

from feedback.models import Feedback
from feedback.services import interaction_log

URL = "/api/v1/feedback"


@pytest.fixture
def interaction(assistant):
    return interaction_log(
        assistant=assistant,
        request_id="req-1",
        messages=[{"role": "user", "content": "Can I return shoes?"}],
        response="Yes, within 30 days.",
    ).interaction


def test_it_stores_thumbs_up_by_request_id(ingest, interaction):
    response = ingest.post(URL, {"assistant": "shop", "request_id": "req-1", "helpful": True}, format="json")
    assert response.status_code == 201, response.content
    row = Feedback.objects.get()
    assert (row.kind, row.helpful, row.success, row.interaction_id) == ("thumbs", True, True, interaction.pk)
    assert response.json()["success"] is True


def test_it_stores_a_rating_with_categories_by_interaction_id(ingest, interaction):
    data = {
        "assistant": "shop",
        "interaction_id": interaction.pk,
        "rating": 3,
        "accuracy": 4,
        "tone": 5,
        "comment": "ok",
        "confidence": 0.8,
    }
    response = ingest.post(URL, data, format="json")
    assert response.status_code == 201
    row = Feedback.objects.get()
    assert (row.kind, row.rating, row.accuracy, row.tone, row.success) == ("category", 3, 4, 5, False)


def test_it_infers_the_kind_of_a_correction(ingest, interaction):
    data = {
        "assistant": "shop",
        "request_id": "req-1",
        "helpful": False,
        "corrected_answer": "Within 60 days.",
    }
    ingest.post(URL, data, format="json")
    assert Feedback.objects.get().kind == "correction"


def test_a_retry_with_the_same_idempotency_key_creates_nothing(ingest, interaction):
    data = {"assistant": "shop", "request_id": "req-1", "rating": 5}
    first = ingest.post(URL, data, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = ingest.post(URL, data, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Feedback.objects.count() == 1


def test_the_same_key_with_another_body_is_a_conflict(ingest, interaction):
    ingest.post(
        URL,
        {"assistant": "shop", "request_id": "req-1", "rating": 5},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    response = ingest.post(
        URL,
        {"assistant": "shop", "request_id": "req-1", "rating": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert response.status_code == 409
    assert "k-1" in response.json()["detail"]
    assert Feedback.objects.get().rating == 5


def test_the_key_may_come_in_the_body(ingest, interaction):
    data = {"assistant": "shop", "request_id": "req-1", "rating": 5, "idempotency_key": "body-key"}
    ingest.post(URL, data, format="json")
    ingest.post(URL, data, format="json")
    assert Feedback.objects.get().idempotency_key == "body-key"


def test_an_unknown_interaction_is_404(ingest, interaction):
    response = ingest.post(URL, {"assistant": "shop", "request_id": "nope", "helpful": True}, format="json")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"rating": 6}, "rating"),
        ({"rating": 0}, "rating"),
        ({"accuracy": 9}, "accuracy"),
        ({"confidence": 1.5, "helpful": True}, "confidence"),
        ({"helpful": "perhaps"}, "helpful"),
        ({"kind": "rating", "helpful": True}, "kind"),
        ({"kind": "teleport", "helpful": True}, "kind"),
        ({}, "non_field_errors"),
    ],
)
def test_it_rejects_bad_fields_with_a_message(ingest, interaction, data, field):
    response = ingest.post(URL, {"assistant": "shop", "request_id": "req-1", **data}, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert Feedback.objects.count() == 0


def test_it_wants_exactly_one_reference(ingest, interaction):
    both = {"assistant": "shop", "request_id": "req-1", "interaction_id": interaction.pk, "helpful": True}
    assert ingest.post(URL, both, format="json").status_code == 400
    neither = {"assistant": "shop", "helpful": True}
    assert ingest.post(URL, neither, format="json").status_code == 400


def test_a_body_that_is_not_an_object_is_400(ingest, interaction):
    assert ingest.post(URL, [1, 2], format="json").status_code == 400


def test_it_needs_a_key(client_anon, interaction):
    assert client_anon.post(URL, {"request_id": "req-1", "helpful": True}, format="json").status_code == 401


def test_a_read_key_cannot_send_feedback(reader, interaction):
    assert (
        reader.post(
            URL, {"assistant": "shop", "request_id": "req-1", "helpful": True}, format="json"
        ).status_code
        == 403
    )


def test_feedback_appears_in_stats(ingest, reader, interaction):
    ingest.post(
        URL,
        {"assistant": "shop", "request_id": "req-1", "rating": 5},
        format="json",
        HTTP_IDEMPOTENCY_KEY="a",
    )
    ingest.post(
        URL,
        {"assistant": "shop", "request_id": "req-1", "rating": 5},
        format="json",
        HTTP_IDEMPOTENCY_KEY="a",
    )
    stats = reader.get("/api/v1/assistants/shop/stats").json()
    assert stats["total_feedback"] == 1
    assert stats["avg_rating"] == 5


def test_a_too_long_idempotency_key_header_is_400(ingest, interaction):
    data = {"assistant": "shop", "request_id": "req-1", "helpful": True}
    response = ingest.post(URL, data, format="json", HTTP_IDEMPOTENCY_KEY="k" * 201)
    assert response.status_code == 400
    assert "at most 200 characters" in response.json()["errors"]["Idempotency-Key"][0]
    assert not Feedback.objects.exists()
    ok = ingest.post(URL, data, format="json", HTTP_IDEMPOTENCY_KEY="k" * 200)
    assert ok.status_code == 201


def test_an_interaction_id_beyond_bigint_is_400(ingest, interaction):
    response = ingest.post(
        URL, {"assistant": "shop", "interaction_id": 10**20, "helpful": True}, format="json"
    )
    assert response.status_code == 400
    assert "interaction_id" in response.json()["errors"]
