"""Assistants, the registry of their model versions, what was deployed when, and API keys."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone


class Assistant(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    system_prompt = models.TextField(blank=True)
    live_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    feedback_sample_rate = models.FloatField(
        default=0.2,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of interactions for which the widget asks the customer for feedback (0–1).",
    )
    redact_at_ingestion = models.BooleanField(
        default=False,
        help_text="Store interactions and feedback with emails, phone, card and IBAN numbers and IP "
        "addresses already replaced by placeholders: the originals are never stored.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("slug",)

    def __str__(self) -> str:
        return self.slug


class ModelVersion(models.Model):
    class Backend(models.TextChoices):
        LOCAL = "local", "Local retrieval model"
        OPENAI = "openai", "OpenAI-compatible provider"

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        LIVE = "live"
        RETIRED = "retired"

    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="versions")
    name = models.CharField(max_length=200, help_text="Human name, e.g. support-v3.")
    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.LOCAL)
    provider_model = models.CharField(
        max_length=300, blank=True, help_text="Provider model id (openai backend), e.g. ft:gpt-4o-mini:org:x."
    )
    artifact = models.CharField(max_length=500, blank=True, help_text="Storage path of the local model.")
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    base_version = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(fields=("assistant", "name"), name="modelversion_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Deployment(models.Model):
    """One row each time traffic moved: the answer to "what was live on date X"."""

    class Reason(models.TextChoices):
        INITIAL = "initial"
        APPROVAL = "approval"
        AUTO_DEPLOY = "auto_deploy"
        ROLLBACK = "rollback"
        ROLLOUT_STAGE = "rollout_stage"
        MANUAL = "manual"

    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="deployments")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    previous_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=16, choices=Reason.choices)
    traffic_share = models.FloatField(default=1.0, help_text="Share of traffic on `version` after this row.")
    note = models.TextField(blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")
        permissions = [("rollback_deployment", "Can roll back to the previous version")]


class ApiKey(models.Model):
    """A bearer key. Only its sha256 is stored; the key itself is shown once, at creation.

    Keys are 256-bit random tokens, so a fast hash is safe (no dictionary to guess from) and keeps the
    authentication of every ingest request cheap.
    """

    class Scope(models.TextChoices):
        INGEST = "ingest", "ingest: log interactions, send feedback, route"
        READ = "read", "read: stats, datasets, jobs, experiments"
        MANAGE = "manage", "manage: everything, including training and approvals"

    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=16, db_index=True, help_text="First characters, to recognise a key.")
    hashed_key = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    assistant = models.ForeignKey(
        Assistant, null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: all assistants."
    )
    allowed_origins = models.JSONField(
        default=list, blank=True, help_text="Browser origins allowed to use this (publishable ingest) key."
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="The key acts as this user: permissions are checked and actions attributed to them.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.scope})"

    @staticmethod
    def hash(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def allows_scope(self, scope: str) -> bool:
        # manage is a superset of the others; ingest and read are separate, so a publishable
        # (ingest) key found in a web page cannot read anything back.
        return self.scope == scope or self.scope == self.Scope.MANAGE

    @property
    def is_publishable(self) -> bool:
        """A key with browser origins sits in web page source: anyone can copy it (see PublishableIngest)."""
        return bool(self.allowed_origins)

    def allows_assistant(self, assistant: Assistant) -> bool:
        return self.assistant_id is None or self.assistant_id == assistant.id
