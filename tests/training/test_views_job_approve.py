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
    return reverse("training-job-approve", args=[job.pk])


def test_it_approves_deploys_and_records_who(client, alice, job, url, assistant):
    client.force_login(alice)
    response = client.post(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("training-job-detail", args=[job.pk])
    job.refresh_from_db()
    assistant.refresh_from_db()
    assert job.status == "deployed"
    assert job.decided_by == alice
    assert assistant.live_version == job.new_model_version
    assert JobEvent.objects.filter(job=job, user=alice, to_status="deploying").exists()
    assert assistant.deployments.get().user == alice


def test_htmx_gets_the_job_body_swapped_in_place(client, alice, job, url):
    client.force_login(alice)
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="job-body"')
    assert "<html" not in body
    assert "shop-v2</strong> is deployed" in body
    assert "Job 1 approved." in body or f"Job {job.pk} approved." in body


def test_approving_twice_is_harmless(client, alice, job, url):
    client.force_login(alice)
    client.post(url)
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert TrainingJob.objects.get(pk=job.pk).status == "deployed"


def test_it_refuses_a_job_not_awaiting_approval(client, alice, job, url):
    TrainingJob.objects.filter(pk=job.pk).update(status="failed")
    client.force_login(alice)
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 409
    assert b"only a job awaiting approval can be approved" in response.content


def test_it_forbids_viewers(client, bob, job, url):
    client.force_login(bob)
    assert client.post(url).status_code == 403
    assert TrainingJob.objects.get(pk=job.pk).status == "awaiting_approval"


def test_it_redirects_anonymous_users(client, job, url):
    response = client.post(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert TrainingJob.objects.get(pk=job.pk).status == "awaiting_approval"


def test_it_rejects_get(client, alice, url):
    client.force_login(alice)
    assert client.get(url).status_code == 405


def test_it_requires_the_csrf_token(alice, job, url):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(url).status_code == 403


def _stopped_test(job, alice) -> None:
    from abtesting.models import Experiment

    live = model_version_create(assistant=job.assistant, name="shop-v1")
    experiment = Experiment.objects.create(
        assistant=job.assistant,
        control=live,
        variant=job.new_model_version,
        status="stopped",
        stopped_by=alice,
    )
    TrainingJob.objects.filter(pk=job.pk).update(experiment=experiment)


def test_a_job_whose_test_reached_no_decision_asks_for_the_confirmation(client, alice, job, url):
    _stopped_test(job, alice)
    client.force_login(alice)
    page = client.get(reverse("training-job-detail", args=[job.pk])).content.decode()
    assert "stopped early by alice: no decision" in page and 'name="confirm_no_decision"' in page
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 409 and "deploy without a significant result" in response.content.decode()
    assert TrainingJob.objects.get(pk=job.pk).status == "awaiting_approval"
    response = client.post(url, {"confirm_no_decision": "on"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and TrainingJob.objects.get(pk=job.pk).status == "deployed"
    event = JobEvent.objects.get(job=job, to_status="deploying")
    assert event.user == alice and event.data["confirmed"] == "deploy without a significant result"
