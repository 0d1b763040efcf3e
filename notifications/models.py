"""What happened (``Event``), who hears of it by email (``NotificationSettings``) and by webhook
(``WebhookEndpoint``), and each webhook message's delivery log (``WebhookDelivery``)."""

from __future__ import annotations

import datetime as dt

from django.core.validators import URLValidator
from django.db import models
from django.utils import timezone

from assistants.models import Assistant


class EventType(models.TextChoices):
    JOB_TRIGGERED = "job.triggered", "Retrain triggered (a job was created)"
    JOB_AWAITING_APPROVAL = "job.awaiting_approval", "Job awaiting approval"
    JOB_DEPLOYED = "job.deployed", "Job deployed"
    JOB_REJECTED = "job.rejected", "Job rejected"
    JOB_FAILED = "job.failed", "Job failed"
    EXPERIMENT_CONCLUDED = "experiment.concluded", "Experiment concluded"
    ROLLOUT_ROLLED_BACK = "rollout.rolled_back", "Rollout rolled back by its guardrail"
    LOOP_UNHEALTHY = "loop.unhealthy", "Worker or schedule not running"
    LOOP_RECOVERED = "loop.recovered", "Worker and schedules running again"
    WEBHOOK_TEST = "webhook.test", "Test event"


class NotificationSettings(models.Model):
    """Per assistant; an assistant without a row gets the defaults (every event by email, no digest)."""

    assistant = models.OneToOneField(
        Assistant, on_delete=models.CASCADE, related_name="notification_settings"
    )
    email_each_event = models.BooleanField(
        default=True,
        help_text="Email the assistant's reviewers (users who may approve jobs) as each event happens.",
    )
    daily_digest = models.BooleanField(
        default=False, help_text="Also email a daily digest of the jobs that need review (none: no email)."
    )
    digest_time = models.TimeField(
        default=dt.time(9, 0),
        help_text="When the digest is sent, in the server's TIME_ZONE. Assistants with the same time "
        "share one email.",
    )

    class Meta:
        verbose_name = "notification settings"
        verbose_name_plural = "notification settings"

    def __str__(self) -> str:
        return f"notifications for {self.assistant.name}"


class Event(models.Model):
    """One thing that happened, as sent: the Standard Webhooks payload (``type``, ``timestamp``, ``data``)."""

    type = models.CharField(max_length=32, choices=EventType.choices, db_index=True)
    assistant = models.ForeignKey(
        Assistant, null=True, blank=True, on_delete=models.CASCADE, related_name="notification_events"
    )
    job_id = models.BigIntegerField(null=True, blank=True, help_text="The training job it is about, if any.")
    # "job.deployed:12": a job reaches each status once and an experiment concludes once, so a task that
    # runs twice (a worker died after sending) cannot announce the same thing twice.
    key = models.CharField(max_length=80, unique=True, null=True, blank=True, editable=False)
    summary = models.TextField(help_text="One readable paragraph: the email's first line, Slack's text.")
    payload = models.JSONField(default=dict)
    emailed_to = models.PositiveIntegerField(default=0, help_text="How many people were emailed.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.type} ({self.created_at:%Y-%m-%d %H:%M})"


class WebhookEndpoint(models.Model):
    class Format(models.TextChoices):
        STANDARD = "standard", "Standard Webhooks JSON"
        SLACK = "slack", 'Slack-style incoming webhook ({"text": …})'

    # Webhooks are HTTP POSTs: the default URL validator would also let ftp:// through.
    url = models.URLField(max_length=500, validators=[URLValidator(schemes=["http", "https"])])
    description = models.CharField(max_length=200, blank=True)
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.STANDARD)
    assistant = models.ForeignKey(
        Assistant,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        help_text="Only this assistant's events; empty: every assistant's (and the worker's health).",
    )
    events = models.JSONField(
        default=list, blank=True, help_text='Event types to send, e.g. ["job.awaiting_approval"]; empty: all.'
    )
    # The signing key, "whsec_" + base64. Shown once when the endpoint is made, never in the admin form.
    secret = models.CharField(max_length=100, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("url", "id")

    def __str__(self) -> str:
        return self.description or self.url

    def wants(self, event_type: str) -> bool:
        return event_type == EventType.WEBHOOK_TEST or not self.events or event_type in self.events


class WebhookDelivery(models.Model):
    """One message to one endpoint, retried with backoff; ``log`` holds every attempt."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    # The Standard Webhooks ``webhook-id``: the same on every attempt, so receivers can deduplicate.
    message_id = models.CharField(max_length=40, unique=True)
    # The exact body sent (and signed) on every attempt.
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # An attempt in progress holds the delivery until then (optimistic claim), so two workers never send
    # one attempt twice; a worker that dies lets it expire and the sweep picks the delivery up again.
    lease_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    log = models.JSONField(
        default=list, blank=True, help_text="Every attempt: at, status code, latency, error."
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.message_id} → {self.endpoint}"
