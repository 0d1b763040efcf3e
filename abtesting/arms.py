"""Multi-arm experiments (a control and two to four variants): the stored analysis, the arms dropped at a
planned look, and the decision with its reason.

Pure functions of the analysis (``abtesting.multiarm.analyse_multi``) and the experiment's settings, no
queries: ``abtesting.services`` counts, calls them and stores. The two-arm path is ``services.decision_for``.

Rules, on top of ``analyse_multi``'s (Holm over the arms inside the group-sequential plan):

- An arm found significantly *worse* at a planned look is dropped: recorded in the plan (``decided``,
  ``decided_at``: the look), which routing reads, so from the next request its users get the control's
  version outside the experiment (``abtesting.routing``); later looks pass it to ``analyse_multi`` as
  decided, and its alpha goes to the others (Holm). Only "worse" is kept: an arm found better ends the
  experiment at that look, unless its decision interval still includes no change (below), and then it is
  tested again at the next look like any open arm.
- ``variant_better``: the winner (the better arm with the highest success rate) is confirmed only when its
  decision interval of the relative lift excludes no change, as a two-arm test's variant must; otherwise
  the test keeps running (inconclusive at the final look).
- ``variant_worse``: every variant dropped. ``no_difference`` / ``inconclusive`` at the final look.
  ``invalid_srm`` at any look. The maximum duration without ``min_sample_size`` users with feedback in
  the control and each open arm: ``inconclusive``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from abtesting.assignment import CONTROL, variant_arms
from abtesting.formatting import arm_rate, signed_pct
from abtesting.models import Experiment
from abtesting.multiarm import MultiAnalysis
from abtesting.statistics import SRM_THRESHOLD, Look


def shares(experiment: Experiment) -> dict[str, float]:
    """Each arm's configured share of traffic, the control's included (equal for a multi-arm test)."""
    k, split = experiment.variant_count, experiment.traffic_split
    return {CONTROL: 1 - split, **dict.fromkeys(variant_arms(k), split / k)}


def decided(plan: dict[str, Any]) -> dict[str, str]:
    """The arms decided at earlier planned looks (arm -> "worse": dropped), for ``analyse_multi``."""
    return dict(plan.get("decided") or {})


def plan_after(plan: dict[str, Any], analysis: dict[str, Any], look: Look) -> dict[str, Any]:
    """The plan with the arms this planned look found worse recorded as dropped (unchanged otherwise)."""
    if not look.group_sequential:
        return plan
    before = decided(plan)
    dropped = [
        arm for arm, figures in analysis["arms"].items() if figures["status"] == "worse" and arm not in before
    ]
    if not dropped:
        return plan
    return {
        **plan,
        "decided": {**before, **dict.fromkeys(dropped, "worse")},
        "decided_at": {**(plan.get("decided_at") or {}), **dict.fromkeys(dropped, look.index)},
    }


def analysis_record(
    result: MultiAnalysis, look: Look, *, plan: dict[str, Any], versions: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the stored form of a multi-arm analysis, the plan after this look).

    ``analyse_multi``'s figures, where the look stands in the plan, each arm's version and the look it
    was dropped at, and the seed's names for the winner (or the best arm) with ``"arm"`` naming it.
    """
    analysis = result.as_dict()
    analysis["multi_arm"] = True
    analysis["final_look"] = look.final
    analysis["interim"] = look.planned > 0 and not look.group_sequential
    analysis["look"] = {
        "method": "group_sequential" if look.group_sequential else "confidence_sequence",
        "look": look.index,
        "planned_looks": look.planned,
        "information_fraction": look.fractions[-1] if look.group_sequential else None,
    }
    analysis["versions"] = versions
    plan = plan_after(plan, analysis, look)
    dropped_at = plan.get("decided_at") or {}
    for arm, figures in analysis["arms"].items():
        figures["dropped_at_look"] = dropped_at.get(arm) if decided(plan).get(arm) == "worse" else None
    units = analysis["control"]["units"] + sum(a["summary"]["units"] for a in analysis["arms"].values())
    analysis["units"] = units
    analysis["required_units"] = plan.get("units_max")
    analysis["progress"] = min(1.0, units / plan["units_max"]) if plan.get("units_max") else None
    results = dict(analysis.get("ab_test_results") or {})
    results.setdefault("arm", analysis.get("winner") or _best(analysis))
    analysis["ab_test_results"] = results
    return analysis, plan


def _best(analysis: dict[str, Any]) -> str:
    return max(analysis["arms"], key=lambda arm: analysis["arms"][arm]["summary"]["rate"] or -1.0)


# --------------------------------------------------------------------------- reasons


def _name(analysis: dict[str, Any], arm: str) -> str:
    """ "variant2 (shop-v5)", or "the control (shop-v3)"."""
    version = (analysis.get("versions") or {}).get(arm, "")
    label = "the control" if arm == CONTROL else arm
    return f"{label} ({version})" if version else label


def _summary(analysis: dict[str, Any], arm: str) -> dict[str, Any]:
    """An arm's counts and rate (``ArmSummary`` fields), the control's included."""
    return analysis["control"] if arm == CONTROL else analysis["arms"][arm]["summary"]


def _rates(analysis: dict[str, Any], arm: str) -> str:
    return f"success {arm_rate(analysis['control'])} → {arm_rate(analysis['arms'][arm]['summary'])} per user"


def _interval(figures: dict[str, Any]) -> str:
    low, high = figures["sequential"]["ci_low"], figures["sequential"]["ci_high"]
    return "n/a" if low is None or high is None else f"[{low:+.1%}, {high:+.1%}]"


def _level(figures: dict[str, Any]) -> str:
    level = figures["sequential"].get("alpha_level")
    return "" if level is None else f" at its Holm level α = {level:.3g}"


def _where(analysis: dict[str, Any]) -> str:
    look = analysis["look"]
    if look["method"] != "group_sequential":
        return "always-valid confidence sequence"
    return (
        f"planned look {look['look']} of {look['planned_looks']}, "
        f"information {look['information_fraction']:.0%}"
    )


def _dropped(analysis: dict[str, Any]) -> list[str]:
    return [
        f"{_name(analysis, arm)} was dropped at look {figures['dropped_at_look']}: significantly worse than "
        f"the control ({_rates(analysis, arm)}, relative lift {signed_pct(figures['relative_lift'])})"
        for arm, figures in analysis["arms"].items()
        if figures.get("dropped_at_look") is not None
    ]


def _sentences(parts: list[str]) -> str:
    """Parts joined as sentences; they start with an arm's name, written as the API and routing spell it."""
    return " ".join(f"{part}." for part in parts if part)


def _better(analysis: dict[str, Any], winner: str) -> str:
    figures = analysis["arms"][winner]
    others = [arm for arm, f in analysis["arms"].items() if f["status"] == "better" and arm != winner]
    runner_up = max(others, key=lambda arm: analysis["arms"][arm]["summary"]["rate"] or 0.0, default=None)
    distinguishable = analysis.get("winner_runner_up_distinguishable")
    also = f" and than {_name(analysis, runner_up)}" if runner_up and distinguishable else ""
    low = figures["sequential"]["ci_low"]
    at_least = (
        f", lift at least {low:+.1%} (with {1 - analysis['alpha']:.0%} confidence)" if low is not None else ""
    )
    parts = [
        f"{_name(analysis, winner)} is significantly better than {_name(analysis, CONTROL)}{also}: "
        f"{_rates(analysis, winner)}, improvement {signed_pct(figures['relative_lift'])}{at_least}; "
        f"decision interval {_interval(figures)}{_level(figures)}, {_where(analysis)}"
    ]
    for arm in others:
        lead = {
            True: "the winner's lead over it is significant",
            False: "the two do not differ significantly; the winner has the higher success rate",
        }.get(distinguishable, "the winner has the higher success rate")
        too = f"is better than the control too ({_rates(analysis, arm)})"
        parts.append(f"{_name(analysis, arm)} {too}, {lead}")
    for arm, f in analysis["arms"].items():
        if f["status"] in ("open", "no_difference", "inconclusive"):
            parts.append(
                f"{_name(analysis, arm)}: no significant difference (relative lift "
                f"{signed_pct(f['relative_lift'])})"
            )
    return _sentences([*parts, *_dropped(analysis)])


def _final(analysis: dict[str, Any], min_improvement: float) -> list[str]:
    parts = []
    for arm, f in analysis["arms"].items():
        if f["status"] == "no_difference":
            parts.append(
                f"{_name(analysis, arm)} relative lift {signed_pct(f['relative_lift'])}, decision interval "
                f"{_interval(f)}{_level(f)} lies within ±{min_improvement:.0%}"
            )
        elif f["status"] in ("inconclusive", "open"):
            parts.append(
                f"{_name(analysis, arm)} relative lift {signed_pct(f['relative_lift'])}, decision interval "
                f"{_interval(f)}{_level(f)} still allows a change of {min_improvement:.0%} or more"
            )
    return parts


def decision_for(
    experiment: Experiment, analysis: dict[str, Any], now: datetime
) -> tuple[str, str, str | None] | None:
    """(decision, reason, winning arm or None) the multi-arm analysis calls for, or None to keep running."""
    verdict = analysis["verdict"]
    final = bool(analysis.get("final_look")) or now >= experiment.started_at + timedelta(
        days=experiment.max_duration_days
    )
    if verdict == "invalid_srm":
        live = [arm for arm in experiment.arms if not analysis["arms"].get(arm, {}).get("dropped_at_look")]
        counts = ", ".join(f"{_summary(analysis, arm)['n_assigned']} {arm}" for arm in live)
        return (
            Experiment.Decision.INVALID_SRM,
            f"Sample ratio mismatch: {counts} users (each request without a user ref counts as one) for an "
            f"equal split over these {len(live)} arms (always-valid SRM p = {analysis['srm_p_value']:.2g} < "
            f"{SRM_THRESHOLD}). Assignment or logging is broken, so the results cannot be trusted; do not "
            "deploy on them. Check that apps log the experiment and arm that /api/v1/route returned.",
            None,
        )
    if verdict == "variant_better":
        winner = analysis["winner"]
        low = analysis["arms"][winner]["sequential"]["ci_low"]
        if low is not None and low <= 0:
            # The test on the success rates crossed its boundary, the interval of the relative lift not yet.
            if not final:
                return None
            return (
                Experiment.Decision.INCONCLUSIVE,
                f"Inconclusive at the final look: the test of {_name(analysis, winner)} crossed its boundary "
                f"but its decision interval of the relative lift {_interval(analysis['arms'][winner])} still "
                "includes no change.",
                None,
            )
        return Experiment.Decision.VARIANT_BETTER, _better(analysis, winner), winner
    if verdict == "variant_worse":
        return (
            Experiment.Decision.VARIANT_WORSE,
            _sentences(
                [
                    f"Every variant is significantly worse than {_name(analysis, CONTROL)}; all traffic is "
                    "back on the control",
                    *_dropped(analysis),
                ]
            ),
            None,
        )
    if verdict == "no_difference":
        return (
            Experiment.Decision.NO_DIFFERENCE,
            _sentences(
                [
                    "No difference that matters at the final look",
                    *_final(analysis, experiment.min_improvement),
                    *_dropped(analysis),
                ]
            ),
            None,
        )
    if verdict == "inconclusive":
        return (
            Experiment.Decision.INCONCLUSIVE,
            _sentences(
                [
                    "Inconclusive at the final look; more feedback was needed",
                    *_final(analysis, experiment.min_improvement),
                    *_dropped(analysis),
                ]
            ),
            None,
        )
    if now >= experiment.started_at + timedelta(days=experiment.max_duration_days):
        units = ", ".join(f"{_summary(analysis, arm)['units']} {arm}" for arm in experiment.arms)
        return (
            Experiment.Decision.INCONCLUSIVE,
            f"Max duration ({experiment.max_duration_days:g} days) reached with {units} users with feedback, "
            f"below the {experiment.min_sample_size} per arm needed to decide.",
            None,
        )
    return None
