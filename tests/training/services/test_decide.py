"""The decision rule (training/services/decide.py): a pure function of the evidence and the policy.

No test here has database access (pytest-django refuses it): the rule reads nothing but its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from training.services.decide import (
    CAUSE_AUTO_DEPLOY,
    CAUSE_FIRST_VERSION,
    CAUSE_MIN_IMPROVEMENT,
    Action,
    Evidence,
    decide,
)


@dataclass
class Policy:
    auto_deploy_threshold: float = 0.15
    require_approval: bool = True
    ab_min_improvement: float = 0.05


def evidence(**values) -> Evidence:
    base = dict(significant=True, improvement=0.10, worse=False, summary="the test", first_version=False)
    return Evidence(**{**base, **values})


def test_evidence_that_rules_the_candidate_out_rejects_it_whatever_the_policy():
    verdict = decide(evidence=evidence(worse=True), policy=Policy(require_approval=False))
    assert verdict.action == Action.REJECT
    assert verdict.reason == "The A/B test rules the candidate out (the test)."
    assert verdict.message == "Rejected: the evidence rules the candidate out (the test)."


def test_a_significant_gain_over_the_auto_deploy_threshold_deploys_even_when_approval_is_required():
    verdict = decide(evidence=evidence(improvement=0.20), policy=Policy())
    assert (verdict.action, verdict.cause) == (Action.DEPLOY, CAUSE_AUTO_DEPLOY)
    assert verdict.message == "Auto-deploy: significant improvement +20.0% ≥ 15% (the test)."


def test_a_policy_that_requires_approval_waits_for_a_reviewer():
    verdict = decide(evidence=evidence(), policy=Policy())
    assert verdict.action == Action.AWAIT_APPROVAL
    assert verdict.message == "Awaiting a reviewer's approval (improvement +10.0%, the test)."
    assert verdict.data == {"significant": True, "improvement": 0.10, "evidence": "the test"}


def test_the_first_version_deploys_when_approval_is_not_required():
    verdict = decide(
        evidence=evidence(significant=False, first_version=True), policy=Policy(require_approval=False)
    )
    assert (verdict.action, verdict.cause) == (Action.DEPLOY, CAUSE_FIRST_VERSION)


def test_a_significant_gain_over_the_minimum_deploys_when_approval_is_not_required():
    verdict = decide(evidence=evidence(), policy=Policy(require_approval=False))
    assert (verdict.action, verdict.cause) == (Action.DEPLOY, CAUSE_MIN_IMPROVEMENT)


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"significant": False}, "Not significant (the test)."),
        ({"improvement": 0.01}, "Improvement +1.0% below the minimum 5% (the test)."),
    ],
)
def test_otherwise_only_an_advance_approval_can_deploy_and_the_rejection_says_why(values, why):
    verdict = decide(evidence=evidence(**values), policy=Policy(require_approval=False))
    assert verdict.action == Action.DEPLOY_IF_APPROVED_IN_ADVANCE
    assert (verdict.reason, verdict.message) == (why, f"Rejected: {why}")


def test_ab_evidence_clears_thresholds_with_the_lower_end_of_its_interval():
    # +20 % estimated but "at least +3 %": neither the auto-deploy threshold nor the minimum is cleared.
    verdict = decide(
        evidence=evidence(improvement=0.20, improvement_low=0.03, by_lower_bound=True),
        policy=Policy(require_approval=False),
    )
    assert verdict.action == Action.DEPLOY_IF_APPROVED_IN_ADVANCE
    assert verdict.reason == "Improvement +20.0% (at least +3.0%) below the minimum 5% (the test)."
    assert verdict.data["improvement_low"] == 0.03
