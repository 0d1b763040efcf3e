from __future__ import annotations

import pytest
from django.urls import reverse

from feedback.models import CurationLog, Feedback
from feedback.services import feedback_submit, interaction_log


@pytest.fixture
def feedback(assistant) -> Feedback:
    logged = interaction_log(
        assistant=assistant,
        request_id="r1",
        messages=[{"role": "user", "content": "hi"}],
        response="<b>hello</b>",
    )
    return feedback_submit(interaction=logged.interaction, data={"helpful": True}).feedback


@pytest.fixture
def url(feedback) -> str:
    return reverse("feedback-exclude", args=[feedback.pk])


def test_it_excludes_and_logs_who(client, alice, feedback, url):
    client.force_login(alice)
    response = client.post(url, {"excluded": "1", "next": "/feedback/?rating=5"})
    assert response.status_code == 302 and response["Location"] == "/feedback/?rating=5"
    feedback.refresh_from_db()
    assert feedback.excluded_from_training
    log = CurationLog.objects.get(feedback=feedback)
    assert log.user == alice and log.action == "exclude"


def test_it_includes_again(client, alice, feedback, url):
    Feedback.objects.filter(pk=feedback.pk).update(excluded_from_training=True)
    client.force_login(alice)
    client.post(url, {"excluded": "0"})
    assert not Feedback.objects.get(pk=feedback.pk).excluded_from_training


def test_it_never_redirects_off_site(client, alice, url):
    client.force_login(alice)
    response = client.post(url, {"excluded": "1", "next": "https://evil.example/"})
    assert response["Location"] == reverse("feedback-explorer")


@pytest.mark.parametrize("target", ["x", "feedback"])
def test_a_next_that_is_not_a_path_goes_back_to_the_explorer(client, alice, url, target):
    # redirect() reads a "next" without a "/" as a URL name to reverse: only a path is followed.
    client.force_login(alice)
    response = client.post(url, {"excluded": "1", "next": target})
    assert response.status_code == 302 and response["Location"] == reverse("feedback-explorer")


def test_htmx_gets_the_row_back(client, alice, feedback, url):
    client.force_login(alice)
    response = client.post(url, {"excluded": "1"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith(f'<tbody id="feedback-{feedback.pk}">') and "<html" not in body
    assert "excluded</span>" in body and ">Include</button>" in body
    assert "&lt;b&gt;hello&lt;/b&gt;" in body


def test_it_forbids_viewers(client, bob, feedback, url):
    client.force_login(bob)
    assert client.post(url, {"excluded": "1"}).status_code == 403
    assert not Feedback.objects.get(pk=feedback.pk).excluded_from_training


def test_it_redirects_anonymous_users(client, url):
    assert client.post(url, {"excluded": "1"}).status_code == 302


def test_it_rejects_get(client, alice, url):
    client.force_login(alice)
    assert client.get(url).status_code == 405


def test_it_404s_for_missing_feedback(client, alice, db):
    client.force_login(alice)
    assert client.post(reverse("feedback-exclude", args=[999]), {"excluded": "1"}).status_code == 404
