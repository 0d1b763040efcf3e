"""The decision after evaluation or an A/B test: a pure function of the evidence and the policy.

The rule (also in the README):

* A/B enabled for the assistant, not skipped, and a live version to compare with → ``testing``; the
  experiment's conclusion decides. Without an A/B test the offline evaluation decides. (The stages choose
  which evidence to bring; this module only weighs it.)
* A candidate the A/B test rules out (decision ``variant_worse``, or ``invalid_srm``: broken assignment, so
  nothing measured can be trusted) is rejected, even with ``auto_approve``.
* Auto-deploy when the result is significant and the improvement ≥ ``auto_deploy_threshold``.
* Otherwise ``awaiting_approval`` when the policy requires approval. ``auto_approve`` never overrides that.
* Otherwise deploy when significant and the improvement ≥ ``min_improvement``, or when the job was started
  with ``auto_approve`` by a user who may approve jobs (an approval given in advance, in that user's
  name); else reject with the reason.

Every deployment names its cause: the approving user, or the policy rule that deployed it.

"Significant" is the A/B test's sequential decision (``variant_better``). Without A/B the offline
evaluation decides (``training/evaluation/run.py``): "significant" means the lower end of the candidate's
pairwise win rate's 95 % interval is above one half, and "improvement" is the lower end of the 95 %
interval of the relative change in validation accuracy. On fewer graded prompts than the policy's
``eval_min_prompts`` (default 50) nothing is decided automatically: the job waits for a reviewer, and
``auto_approve`` is withdrawn (also when an A/B test decides later). The first version of an assistant
(nothing live) has nothing to compare with: it goes to approval, or is deployed when approval is not required.

``decide`` reads nothing and writes nothing; ``training.services.deploy.verdict_apply`` carries its verdict
out (and looks up the advance approval only when the verdict comes to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from abtesting.formatting import signed_pct

# What a deployment's note says caused it when no person approved it (``Deployment.note``).
CAUSE_AUTO_DEPLOY = "policy: auto-deploy threshold met"
CAUSE_MIN_IMPROVEMENT = "policy: minimum improvement met, approval not required"
CAUSE_FIRST_VERSION = "policy: first version, approval not required"


@dataclass(frozen=True)
class Evidence:
    """What the offline evaluation or the A/B test found.

    ``by_lower_bound`` (A/B evidence): thresholds compare ``improvement_low``, the lower end of the
    test's decision interval ("lift at least X % with 1 - alpha confidence"), not the point estimate.
    """

    significant: bool
    improvement: float | None
    worse: bool
    summary: str
    first_version: bool
    improvement_low: float | None = None
    by_lower_bound: bool = False


class Action(StrEnum):
    REJECT = "reject"
    AWAIT_APPROVAL = "await_approval"
    DEPLOY = "deploy"
    # Deploy in the name of the user who approved when starting the job, if they still may; else reject.
    DEPLOY_IF_APPROVED_IN_ADVANCE = "deploy_if_approved_in_advance"


@dataclass(frozen=True)
class Verdict:
    action: Action
    message: str  # the timeline's entry
    data: dict[str, Any] = field(default_factory=dict)
    cause: str = ""  # DEPLOY: the policy rule that deploys
    reason: str = ""  # REJECT (and no advance approval): the job's decision_reason
    approval_note: str = ""  # DEPLOY_IF_APPROVED_IN_ADVANCE: the figures the approval's entry names


class Thresholds(Protocol):
    """The policy settings the rule reads (a ``RetrainPolicy`` has them all)."""

    auto_deploy_threshold: float
    require_approval: bool
    ab_min_improvement: float


def decide(*, evidence: Evidence, policy: Thresholds) -> Verdict:
    """Apply the decision rule (module docstring) to ``evidence``."""
    e = evidence
    if e.by_lower_bound:
        gain = e.improvement_low if e.improvement_low is not None else float("-inf")
        shown = f"{signed_pct(e.improvement)} (at least {signed_pct(e.improvement_low)})"
    else:
        gain = e.improvement if e.improvement is not None else 0.0
        shown = signed_pct(e.improvement)
    data: dict[str, Any] = {"significant": e.significant, "improvement": e.improvement, "evidence": e.summary}
    if e.by_lower_bound:
        data["improvement_low"] = e.improvement_low
    if e.worse:
        return Verdict(
            Action.REJECT,
            message=f"Rejected: the evidence rules the candidate out ({e.summary}).",
            data=data,
            reason=f"The A/B test rules the candidate out ({e.summary}).",
        )
    if e.significant and not e.first_version and gain >= policy.auto_deploy_threshold:
        return Verdict(
            Action.DEPLOY,
            message=f"Auto-deploy: significant improvement {shown} ≥ "
            f"{policy.auto_deploy_threshold:.0%} ({e.summary}).",
            data=data,
            cause=CAUSE_AUTO_DEPLOY,
        )
    if policy.require_approval:
        return Verdict(
            Action.AWAIT_APPROVAL,
            message=f"Awaiting a reviewer's approval (improvement {signed_pct(e.improvement)}, {e.summary}).",
            data=data,
        )
    if e.first_version:
        return Verdict(
            Action.DEPLOY,
            message="First version of the assistant, approval not required: deploying.",
            data=data,
            cause=CAUSE_FIRST_VERSION,
        )
    if e.significant and gain >= policy.ab_min_improvement:
        return Verdict(
            Action.DEPLOY,
            message=f"Deploying: significant improvement {shown} ≥ "
            f"{policy.ab_min_improvement:.0%} ({e.summary}).",
            data=data,
            cause=CAUSE_MIN_IMPROVEMENT,
        )
    why = (
        f"Not significant ({e.summary})."
        if not e.significant
        else f"Improvement {shown} below the minimum {policy.ab_min_improvement:.0%} ({e.summary})."
    )
    return Verdict(
        Action.DEPLOY_IF_APPROVED_IN_ADVANCE,
        message=f"Rejected: {why}",
        data=data,
        reason=why,
        approval_note=f"(improvement {signed_pct(e.improvement)}, {e.summary})",
    )
