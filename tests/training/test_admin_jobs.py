"""Django admin for jobs: the job and its timeline are shown, never edited (the state machine moves them)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from training import services
from training.models import JobEvent, TrainingJob

from .conftest import make_job

pytestmark = pytest.mark.django_db


def test_the_job_and_its_events_are_read_only(client, assistant):
    client.force_login(User.objects.create_superuser("root", password="x"))
    job = make_job(assistant, TrainingJob.Status.PREPARING)
    services.job_record_event(job=job, kind=JobEvent.Kind.NOTE, message="Dataset 7 built.")
    url = f"/admin/training/trainingjob/{job.pk}/change/"

    body = client.get(url).content.decode()
    assert "Dataset 7 built." in body
    assert 'name="status"' not in body and 'name="events-0-message"' not in body
    assert client.get("/admin/training/trainingjob/add/").status_code == 403
    assert client.post(url, {"status": "deployed"}).status_code == 403
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.PREPARING
