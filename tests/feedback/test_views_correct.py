from __future__ import annotations

import pytest
from django.urls import reverse

from feedback.models import CurationLog, Feedback
from feedback.services import feedback_submit, interaction_log


@pytest.fixture
def feedback(assistant) -> Feedback:
    logged = interaction_log(
        assistant=assistant, request_id="r1", messages=[{"role": "user", "content": "hi"}], response="wrong"
    )
    return feedback_submit(interaction=logged.interaction, data={"helpful": False}).feedback


@pytest.fixture
def url(feedback) -> str:
    return reverse("feedback-correct", args=[feedback.pk])


def test_it_saves_the_corrected_answer_and_logs_who(client, alice, feedback, url):
    client.force_login(alice)
    assert client.post(url, {"corrected_answer": "  Refunds take 5 days.  "}).status_code == 302
    assert Feedback.objects.get(pk=feedback.pk).corrected_answer == "Refunds take 5 days."
    log = CurationLog.objects.get(feedback=feedback)
    assert log.user == alice and log.action == "correct" and log.detail["after"] == "Refunds take 5 days."


def test_htmx_gets_the_row_with_the_answer_escaped(client, alice, feedback, url):
    client.force_login(alice)
    response = client.post(url, {"corrected_answer": "<script>x()</script>"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith(f'<tbody id="feedback-{feedback.pk}">')
    assert "<script>x()</script>" not in body and "&lt;script&gt;x()&lt;/script&gt;" in body


def test_it_refuses_an_overlong_answer(client, alice, feedback, url):
    client.force_login(alice)
    response = client.post(url, {"corrected_answer": "x" * 20001}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422 and b"too long" in response.content
    assert Feedback.objects.get(pk=feedback.pk).corrected_answer == ""


def test_it_forbids_viewers(client, bob, feedback, url):
    client.force_login(bob)
    assert client.post(url, {"corrected_answer": "x"}).status_code == 403
    assert not CurationLog.objects.exists()


def test_it_redirects_anonymous_users(client, url):
    assert client.post(url, {"corrected_answer": "x"}).status_code == 302


def test_it_rejects_get(client, alice, url):
    client.force_login(alice)
    assert client.get(url).status_code == 405


def test_an_answer_with_a_nul_byte_is_refused(client, alice, feedback, url):
    # PostgreSQL refuses NUL in text and SQLite would store it: both answer alike, saying what to fix.
    client.force_login(alice)
    response = client.post(url, {"corrected_answer": "Refunds\x00 take 5 days."}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and b"corrected_answer contains a NUL character" in response.content
    assert Feedback.objects.get(pk=feedback.pk).corrected_answer == ""
    assert not CurationLog.objects.exists()
