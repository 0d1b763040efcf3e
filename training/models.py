"""Retrain policies, training datasets (with provenance), training jobs and their timelines.

Over 400 lines because ``RetrainPolicy`` carries the seed's full settings (thresholds, schedule, A/B,
rollout, data filters, evaluation, redaction, comparisons), each field with its validator and help text,
and its ``clean`` checks them together; splitting one model's fields across modules would hide them.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from abtesting.models import MAX_PLANNED_LOOKS
from assistants.models import Assistant, ModelVersion
from feedback.models import CATEGORY_FIELDS, Feedback
from training.comparison_spec import (
    MAX_TOP_K,
    MIN_TOP_K,
    ONLINE_BEST_AB,
    ONLINE_CHOICES,
    ComparisonInvalid,
    comparison_clean,
)
from training.dataset_options import DatasetOptions

UNIT = [MinValueValidator(0.0), MaxValueValidator(1.0)]
RATING = [MinValueValidator(1), MaxValueValidator(5)]
# A word or phrase a retrain condition looks for in comments: a word character at each end, so that a
# whole-word match is possible; inside, also spaces, hyphens and apostrophes.
WORD_PATTERN = re.compile(r"\w(?:[\w' -]*\w)?")


class EvalGrader(models.TextChoices):
    """Graders of the offline evaluation (training/evaluation/graders.py), in OpenAI's evals shapes."""

    AUTO = "auto", "automatic: label_model judge for provider-trained candidates, token F1 otherwise"
    TOKEN_F1 = "token_f1", "text_similarity: token F1 (local, no API key)"
    ROUGE_L = "rouge_l", "text_similarity: ROUGE-L (local, no API key)"
    BLEU = "bleu", "text_similarity: BLEU (local, no API key)"
    FUZZY_MATCH = "fuzzy_match", "text_similarity: fuzzy match (local, no API key)"
    COSINE = "cosine", "text_similarity: cosine of embeddings (needs an embeddings model)"
    STRING_CHECK = "string_check", "string_check: the answer contains the reference (local)"
    SCORE_MODEL = "score_model", "score_model: LLM judge scores 0–1 (needs a provider)"
    LABEL_MODEL = "label_model", "label_model: LLM judge says correct/incorrect (needs a provider)"


class RetrainPolicy(models.Model):
    """Everything the seed's orchestrator config holds, per assistant, tuned by admins."""

    class Schedule(models.TextChoices):
        EVERY_MINUTE = "minutely", "every minute"
        HOURLY = "hourly"
        DAILY = "daily"
        WEEKLY = "weekly"
        MONTHLY = "monthly"

    assistant = models.OneToOneField(Assistant, on_delete=models.CASCADE, related_name="policy")
    enabled = models.BooleanField(
        default=True, help_text="Off: no scheduled checks (manual training still works)."
    )

    # Thresholds (seed defaults).
    min_feedback_count = models.PositiveIntegerField(
        default=100, help_text="Retrain once this much feedback arrived since the last deployment."
    )
    max_feedback_count = models.PositiveIntegerField(
        default=1000, help_text="Feedback rows used at most per training run (newest first)."
    )
    min_success_rate = models.FloatField(
        default=0.80, validators=UNIT, help_text="Retrain when success rate falls below (0–1)."
    )
    max_error_rate = models.FloatField(
        default=0.20, validators=UNIT, help_text="Retrain when error rate rises above (0–1)."
    )
    min_avg_rating = models.FloatField(
        default=3.5, validators=RATING, help_text="Retrain when average rating falls below (1–5)."
    )
    max_days_since_retrain = models.PositiveIntegerField(
        default=30, help_text="Retrain at least this often (days)."
    )
    max_performance_drop = models.FloatField(
        default=0.10,
        validators=UNIT,
        help_text="Retrain when success rate fell by this share relative to when the live version was "
        "deployed (0–1).",
    )
    min_quality_evidence = models.PositiveIntegerField(
        default=30,
        help_text="Quality conditions (success, rating, error, drop) need at least this many observations, "
        "so one bad rating never triggers a retrain.",
    )

    # Schedule.
    schedule = models.CharField(max_length=8, choices=Schedule.choices, default=Schedule.DAILY)
    schedule_time = models.TimeField(default=dt.time(2, 0), help_text="Local time of the scheduled check.")

    # Training.
    backend = models.CharField(
        max_length=16, choices=ModelVersion.Backend.choices, default=ModelVersion.Backend.LOCAL
    )
    base_model = models.CharField(
        max_length=200, default="gpt-4o-mini-2024-07-18", help_text="Provider base model (openai backend)."
    )
    training_timeout = models.PositiveIntegerField(
        default=3600, help_text="Seconds a job may spend before it is failed."
    )
    require_approval = models.BooleanField(
        default=True, help_text="A reviewer must approve before deployment."
    )
    # Comparisons (training/comparison_spec.py): every job the retrain check starts trains these candidates.
    compare_candidates = models.JSONField(
        default=list,
        blank=True,
        verbose_name="comparison candidates",
        help_text="Empty: each triggered job trains one version (backend and base model above). Otherwise "
        "every job the retrain check starts is a comparison of these 2–6 candidates on one dataset, and "
        'the best is kept. A JSON list such as [{"label": "A", "backend": "local", "settings": {}}, '
        '{"label": "B", "backend": "local", "settings": {"threshold": "coverage", "target_coverage": '
        '0.9}}, {"label": "C", "backend": "openai", "base_model": "gpt-4o-mini-2024-07-18", "settings": '
        '{"n_epochs": 2}}]. Local settings: threshold tuned | coverage (with target_coverage) | fixed '
        "(with threshold_value), features word+char | word | char. OpenAI settings: n_epochs, "
        "batch_size, learning_rate_multiplier.",
    )
    compare_online = models.CharField(
        max_length=10,
        choices=ONLINE_CHOICES,
        default=ONLINE_BEST_AB,
        verbose_name="comparison online test",
        help_text="After the offline ranking: A/B test the best candidate, or test the top k in one "
        "multi-arm experiment (control and k variants).",
    )
    compare_top_k = models.PositiveSmallIntegerField(
        default=MIN_TOP_K,
        validators=[MinValueValidator(MIN_TOP_K), MaxValueValidator(MAX_TOP_K)],
        verbose_name="comparison top k",
        help_text=f"Candidates in the multi-arm experiment ({MIN_TOP_K}–{MAX_TOP_K}).",
    )
    auto_deploy_threshold = models.FloatField(
        default=0.15,
        validators=UNIT,
        help_text="Deploy without approval when the significant improvement is at least this.",
    )

    # Offline evaluation (training/evaluation/): how answers are graded and when its figures may decide.
    eval_grader = models.CharField(
        max_length=16,
        choices=EvalGrader.choices,
        default=EvalGrader.AUTO,
        verbose_name="grader",
        help_text="How each validation answer is scored against the reference. The calibration table "
        "below shows how often each grader agreed with your customers.",
    )
    eval_pass_threshold = models.FloatField(
        null=True,
        blank=True,
        validators=UNIT,
        verbose_name="pass threshold",
        help_text="Score (0–1) at which a text_similarity or score_model grade passes; empty: the "
        "grader's default (token F1 0.5, ROUGE-L 0.5, BLEU 0.3, fuzzy 0.6, cosine 0.8, score 0.5).",
    )
    eval_pairwise = models.BooleanField(
        default=True,
        verbose_name="pairwise judging",
        help_text="Also compare candidate and live answer per prompt (both orders with a judge); the win "
        "rate is the evaluation's headline figure.",
    )
    eval_min_prompts = models.PositiveIntegerField(
        default=50,
        validators=[MinValueValidator(1)],
        verbose_name="minimum prompts",
        help_text="No automatic decision (auto-approve, auto-deploy, auto-reject) on fewer validation "
        "prompts: a reviewer decides.",
    )
    eval_judge_model = models.CharField(
        max_length=200,
        default="gpt-4o-mini",
        verbose_name="judge model",
        help_text="Provider model of the judge.",
    )
    eval_judge_rubric = models.TextField(
        blank=True, verbose_name="judge rubric", help_text="Empty: the built-in customer-service rubric."
    )
    eval_embedding_model = models.CharField(
        max_length=200,
        blank=True,
        verbose_name="embeddings model",
        help_text="Provider embeddings model for the cosine grader (e.g. text-embedding-3-small); empty: "
        "cosine is not offered.",
    )
    eval_judge_budget_usd = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(0.0)],
        verbose_name="judge budget (USD)",
        help_text="Per job. Evaluation stops with the reason when the next judge call would exceed it.",
    )
    eval_judge_input_price = models.FloatField(
        default=0.15, validators=[MinValueValidator(0.0)], help_text="USD per 1M prompt tokens (judge)."
    )
    eval_judge_output_price = models.FloatField(
        default=0.60, validators=[MinValueValidator(0.0)], help_text="USD per 1M completion tokens (judge)."
    )
    eval_calibration_size = models.PositiveIntegerField(
        default=200,
        verbose_name="calibration size",
        help_text="Customer-rated answers held out from training, newest first, on which each grader's "
        "agreement with the customers is measured (0: no calibration).",
    )

    # A/B testing.
    ab_enabled = models.BooleanField(
        default=True,
        verbose_name="A/B test enabled",
        help_text="After offline evaluation, test a new version against the live one on live traffic; "
        "the test's result decides. Off: the offline evaluation decides.",
    )
    ab_traffic_split = models.FloatField(
        default=0.5,
        help_text="Share of traffic to the new version, in (0, 1). A comparison's multi-arm test does not "
        "use it: it splits traffic equally among the live version and its candidates.",
    )
    ab_min_sample_size = models.PositiveIntegerField(
        default=100,
        help_text="Users with feedback per arm before deciding (users are the unit of the test: each "
        "user stays in one arm, however many answers they rate).",
    )
    ab_max_duration_days = models.FloatField(
        default=7,
        validators=[MinValueValidator(0.001)],
        help_text="Days before the test concludes anyway (fractions allowed: 0.05 is 72 minutes).",
    )
    ab_look_interval_minutes = models.PositiveIntegerField(
        default=1440,
        validators=[MinValueValidator(1)],
        verbose_name="A/B look interval (minutes)",
        help_text="At most one planned look of the group-sequential test per this many minutes (1440: daily; "
        "a few minutes for a demo). Only the cadence: the boundaries follow the data gathered. The test "
        f"has max duration / interval planned looks, at most {MAX_PLANNED_LOOKS}.",
    )
    ab_significance_level = models.FloatField(default=0.05, help_text="α, in (0, 1).")
    ab_min_improvement = models.FloatField(
        default=0.05, validators=UNIT, help_text="Relative improvement that matters."
    )

    # Progressive rollout after approval (seed: 10% → 50% → 100%).
    rollout_enabled = models.BooleanField(
        default=False,
        help_text="Deploy a new version in stages (below) instead of all at once; in any stage where it "
        "does significantly worse than the version live before, it is rolled back.",
    )
    rollout_stages = models.CharField(
        max_length=100, default="0.1,0.5,1.0", help_text="Traffic shares, comma-separated."
    )
    rollout_stage_hours = models.FloatField(default=48.0, help_text="Hours each stage is held.")

    # Data filters for the training-data pipeline.
    min_rating = models.PositiveSmallIntegerField(
        default=4,
        validators=RATING,
        help_text="Answers rated below this (1–5) are left out; a rating at least this counts as positive "
        "when the customer gave no thumbs-up.",
    )
    require_helpful = models.BooleanField(
        default=True, help_text="Leave out answers the customer marked as not helpful (thumbs-down)."
    )
    min_confidence = models.FloatField(
        default=0.7,
        validators=UNIT,
        help_text="Leave out feedback whose confidence (0–1) is below this; feedback without a confidence "
        "(a person's) is kept.",
    )
    include_negative = models.BooleanField(
        default=False,
        help_text="Keep answers whatever their rating or thumbs (excluded feedback stays out). Answers with "
        "a corrected answer are always kept: the correction is trained on, not the original.",
    )
    deduplicate = models.BooleanField(
        default=True,
        help_text="Keep one example of each group of near-duplicates (the best rated, then newest).",
    )
    similarity_threshold = models.FloatField(
        default=0.9,
        validators=UNIT,
        help_text="Two examples are near-duplicates at this Jaccard similarity of their word 3-shingles "
        "(question and answer), in (0, 1].",
    )
    max_examples = models.PositiveIntegerField(
        default=10000, help_text="Examples per dataset at most, newest first (0: no limit)."
    )
    validation_share = models.FloatField(
        default=0.1,
        validators=UNIT,
        help_text="Share of examples held out for offline evaluation, in [0, 1); an interaction stays in "
        "the same split when the dataset is rebuilt.",
    )
    system_prompt = models.TextField(blank=True, help_text="Empty: the assistant's system prompt.")

    # Redaction of personal data before a dataset leaves the product (training/pipeline/redact.py).
    redact_for_provider = models.BooleanField(
        default=True,
        help_text="Replace emails, phone, card and IBAN numbers, IP addresses and the custom patterns "
        "below with placeholders in every dataset built for a fine-tuning provider (openai backend).",
    )
    redact_downloads = models.BooleanField(
        default=False,
        help_text="Redact every other dataset too (API and command-line builds, local training), so "
        "downloads never contain the originals.",
    )
    redaction_patterns = models.TextField(
        blank=True,
        help_text="Custom types, one per line as NAME: regex, e.g. ORDER: ORD-\\d{4}-\\d{6} "
        "(replaced by <ORDER>; checked before the built-in types).",
    )
    redaction_phone_region = models.CharField(
        max_length=2,
        default="US",
        blank=True,
        help_text="Country (ISO code) whose national phone formats are recognised, e.g. US, GB, DE; "
        "numbers written with +country code are recognised in any case. Empty: only those.",
    )

    # Retention of raw interactions and feedback (training/retention.py, docs/PRIVACY.md).
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        verbose_name="retention (days)",
        help_text="Delete interactions and their feedback once they are this many days old (whole days, "
        "every night), and the files of datasets built that long ago. The dashboard's figures for those "
        "days stay as they were: they come from daily aggregates. Rows of a running A/B test or of a job "
        "in progress wait until it ends. Empty: keep everything.",
    )

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retrain policies"

    def __str__(self) -> str:
        return f"Retrain policy for {self.assistant.name}"

    def clean(self) -> None:
        errors = {}
        for name in ("ab_traffic_split", "ab_significance_level"):
            value = getattr(self, name)
            if not 0 < value < 1:
                errors[name] = "Must be strictly between 0 and 1."
        try:
            stages = [float(s) for s in self.rollout_stages.split(",") if s.strip()]
        except ValueError:
            errors["rollout_stages"] = "Use comma-separated shares such as 0.1,0.5,1.0."
        else:
            if not stages or stages != sorted(stages) or stages[-1] != 1.0 or stages[0] <= 0:
                errors["rollout_stages"] = "Stages must increase and end at 1.0, e.g. 0.1,0.5,1.0."
        errors.update(self._data_filter_errors())
        if self.ab_look_interval_minutes and self.ab_max_duration_days:
            looks = self.ab_max_duration_days * 1440 / self.ab_look_interval_minutes
            if looks > max(MAX_PLANNED_LOOKS, math.ceil(self.ab_max_duration_days)) + 1e-9:
                errors["ab_look_interval_minutes"] = (
                    f"{self.ab_max_duration_days:g} days at one look per {self.ab_look_interval_minutes} "
                    f"minutes is {math.ceil(looks)} planned looks; at most {MAX_PLANNED_LOOKS}: lengthen "
                    "the interval or shorten the max duration."
                )
        if self.max_feedback_count < self.min_feedback_count:
            errors["max_feedback_count"] = "Must be at least min_feedback_count."
        # The worker kills a task after TRAINING_TASK_TIMEOUT; a job allowed longer would die unreported.
        task_timeout = getattr(settings, "TRAINING_TASK_TIMEOUT", None)
        if task_timeout and self.training_timeout >= task_timeout:
            errors["training_timeout"] = (
                f"Must be below the worker's task timeout ({task_timeout} s); "
                "raise TRAINING_TASK_TIMEOUT first."
            )
        if self.training_timeout < 60:
            errors["training_timeout"] = "Allow at least 60 seconds."
        errors.update(self._comparison_errors())
        if errors:
            raise ValidationError(errors)

    def _comparison_errors(self) -> dict[str, str]:
        if not self.compare_candidates:
            self.compare_candidates = []  # the admin's empty box is None
            return {}
        try:
            spec = comparison_clean(
                self.compare_candidates,
                self.compare_online,
                self.compare_top_k,
                default_base_model=self.base_model,
            )
        except ComparisonInvalid as exc:
            return {f"compare_{exc.field}": str(exc)}
        self.compare_candidates = [c.as_dict() for c in spec.candidates]
        return {}

    def comparison(self):
        """The comparison every triggered job runs (a ``ComparisonSpec``), or None for single jobs."""
        if not self.compare_candidates:
            return None
        return comparison_clean(
            self.compare_candidates,
            self.compare_online,
            self.compare_top_k,
            default_base_model=self.base_model,
        )

    def _data_filter_errors(self) -> dict[str, list[str]]:
        """The pipeline's own rules for its filters (one definition): a policy no build could honour is
        refused when it is saved, not at 2 a.m. in the worker."""
        try:
            DatasetOptions.from_policy(self)
        except ValidationError as exc:
            return exc.message_dict
        return {}


class RetrainCondition(models.Model):
    """An admin's own retrain condition on a policy: a metric over recent feedback, a comparison and a
    threshold (the seed's "Custom Retraining Logic"). ``training/conditions.py`` measures it and words
    its reason; any met condition triggers a retrain on its own, as the seed ORs them into the check."""

    class Metric(models.TextChoices):
        ERRORS = "errors", "errored interactions (count)"
        RATED_AT_MOST = "rated_at_most", "feedback rated at most n (count)"
        COMMENT_WORDS = "comment_words", "comments mentioning words (count)"
        CORRECTIONS = "corrections", "corrections (count)"
        KIND_SHARE = "kind_share", "share of a feedback kind (0–1)"
        RATING_AVERAGE = "rating_average", "average rating (1–5)"

    class Comparison(models.TextChoices):
        # The values are the reasons' operators: ASCII, as in the seed's "Feedback count (150) >= threshold
        # (100)".
        GT = ">", "> more than"
        GTE = ">=", "≥ at least"
        LT = "<", "< less than"
        LTE = "<=", "≤ at most"

    class WindowUnit(models.TextChoices):
        HOURS = "hours"
        DAYS = "days"

    COUNTS = (Metric.ERRORS, Metric.RATED_AT_MOST, Metric.COMMENT_WORDS, Metric.CORRECTIONS)
    RATED_FIELDS = (("rating", "overall rating"), *((name, name) for name in CATEGORY_FIELDS))
    MAX_WINDOW_DAYS = 366
    MAX_WORDS = 50

    policy = models.ForeignKey(RetrainPolicy, on_delete=models.CASCADE, related_name="conditions")
    enabled = models.BooleanField(default=True)
    label = models.CharField(
        max_length=100,
        blank=True,
        help_text="How the reason names it, e.g. Critical errors; empty: the metric's name.",
    )
    metric = models.CharField(max_length=16, choices=Metric.choices)
    rating_field = models.CharField(
        max_length=16,
        choices=RATED_FIELDS,
        blank=True,
        verbose_name="rating",
        help_text="Which rating: for 'rated at most n' and 'average rating'.",
    )
    at_most = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=RATING, verbose_name="n", help_text="For 'rated at most n' (1–5)."
    )
    words = models.TextField(
        blank=True,
        help_text="For 'comments mentioning words': words or phrases, one per line or comma-separated; "
        "whole words in any case, a comment counts once.",
    )
    kind = models.CharField(
        max_length=16, choices=Feedback.Kind.choices, blank=True, help_text="For 'share of a feedback kind'."
    )
    comparison = models.CharField(max_length=2, choices=Comparison.choices, default=Comparison.GT)
    threshold = models.FloatField(help_text="A count: a whole number; a share: 0–1; an average: 1–5.")
    window_length = models.PositiveIntegerField(
        null=True,
        blank=True,
        # The longest window in hours; in days it is checked in clean(). A bound here also keeps the
        # form from building a timedelta too large for Python (a 500, not a message).
        validators=[MinValueValidator(1), MaxValueValidator(MAX_WINDOW_DAYS * 24)],
        verbose_name="rolling window",
        help_text="Count over the last this many hours or days; empty: since the last deployment.",
    )
    window_unit = models.CharField(max_length=5, choices=WindowUnit.choices, default=WindowUnit.HOURS)

    class Meta:
        ordering = ("policy", "id")

    def __str__(self) -> str:
        return self.label or self.get_metric_display()

    @property
    def is_count(self) -> bool:
        return self.metric in self.COUNTS

    @property
    def window(self) -> dt.timedelta | None:
        if not self.window_length:
            return None
        hours = self.window_length * (24 if self.window_unit == self.WindowUnit.DAYS else 1)
        return dt.timedelta(hours=hours)

    def word_list(self) -> list[str]:
        """The words to look for, in the order given, each once (case aside)."""
        seen: dict[str, str] = {}
        for word in re.split(r"[,\n]", self.words):
            word = " ".join(word.split())
            if word and word.casefold() not in seen:
                seen[word.casefold()] = word
        return list(seen.values())

    def clean(self) -> None:
        errors: dict[str, str] = {}
        needs = {
            self.Metric.RATED_AT_MOST: ("rating_field", "at_most"),
            self.Metric.RATING_AVERAGE: ("rating_field",),
            self.Metric.COMMENT_WORDS: ("words",),
            self.Metric.KIND_SHARE: ("kind",),
        }.get(self.metric, ())
        for name in needs:
            if getattr(self, name) in (None, ""):
                errors[name] = f"Required for '{self.get_metric_display()}'."
        # What the metric does not use is cleared, so a row never holds settings that do nothing.
        for name, empty in (("rating_field", ""), ("at_most", None), ("words", ""), ("kind", "")):
            if name not in needs:
                setattr(self, name, empty)
        if self.metric == self.Metric.COMMENT_WORDS and self.words:
            errors.update(self._word_errors())
        if self.threshold is not None and self.metric in self.Metric.values:
            errors.update(self._threshold_errors())
        errors.update(self._window_errors())
        if errors:
            raise ValidationError(errors)

    def _word_errors(self) -> dict[str, str]:
        words = self.word_list()
        if not words:
            return {"words": "Give at least one word."}
        if len(words) > self.MAX_WORDS:
            return {"words": f"At most {self.MAX_WORDS} words or phrases; {len(words)} given."}
        for word in words:
            # A whole-word match needs a word character at each end ("c++" would never match).
            if len(word) > 100 or not WORD_PATTERN.fullmatch(word):
                return {
                    "words": f"'{word[:100]}': use letters, digits, spaces, hyphens and apostrophes, "
                    "starting and ending with a letter or digit (at most 100 characters)."
                }
        return {}

    def _threshold_errors(self) -> dict[str, str]:
        t = self.threshold
        if self.is_count:
            what, low, high = "A count", 0.0, math.inf
            if t < 0 or t != int(t):
                return {"threshold": "A count's threshold is a whole number, 0 or more."}
        elif self.metric == self.Metric.KIND_SHARE:
            what, low, high = "A share", 0.0, 1.0
            if not 0 <= t <= 1:
                return {"threshold": "A share's threshold is between 0 and 1, e.g. 0.25 for 25 %."}
        else:
            what, low, high = "An average rating", 1.0, 5.0
            if not 1 <= t <= 5:
                return {"threshold": "An average rating's threshold is between 1 and 5."}
        words = self.get_comparison_display().split(" ", 1)[1]  # "more than", "at least", ...
        op = self.comparison
        if (op == ">" and t >= high) or (op == "<" and t <= low):
            return {"threshold": f"{what} is never {words} {t:g}: the condition could never be met."}
        if (op == ">=" and t <= low) or (op == "<=" and t >= high):
            return {"threshold": f"{what} is always {words} {t:g}: it would start a retrain on every check."}
        return {}

    def _window_errors(self) -> dict[str, str]:
        if not self.window_length:
            return {}
        # Compared as a number first: clean() runs even when the field's own validation failed, and a
        # huge length would overflow timedelta.
        days = self.window_length / (1 if self.window_unit == self.WindowUnit.DAYS else 24)
        if days > self.MAX_WINDOW_DAYS:
            return {"window_length": f"At most {self.MAX_WINDOW_DAYS} days."}
        window = self.window
        # The admin's inline sets the policy being edited (with its new values) before validating.
        retention = getattr(getattr(self, "policy", None), "retention_days", None)
        # Conditions over a window read raw rows, which retention deletes: a longer window would count
        # fewer rows than it says.
        if retention and window > dt.timedelta(days=retention):
            return {
                "window_length": f"At most the policy's retention ({retention} days): older feedback is "
                "deleted, so a longer window would undercount."
            }
        return {}


class TrainingDataset(models.Model):
    class Format(models.TextChoices):
        CHAT_COMPLETION = "chat_completion"
        RAG_DOCUMENTS = "rag_documents"
        CLASSIFICATION = "classification"
        PREFERENCE = "preference"

    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="datasets")
    format = models.CharField(max_length=20, choices=Format.choices)
    options = models.JSONField(default=dict, help_text="The filters this dataset was built with.")
    train_file = models.CharField(max_length=500, blank=True)
    validation_file = models.CharField(max_length=500, blank=True)
    train_sha256 = models.CharField(max_length=64, blank=True)
    validation_sha256 = models.CharField(max_length=64, blank=True)
    train_count = models.PositiveIntegerField(default=0)
    validation_count = models.PositiveIntegerField(default=0)
    stats = models.JSONField(default=dict)
    validation_errors = models.JSONField(
        default=list, blank=True, help_text="Pre-flight problems; empty = valid."
    )
    feedback = models.ManyToManyField(Feedback, through="DatasetExample", related_name="datasets")
    created_at = models.DateTimeField(default=timezone.now)
    # A customer in this dataset was erased: its files still hold their data until it is rebuilt, which
    # happens before its next use (training.pipeline.erasure.dataset_ready) or in the worker.
    erasure_marked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    erasure_rebuilt_at = models.DateTimeField(null=True, blank=True)
    # Older than the policy's retention: its files, provenance and evaluated prompts were deleted
    # (training.retention); the row stays so jobs and model versions keep pointing at what it was.
    retention_expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.format} dataset {self.pk}"

    @property
    def is_valid(self) -> bool:
        return not self.validation_errors


class DatasetExample(models.Model):
    """Provenance: which feedback row produced which example of which dataset, and in which split."""

    class Split(models.TextChoices):
        TRAIN = "train"
        VALIDATION = "validation"

    dataset = models.ForeignKey(TrainingDataset, on_delete=models.CASCADE, related_name="examples")
    feedback = models.ForeignKey(Feedback, on_delete=models.CASCADE, related_name="dataset_examples")
    split = models.CharField(max_length=10, choices=Split.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("dataset", "feedback"), name="dataset_example_unique")]


class TrainingJob(models.Model):
    class Trigger(models.TextChoices):
        MANUAL = "manual"
        SCHEDULED = "scheduled"
        THRESHOLD = "threshold"
        PERFORMANCE = "performance"

    class Status(models.TextChoices):
        PENDING = "pending"
        PREPARING = "preparing"
        TRAINING = "training"
        EVALUATING = "evaluating"
        TESTING = "testing"
        AWAITING_APPROVAL = "awaiting_approval"
        DEPLOYING = "deploying"
        DEPLOYED = "deployed"
        REJECTED = "rejected"
        FAILED = "failed"
        CANCELLED = "cancelled"

    TERMINAL = (Status.DEPLOYED, Status.REJECTED, Status.FAILED, Status.CANCELLED)

    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="training_jobs")
    trigger = models.CharField(max_length=12, choices=Trigger.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    reasons = models.JSONField(default=list, blank=True)
    options = models.JSONField(default=dict, blank=True)
    backend = models.CharField(
        max_length=16, choices=ModelVersion.Backend.choices, default=ModelVersion.Backend.LOCAL
    )
    base_model = models.CharField(max_length=200, blank=True)
    base_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider_job_id = models.CharField(max_length=200, blank=True)
    dataset = models.ForeignKey(
        TrainingDataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    feedback_count = models.PositiveIntegerField(default=0)
    new_model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="created_by_jobs"
    )
    metrics = models.JSONField(default=dict, blank=True)
    evaluation = models.JSONField(default=dict, blank=True)
    experiment = models.ForeignKey(
        "abtesting.Experiment", null=True, blank=True, on_delete=models.SET_NULL, related_name="training_jobs"
    )
    ab_test_results = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(
        null=True, blank=True, help_text="The watchdog fails the job after this."
    )
    # A stage runner claims the job until ``lease_until`` (optimistic update), so two workers never
    # run one stage at once; it renews the lease while the stage runs (a heartbeat), so a worker that
    # dies lets it expire within seconds. ``lease_owner`` is the claim's random token: renewals and the
    # stage's writes check it, so a worker that lost its lease can neither renew it nor write.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=32, blank=True, default="")
    # When the job should next be advanced (a provider poll, a retry, an expired lease): the watchdog
    # enqueues ``job_advance`` for every waiting job whose time has come.
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at", "-id")
        permissions = [
            ("approve_trainingjob", "Can approve or reject training jobs"),
            ("trigger_trainingjob", "Can start and cancel training jobs"),
        ]
        constraints = [
            # At most one job in flight per assistant: the database refuses a second one, so two
            # schedulers or a double click cannot start two.
            models.UniqueConstraint(
                fields=("assistant",),
                condition=~Q(status__in=("deployed", "rejected", "failed", "cancelled")),
                name="trainingjob_one_active_per_assistant",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class JobCandidate(models.Model):
    """One candidate of a comparison job: a trainer with its settings, trained on the job's dataset.

    The job trains every candidate, evaluates the succeeded ones against the live version on the same
    validation prompts, and ranks them; the job's ``new_model_version`` is the chosen candidate's version.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        TRAINING = "training"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED)

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="candidates")
    position = models.PositiveSmallIntegerField()
    label = models.CharField(max_length=40)
    backend = models.CharField(max_length=16, choices=ModelVersion.Backend.choices)
    base_model = models.CharField(max_length=200, blank=True)
    settings = models.JSONField(
        default=dict, blank=True, help_text="OpenAI hyperparameters, or the local trainer's settings."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    provider_job_id = models.CharField(max_length=200, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="job_candidates"
    )
    metrics = models.JSONField(default=dict, blank=True)
    evaluation = models.JSONField(
        default=dict, blank=True, help_text="The offline evaluation's summary and the ranking's figures."
    )
    rank = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    # The trainer's bookkeeping that must survive restarts (the provider slot it holds, retry counts).
    trainer_state = models.JSONField(default=dict, blank=True)
    # When the training stage should next poll this candidate's provider job (each has its own backoff).
    next_poll_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("job", "position")
        constraints = [
            models.UniqueConstraint(fields=("job", "position"), name="jobcandidate_unique_position"),
            models.UniqueConstraint(fields=("job", "label"), name="jobcandidate_unique_label"),
        ]

    def __str__(self) -> str:
        return f"candidate {self.label} of job {self.job_id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class ProviderSlot(models.Model):
    """One row per provider (``OPENAI_BASE_URL``), locked while a job or candidate takes one of its
    concurrent fine-tuning slots (``TRAINING_PROVIDER_CONCURRENCY``), so two workers counting the
    running provider jobs at once cannot both take the last slot."""

    base_url = models.CharField(max_length=500, unique=True)
    taken_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.base_url or "api.openai.com"


class JobEvent(models.Model):
    """A job's timeline: every transition, provider event and human decision."""

    class Kind(models.TextChoices):
        TRANSITION = "transition"
        PROVIDER = "provider"
        METRIC = "metric"
        NOTE = "note"
        DECISION = "decision"

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="events")
    # A comparison's candidate the entry is about (its provider events, its notes); empty: the job.
    candidate = models.ForeignKey(
        JobCandidate, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    provider_event_id = models.CharField(max_length=200, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("created_at", "id")
        constraints = [
            models.UniqueConstraint(
                fields=("job", "provider_event_id"),
                condition=~Q(provider_event_id=""),
                name="jobevent_unique_provider_event",
            ),
        ]


class EvaluationPrompt(models.Model):
    """One validation prompt of a job's offline evaluation: both answers, their grades and the pairwise
    verdict, so a reviewer can read why a candidate won (the job page lists them, filterable)."""

    job = models.ForeignKey(TrainingJob, on_delete=models.CASCADE, related_name="evaluation_prompts")
    position = models.PositiveIntegerField()
    question = models.TextField()
    reference = models.TextField()
    reference_is_correction = models.BooleanField(default=False)
    customer = models.CharField(max_length=200, blank=True, help_text="Whose prompt (clusters intervals).")
    candidate_answer = models.TextField(blank=True)
    live_answer = models.TextField(blank=True)
    candidate_score = models.FloatField(null=True, blank=True)
    candidate_passed = models.BooleanField(null=True, blank=True)
    candidate_reason = models.TextField(blank=True)
    live_score = models.FloatField(null=True, blank=True)
    live_passed = models.BooleanField(null=True, blank=True)
    live_reason = models.TextField(blank=True)
    pairwise = models.FloatField(
        null=True, blank=True, help_text="The candidate's outcome: 1 won, 0.5 tie, 0 lost; empty = unjudged."
    )
    pairwise_reason = models.TextField(blank=True)
    # The versions' grades differ or the pairwise verdict is not a tie: the prompts worth reading first.
    differs = models.BooleanField(default=False, db_index=True)

    class Meta:
        ordering = ("job", "position")
        constraints = [
            models.UniqueConstraint(fields=("job", "position"), name="evaluationprompt_unique_position")
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} prompt {self.position}"
