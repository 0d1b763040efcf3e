"""The API's JSON parser: deep nesting, NUL and lone surrogates, and oversized bodies are 4xx, never 500."""

from __future__ import annotations

import io
import json

import pytest
from rest_framework import exceptions

from assistants.api_parsers import MAX_JSON_DEPTH, SafeJSONParser
from feedback.models import Feedback, Interaction
from training.models import TrainingJob

from ..conftest import client_for

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000


def parse(text: str):
    body = text.encode()
    return SafeJSONParser().parse(io.BytesIO(body), "application/json", {"encoding": "utf-8"})


def nested(depth: int) -> str:
    """JSON text of ``depth`` nested arrays (json.dumps itself would recurse)."""
    return "[" * depth + "1" + "]" * depth


def test_it_parses_nesting_up_to_the_limit_and_refuses_one_more():
    assert parse(nested(MAX_JSON_DEPTH)) == json.loads(nested(MAX_JSON_DEPTH))
    with pytest.raises(exceptions.ParseError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        parse('{"metadata": ' + nested(MAX_JSON_DEPTH) + "}")


@pytest.mark.parametrize("text", ["\\u0000", "a\\ud800b", "\\udfff"])
def test_it_refuses_nul_and_lone_surrogates_anywhere_naming_where(text):
    with pytest.raises(exceptions.ValidationError) as caught:
        parse('{"items": [{"comment": "ok"}, {"comment": "' + text + '"}]}')
    assert list(caught.value.detail) == ["items[1].comment"]
    with pytest.raises(exceptions.ValidationError):
        parse('{"metadata": {"' + text + '": 1}}')  # keys too


def test_brackets_and_escaped_backslashes_inside_strings_are_just_text():
    text = "[" * 200 + "{"
    assert parse('{"comment": "' + text + '"}') == {"comment": text}
    # JSON "a\\u0000" is a backslash followed by "u0000", not a NUL.
    assert parse('{"comment": "a\\\\u0000"}') == {"comment": "a\\u0000"}


def test_a_paired_surrogate_is_a_character_like_any_other():
    assert parse('{"comment": "\\ud83d\\ude00"}') == {"comment": "\N{GRINNING FACE}"}


def test_deep_json_is_a_400_on_feedback(ingest, assistant):
    response = ingest.post("/api/v1/feedback", DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels."}


def test_deep_json_is_a_400_on_jobs(alice_manage_key):
    response = client_for(alice_manage_key).post(
        "/api/v1/jobs",
        '{"assistant": "shop", "dataset_options": {"x": ' + nested(500) + "}}",
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    assert not TrainingJob.objects.exists()


def test_deep_metadata_is_an_openai_shaped_400_on_chat_completions(ingest, assistant):
    body = (
        '{"model": "shop", "messages": [{"role": "user", "content": "hi"}], "metadata": ' + nested(5000) + "}"
    )
    response = ingest.post("/v1/chat/completions", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper" in response.json()["error"]["message"]
    response = ingest.post("/v1/chat/completions", DEEP, content_type="application/json")
    assert response.status_code == 400
    assert not Interaction.objects.exists()


@pytest.mark.parametrize("text", ["\x00", "\ud800"])
def test_unstorable_text_in_dataset_options_is_a_400_not_a_500(alice_manage_key, assistant, text):
    body = json.dumps({"assistant": "shop", "dataset_options": {"system_prompt": f"Be kind{text}"}})
    response = client_for(alice_manage_key).post("/api/v1/jobs", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["dataset_options.system_prompt"]
    assert not TrainingJob.objects.exists()


def test_unstorable_text_in_chat_metadata_is_refused(ingest, assistant):
    body = json.dumps(
        {"model": "shop", "messages": [{"role": "user", "content": "hi"}], "metadata": {"k": "\x00"}}
    )
    response = ingest.post("/v1/chat/completions", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "metadata.k"


def test_a_body_over_the_limit_is_a_json_413_naming_the_limit(ingest, assistant, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"items": [{"request_id": "r", "comment": "x" * 2000}]})
    response = ingest.post("/api/v1/feedback/batch", body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "limit of 1,000 bytes" in response.json()["detail"]
    chat = ingest.post("/v1/chat/completions", body, content_type="application/json")
    assert chat.status_code == 413 and "limit of 1,000 bytes" in chat.json()["error"]["message"]
    # A form body too: the NUL check reads forms before DRF would answer 415.
    form = ingest.post("/api/v1/feedback/batch", {"comment": "x" * 2000})
    assert form.status_code == 413 and "limit of 1,000 bytes" in form.json()["detail"]


def test_the_largest_documented_batch_fits_the_default_limit(ingest, assistant):
    # 1,000 items, each with a 10,000-character comment (the documented maxima): ~10.4 MB of JSON.
    Interaction.objects.bulk_create(
        Interaction(assistant=assistant, request_id=f"r{i}", messages=[], response="a") for i in range(1000)
    )
    items = [
        {"assistant": "shop", "request_id": f"r{i}", "rating": 4, "comment": "y" * 10_000}
        for i in range(1000)
    ]
    body = json.dumps({"items": items})
    assert len(body) > 10_000_000
    response = ingest.post("/api/v1/feedback/batch", body, content_type="application/json")
    assert response.status_code == 201, response.content[:500]
    assert Feedback.objects.count() == 1000
