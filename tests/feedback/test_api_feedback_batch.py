from __future__ import annotations

import pytest

from feedback.models import Feedback
from feedback.services import interaction_log

URL = "/api/v1/feedback/batch"


@pytest.fixture
def interactions(assistant):
    return [
        interaction_log(
            assistant=assistant,
            request_id=f"req-{i}",
            messages=[{"role": "user", "content": f"question {i}"}],
            response=f"answer {i}",
        ).interaction
        for i in range(3)
    ]


def item(i: int, **extra):
    return {"assistant": "shop", "request_id": f"req-{i}", "rating": 5, "idempotency_key": f"k-{i}", **extra}


def test_it_stores_a_batch(ingest, interactions):
    response = ingest.post(URL, {"items": [item(0), item(1), item(2, helpful=False)]}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["created"] == 3
    assert Feedback.objects.count() == 3


def test_any_invalid_item_stores_nothing_and_names_each_bad_item(ingest, interactions):
    items = [item(0), item(1, rating=9), item(2, confidence=-1)]
    response = ingest.post(URL, {"items": items}, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]["items"]
    assert set(errors) == {"1", "2"}
    assert "rating" in errors["1"] and "confidence" in errors["2"]
    assert Feedback.objects.count() == 0


def test_an_unknown_interaction_is_named_by_index(ingest, interactions):
    response = ingest.post(URL, {"items": [item(0), {**item(1), "request_id": "ghost"}]}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]["items"]) == {"1"}
    assert Feedback.objects.count() == 0


def test_a_retried_batch_creates_nothing_new(ingest, interactions):
    batch = {"items": [item(0), item(1)]}
    first = ingest.post(URL, batch, format="json").json()
    second = ingest.post(URL, batch, format="json").json()
    assert (second["created"], second["replayed"]) == (0, 2)
    assert first["ids"] == second["ids"]
    assert Feedback.objects.count() == 2


def test_a_partly_new_batch_stores_only_the_new_items(ingest, interactions):
    ingest.post(URL, {"items": [item(0)]}, format="json")
    response = ingest.post(URL, {"items": [item(0), item(1)]}, format="json").json()
    assert (response["created"], response["replayed"]) == (1, 1)


def test_a_reused_key_with_another_body_is_a_conflict(ingest, interactions):
    ingest.post(URL, {"items": [item(0)]}, format="json")
    response = ingest.post(URL, {"items": [item(0, rating=1), item(1)]}, format="json")
    assert response.status_code == 409
    assert "item 0" in response.json()["detail"]
    assert Feedback.objects.count() == 1


def test_a_key_repeated_inside_one_batch_is_a_conflict(ingest, interactions):
    response = ingest.post(URL, {"items": [item(0), {**item(1), "idempotency_key": "k-0"}]}, format="json")
    assert response.status_code == 409
    assert Feedback.objects.count() == 0


def test_it_limits_the_batch_size(ingest, interactions):
    response = ingest.post(
        URL, {"items": [item(0, idempotency_key=f"x{i}") for i in range(1001)]}, format="json"
    )
    assert response.status_code == 400
    assert Feedback.objects.count() == 0


def test_an_empty_batch_is_400(ingest, interactions):
    assert ingest.post(URL, {"items": []}, format="json").status_code == 400
    assert ingest.post(URL, {}, format="json").status_code == 400


def test_it_needs_the_ingest_scope(reader, client_anon, interactions):
    assert reader.post(URL, {"items": [item(0)]}, format="json").status_code == 403
    assert client_anon.post(URL, {"items": [item(0)]}, format="json").status_code == 401
