"""A/B experiments between two model versions of one assistant."""

from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q
from django.utils import timezone

from assistants.models import Assistant, ModelVersion


def _salt() -> str:
    return secrets.token_hex(8)


class Experiment(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        CONCLUDED = "concluded"
        STOPPED = "stopped"

    class Decision(models.TextChoices):
        NONE = "", "—"
        VARIANT_BETTER = "variant_better"
        NO_DIFFERENCE = "no_difference"
        VARIANT_WORSE = "variant_worse"
        INCONCLUSIVE = "inconclusive"
        INVALID_SRM = "invalid_srm"

    class Purpose(models.TextChoices):
        AB_TEST = "ab_test", "A/B test of a candidate"
        ROLLOUT = "rollout", "Progressive rollout guardrail"

    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="experiments")
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.AB_TEST)
    control = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    variant = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    salt = models.CharField(max_length=32, default=_salt)
    traffic_split = models.FloatField(default=0.5, help_text="Share of traffic to the variant.")
    min_sample_size = models.PositiveIntegerField(default=100, help_text="Per arm.")
    max_duration_days = models.FloatField(default=7)
    significance_level = models.FloatField(default=0.05)
    min_improvement = models.FloatField(default=0.05, help_text="Relative.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True)
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True, default="")
    decision_reason = models.TextField(blank=True)
    last_analysis = models.JSONField(default=dict, blank=True)
    analysed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-started_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=("assistant",), condition=Q(status="running"), name="experiment_one_running_per_assistant"
            ),
        ]

    def __str__(self) -> str:
        return f"experiment {self.pk}: {self.control_id} vs {self.variant_id}"


class ExperimentSnapshot(models.Model):
    """The analysis as it stood each day, for the history chart."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="snapshots")
    day = models.DateField()
    analysis = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("day",)
        constraints = [models.UniqueConstraint(fields=("experiment", "day"), name="snapshot_one_per_day")]
