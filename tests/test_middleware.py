"""config.middleware: a NUL character or a lone surrogate in input is a 400 on every surface."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_a_form_with_a_nul_byte_is_refused_before_any_view_runs(client, alice):
    # Even a form nobody special-cased: the login form, and a logged-in POST to the logout view.
    response = client.post(reverse("login"), {"username": "ali\x00ce", "password": "x"})
    assert response.status_code == 400
    assert b"The form field username contains a NUL character" in response.content
    client.force_login(alice)
    assert client.post(reverse("logout"), {"note": "\x00"}).status_code == 400
    assert "_auth_user_id" in client.session  # still logged in: the logout view never ran


def test_json_requests_are_left_to_the_api(client):
    # Not a form: the API's serializers answer (here: no key, 401), not this middleware.
    response = client.post(
        reverse("feedback-api-submit"), {"comment": "a\x00b"}, content_type="application/json"
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/jobs?assistant=%00",
        "/api/v1/datasets?assistant=%00",
        "/api/v1/health?assistant=%00",
        "/api/v1/feedback-prompt?assistant=shop&request_id=%00",
    ],
)
def test_a_nul_in_a_query_parameter_is_a_json_400_on_the_api(url, manager):
    # PostgreSQL refuses NUL in a query (a DataError) and SQLite ignores it: both answer alike.
    response = manager.get(url)
    assert response.status_code == 400
    name = url.split("=%00")[0].rsplit("&", 1)[-1].rsplit("?", 1)[-1]
    assert list(response.json()["errors"]) == [name]


def test_a_nul_in_a_query_parameter_is_an_openai_400_on_the_gateway(ingest):
    response = ingest.post("/v1/chat/completions?x=%00", {}, format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "x"
