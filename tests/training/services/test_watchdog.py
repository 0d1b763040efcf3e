"""The watchdog (training/services/watchdog.py): overdue jobs fail with a reason, orphaned ones move on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.training.conftest import make_job
from training import services
from training.models import TrainingJob

S = TrainingJob.Status


@pytest.mark.django_db
def test_the_watchdog_fails_overdue_jobs_with_a_reason(assistant, enqueued):
    job = make_job(assistant, S.TRAINING, deadline_at=timezone.now() - timedelta(seconds=1))
    result = services.jobs_watch()
    job.refresh_from_db()
    assert result["failed"] == [job.pk]
    assert job.status == S.FAILED
    assert "Timed out in 'training'" in job.error
    assert job.finished_at is not None


@pytest.mark.django_db
def test_the_watchdog_re_enqueues_a_job_whose_worker_died(assistant, enqueued):
    past = timezone.now() - timedelta(minutes=1)
    orphan = make_job(assistant, S.PREPARING, lease_until=past, next_check_at=past)
    make_job(
        assistant.__class__.objects.create(slug="b", name="b"),
        S.PREPARING,
        lease_until=timezone.now() + timedelta(minutes=5),
        next_check_at=timezone.now() + timedelta(minutes=5),
    )
    services.jobs_watch()
    assert enqueued == [("training.tasks.job_advance", orphan.pk)]
