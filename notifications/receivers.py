"""Signal receivers: enqueue the work and return, so the sender (a request, a job's worker) never waits
on email or HTTP. The senders call them after their commit."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def connect() -> None:
    from abtesting.signals import experiment_concluded
    from training.signals import job_status_changed

    job_status_changed.connect(on_job_status_changed, dispatch_uid="notifications.job_status_changed")
    experiment_concluded.connect(on_experiment_concluded, dispatch_uid="notifications.experiment_concluded")


def on_job_status_changed(
    sender, job_id: int, from_status: str, to_status: str, user_id=None, **kwargs
) -> None:
    from django_q.tasks import async_task

    from notifications.services import job_event_type

    if job_event_type(from_status=from_status, to_status=to_status) is None:
        return  # preparing, training…: nobody is told about every step
    async_task(
        "notifications.tasks.job_event", job_id, from_status, to_status, user_id, group="notifications"
    )


def on_experiment_concluded(sender, experiment, **kwargs) -> None:
    from django_q.tasks import async_task

    # abtesting sends this with send(), not send_robust(): a failure here must not reach its caller.
    try:
        async_task("notifications.tasks.experiment_event", experiment.pk, group="notifications")
    except Exception:
        logger.exception("Could not enqueue the notification for experiment %s", experiment.pk)
