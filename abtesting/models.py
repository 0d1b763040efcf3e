"""A/B experiments between model versions of one assistant: a control and one variant, or (multi-arm) a
control and up to four variants."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from abtesting.assignment import CONTROL, MAX_VARIANTS, VARIANT, arm_names
from assistants.models import Assistant, ModelVersion

# Planned looks of a minute-scale plan at most (max duration / look interval): the design's inflation
# factor integrates over every planned look (60 looks: about 0.5 s, cached; 720: minutes).
MAX_PLANNED_LOOKS = 100


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
    # How many variants are tested against the control: 1 for an A/B test; more for a multi-arm test,
    # whose further variants ("variant2", ...) are ExperimentVariant rows. Kept on the row so that routing
    # reads those rows only for a multi-arm experiment (the chat hot path, abtesting.routing).
    variant_count = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_VARIANTS)],
        help_text="Variants tested against the control (1: an A/B test).",
    )
    winner = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The version the experiment found best (decision variant_better).",
    )
    salt = models.CharField(max_length=32, default=_salt)
    traffic_split = models.FloatField(
        default=0.5, help_text="Share of traffic to the variant (to all variants together, multi-arm)."
    )
    min_sample_size = models.PositiveIntegerField(default=100, help_text="Per arm.")
    max_duration_days = models.FloatField(default=7)
    significance_level = models.FloatField(default=0.05)
    min_improvement = models.FloatField(default=0.05, help_text="Relative.")
    look_interval_minutes = models.PositiveIntegerField(
        default=1440,
        validators=[MinValueValidator(1)],
        help_text="At most one planned look of the group-sequential test per this many minutes "
        "(1440: daily). Copied from the retrain policy at the start.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True)
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True, default="")
    decision_reason = models.TextField(blank=True)
    last_analysis = models.JSONField(default=dict, blank=True)
    analysed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    stopped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Progressive rollout (purpose=rollout): traffic_split is the current stage's share.
    stages = models.JSONField(
        default=list, blank=True, help_text="Rollout traffic shares, e.g. [0.1, 0.5, 1.0]."
    )
    stage_index = models.PositiveSmallIntegerField(default=0)
    stage_hours = models.FloatField(default=48.0, help_text="Hours each rollout stage is held.")
    stage_started_at = models.DateTimeField(null=True, blank=True)
    # Running per-arm counts and the id watermarks they cover, so each analysis aggregates only the rows
    # stored since the previous one (see abtesting.selectors.experiment_tally_refresh).
    tally = models.JSONField(default=dict, blank=True, editable=False)
    # The test's plan, fixed once (see abtesting.services.next_look): the confidence sequence's tuning
    # sample size (set at the start), the maximum number of units (set, blinded, at the first look) and
    # the information fraction of every planned look taken so far.
    plan = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ("-started_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=("assistant",),
                condition=Q(status="running"),
                name="experiment_one_running_per_assistant",
            ),
        ]

    def __str__(self) -> str:
        return f"experiment {self.pk}: {self.control_id} vs {self.variant_id}"

    @property
    def is_multi_arm(self) -> bool:
        return self.variant_count > 1

    @property
    def arms(self) -> tuple[str, ...]:
        """The arm names, control first: ("control", "variant"), or with "variant2"... for multi-arm."""
        return arm_names(self.variant_count)

    def arm_versions(self) -> list[tuple[str, ModelVersion]]:
        """(arm, version) in arm order, control first. One query for a multi-arm experiment's further
        variants, none when they are prefetched (``prefetch_related("extra_variants__version")``)."""
        pairs = [(CONTROL, self.control), (VARIANT, self.variant)]
        if self.is_multi_arm:
            extras = self.extra_variants.all()
            if "extra_variants" not in getattr(self, "_prefetched_objects_cache", {}):
                extras = extras.select_related("version")  # not prefetched: the versions in the same query
            pairs += [(extra.arm, extra.version) for extra in extras]
        return pairs

    def dropped_arms(self) -> dict[str, int]:
        """Arms dropped at a planned look for doing significantly worse: arm -> the look's index.

        Kept in the plan (``abtesting.services``), which routing loads anyway: a dropped arm's users get
        the control's version from the next request, outside the experiment.
        """
        plan = self.plan or {}
        decided, at = plan.get("decided") or {}, plan.get("decided_at") or {}
        return {arm: int(at.get(arm, 0)) for arm, status in decided.items() if status == "worse"}

    @property
    def is_running(self) -> bool:
        return self.status == self.Status.RUNNING

    @property
    def outcome(self) -> str:
        """What the experiment says, in words used everywhere (page, list, job timeline, API).

        A stopped experiment reached no decision, whatever its figures looked like when it was stopped.
        """
        if self.status == self.Status.STOPPED:
            who = self.stopped_by.get_username() if self.stopped_by_id and self.stopped_by else "the system"
            return f"stopped early by {who}: no decision"
        if self.status == self.Status.RUNNING:
            return "running: no decision yet"
        return self.decision or "no decision"


class ExperimentVariant(models.Model):
    """A multi-arm experiment's further variant: "variant2", "variant3" or "variant4" (the first variant is
    ``Experiment.variant``, so an A/B test has no rows here)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="extra_variants")
    arm = models.CharField(max_length=8)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")

    class Meta:
        # "variant2" < "variant3" < "variant4": the arm order.
        ordering = ("experiment", "arm")
        constraints = [
            models.UniqueConstraint(fields=("experiment", "arm"), name="experiment_variant_arm_once"),
            models.UniqueConstraint(fields=("experiment", "version"), name="experiment_variant_version_once"),
        ]

    def __str__(self) -> str:
        return f"experiment {self.experiment_id} {self.arm}: {self.version_id}"


class ExperimentSnapshot(models.Model):
    """The analysis as it stood each day, for the history chart."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="snapshots")
    day = models.DateField()
    analysis = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("day",)
        constraints = [models.UniqueConstraint(fields=("experiment", "day"), name="snapshot_one_per_day")]


class ExperimentUnit(models.Model):
    """One randomised unit's running sums in an experiment (the current rollout stage, for a rollout).

    A unit is a user (``u:<user_ref>``), or a request without a user reference (``i:<interaction id>``).
    Kept so each look adds only the new feedback: the arm's sums of squares need each unit's previous
    totals (see ``abtesting.selectors``).
    """

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="units")
    arm = models.CharField(max_length=8)
    unit = models.CharField(max_length=210)
    n = models.PositiveIntegerField(default=0, help_text="Rated interactions.")
    successes = models.PositiveIntegerField(default=0)
    rating_n = models.PositiveIntegerField(default=0)
    rating_sum = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("experiment", "arm", "unit"), name="experiment_unit_once"),
        ]
