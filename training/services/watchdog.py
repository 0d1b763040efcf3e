"""The watchdog (twice a minute) and the A/B app's "experiment ended" signal: nothing waits forever."""

from __future__ import annotations

import django_q.tasks
from django.db.models import Q
from django.utils import timezone

from training.models import TrainingJob
from training.services.state import ACTIVE_STATUSES, enqueue_advance, job_fail, timeout_reason

S = TrainingJob.Status


def jobs_watch() -> dict[str, list[int]]:
    """Fail overdue jobs with a reason; enqueue jobs whose wait is over or whose worker died.

    Also polls experiments, so a job in ``testing`` moves on even if the conclusion signal was lost.
    """
    now = timezone.now()
    failed: list[int] = []
    for job in TrainingJob.objects.filter(status__in=ACTIVE_STATUSES, deadline_at__lt=now):
        if job_fail(job=job, error=timeout_reason(job)):
            failed.append(job.pk)
    due = list(
        TrainingJob.objects.filter(status__in=ACTIVE_STATUSES, next_check_at__lte=now)
        .exclude(status=S.AWAITING_APPROVAL)
        .exclude(lease_until__gt=now)
        .values_list("pk", flat=True)
    )
    concluded = list(
        TrainingJob.objects.filter(status=S.TESTING, experiment__isnull=False)
        .exclude(experiment__status="running")
        .exclude(pk__in=due)
        .values_list("pk", flat=True)
    )
    for job_id in due + concluded:
        django_q.tasks.async_task("training.tasks.job_advance", job_id, group="training")
    return {"failed": failed, "enqueued": due + concluded}


def experiment_concluded(*, experiment_id: int) -> list[int]:
    """Enqueue the jobs waiting on this experiment (A/B test or rollout)."""
    ids = list(
        TrainingJob.objects.filter(status__in=(S.TESTING, S.DEPLOYING))
        .filter(Q(experiment_id=experiment_id) | Q(options__rollout_experiment=experiment_id))
        .values_list("pk", flat=True)
    )
    for job_id in ids:
        enqueue_advance(job_id)
    return ids
