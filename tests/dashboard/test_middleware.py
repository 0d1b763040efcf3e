"""dashboard.middleware: htmx requests whose session expired, and pages never kept by caches."""

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


def test_pages_and_api_answers_are_not_stored_by_caches(client, alice, assistant, reader):
    client.force_login(alice)
    assert client.get(reverse("feedback-explorer"))["Cache-Control"] == "no-store"
    assert reader.get("/api/v1/assistants/shop/stats")["Cache-Control"] == "no-store"
