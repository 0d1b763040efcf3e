from __future__ import annotations

from feedback.services import interaction_log

URL = "/api/v1/feedback-prompt"


def test_it_returns_the_question_for_a_kind(ingest, assistant):
    response = ingest.get(URL, {"assistant": "shop", "kind": "improvement"})
    assert response.status_code == 200
    assert response.json()["prompt"]["question"] == "How could this response be improved?"


def test_it_asks_at_most_once_per_interaction(ingest, assistant):
    assistant.feedback_sample_rate = 1.0
    assistant.save()
    interaction_log(
        assistant=assistant, request_id="r1", messages=[{"role": "user", "content": "q"}], response="a"
    )
    first = ingest.get(URL, {"assistant": "shop", "request_id": "r1"}).json()
    second = ingest.get(URL, {"assistant": "shop", "request_id": "r1"}).json()
    assert first["ask"] is True and first["prompt"]["question"] == "Was this response helpful?"
    assert second["ask"] is False and second["prompt"] is None


def test_a_zero_rate_never_asks(ingest, assistant):
    assistant.feedback_sample_rate = 0.0
    assistant.save()
    interaction_log(
        assistant=assistant, request_id="r1", messages=[{"role": "user", "content": "q"}], response="a"
    )
    assert ingest.get(URL, {"assistant": "shop", "request_id": "r1"}).json()["ask"] is False


def test_an_unknown_kind_is_400(ingest, assistant):
    response = ingest.get(URL, {"assistant": "shop", "kind": "poem"})
    assert response.status_code == 400
    assert "poem" in response.json()["errors"]["kind"][0]


def test_an_unknown_interaction_is_404(ingest, assistant):
    assert ingest.get(URL, {"assistant": "shop", "request_id": "ghost"}).status_code == 404


def test_an_interaction_id_that_is_not_a_plain_number_is_400(ingest, assistant):
    # "²".isdigit() is True but int("²") fails; 30 digits overflow the bigint column.
    for value in ("²", "٣", "9" * 30, "-1", " 1"):
        response = ingest.get(URL, {"assistant": "shop", "interaction_id": value})
        assert response.status_code == 400, value
        assert "whole number" in response.json()["errors"]["interaction_id"][0]


def test_an_empty_kind_or_interaction_id_is_400_not_the_default(ingest, assistant):
    kind = ingest.get(URL, {"assistant": "shop", "kind": ""})
    assert kind.status_code == 400
    assert kind.json()["errors"] == {
        "kind": [
            "Unknown feedback kind '': use one of thumbs, rating, category, text, improvement, correction."
        ]
    }
    interaction = ingest.get(URL, {"assistant": "shop", "interaction_id": ""})
    assert interaction.status_code == 400
    assert interaction.json()["errors"] == {
        "interaction_id": ["Must be a whole number from 0 to 9223372036854775807."]
    }


def test_without_a_kind_it_asks_thumbs(ingest, assistant):
    response = ingest.get(URL, {"assistant": "shop"})
    assert response.status_code == 200
    assert response.json() == {
        "assistant": "shop",
        "ask": None,
        "prompt": {"kind": "thumbs", "question": "Was this response helpful?", "options": ["👍", "👎"]},
    }
