"""The job state machine (training/services/state.py): guarded transitions, one active job per assistant."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from tests.training.conftest import make_job
from training import services
from training.models import TrainingJob
from training.services import IllegalTransition

S = TrainingJob.Status


@pytest.mark.django_db
def test_a_transition_moves_the_job_and_records_an_event(assistant):
    job = make_job(assistant)
    assert services.job_transition(job=job, to=S.PREPARING, message="go")
    job.refresh_from_db()
    assert job.status == S.PREPARING
    assert job.started_at is not None
    event = job.events.get()
    assert (event.kind, event.from_status, event.to_status, event.message) == (
        "transition",
        "pending",
        "preparing",
        "go",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("source", "target"),
    [
        (S.PENDING, S.DEPLOYED),
        (S.FAILED, S.PREPARING),
        (S.DEPLOYED, S.CANCELLED),
        (S.DEPLOYING, S.CANCELLED),
        (S.TRAINING, S.AWAITING_APPROVAL),
    ],
)
def test_illegal_transitions_raise(assistant, source, target):
    job = make_job(assistant, source)
    with pytest.raises(IllegalTransition):
        services.job_transition(job=job, to=target)
    job.refresh_from_db()
    assert job.status == source
    assert not job.events.exists()


@pytest.mark.django_db
def test_a_stale_transition_moves_nothing(assistant):
    job = make_job(assistant)
    stale = TrainingJob.objects.get(pk=job.pk)
    assert services.job_transition(job=job, to=S.PREPARING)
    assert not services.job_transition(job=stale, to=S.PREPARING)
    assert job.events.count() == 1


@pytest.mark.django_db
def test_the_database_allows_one_active_job_per_assistant(assistant):
    make_job(assistant, S.TRAINING)
    make_job(assistant, S.FAILED)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_job(assistant, S.PENDING)
