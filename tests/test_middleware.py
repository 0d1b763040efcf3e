from __future__ import annotations

import pytest
from django.urls import reverse

from training.models import TrainingJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def progress_url(assistant) -> str:
    job = TrainingJob.objects.create(assistant=assistant, trigger="manual", status="training")
    return reverse("training-job-progress", args=[job.pk])


def test_an_htmx_poll_after_the_session_expired_sends_the_page_to_login(client, assistant, progress_url):
    overview = reverse("training-overview", args=[assistant.slug])
    response = client.get(
        progress_url, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=f"http://testserver{overview}?x=1"
    )
    # Not the login form swapped into the progress bar: htmx navigates, and login brings the user back.
    assert response.status_code == 200 and response.content == b""
    assert response["HX-Redirect"] == f"{reverse('login')}?next=%2Fassistants%2F{assistant.slug}%2F%3Fx%3D1"


def test_a_plain_request_still_gets_the_usual_redirect(client, progress_url):
    response = client.get(progress_url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert "HX-Redirect" not in response


def test_other_htmx_redirects_are_left_alone(client, alice, assistant):
    client.force_login(alice)
    response = client.get(reverse("dashboard-home"), HTTP_HX_REQUEST="true")
    assert response.status_code == 302 and "HX-Redirect" not in response


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


def test_pages_and_api_answers_are_not_stored_by_caches(client, alice, assistant, reader):
    client.force_login(alice)
    assert client.get(reverse("feedback-explorer"))["Cache-Control"] == "no-store"
    assert reader.get("/api/v1/assistants/shop/stats")["Cache-Control"] == "no-store"
