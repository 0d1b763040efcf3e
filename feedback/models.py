"""What customers asked, what the assistant answered, and what they thought of it."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from assistants.models import Assistant, ModelVersion

RATING_VALIDATORS = [MinValueValidator(1), MaxValueValidator(5)]
CATEGORY_FIELDS = ("accuracy", "helpfulness", "tone", "relevance", "completeness")

# THE definition of a successful answer: the customer said it helped, or rated it 4 or 5.
# It lives in the database (a generated column) so every aggregate, filter and export agrees.
SUCCESS_RATING = 4
SUCCESS_Q = Q(helpful=True) | Q(rating__gte=SUCCESS_RATING)
# Feedback that says anything about success at all (a bare comment does not).
SIGNAL_Q = Q(helpful__isnull=False) | Q(rating__isnull=False)


def is_success(*, helpful: bool | None, rating: int | None) -> bool:
    """Python twin of ``SUCCESS_Q`` for objects not yet saved (kept next to it on purpose)."""
    return helpful is True or (rating is not None and rating >= SUCCESS_RATING)


class Interaction(models.Model):
    class Arm(models.TextChoices):
        # abtesting.assignment's arm names (it sits above this app): a multi-arm experiment has up to four
        # variants. Every name fits the column's 8 characters.
        NONE = "", "—"
        CONTROL = "control"
        VARIANT = "variant"
        VARIANT2 = "variant2"
        VARIANT3 = "variant3"
        VARIANT4 = "variant4"

    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="interactions")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="interactions"
    )
    # The A/B layer sits above this one, so the experiment is referenced by id, not by a foreign key
    # (a foreign key would make feedback depend on abtesting's migrations).
    experiment_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    arm = models.CharField(max_length=8, choices=Arm.choices, blank=True, default="")
    user_ref = models.CharField(max_length=200, blank=True, help_text="Opaque customer reference.")
    request_id = models.CharField(max_length=200, help_text="The client's id, unique per assistant.")
    messages = models.JSONField(default=list)
    response = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    # Streamed answers only: the wait for the first token (latency_ms is the whole answer).
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, null=True, blank=True, help_text="Empty: no error.")
    feedback_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(fields=("assistant", "request_id"), name="interaction_unique_request"),
        ]
        indexes = [
            models.Index(fields=("assistant", "created_at"), name="interaction_asst_created"),
            models.Index(fields=("experiment_id", "arm"), name="interaction_experiment_arm"),
            # abtesting's SRM check asks "was this user in the experiment before?" once per new row.
            models.Index(fields=("experiment_id", "user_ref", "id"), name="interaction_experiment_user"),
        ]

    def __str__(self) -> str:
        return f"{self.assistant_id}:{self.request_id}"

    @property
    def question(self) -> str:
        """The last thing the customer said."""
        for message in reversed(self.messages or []):
            if isinstance(message, dict) and message.get("role") == "user":
                return str(message.get("content", ""))
        return ""


class Feedback(models.Model):
    class Kind(models.TextChoices):
        THUMBS = "thumbs"
        RATING = "rating"
        TEXT = "text"
        CATEGORY = "category"
        IMPROVEMENT = "improvement"
        CORRECTION = "correction"

    interaction = models.ForeignKey(Interaction, on_delete=models.CASCADE, related_name="feedback")
    # Denormalised from the interaction so stats over an assistant and a date range need no join. No index
    # of its own: the (assistant, created_at) index serves every lookup by assistant, and one index fewer
    # to maintain is a measurable share of the cost of ingesting feedback.
    assistant = models.ForeignKey(
        Assistant, on_delete=models.CASCADE, related_name="feedback", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    helpful = models.BooleanField(null=True, blank=True)
    rating = models.PositiveSmallIntegerField(null=True, blank=True, validators=RATING_VALIDATORS)
    accuracy = models.PositiveSmallIntegerField(null=True, blank=True, validators=RATING_VALIDATORS)
    helpfulness = models.PositiveSmallIntegerField(null=True, blank=True, validators=RATING_VALIDATORS)
    tone = models.PositiveSmallIntegerField(null=True, blank=True, validators=RATING_VALIDATORS)
    relevance = models.PositiveSmallIntegerField(null=True, blank=True, validators=RATING_VALIDATORS)
    completeness = models.PositiveSmallIntegerField(null=True, blank=True, validators=RATING_VALIDATORS)
    comment = models.TextField(blank=True)
    suggestion = models.TextField(blank=True)
    corrected_answer = models.TextField(blank=True)
    confidence = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    excluded_from_training = models.BooleanField(default=False)
    success = models.GeneratedField(
        expression=models.Case(models.When(SUCCESS_Q, then=True), default=False),
        output_field=models.BooleanField(),
        db_persist=True,
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    # sha256 of the canonical request body: a retry with the same key must carry the same body.
    request_hash = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name_plural = "feedback"
        permissions = [("curate_feedback", "Can exclude feedback from training and correct answers")]
        constraints = [
            models.UniqueConstraint(
                fields=("assistant", "idempotency_key"),
                condition=Q(idempotency_key__isnull=False),
                name="feedback_unique_idempotency_key",
            ),
        ]
        indexes = [models.Index(fields=("assistant", "created_at"), name="feedback_asst_created")]

    def __str__(self) -> str:
        return f"{self.kind} on {self.interaction_id}"


class CurationLog(models.Model):
    """Audit trail of reviewers' edits to feedback (exclusions, corrected answers)."""

    feedback = models.ForeignKey(Feedback, on_delete=models.CASCADE, related_name="curation_log")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=32)
    detail = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at",)


class ErasureRecord(models.Model):
    """Proof that a customer's data was erased on request: who, when, how many rows, what it touched.

    The customer is recorded only as ``subject``, a keyed hash of their user reference
    (``feedback.erasure.user_ref_digest``: HMAC-SHA256 with the SECRET_KEY), so the record itself holds no
    personal data, and a later request for the same reference finds its earlier erasures. Datasets and
    model versions are listed by id and name rather than by foreign key: ``training`` sits above this app.
    """

    class Via(models.TextChoices):
        API = "api"
        ADMIN = "admin"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    via = models.CharField(max_length=8, choices=Via.choices)
    subject = models.CharField(max_length=64, db_index=True, help_text="Keyed hash of the user reference.")
    assistants = models.JSONField(default=list, help_text="Slugs of the assistants searched; empty: all.")
    interactions = models.PositiveIntegerField(default=0)
    feedback = models.PositiveIntegerField(default=0)
    other_rows = models.JSONField(
        default=dict, help_text="Rows deleted with them (provenance, curation log)."
    )
    batches = models.PositiveIntegerField(default=0)
    datasets = models.JSONField(default=list, help_text="Datasets marked for a rebuild without them.")
    model_versions = models.JSONField(
        default=list, help_text="Model versions trained on them (or on top of such a version)."
    )

    class Meta:
        ordering = ("-created_at", "-id")
        permissions = [("erase_customer", "Can erase a customer's interactions and feedback")]

    def __str__(self) -> str:
        return f"erasure {self.pk} ({self.subject[:12]}…)"


class RetentionRecord(models.Model):
    """What one retention pass removed for one assistant, and when: counts only, no personal data.

    Written by ``training.retention`` when a pass deleted or expired anything. Datasets are listed by id
    (``training`` sits above this app).
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="+")
    retention_days = models.PositiveIntegerField()
    cutoff = models.DateTimeField(help_text="Rows created before this local midnight were due.")
    interactions = models.PositiveIntegerField(default=0)
    feedback = models.PositiveIntegerField(default=0)
    other_rows = models.JSONField(
        default=dict, help_text="Rows deleted with them (provenance, curation log, A/B units, prompts)."
    )
    batches = models.PositiveIntegerField(default=0)
    longest_batch_ms = models.FloatField(default=0.0, help_text="The longest any one batch held its locks.")
    kept = models.PositiveIntegerField(
        default=0,
        help_text="Interactions older than the cut-off still kept: in a running A/B test, in the dataset "
        "of a job in progress, or with feedback younger than the cut-off.",
    )
    datasets = models.JSONField(default=list, help_text="Datasets expired: files and provenance deleted.")
    seconds = models.FloatField(default=0.0)
    complete = models.BooleanField(
        default=True, help_text="Off: the pass stopped at its time budget; the next one continues."
    )

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"retention {self.pk} ({self.interactions} interactions)"


class DailyRollup(models.Model):
    """What one assistant's model version received on one local day, summed: the figures' building block.

    The overview, its charts, the retrain check and the health figures add these up instead of scanning
    every raw row in their window (``feedback.rollups``). Rows are only ever added to, as the worker
    counts new raw rows past ``RollupMark``; deleting old raw rows (retention) leaves the sums as they were.
    """

    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="+", db_index=False)
    # A plain id (0: none) rather than a foreign key: deleting a version must not merge its days into
    # another key's, and the sums stay valid for the history.
    model_version_id = models.BigIntegerField(default=0)
    day = models.DateField(help_text="Local day (settings.TIME_ZONE) of the rows' created_at.")
    interactions = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    feedback = models.BigIntegerField(default=0)
    helpful_n = models.BigIntegerField(default=0)
    helpful_yes = models.BigIntegerField(default=0)
    rated = models.BigIntegerField(default=0)
    rating_sum = models.BigIntegerField(default=0)
    signals = models.BigIntegerField(default=0)
    successes = models.BigIntegerField(default=0)
    excluded = models.BigIntegerField(default=0)
    corrections = models.BigIntegerField(default=0)
    accuracy_n = models.BigIntegerField(default=0)
    accuracy_sum = models.BigIntegerField(default=0)
    helpfulness_n = models.BigIntegerField(default=0)
    helpfulness_sum = models.BigIntegerField(default=0)
    tone_n = models.BigIntegerField(default=0)
    tone_sum = models.BigIntegerField(default=0)
    relevance_n = models.BigIntegerField(default=0)
    relevance_sum = models.BigIntegerField(default=0)
    completeness_n = models.BigIntegerField(default=0)
    completeness_sum = models.BigIntegerField(default=0)
    kind_thumbs = models.BigIntegerField(default=0)
    kind_rating = models.BigIntegerField(default=0)
    kind_text = models.BigIntegerField(default=0)
    kind_category = models.BigIntegerField(default=0)
    kind_improvement = models.BigIntegerField(default=0)
    kind_correction = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("assistant", "day", "model_version_id"), name="daily_rollup_unique_day"
            ),
        ]


class RollupMark(models.Model):
    """How far the rollups have counted: raw rows with ids up to these are in ``DailyRollup``.

    One row (pk 1). Its row lock serialises the refresh with curation edits that adjust the sums.
    """

    feedback_id = models.BigIntegerField(default=0)
    interaction_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(null=True, blank=True)
