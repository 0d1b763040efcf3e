from __future__ import annotations

import pytest
from django.urls import reverse

from assistants.services import model_version_create
from training.models import JobEvent, TrainingJob


@pytest.fixture
def job(assistant) -> TrainingJob:
    candidate = model_version_create(assistant=assistant, name="shop-v2")
    return TrainingJob.objects.create(
        assistant=assistant, trigger="manual", status="awaiting_approval", new_model_version=candidate
    )


@pytest.fixture
def url(job) -> str:
    return reverse("training-job-reject", args=[job.pk])


def test_it_rejects_with_the_reason_in_the_timeline(client, alice, job, url):
    client.force_login(alice)
    response = client.post(url, {"reason": "Answers about refunds got worse."})
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "rejected"
    assert job.decided_by == alice and job.decision_reason == "Answers about refunds got worse."
    event = JobEvent.objects.get(job=job, to_status="rejected")
    assert event.user == alice and "Answers about refunds got worse." in event.message


def test_it_requires_a_reason(client, alice, job, url):
    client.force_login(alice)
    response = client.post(url, {"reason": "   "}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert b"the reason is required" in response.content
    assert TrainingJob.objects.get(pk=job.pk).status == "awaiting_approval"


def test_htmx_gets_the_job_body_with_the_reason_escaped(client, alice, job, url):
    client.force_login(alice)
    response = client.post(url, {"reason": "<script>alert(1)</script>"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="job-body"') and "<html" not in body
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_it_forbids_viewers(client, bob, job, url):
    client.force_login(bob)
    assert client.post(url, {"reason": "no"}).status_code == 403
    assert TrainingJob.objects.get(pk=job.pk).status == "awaiting_approval"


def test_it_redirects_anonymous_users(client, job, url):
    assert client.post(url, {"reason": "no"}).status_code == 302


def test_it_rejects_get(client, alice, url):
    client.force_login(alice)
    assert client.get(url).status_code == 405


def test_a_reason_with_a_nul_byte_is_refused(client, alice, job, url):
    # PostgreSQL refuses NUL in text and SQLite would store it: both answer alike, saying what to fix.
    client.force_login(alice)
    response = client.post(url, {"reason": "bad\x00answers"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and b"reason contains a NUL character" in response.content
    assert TrainingJob.objects.get(pk=job.pk).status == "awaiting_approval"
