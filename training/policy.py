"""Should the assistant be retrained? The seed's rule, as a pure function and over the database.

Metrics count what happened since the assistant's last deployment (the live version's start), because
feedback on an older version says nothing about the one answering now.

Evidence rule: the quality conditions (success rate, average rating, error rate, performance drop) only
count when they rest on at least ``policy.min_quality_evidence`` observations — answers with a success
signal for the success rate and the drop, ratings for the average rating, interactions for the error rate
— so one bad rating never triggers a retrain. The feedback-count and days-since-retrain conditions need
no extra evidence. When the pure function is given no observation counts (the seed's example), the
feedback count stands in for them.

Trigger: ``performance`` when the success rate dropped, else ``threshold`` when a count or quality
threshold, an admin's own condition or a hook fired, else ``scheduled`` when only the days since the last
retrain did.

Admins' own conditions (``RetrainCondition``) and the Python hooks of ``settings.RETRAIN_CONDITION_HOOKS``
add their reasons to the base check's (``training.conditions``); any of them triggers on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone

from assistants.models import Assistant, Deployment
from feedback.selectors import feedback_stats
from training.conditions import custom_reasons
from training.models import RetrainPolicy, TrainingJob
from training.services import job_active, policy_ensure


@dataclass
class RetrainDecision:
    should_retrain: bool
    reasons: list[str] = field(default_factory=list)
    trigger: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    blocked_by: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "should_retrain": self.should_retrain,
            "reasons": list(self.reasons),
            "trigger": self.trigger,
            "metrics": dict(self.metrics),
            "blocked_by": self.blocked_by,
        }


def _evidence(metrics: dict[str, Any], name: str) -> int:
    value = metrics.get(name)
    if value is None:
        value = metrics.get("feedback_count") or 0
    return int(value)


def should_retrain_metrics(policy: RetrainPolicy, metrics: dict[str, Any]) -> RetrainDecision:
    """The seed's ``shouldRetrain(metrics)``: pure, no database.

    ``metrics`` keys (all optional): feedback_count, success_rate, avg_rating, error_rate,
    days_since_retrain, performance_drop, and the observation counts signal_count, rated_count,
    total_interactions. Rates are fractions (0.75 = 75%).
    """
    reasons: list[str] = []
    threshold = False
    performance = False
    scheduled = False
    minimum = policy.min_quality_evidence

    count = metrics.get("feedback_count")
    if count is not None and count >= policy.min_feedback_count:
        reasons.append(f"Feedback count ({count}) >= threshold ({policy.min_feedback_count})")
        threshold = True
    rate = metrics.get("success_rate")
    if rate is not None and _evidence(metrics, "signal_count") >= minimum and rate < policy.min_success_rate:
        reasons.append(f"Success rate ({rate * 100:.1f}%) < threshold ({policy.min_success_rate * 100:.1f}%)")
        threshold = True
    rating = metrics.get("avg_rating")
    if rating is not None and _evidence(metrics, "rated_count") >= minimum and rating < policy.min_avg_rating:
        reasons.append(f"Avg rating ({rating:.1f}) < threshold ({policy.min_avg_rating:.1f})")
        threshold = True
    errors = metrics.get("error_rate")
    if (
        errors is not None
        and _evidence(metrics, "total_interactions") >= minimum
        and errors > policy.max_error_rate
    ):
        reasons.append(f"Error rate ({errors * 100:.1f}%) > threshold ({policy.max_error_rate * 100:.1f}%)")
        threshold = True
    drop = metrics.get("performance_drop")
    if (
        drop is not None
        and _evidence(metrics, "signal_count") >= minimum
        and drop >= policy.max_performance_drop
    ):
        reasons.append(
            f"Performance drop ({drop * 100:.1f}%) >= threshold ({policy.max_performance_drop * 100:.1f}%)"
        )
        performance = True
    days = metrics.get("days_since_retrain")
    if days is not None and days >= policy.max_days_since_retrain:
        reasons.append(f"Days since retrain ({days}) >= threshold ({policy.max_days_since_retrain})")
        scheduled = True

    trigger = None
    if performance:
        trigger = TrainingJob.Trigger.PERFORMANCE
    elif threshold:
        trigger = TrainingJob.Trigger.THRESHOLD
    elif scheduled:
        trigger = TrainingJob.Trigger.SCHEDULED
    return RetrainDecision(
        should_retrain=bool(reasons), reasons=reasons, trigger=trigger, metrics=dict(metrics)
    )


def last_deployment(assistant: Assistant) -> Deployment | None:
    """The deployment that made the current live version live (rollout stages excluded)."""
    return (
        Deployment.objects.filter(assistant=assistant, traffic_share=1.0)
        .filter(Q(version_id=assistant.live_version_id))
        .select_related("version")
        .order_by("-created_at", "-id")
        .first()
    )


def retrain_metrics(assistant: Assistant) -> dict[str, Any]:
    """The metrics ``should_retrain_metrics`` needs, counted since the last deployment."""
    return _retrain_inputs(assistant)[0]


def _retrain_inputs(assistant: Assistant) -> tuple[dict[str, Any], dict[str, Any], datetime | None]:
    """The base check's metrics, the feedback stats they come from and when the window starts (the last
    deployment; None: there is none, so all feedback counts)."""
    deployment = last_deployment(assistant)
    since = deployment.created_at if deployment is not None else None
    stats = feedback_stats(assistant=assistant, since=since)
    days = (timezone.now() - since).days if since is not None else None
    # The deployment's version is the live version (loaded with it: no extra query).
    baseline = (deployment.version.metrics or {}).get("baseline_success_rate") if deployment else None
    drop = None
    if baseline and stats["success_rate"] is not None:
        drop = max(0.0, (baseline - stats["success_rate"]) / baseline)
    metrics = {
        "feedback_count": stats["total_feedback"],
        "success_rate": stats["success_rate"],
        "avg_rating": stats["avg_rating"],
        "error_rate": stats["error_rate"],
        "days_since_retrain": days,
        "performance_drop": drop,
        "baseline_success_rate": baseline,
        "signal_count": stats["signal_count"],
        "rated_count": stats["rated_count"],
        "total_interactions": stats["total_interactions"],
        "since": since.isoformat() if since is not None else None,
    }
    return metrics, stats, since


def decision_add_reasons(decision: RetrainDecision, reasons: list[str]) -> RetrainDecision:
    """Add the reasons of custom conditions and hooks to the base decision. Each one triggers a retrain on
    its own, as the seed ORs its custom checks into the base check; they are thresholds, so the trigger
    is ``threshold`` unless the success rate dropped (``performance`` stays)."""
    if not reasons:
        return decision
    decision.reasons = [*decision.reasons, *reasons]
    decision.should_retrain = True
    if decision.trigger != TrainingJob.Trigger.PERFORMANCE:
        decision.trigger = TrainingJob.Trigger.THRESHOLD
    return decision


def should_retrain(assistant: Assistant) -> RetrainDecision:
    """Decide from the database: the base check, then the policy's own conditions and the settings' hooks
    (``training.conditions``). Nothing triggers while a job for the assistant is active."""
    policy = policy_ensure(assistant=assistant)
    metrics, stats, since = _retrain_inputs(assistant)
    decision = should_retrain_metrics(policy, metrics)
    extra = custom_reasons(assistant=assistant, policy=policy, metrics=metrics, stats=stats, since=since)
    decision = decision_add_reasons(decision, extra)
    active = job_active(assistant=assistant)
    if active is not None:
        decision.should_retrain = False
        decision.blocked_by = f"Job {active.pk} is already {active.status}."
    return decision
