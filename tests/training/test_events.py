"""The job's timeline writer (training/events.py)."""

from __future__ import annotations

import pytest

from tests.training.conftest import make_job
from training.events import job_record_event
from training.models import JobEvent, TrainingJob

S = TrainingJob.Status


@pytest.mark.django_db
def test_provider_events_are_recorded_once(assistant):
    job = make_job(assistant, S.TRAINING)
    first = job_record_event(job=job, kind=JobEvent.Kind.PROVIDER, message="step 1", provider_event_id="ev-1")
    again = job_record_event(job=job, kind=JobEvent.Kind.PROVIDER, message="step 1", provider_event_id="ev-1")
    assert first is not None and again is None
    assert job.events.count() == 1
