"""Feedback from a publishable (browser) key must prove it saw the answer: the interaction's feedback token.

A publishable key sits in page source. Without tokens, anyone could rate every interaction by sequential
id, and a batch's errors named which ids exist. Each rule here fails without its fix.
"""

from __future__ import annotations

import pytest

from assistants.services import api_key_create
from feedback.models import Feedback, Interaction
from feedback.services import interaction_log
from feedback.tokens import feedback_token
from tests.conftest import client_for

SHOP = "https://shop.example"
FEEDBACK = "/api/v1/feedback"
BATCH = "/api/v1/feedback/batch"
PROMPT = "/api/v1/feedback-prompt"


def _log(assistant, request_id: str, user: str = "") -> Interaction:
    return interaction_log(
        assistant=assistant,
        request_id=request_id,
        messages=[{"role": "user", "content": "Where is my order?"}],
        response="It ships tomorrow.",
        user_ref=user,
    ).interaction


@pytest.fixture
def widget(assistant):
    return client_for(api_key_create(scope="ingest", assistant=assistant, allowed_origins=[SHOP])[1])


@pytest.fixture
def mine(assistant):
    return _log(assistant, "r1", user="cust-1")


def _thumbs(interaction_id: int, **extra) -> dict:
    return {"assistant": "shop", "interaction_id": interaction_id, "helpful": False, **extra}


def test_feedback_with_the_interactions_token_is_stored(widget, mine):
    response = widget.post(FEEDBACK, _thumbs(mine.pk, feedback_token=feedback_token(mine.pk)), format="json")
    assert response.status_code == 201, response.content
    assert Feedback.objects.get().interaction == mine


def test_feedback_by_request_id_with_the_token_is_stored(widget, mine):
    item = {"request_id": "r1", "rating": 1, "feedback_token": feedback_token(mine.pk)}
    assert widget.post(FEEDBACK, item, format="json", HTTP_ORIGIN=SHOP).status_code == 201


def test_feedback_without_a_token_is_refused_before_looking_the_interaction_up(widget, mine):
    for ref in (mine.pk, mine.pk + 1000):  # a real id and a missing one: the same answer
        response = widget.post(FEEDBACK, _thumbs(ref), format="json")
        assert response.status_code == 400
        assert "feedback token" in response.json()["errors"]["feedback_token"][0]
    assert not Feedback.objects.exists()


def test_a_missing_id_another_assistants_id_and_a_bad_token_get_the_same_answer(
    widget, mine, other_assistant
):
    theirs = _log(other_assistant, "b1")
    answers = [
        widget.post(
            FEEDBACK, _thumbs(mine.pk + 1000, feedback_token=feedback_token(mine.pk + 1000)), format="json"
        ),
        widget.post(FEEDBACK, _thumbs(theirs.pk, feedback_token=feedback_token(theirs.pk)), format="json"),
        widget.post(FEEDBACK, _thumbs(mine.pk, feedback_token=feedback_token(mine.pk + 1)), format="json"),
        widget.post(
            FEEDBACK, {"request_id": "r1", "helpful": False, "feedback_token": "x" * 22}, format="json"
        ),
    ]
    assert {r.status_code for r in answers} == {404}
    assert len({r.content for r in answers}) == 1
    assert not Feedback.objects.exists()


def test_a_batch_from_a_publishable_key_does_not_tell_which_ids_exist(widget, mine, assistant):
    others = [_log(assistant, f"r{n}") for n in range(2, 5)]
    items = [_thumbs(i.pk, feedback_token="forged-token-000000000") for i in [mine, *others]]
    items += [_thumbs(mine.pk + 1000 + n, feedback_token="forged-token-000000000") for n in range(4)]
    response = widget.post(BATCH, {"items": items}, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]["items"]
    assert sorted(errors, key=int) == [str(i) for i in range(8)]  # every index, existing or not
    assert len({str(e) for e in errors.values()}) == 1  # with one and the same message
    assert not Feedback.objects.exists()


def test_a_batch_with_tokens_is_stored_and_one_bad_token_fails_it_all(widget, mine, assistant):
    other = _log(assistant, "r2")
    good = [_thumbs(i.pk, feedback_token=feedback_token(i.pk)) for i in (mine, other)]
    assert widget.post(BATCH, {"items": good}, format="json").status_code == 201
    bad = [*good, _thumbs(other.pk, feedback_token=feedback_token(mine.pk))]
    response = widget.post(BATCH, {"items": bad}, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]["items"]) == ["2"]
    assert Feedback.objects.count() == 2


def test_a_batch_without_tokens_is_refused(widget, mine):
    response = widget.post(BATCH, {"items": [_thumbs(mine.pk)]}, format="json")
    assert response.status_code == 400
    assert "feedback token" in str(response.json()["errors"]["items"]["0"])


def test_server_keys_send_feedback_without_a_token(ingest, manager, mine):
    assert ingest.post(FEEDBACK, _thumbs(mine.pk), format="json").status_code == 201
    assert manager.post(BATCH, {"items": [_thumbs(mine.pk, helpful=True)]}, format="json").status_code == 201


def test_a_server_key_still_hears_which_id_is_missing(ingest, mine):
    response = ingest.post(BATCH, {"items": [_thumbs(mine.pk), _thumbs(mine.pk + 1000)]}, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]["items"]) == ["1"]


# -- feedback-prompt: asking claims the interaction ("never ask twice") ----------------------------------


def test_the_prompt_needs_the_token_to_ask_about_an_interaction(widget, mine):
    for params in ({"interaction_id": mine.pk}, {"request_id": "r1"}):
        response = widget.get(PROMPT, params)
        assert response.status_code == 400
        assert "feedback_token" in response.json()["errors"]
    mine.refresh_from_db()
    assert mine.feedback_requested_at is None  # not claimed


def test_the_prompt_with_a_wrong_token_reads_as_missing_and_claims_nothing(widget, mine):
    wrong = widget.get(PROMPT, {"interaction_id": mine.pk, "feedback_token": feedback_token(mine.pk + 1)})
    missing = widget.get(
        PROMPT, {"interaction_id": mine.pk + 1000, "feedback_token": feedback_token(mine.pk + 1000)}
    )
    assert wrong.status_code == missing.status_code == 404
    assert wrong.content == missing.content
    mine.refresh_from_db()
    assert mine.feedback_requested_at is None


def test_the_prompt_with_the_token_asks_once(widget, mine, assistant):
    assistant.feedback_sample_rate = 1.0
    assistant.save(update_fields=["feedback_sample_rate"])
    params = {"request_id": "r1", "feedback_token": feedback_token(mine.pk)}
    first = widget.get(PROMPT, params)
    assert first.status_code == 200
    assert first.json()["ask"] is True
    assert widget.get(PROMPT, params).json()["ask"] is False


def test_the_prompt_without_an_interaction_needs_no_token(widget, mine):
    assert widget.get(PROMPT, {"kind": "rating"}).status_code == 200


# -- rate limits for publishable keys ------------------------------------------------------------------


def test_feedback_is_limited_per_customer(widget, assistant, settings):
    settings.PUBLISHABLE_USER_RATE = "3/minute"
    a = [_log(assistant, f"a{n}", user="cust-a") for n in range(4)]
    b = _log(assistant, "b0", user="cust-b")
    codes = [
        widget.post(FEEDBACK, _thumbs(i.pk, feedback_token=feedback_token(i.pk)), format="json").status_code
        for i in a
    ]
    assert codes == [201, 201, 201, 429]
    assert (
        widget.post(FEEDBACK, _thumbs(b.pk, feedback_token=feedback_token(b.pk)), format="json").status_code
        == 201
    )


def test_a_batch_counts_each_item_against_the_origin(widget, assistant, settings):
    settings.PUBLISHABLE_ORIGIN_RATE = "5/minute"
    logged = [_log(assistant, f"r{n}", user=f"cust-{n}") for n in range(6)]
    items = [_thumbs(i.pk, feedback_token=feedback_token(i.pk)) for i in logged]
    assert widget.post(BATCH, {"items": items[:4]}, format="json", HTTP_ORIGIN=SHOP).status_code == 201
    throttled = widget.post(BATCH, {"items": items[4:]}, format="json", HTTP_ORIGIN=SHOP)
    assert throttled.status_code == 429
    assert "origin https://shop.example" in throttled.json()["detail"]
    assert int(throttled["Retry-After"]) > 0
    # Another origin of the key (or none: curl) has its own count.
    assert widget.post(BATCH, {"items": items[4:5]}, format="json").status_code == 201


def test_the_limits_do_not_apply_to_server_keys(ingest, assistant, settings):
    settings.PUBLISHABLE_USER_RATE = "1/minute"
    settings.PUBLISHABLE_ORIGIN_RATE = "1/minute"
    logged = [_log(assistant, f"r{n}", user="cust-a") for n in range(3)]
    assert all(ingest.post(FEEDBACK, _thumbs(i.pk), format="json").status_code == 201 for i in logged)
