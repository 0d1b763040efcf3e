from __future__ import annotations

import pytest
from django.urls import reverse

from training.models import TrainingJob


@pytest.fixture
def job(assistant) -> TrainingJob:
    return TrainingJob.objects.create(assistant=assistant, trigger="manual", status="training")


@pytest.fixture
def url(job) -> str:
    return reverse("training-job-cancel", args=[job.pk])


def test_it_cancels(client, alice, job, url):
    client.force_login(alice)
    assert client.post(url).status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled" and job.decided_by == alice


def test_htmx_gets_the_job_body(client, alice, job, url):
    client.force_login(alice)
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b'<div id="job-body"' in response.content and b"<html" not in response.content


def test_it_refuses_a_finished_job(client, alice, job, url):
    TrainingJob.objects.filter(pk=job.pk).update(status="deployed")
    client.force_login(alice)
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 409
    assert b"can no longer be cancelled" in response.content


def test_it_forbids_viewers(client, bob, job, url):
    client.force_login(bob)
    assert client.post(url).status_code == 403
    assert TrainingJob.objects.get(pk=job.pk).status == "training"


def test_it_redirects_anonymous_users(client, url):
    assert client.post(url).status_code == 302


def test_it_rejects_get(client, alice, url):
    client.force_login(alice)
    assert client.get(url).status_code == 405
