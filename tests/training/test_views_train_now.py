from __future__ import annotations

import pytest
from django.urls import reverse

from training.models import JobEvent, TrainingJob


@pytest.fixture
def url(assistant) -> str:
    return reverse("training-train-now", args=[assistant.slug])


def test_it_starts_a_manual_job_and_opens_it(client, alice, assistant, url):
    client.force_login(alice)
    response = client.post(url)
    job = TrainingJob.objects.get(assistant=assistant)
    assert response.status_code == 302 and response["Location"] == reverse(
        "training-job-detail", args=[job.pk]
    )
    assert job.trigger == "manual"
    assert JobEvent.objects.get(job=job).user == alice


def test_htmx_is_told_to_navigate_to_the_job(client, alice, assistant, url):
    client.force_login(alice)
    response = client.post(url, HTTP_HX_REQUEST="true")
    job = TrainingJob.objects.get(assistant=assistant)
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("training-job-detail", args=[job.pk])


def test_it_sends_you_to_the_running_job_instead_of_starting_a_second(client, alice, assistant, url):
    running = TrainingJob.objects.create(assistant=assistant, trigger="scheduled", status="training")
    client.force_login(alice)
    response = client.post(url, follow=True)
    assert TrainingJob.objects.filter(assistant=assistant).count() == 1
    assert response.redirect_chain[-1][0] == reverse("training-job-detail", args=[running.pk])
    assert b"already has an active training job" in response.content


def test_it_forbids_viewers(client, bob, assistant, url):
    client.force_login(bob)
    assert client.post(url).status_code == 403
    assert not TrainingJob.objects.exists()


def test_it_redirects_anonymous_users(client, url):
    assert client.post(url).status_code == 302
    assert not TrainingJob.objects.exists()


def test_it_rejects_get(client, alice, url):
    client.force_login(alice)
    assert client.get(url).status_code == 405


def test_it_404s_for_an_unknown_assistant(client, alice, db):
    client.force_login(alice)
    assert client.post(reverse("training-train-now", args=["nope"])).status_code == 404
