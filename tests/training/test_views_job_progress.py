from __future__ import annotations

import pytest
from django.urls import reverse

from training.models import TrainingJob


@pytest.fixture
def job(assistant) -> TrainingJob:
    return TrainingJob.objects.create(assistant=assistant, trigger="manual", status="training")


@pytest.fixture
def url(job) -> str:
    return reverse("training-job-progress", args=[job.pk])


def test_it_returns_the_progress_bar_that_keeps_polling(client, bob, job, url):
    client.force_login(bob)
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith('<div class="progress"') and "<html" not in body
    assert 'value="25"' in body and "Step 3 of 8: training" in body and 'hx-trigger="every 2s"' in body


def test_it_uses_the_trainers_progress_within_training(client, bob, job, url):
    TrainingJob.objects.filter(pk=job.pk).update(metrics={"progress": 1.0})
    client.force_login(bob)
    assert b'value="38"' in client.get(url, HTTP_HX_REQUEST="true").content  # the training step's share


def test_it_stops_polling_when_the_job_ends(client, bob, job, url):
    TrainingJob.objects.filter(pk=job.pk).update(status="deployed")
    client.force_login(bob)
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 286  # htmx: stop polling
    assert "job-settled" in response["HX-Trigger"]
    assert b"hx-trigger" not in response.content and b'value="100"' in response.content


def test_it_stops_polling_while_awaiting_a_reviewer(client, bob, job, url):
    TrainingJob.objects.filter(pk=job.pk).update(status="awaiting_approval")
    client.force_login(bob)
    assert client.get(url, HTTP_HX_REQUEST="true").status_code == 286


def test_without_htmx_it_is_a_plain_200(client, bob, job, url):
    TrainingJob.objects.filter(pk=job.pk).update(status="deployed")
    client.force_login(bob)
    response = client.get(url)
    # The finished bar itself: not htmx's "stop polling" status, no event for a page that is not listening.
    assert response.status_code == 200 and "HX-Trigger" not in response
    body = response.content.decode()
    assert body.startswith('<div class="progress"') and "<html" not in body
    assert 'value="100"' in body and "Step 8 of 8: deployed" in body and "hx-trigger" not in body


def test_it_forbids_users_without_view_permission(client, django_user_model, url):
    client.force_login(django_user_model.objects.create_user("mallory"))
    assert client.get(url).status_code == 403


def test_it_redirects_anonymous_users(client, url):
    assert client.get(url).status_code == 302


def test_it_rejects_post(client, bob, url):
    client.force_login(bob)
    assert client.post(url).status_code == 405


def test_it_runs_few_queries(client, bob, url, django_assert_max_num_queries):
    client.force_login(bob)
    with django_assert_max_num_queries(5):
        response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b'value="25"' in response.content and b'hx-trigger="every 2s"' in response.content


def test_polling_stops_when_the_job_is_gone(client, bob, job, url):
    # htmx swaps no 404, so the bar of a job deleted in the admin polled every 2 s for good.
    job.delete()
    client.force_login(bob)
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 286 and b"not available any more" in response.content
    assert b"hx-trigger" not in response.content
    assert client.get(url).status_code == 404  # without htmx: a plain 404


def test_polling_stops_when_the_user_may_no_longer_view_jobs(client, django_user_model, url):
    client.force_login(django_user_model.objects.create_user("mallory"))
    assert client.get(url, HTTP_HX_REQUEST="true").status_code == 286
    assert client.get(url).status_code == 403
