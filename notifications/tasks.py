"""django-q2 entry points. They take ids, fetch, and call a service."""

from __future__ import annotations

from notifications import services


def job_event(job_id: int, from_status: str, to_status: str, user_id: int | None = None) -> int | None:
    event = services.job_event_publish(
        job_id=job_id, from_status=from_status, to_status=to_status, user_id=user_id
    )
    return event.pk if event is not None else None


def experiment_event(experiment_id: int) -> int | None:
    event = services.experiment_event_publish(experiment_id=experiment_id)
    return event.pk if event is not None else None


def webhook_deliver(delivery_id: int) -> str:
    """One attempt; returns the delivery's status afterwards (or "not due": retried or taken meanwhile)."""
    delivery = services.webhook_attempt(delivery_id=delivery_id)
    return delivery.status if delivery is not None else "not due"


def webhooks_retry_due() -> int:
    """Every minute: enqueue the deliveries whose next attempt is due."""
    return len(services.webhooks_retry_due())


def digest(at: str) -> int:
    """The daily digest of the assistants whose ``digest_time`` is ``at`` ("HH:MM")."""
    return services.digest_send(at=at)


def loop_health() -> list[str]:
    """Every five minutes: tell reviewers when a schedule or the worker stops (and when it recovers)."""
    return services.loop_health_check()
