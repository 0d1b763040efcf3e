from __future__ import annotations

import json

from assistants.services import model_version_create
from feedback.models import Interaction

URL = "/api/v1/interactions"


def body(**overrides):
    data = {
        "assistant": "shop",
        "request_id": "req-1",
        "user": "cust-42",
        "messages": [{"role": "user", "content": "Where is my order?"}],
        "response": "It ships tomorrow.",
        "latency_ms": 120,
    }
    data.update(overrides)
    return data


def test_it_logs_an_interaction(ingest, assistant):
    response = ingest.post(URL, body(), format="json")
    assert response.status_code == 201, response.content
    row = Interaction.objects.get()
    assert row.request_id == "req-1"
    assert row.user_ref == "cust-42"
    assert row.question == "Where is my order?"
    assert row.error is None
    assert response.json()["id"] == row.pk


def test_a_retry_with_the_same_request_id_is_stored_once(ingest, assistant):
    assert ingest.post(URL, body(), format="json").status_code == 201
    again = ingest.post(URL, body(), format="json")
    assert again.status_code == 200
    assert Interaction.objects.count() == 1


def test_the_same_request_id_with_another_body_is_a_conflict(ingest, assistant):
    ingest.post(URL, body(), format="json")
    response = ingest.post(URL, body(response="Something else"), format="json")
    assert response.status_code == 409
    assert "req-1" in response.json()["detail"]


def test_it_records_the_model_version_and_error(ingest, assistant):
    model_version_create(assistant=assistant, name="shop-v1")
    response = ingest.post(URL, body(model_version="shop-v1", error="timeout"), format="json")
    assert response.status_code == 201
    row = Interaction.objects.get()
    assert row.model_version.name == "shop-v1"
    assert row.error == "timeout"


def test_it_defaults_to_the_live_version(ingest, assistant):
    version = model_version_create(assistant=assistant, name="shop-v1")
    assistant.live_version = version
    assistant.save()
    ingest.post(URL, body(), format="json")
    assert Interaction.objects.get().model_version == version


def test_it_rejects_an_unknown_model_version(ingest, assistant):
    response = ingest.post(URL, body(model_version="nope"), format="json")
    assert response.status_code == 404
    assert response.json()["detail"] == "'shop' has no model version named 'nope'."


def test_it_lists_every_bad_field(ingest, assistant):
    response = ingest.post(URL, {"assistant": "shop", "messages": [{"role": "robot"}]}, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert {"request_id", "messages", "response"} <= set(errors)


def test_it_rejects_malformed_json(ingest, assistant):
    response = ingest.post(URL, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_experiment_and_arm_come_together(ingest, assistant):
    response = ingest.post(URL, body(experiment=3), format="json")
    assert response.status_code == 400


def test_an_unknown_assistant_is_404(ingest, assistant):
    response = ingest.post(URL, body(assistant="nobody"), format="json")
    assert response.status_code == 404
    assert "nobody" in response.json()["detail"]


def test_it_needs_a_key(client_anon, assistant):
    response = client_anon.post(URL, body(), format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_read_key_cannot_ingest(reader, assistant):
    response = reader.post(URL, body(), format="json")
    assert response.status_code == 403
    assert "ingest" in response.json()["detail"]


def test_a_key_bound_to_another_assistant_is_refused(assistant, other_assistant):
    from assistants.services import api_key_create
    from tests.conftest import client_for

    _, raw = api_key_create(scope="ingest", assistant=other_assistant)
    response = client_for(raw).post(URL, body(), format="json")
    assert response.status_code == 403


def test_a_bound_key_may_omit_the_assistant(assistant):
    from assistants.services import api_key_create
    from tests.conftest import client_for

    _, raw = api_key_create(scope="ingest", assistant=assistant)
    data = body()
    del data["assistant"]
    assert client_for(raw).post(URL, data, format="json").status_code == 201


def test_numbers_beyond_the_columns_are_400_not_500(ingest, assistant):
    # PostgreSQL would refuse them with an overflow error: they are checked against the columns first.
    for field, value in [("latency_ms", 3_000_000_000), ("latency_ms", 10**20), ("experiment", 10**20)]:
        extra = {"arm": "control"} if field == "experiment" else {}
        response = ingest.post(URL, body(**{field: value}, **extra), format="json")
        assert response.status_code == 400, (field, value)
        assert "less than or equal to" in str(response.json()["errors"][field])


def test_nul_and_lone_surrogates_are_400_not_500(ingest, assistant):
    for text in ("hi\x00there", "hi \ud800"):
        messages = [{"role": "user", "content": text}]
        # json.dumps escapes them (\u0000, \ud800) as a client's JSON encoder would.
        payload = json.dumps(body(messages=messages, request_id=text))
        response = ingest.post(URL, payload, content_type="application/json")
        assert response.status_code == 400
        assert set(response.json()["errors"]) == {"messages[0].content", "request_id"}


def test_the_logged_interaction_carries_its_feedback_token(ingest, assistant):
    from feedback.tokens import feedback_token

    created = ingest.post(URL, body(), format="json").json()
    assert created["feedback_token"] == feedback_token(created["id"])
    replayed = ingest.post(URL, body(), format="json").json()
    assert replayed["feedback_token"] == created["feedback_token"]


def test_it_reads_an_interaction_back_with_its_token(ingest, assistant):
    from feedback.tokens import feedback_token

    created = ingest.post(URL, body(), format="json").json()
    response = ingest.get(f"{URL}/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.json()["feedback_token"] == feedback_token(created["id"])


def test_reading_another_assistants_interaction_reads_as_missing(assistant, other_assistant):
    from assistants.services import api_key_create
    from feedback.services import interaction_log
    from tests.conftest import client_for

    theirs = interaction_log(
        assistant=other_assistant, request_id="b1", messages=[{"role": "user", "content": "x"}], response="y"
    ).interaction
    mine = client_for(api_key_create(scope="ingest", assistant=assistant)[1])
    other = mine.get(f"{URL}/{theirs.pk}")
    missing = mine.get(f"{URL}/{theirs.pk + 1000}")
    assert other.status_code == missing.status_code == 404
    assert other.json()["detail"] == missing.json()["detail"].replace(str(theirs.pk + 1000), str(theirs.pk))


def test_a_publishable_key_cannot_read_interactions(assistant):
    from assistants.services import api_key_create
    from tests.conftest import client_for

    widget = client_for(api_key_create(scope="ingest", allowed_origins=["https://shop.example"])[1])
    assert widget.get(f"{URL}/1").status_code == 403
    assert widget.get(f"{URL}/1", HTTP_ORIGIN="https://shop.example").status_code == 403
    assert widget.post(f"{URL}/1").status_code in (403, 405)
