"""Writes: record an event, email it, deliver it to webhooks (signed, retried, logged), digests, health.

Over 400 lines because every channel (email, signed webhooks, the Slack format, the digest, loop
health) goes through one event record and one delivery log; split by channel, that path would be too.

Nothing here runs inside a request or a job transition: the lower apps send signals after their commit,
``receivers`` enqueue a task, and the worker calls these services. Each HTTP attempt has a bounded
timeout and runs in its own task, so one slow receiver delays nobody else.
"""

from __future__ import annotations

import json
import logging
import smtplib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from abtesting.models import Experiment
from assistants.models import Assistant
from notifications import selectors, signing
from notifications.models import Event, EventType, NotificationSettings, WebhookDelivery, WebhookEndpoint
from training.models import TrainingJob

logger = logging.getLogger(__name__)

# Seconds to wait before each retry: ×3 from a minute, capped at 6 h, so the last of the 9 retries comes
# about 24 h after the first attempt. After that the message is given up and the endpoint disabled.
RETRY_DELAYS = (60, 180, 540, 1620, 4860, 14580, 21600, 21600, 21600)
# (connect, read) seconds: a receiver that does not answer costs a worker this long per attempt, not more.
HTTP_TIMEOUT = (3.05, 10)
# An attempt in progress holds its delivery this long (more than the HTTP timeout).
DELIVERY_LEASE = timedelta(minutes=2)
USER_AGENT = "Trainloop-Webhooks/1.0"
SUBJECT_PREFIX = "[Trainloop] "
MANAGE_ENDPOINTS_PERM = "notifications.change_webhookendpoint"

JOB_EVENT_TYPES = {
    TrainingJob.Status.AWAITING_APPROVAL: EventType.JOB_AWAITING_APPROVAL,
    TrainingJob.Status.DEPLOYED: EventType.JOB_DEPLOYED,
    TrainingJob.Status.REJECTED: EventType.JOB_REJECTED,
    TrainingJob.Status.FAILED: EventType.JOB_FAILED,
}


def job_event_type(*, from_status: str, to_status: str) -> str | None:
    """Which event a job's status change is, if any (a new job in ``pending``: retrain triggered)."""
    if to_status == TrainingJob.Status.PENDING and not from_status:
        return EventType.JOB_TRIGGERED
    return JOB_EVENT_TYPES.get(to_status)


def experiment_event_type(*, experiment: Experiment) -> str | None:
    """An A/B test's conclusion, or a rollout its guardrail rolled back (a rollout that completes or is
    stopped shows up as its job's ``job.deployed`` or ``job.failed``)."""
    if experiment.is_running:
        return None
    if experiment.purpose == Experiment.Purpose.AB_TEST:
        return EventType.EXPERIMENT_CONCLUDED
    worse = (Experiment.Decision.VARIANT_WORSE, Experiment.Decision.INVALID_SRM)
    if experiment.status == Experiment.Status.CONCLUDED and experiment.decision in worse:
        return EventType.ROLLOUT_ROLLED_BACK
    return None


# -- events ---------------------------------------------------------------------------------------------


def _timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_publish(
    *,
    type: str,
    summary: str,
    data: dict[str, Any],
    assistant: Assistant | None = None,
    job_id: int | None = None,
    endpoints: list[WebhookEndpoint] | None = None,
    key: str | None = None,
) -> Event | None:
    """Record an event and a pending delivery for each endpoint that wants it (``endpoints``: only these).

    ``key`` names what happened once ("job.deployed:12"): None is returned when it was recorded before.
    The caller dispatches the event (``event_dispatch``).
    """
    now = timezone.now()
    payload = {"type": type, "timestamp": _timestamp(now), "data": data}
    try:
        with transaction.atomic():
            event = Event.objects.create(
                type=type,
                assistant=assistant,
                job_id=job_id,
                summary=summary,
                payload=payload,
                key=key,
                created_at=now,
            )
            targets = endpoints if endpoints is not None else _endpoints_for(event)
            for endpoint in targets:
                WebhookDelivery.objects.create(
                    endpoint=endpoint,
                    event=event,
                    message_id=f"msg_{uuid.uuid4().hex}",
                    body=_body(endpoint, event),
                    next_attempt_at=now,
                    created_at=now,
                )
    except IntegrityError:
        if key is None or not Event.objects.filter(key=key).exists():
            raise
        return None
    return event


def _endpoints_for(event: Event) -> list[WebhookEndpoint]:
    # An endpoint without an assistant hears every assistant and the loop's health (no assistant).
    qs = WebhookEndpoint.objects.filter(enabled=True).filter(
        Q(assistant__isnull=True) | Q(assistant_id=event.assistant_id)
    )
    return [endpoint for endpoint in qs if endpoint.wants(event.type)]


def _body(endpoint: WebhookEndpoint, event: Event) -> str:
    if endpoint.format == WebhookEndpoint.Format.SLACK:
        url = _link(event)
        text = event.summary + (f"\n<{url}|{_link_label(event)}>" if url else "")
        return json.dumps({"text": text}, ensure_ascii=False)
    return json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"))


def _link(event: Event) -> str | None:
    data = event.payload.get("data") or {}
    if isinstance(data.get("url"), str):
        return data["url"]
    for key in ("job", "experiment"):
        if isinstance(data.get(key), dict) and data[key].get("url"):
            return data[key]["url"]
    return None


def _link_label(event: Event) -> str:
    data = event.payload.get("data") or {}
    if isinstance(data.get("job"), dict) and data["job"].get("url"):
        return f"Open job {data['job']['id']}"
    return "Open"


def event_dispatch(*, event: Event, inline: bool = False) -> None:
    """Email the event and start its webhook deliveries: each in its own worker task, or here (``inline``)
    when the worker may be the thing that is down."""
    event_email(event=event)
    for delivery_id in event.deliveries.filter(status=WebhookDelivery.Status.PENDING).values_list(
        "pk", flat=True
    ):
        if inline:
            webhook_attempt(delivery_id=delivery_id)
        else:
            _enqueue_delivery(delivery_id)


def _enqueue_delivery(delivery_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task("notifications.tasks.webhook_deliver", delivery_id, group="notifications")
    )


def job_event_publish(*, job_id: int, from_status: str, to_status: str, user_id: int | None) -> Event | None:
    event_type = job_event_type(from_status=from_status, to_status=to_status)
    job = (
        TrainingJob.objects.select_related(
            "assistant", "new_model_version", "base_version", "experiment__control"
        )
        .filter(pk=job_id)
        .first()
    )
    if event_type is None or job is None:
        return None
    data = selectors.job_data(job=job, from_status=from_status, to_status=to_status, user_id=user_id)
    event = event_publish(
        type=event_type,
        summary=selectors.job_summary(data, event_type=event_type),
        data=data,
        assistant=job.assistant,
        job_id=job.pk,
        key=f"{event_type}:{job.pk}",
    )
    if event is not None:
        event_dispatch(event=event)
    return event


def experiment_event_publish(*, experiment_id: int) -> Event | None:
    experiment = (
        Experiment.objects.select_related("assistant", "control", "variant").filter(pk=experiment_id).first()
    )
    if experiment is None:
        return None
    event_type = experiment_event_type(experiment=experiment)
    if event_type is None:
        return None
    data = selectors.experiment_data(experiment=experiment)
    event = event_publish(
        type=event_type,
        summary=selectors.experiment_summary(data, event_type=event_type),
        data=data,
        assistant=experiment.assistant,
        job_id=data["job"]["id"] if data["job"] else None,
        key=f"{event_type}:{experiment.pk}",
    )
    if event is not None:
        event_dispatch(event=event)
    return event


# -- email ----------------------------------------------------------------------------------------------


def _send(subject: str, body: str, recipients: list[str]) -> int:
    """One message per recipient (reviewers do not see each other's addresses). Returns how many went.

    A mail server that is down is logged, not raised: the webhooks of the same event must still go.
    """
    if not recipients:
        return 0
    messages = [EmailMessage(subject=SUBJECT_PREFIX + subject, body=body, to=[to]) for to in recipients]
    try:
        return get_connection().send_messages(messages) or 0
    except (smtplib.SMTPException, OSError):
        logger.exception("Could not send %r to %d recipient(s)", subject, len(recipients))
        return 0


def _reviewer_addresses() -> list[str]:
    return list(selectors.reviewers().values_list("email", flat=True))


def _email_body(event: Event) -> str:
    data = event.payload.get("data") or {}
    lines = [event.summary, ""]
    link = _link(event)
    if link:
        lines += [f"Open it: {link}", ""]
    for key in (
        "candidate_version",
        "live_version",
        "improvement",
        "improvement_interval",
        "p_value",
        "sequential_p_value",
        "srm_p_value",
        "decision",
        "decided_by",
        "deploy_cause",
        "reason",
    ):
        value = data.get(key)
        if value not in (None, "", []):
            lines.append(f"{key.replace('_', ' ')}: {_fmt(key, value)}")
    for problem in data.get("problems") or []:
        lines.append(f"- {problem}")
    return "\n".join(lines).rstrip() + "\n"


def _fmt(key: str, value: Any) -> str:
    if key == "improvement" and isinstance(value, float):
        return f"{value:+.1%}"
    if key == "improvement_interval" and isinstance(value, list):
        return " to ".join(f"{v:+.1%}" for v in value)
    if key.endswith("p_value") and isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def event_email(*, event: Event) -> int:
    """Email an event to the reviewers, unless the assistant's settings say digest only."""
    if event.type == EventType.WEBHOOK_TEST:
        return 0
    if not selectors.settings_for(assistant=event.assistant).email_each_event:
        return 0
    where = event.assistant.name if event.assistant is not None else "Training loop"
    subject = f"{where}: {event.get_type_display().lower()}"
    if event.job_id:
        subject = f"{where}: job {event.job_id} — {event.get_type_display().lower()}"
    sent = _send(subject, _email_body(event), _reviewer_addresses())
    Event.objects.filter(pk=event.pk).update(emailed_to=sent)
    event.emailed_to = sent
    return sent


def digest_send(*, at: str) -> int:
    """The daily digest of the assistants whose digest is due at ``at`` ("HH:MM"): "3 jobs need review"
    with a link to each. Nothing to review: no email. Returns how many people were emailed."""
    hour, minute = (int(part) for part in at.split(":"))
    assistant_ids = NotificationSettings.objects.filter(
        daily_digest=True, digest_time__hour=hour, digest_time__minute=minute
    ).values_list("assistant_id", flat=True)
    jobs = list(
        selectors.jobs_needing_review(assistant_ids=list(assistant_ids)).select_related(
            "assistant", "new_model_version"
        )
    )
    if not jobs:
        return 0
    n = len(jobs)
    subject = f"{n} job{'s' if n != 1 else ''} need{'s' if n == 1 else ''} review"
    lines = [f"{n} training job{'s' if n != 1 else ''} await{'s' if n == 1 else ''} a reviewer's decision:"]
    for job in jobs:
        improvement = selectors.job_figures(job)["improvement"]
        candidate = job.new_model_version.name if job.new_model_version_id else "candidate"
        lines.append(
            f"- {job.assistant.name}, job {job.pk}: {candidate}, improvement "
            f"{'n/a' if improvement is None else f'{improvement:+.1%}'}, waiting since "
            f"{selectors.when(job.updated_at)} — {selectors.job_url(job.pk)}"
        )
    return _send(subject, "\n".join(lines) + "\n", _reviewer_addresses())


def notification_settings_update(*, assistant: Assistant, **values: Any) -> NotificationSettings:
    """Change an assistant's email settings (validated like the admin form) and its digest schedule."""
    row = NotificationSettings.objects.filter(assistant=assistant).first() or NotificationSettings(
        assistant=assistant
    )
    for name, value in values.items():
        if name not in ("email_each_event", "daily_digest", "digest_time"):
            raise ValueError(f"Notification settings have no field '{name}'.")
        setattr(row, name, value)
    row.full_clean()
    row.save()
    from notifications.schedules import digest_schedules_sync

    digest_schedules_sync()
    return row


# -- webhooks -------------------------------------------------------------------------------------------


def endpoint_create(
    *,
    url: str,
    events: list[str] | None = None,
    assistant: Assistant | None = None,
    format: str = WebhookEndpoint.Format.STANDARD,
    description: str = "",
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (``whsec_…``), which is shown to the caller once.

    Raises ValidationError for a bad URL, format or event type.
    """
    events = sorted(set(events or []))
    unknown = [e for e in events if e not in EventType.values]
    if unknown:
        raise ValidationError(
            {"events": f"Unknown event type(s) {', '.join(unknown)}; use {', '.join(EventType.values)}."}
        )
    secret = signing.secret_generate()
    endpoint = WebhookEndpoint(
        url=url, events=events, assistant=assistant, format=format, description=description, secret=secret
    )
    endpoint.full_clean()
    endpoint.save()
    return endpoint, secret


def endpoint_send_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Send a ``webhook.test`` event to this endpoint only (even a disabled one: to check a fix)."""
    data = {"endpoint": {"id": endpoint.pk, "url": endpoint.url}, "message": "A signed test event."}
    event = event_publish(
        type=EventType.WEBHOOK_TEST,
        summary=f"Test event from Trainloop to {endpoint}: this endpoint receives signed webhooks.",
        data=data,
        assistant=endpoint.assistant,
        endpoints=[endpoint],
    )
    delivery = event.deliveries.get()
    _enqueue_delivery(delivery.pk)
    return delivery


def _post(endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> tuple[int | None, int, str]:
    """One signed POST: (status code or None, latency in ms, error text)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        # Signed with the current time on every attempt; the webhook-id stays the same.
        **signing.headers(
            secret=endpoint.secret,
            message_id=delivery.message_id,
            timestamp=int(time.time()),
            body=delivery.body,
        ),
    }
    start = time.monotonic()
    try:
        # No redirects: a receiver that moved must be edited, not followed blindly with a signed body.
        response = requests.post(
            endpoint.url,
            data=delivery.body.encode(),
            headers=headers,
            timeout=HTTP_TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return None, round((time.monotonic() - start) * 1000), f"{type(exc).__name__}: {exc}"[:500]
    latency = round((time.monotonic() - start) * 1000)
    error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}: {response.text[:200]}"
    return response.status_code, latency, error


def webhook_attempt(*, delivery_id: int, now: datetime | None = None) -> WebhookDelivery | None:
    """Make the delivery's next attempt if it is due and nobody else is making it; None when not.

    2xx: delivered. 410 Gone: the receiver says it is gone for good, so the endpoint is disabled (as the
    Standard Webhooks spec suggests). Anything else, or no answer: retried after ``RETRY_DELAYS``; when
    they are used up (about a day of failures) the message is given up and the endpoint disabled.
    """
    now = now or timezone.now()
    claimed = (
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
        )
        .exclude(lease_until__gt=now)
        .update(lease_until=now + DELIVERY_LEASE)
    )
    if claimed != 1:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if not endpoint.enabled and delivery.event.type != EventType.WEBHOOK_TEST:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.FAILED,
            lease_until=None,
            finished_at=now,
            last_error="Not sent: the endpoint is disabled.",
        )
        return delivery
    code, latency, error = _post(endpoint, delivery)
    done_at = timezone.now()
    attempts = delivery.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "lease_until": None,
        "last_status_code": code,
        "last_latency_ms": latency,
        "last_error": error,
        "log": [
            *delivery.log,
            {"at": _timestamp(done_at), "status_code": code, "latency_ms": latency, "error": error},
        ],
    }
    disable = ""
    if code is not None and 200 <= code < 300:
        values.update(status=WebhookDelivery.Status.SUCCEEDED, finished_at=done_at, next_attempt_at=None)
    elif code == 410:
        values.update(status=WebhookDelivery.Status.FAILED, finished_at=done_at, next_attempt_at=None)
        disable = "The receiver answered 410 Gone."
    elif attempts > len(RETRY_DELAYS):
        values.update(status=WebhookDelivery.Status.FAILED, finished_at=done_at, next_attempt_at=None)
        span = (done_at - delivery.created_at).total_seconds() / 3600
        disable = (
            f"Every attempt to deliver {delivery.message_id} failed for {span:.0f} h "
            f"({attempts} attempts; last: {error})."
        )
    else:
        values["next_attempt_at"] = done_at + timedelta(seconds=RETRY_DELAYS[attempts - 1])
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**values)
    for name, value in values.items():
        setattr(delivery, name, value)
    if disable and delivery.event.type != EventType.WEBHOOK_TEST:
        endpoint_disable(endpoint=endpoint, reason=disable)
    return delivery


def webhooks_retry_due(*, now: datetime | None = None) -> list[int]:
    """Enqueue every pending delivery whose next attempt is due (also the ones a dead worker dropped)."""
    from django_q.tasks import async_task

    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .exclude(lease_until__gt=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:500]
    )
    for delivery_id in due:
        async_task("notifications.tasks.webhook_deliver", delivery_id, group="notifications")
    return due


def endpoint_disable(*, endpoint: WebhookEndpoint, reason: str) -> bool:
    """Disable an endpoint that keeps failing, fail its pending messages, and email whoever manages
    endpoints. True when this call disabled it."""
    now = timezone.now()
    if not WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
        enabled=False, disabled_reason=reason, disabled_at=now
    ):
        return False
    endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, reason, now
    WebhookDelivery.objects.filter(endpoint=endpoint, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED,
        finished_at=now,
        last_error="Not sent: the endpoint was disabled.",
    )
    managers = (
        get_user_model()
        .objects.with_perm(
            MANAGE_ENDPOINTS_PERM,
            is_active=True,
            include_superusers=True,
            backend=selectors.PERMISSION_BACKEND,
        )
        .exclude(email="")
        .values_list("email", flat=True)
    )
    link = selectors.absolute_url(f"/admin/notifications/webhookendpoint/{endpoint.pk}/change/")
    _send(
        f"webhook endpoint {endpoint} disabled",
        f"The webhook endpoint {endpoint.url} was disabled: {reason}\n\n"
        f"Fix the receiver, then enable it again and send a test event: {link}\n",
        list(managers),
    )
    logger.warning("Webhook endpoint %s disabled: %s", endpoint.pk, reason)
    return True


# -- the loop's health ----------------------------------------------------------------------------------


def loop_health_check(*, now: datetime | None = None, inline: bool = False) -> list[str]:
    """Tell reviewers when the worker or a schedule stops running, and again when all is well.

    Notifies on a change only (the last ``loop.*`` event is the memory). ``inline``: deliver from this
    process (``manage.py check_loop_health`` from cron: the worker may be what is down).
    """
    problems = selectors.loop_problems(now=now or timezone.now())
    last = Event.objects.filter(type__in=(EventType.LOOP_UNHEALTHY, EventType.LOOP_RECOVERED)).first()
    was_unhealthy = last is not None and last.type == EventType.LOOP_UNHEALTHY
    if problems and not (was_unhealthy and last.payload.get("data", {}).get("problems") == problems):
        event = event_publish(
            type=EventType.LOOP_UNHEALTHY,
            summary="The training loop is not running as scheduled: " + " ".join(problems),
            data={"problems": problems, "url": selectors.absolute_url("/")},
        )
    elif not problems and was_unhealthy:
        event = event_publish(
            type=EventType.LOOP_RECOVERED,
            summary="The training loop's worker and schedules are running again.",
            data={"problems": [], "url": selectors.absolute_url("/")},
        )
    else:
        return problems
    event_dispatch(event=event, inline=inline)
    return problems
