"""DELETE /api/v1/users/{user_ref}: a manage key acting for a user with the erase permission."""

from __future__ import annotations

import pytest

from assistants.models import ApiKey
from assistants.services import api_key_create
from feedback.models import ErasureRecord, Feedback, Interaction
from tests.conftest import client_for, grant

pytestmark = pytest.mark.django_db

CUSTOMER = "cust/42"  # a reference with a slash, sent percent-encoded
URL = "/api/v1/users/cust%2F42"


def _rows(assistant, user_ref: str = CUSTOMER, n: int = 2, prefix: str = "r") -> None:
    for k in range(n):
        i = Interaction.objects.create(
            assistant=assistant,
            request_id=f"{prefix}{k}",
            user_ref=user_ref,
            messages=[{"role": "user", "content": "Where is my parcel?"}],
            response="It ships tomorrow.",
        )
        Feedback.objects.create(interaction=i, assistant=assistant, kind="thumbs", helpful=True)


@pytest.fixture
def eraser(alice):
    grant(alice, "erase_customer")
    return alice


@pytest.fixture
def erase_client(eraser, assistant):
    return client_for(api_key_create(scope=ApiKey.Scope.MANAGE, user=eraser)[1])


def test_it_erases_the_customer_and_says_what_was_erased(erase_client, assistant, other_assistant):
    _rows(assistant)
    _rows(assistant, user_ref="someone-else", prefix="s")
    _rows(other_assistant)

    response = erase_client.delete(URL)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["erased"] is True
    assert (body["interactions"], body["feedback"]) == (4, 4)  # every assistant: the key is bound to none
    assert body["detail"].startswith("Erased 4 interactions and 4 feedback rows.")
    assert body["record"]["by"] == "alice" and body["previous"] is None
    assert not Interaction.objects.filter(user_ref=CUSTOMER).exists()
    assert Interaction.objects.filter(user_ref="someone-else").count() == 2
    record = ErasureRecord.objects.get()
    assert record.subject == body["subject"] and CUSTOMER not in record.subject


def test_a_second_call_is_a_no_op_answer(erase_client, assistant):
    _rows(assistant)
    first = erase_client.delete(URL).json()

    response = erase_client.delete(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["erased"] is False and (body["interactions"], body["feedback"]) == (0, 0)
    assert body["record"] is None and body["previous"]["id"] == first["record"]["id"]
    assert "already erased" in body["detail"]
    assert ErasureRecord.objects.count() == 1


def test_assistant_parameter_limits_the_erasure(erase_client, assistant, other_assistant):
    _rows(assistant)
    _rows(other_assistant)
    body = erase_client.delete(URL + "?assistant=bank").json()
    assert body["interactions"] == 2
    assert Interaction.objects.filter(assistant=assistant, user_ref=CUSTOMER).count() == 2


def test_another_assistants_key_cannot_erase(eraser, assistant, other_assistant):
    _rows(assistant)
    bank_key = api_key_create(scope=ApiKey.Scope.MANAGE, user=eraser, assistant=other_assistant)[1]
    client = client_for(bank_key)

    named = client.delete(URL + "?assistant=shop")
    bound = client.delete(URL)  # the key's own assistant: nothing of this customer there

    assert named.status_code == 403
    assert bound.status_code == 200 and bound.json()["erased"] is False
    assert Interaction.objects.filter(user_ref=CUSTOMER).count() == 2
    assert not ErasureRecord.objects.exists()


def test_it_needs_a_user_with_the_erase_permission(alice, assistant, manager, reader):
    _rows(assistant)
    without_perm = client_for(api_key_create(scope=ApiKey.Scope.MANAGE, user=alice)[1])  # a reviewer

    assert without_perm.delete(URL).status_code == 403
    assert "feedback.erase_customer" in without_perm.delete(URL).json()["detail"]
    assert manager.delete(URL).status_code == 403  # a key acting for nobody
    assert reader.delete(URL).status_code == 403
    assert client_for(None).delete(URL).status_code == 401
    assert Interaction.objects.filter(user_ref=CUSTOMER).count() == 2


def test_an_overlong_reference_is_a_400(erase_client):
    response = erase_client.delete("/api/v1/users/" + "x" * 201)
    assert response.status_code == 400
    assert "user_ref" in response.json()["errors"]


def test_an_unknown_assistant_is_a_404(erase_client):
    assert erase_client.delete(URL + "?assistant=nope").status_code == 404


def test_other_methods_are_refused(erase_client):
    assert erase_client.get(URL).status_code == 405
    assert erase_client.post(URL, {}, format="json").status_code == 405
