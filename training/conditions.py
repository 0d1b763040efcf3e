"""Admins' own retrain conditions and teams' Python hooks: measured, compared and worded as reasons.

The seed's "Custom Retraining Logic" adds ``criticalErrorCount > 5`` and ``negativeComments > 10`` to the
base check and ORs them in: ``baseCheck.shouldRetrain || criticalIssues || userComplaints``. Here a
``RetrainCondition`` (edited in the admin, inline on the policy) is a metric, a comparison and a
threshold; each one met is a reason in the seed's wording, "Critical errors (7) > threshold (5)", and
starts a retrain on its own, like any base threshold (``training.policy.should_retrain``).

Window: a condition counts what happened since the assistant's last deployment, as the base check does,
or over a rolling window (the last N hours or days before the check).

Where the figures come from. Since the last deployment, the metrics the daily rollups hold (errors,
corrections, shares of a kind, average ratings) are read from the base check's own feedback stats: no
query, and rows deleted by retention still count, as they do in the base check. Everything else (any
rolling window, ratings at most n, words in comments) is one query over raw rows through
``feedback.selectors``. A rolling window is therefore capped at the policy's retention
(``RetrainCondition.clean``), while words or low ratings since a deployment older than the retention are
counted over the rows still kept.

Evidence. Shares and averages count only once they rest on ``policy.min_quality_evidence`` observations
(feedback for a share, ratings for an average): the base check's rule for its rates, so one comment is
never a 100 % share. A count is its own evidence. The seed's minimum feedback count is a trigger of the
base check ("Feedback count (150) >= threshold (100)"), not a guard, so custom conditions don't wait for
it.

Hooks. ``settings.RETRAIN_CONDITION_HOOKS`` lists dotted paths of callables ``hook(assistant, policy,
stats)`` returning reasons (a list of strings; empty or None: nothing to add). Each reason triggers a
retrain. ``stats`` is the base check's metrics (``training.policy.retrain_metrics``) plus ``feedback``:
the feedback stats since the last deployment (``feedback.selectors.feedback_stats``). A path that does
not import is a configuration error (``manage.py check`` reports it); a hook that raises is logged and
skipped, so the base check and the other conditions still decide.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

from assistants.models import Assistant
from feedback import selectors as feedback_selectors
from training.models import RetrainCondition, RetrainPolicy

logger = logging.getLogger(__name__)

M = RetrainCondition.Metric
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": lambda value, threshold: value > threshold,
    ">=": lambda value, threshold: value >= threshold,
    "<": lambda value, threshold: value < threshold,
    "<=": lambda value, threshold: value <= threshold,
}


@dataclass(frozen=True)
class ConditionResult:
    """One condition measured now. ``value`` is None when there is nothing to measure (no feedback)."""

    condition: RetrainCondition
    label: str
    window: str
    value: float | None
    observations: int | None = None  # what a share or an average rests on; None for counts
    needed: int = 0  # observations a share or an average needs before it counts

    @property
    def enough_evidence(self) -> bool:
        return self.observations is None or self.observations >= self.needed

    @property
    def met(self) -> bool:
        return (
            self.condition.enabled
            and self.value is not None
            and self.enough_evidence
            and COMPARE[self.condition.comparison](self.value, self.condition.threshold)
        )

    @property
    def reason(self) -> str:
        """The seed's wording: "Critical errors (7) > threshold (5)"."""
        c = self.condition
        value, threshold = figures(c, self.value, c.threshold)
        return f"{self.label} ({value}) {c.comparison} threshold ({threshold})"

    @property
    def status(self) -> str:
        """Why it is or is not met, for the admin's preview."""
        if not self.condition.enabled:
            return "off"
        if self.value is None:
            return "not met: nothing to measure yet"
        if not self.enough_evidence:
            what = "feedback" if self.condition.metric == M.KIND_SHARE else "ratings"
            return f"not met: {self.observations} {what}, needs {self.needed} (minimum quality evidence)"
        return "met: a check now would retrain" if self.met else "not met"


def figure(condition: RetrainCondition, x: float, decimals: int | None = None) -> str:
    """A value or threshold as the seed writes it: counts whole, shares in % and averages with one
    decimal, or as many as the threshold has (up to 3)."""
    if condition.is_count:
        return f"{x:.0f}"
    scale, suffix = (100, "%") if condition.metric == M.KIND_SHARE else (1, "")
    if decimals is None:
        threshold = condition.threshold * scale
        decimals = next((d for d in (1, 2) if round(threshold, d) == round(threshold, 6)), 3)
    return f"{x * scale:.{decimals}f}{suffix}"


def figures(condition: RetrainCondition, value: float | None, threshold: float) -> tuple[str, str]:
    """A value and its threshold, with enough decimals that different figures never read the same
    ("2.96 < 3.0", not "3.0 < 3.0")."""
    if value is None:
        return "no data", figure(condition, threshold)
    for decimals in (None, 2, 3, 4):
        shown = figure(condition, value, decimals), figure(condition, threshold, decimals)
        if value == threshold or shown[0] != shown[1]:
            return shown
    return shown


def window_text(condition: RetrainCondition) -> str:
    length, unit = condition.window_length, condition.window_unit
    if not length:
        return "since the last deployment"
    return f"in the last {unit[:-1]}" if length == 1 else f"in the last {length} {unit}"


def label_default(condition: RetrainCondition) -> str:
    """A readable name of the metric, with its window when it is a rolling one."""
    field = condition.rating_field
    rating = "rating" if field == "rating" else f"{field} rating"
    if condition.metric == M.ERRORS:
        name = "Errored interactions"
    elif condition.metric == M.RATED_AT_MOST:
        name = f"{rating.capitalize()}s <= {condition.at_most}"
    elif condition.metric == M.COMMENT_WORDS:
        words = condition.word_list()
        shown = ", ".join(words[:3]) + (f" (+{len(words) - 3} more)" if len(words) > 3 else "")
        name = f"Comments mentioning {shown}"
    elif condition.metric == M.CORRECTIONS:
        name = "Corrections"
    elif condition.metric == M.KIND_SHARE:
        name = f"Share of {condition.kind} feedback"
    else:
        name = f"Avg {rating}"
    return name if not condition.window_length else f"{name} {window_text(condition)}"


def _from_stats(condition: RetrainCondition, stats: dict[str, Any]) -> tuple[float | None, int | None] | None:
    """The figure from the base check's feedback stats since the deployment, if they hold it."""
    if condition.metric == M.ERRORS:
        return stats["error_count"], None
    if condition.metric == M.CORRECTIONS:
        return stats["correction_count"], None
    if condition.metric == M.KIND_SHARE:
        total = stats["total_feedback"]
        return (stats["counts_by_kind"].get(condition.kind, 0) / total if total else None), total
    if condition.metric == M.RATING_AVERAGE:
        if condition.rating_field == "rating":
            return stats["avg_rating"], stats["rated_count"]
        field = condition.rating_field
        return stats["category_ratings"][field], stats["category_counts"][field]
    return None


def _query(
    condition: RetrainCondition, assistant: Assistant, since: datetime | None
) -> tuple[float | None, int | None]:
    """The figure over raw rows created since ``since``: one query through the feedback selectors."""
    window = {"assistant": assistant, "since": since}
    if condition.metric == M.ERRORS:
        return feedback_selectors.interaction_error_count(**window), None
    if condition.metric == M.CORRECTIONS:
        return feedback_selectors.feedback_correction_count(**window), None
    if condition.metric == M.RATED_AT_MOST:
        count = feedback_selectors.feedback_rated_at_most_count(
            field=condition.rating_field, at_most=condition.at_most, **window
        )
        return count, None
    if condition.metric == M.COMMENT_WORDS:
        return feedback_selectors.feedback_comment_match_count(words=condition.word_list(), **window), None
    if condition.metric == M.KIND_SHARE:
        share = feedback_selectors.feedback_kind_share(kind=condition.kind, **window)
    else:
        share = feedback_selectors.feedback_rating_average(field=condition.rating_field, **window)
    return share.value, share.observations


def condition_measure(
    condition: RetrainCondition,
    *,
    assistant: Assistant,
    policy: RetrainPolicy,
    stats: dict[str, Any],
    since: datetime | None,
    now: datetime,
) -> ConditionResult:
    """Measure one condition. ``stats`` and ``since``: the feedback stats since the last deployment and
    its time (None: no deployment, so all feedback); ``now``: where a rolling window ends.

    A rolling window never reaches back past the last deployment: feedback on the version that was
    replaced says nothing about the live one, and counting it would retrain again right after each
    deployment until the window had rolled past it.
    """
    window = condition.window
    found = _from_stats(condition, stats) if window is None else None
    if found is None:
        start = since
        if window is not None:
            start = now - window if since is None else max(now - window, since)
        found = _query(condition, assistant, start)
    value, observations = found
    return ConditionResult(
        condition=condition,
        label=condition.label or label_default(condition),
        window=window_text(condition),
        value=value,
        observations=observations,
        needed=policy.min_quality_evidence if observations is not None else 0,
    )


def conditions_measure(
    *,
    assistant: Assistant,
    policy: RetrainPolicy,
    stats: dict[str, Any],
    since: datetime | None,
    now: datetime | None = None,
    include_disabled: bool = False,
) -> list[ConditionResult]:
    """The policy's conditions measured now, in order: one query for the list and at most one per
    condition (none for a rollup figure since the deployment). Disabled ones, when included, are listed
    unmeasured."""
    now = now or timezone.now()
    results = []
    for condition in policy.conditions.order_by("id"):
        if condition.enabled:
            results.append(
                condition_measure(
                    condition, assistant=assistant, policy=policy, stats=stats, since=since, now=now
                )
            )
        elif include_disabled:
            label = condition.label or label_default(condition)
            results.append(ConditionResult(condition, label, window_text(condition), None))
    return results


def hooks() -> list[Callable[..., Any]]:
    """The callables named in ``settings.RETRAIN_CONDITION_HOOKS``."""
    found = []
    for path in getattr(settings, "RETRAIN_CONDITION_HOOKS", ()):
        try:
            hook = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"RETRAIN_CONDITION_HOOKS: '{path}' does not import ({exc}). Give a dotted path to a "
                "callable, e.g. 'myteam.rules.check'."
            ) from exc
        if not callable(hook):
            raise ImproperlyConfigured(f"RETRAIN_CONDITION_HOOKS: '{path}' is not callable.")
        found.append(hook)
    return found


def hook_reasons(*, assistant: Assistant, policy: RetrainPolicy, stats: dict[str, Any]) -> list[str]:
    """Every reason the configured hooks give, in their order."""
    reasons: list[str] = []
    for hook in hooks():
        try:
            given = hook(assistant, policy, stats)
            if isinstance(given, str):
                given = [given]
            # Anything but None, a string or a list/tuple of strings is the hook's bug, not a reason.
            if given is not None and not isinstance(given, (list, tuple)):
                raise TypeError(f"returned {type(given).__name__}; expected a string or a list of strings")
        except Exception:
            logger.exception("Retrain condition hook %r failed for assistant %s", hook, assistant.slug)
            continue
        reasons.extend(str(reason) for reason in given or () if reason)
    return reasons


def custom_reasons(
    *,
    assistant: Assistant,
    policy: RetrainPolicy,
    metrics: dict[str, Any],
    stats: dict[str, Any],
    since: datetime | None,
) -> list[str]:
    """The reasons of every met condition, then the hooks' reasons."""
    results = conditions_measure(assistant=assistant, policy=policy, stats=stats, since=since)
    reasons = [result.reason for result in results if result.met]
    return reasons + hook_reasons(assistant=assistant, policy=policy, stats={**metrics, "feedback": stats})
