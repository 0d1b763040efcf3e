"""The job's timeline: one writer for every entry (transitions, provider events, notes, metrics).

It sits below the services and the trainers because both write to it: the orchestrator records each
transition, a trainer records what its provider reports.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from config import logging as log_context
from training.models import JobCandidate, JobEvent, TrainingJob


def job_record_event(
    *,
    job: TrainingJob,
    kind: str,
    message: str = "",
    data: dict | None = None,
    provider_event_id: str = "",
    user: AbstractBaseUser | None = None,
    from_status: str = "",
    to_status: str = "",
    candidate: JobCandidate | None = None,
) -> JobEvent | None:
    """Add one entry to the job's timeline. Returns None when ``provider_event_id`` was recorded before.

    Trainers call this for provider events; replaying a provider's event list is safe because the
    (job, provider_event_id) pair is unique in the database. The entry's data names the request that led
    to it (``request_id``), when there was one: the API call or page that started, approved or cancelled
    the job, carried into the worker's task (``config.queue``). ``candidate``: the comparison's candidate
    the entry is about.
    """
    data = dict(data or {})
    request_id = log_context.request_id()
    if request_id:
        data.setdefault("request_id", request_id)
    event = JobEvent(
        job_id=job.pk,
        candidate=candidate,
        kind=kind,
        message=message,
        data=data,
        provider_event_id=provider_event_id,
        user=user if user is not None and getattr(user, "is_authenticated", False) else None,
        from_status=from_status,
        to_status=to_status,
        created_at=timezone.now(),
    )
    if not provider_event_id:
        event.save(force_insert=True)
        return event
    try:
        with transaction.atomic():
            event.save(force_insert=True)
    except IntegrityError:
        return None
    return event
