"""abtesting.arms: a multi-arm analysis' drops, decision and reason (pure: no database)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from abtesting import arms
from abtesting.models import Experiment
from abtesting.statistics import Look

VERSIONS = {"control": "shop-v1", "variant": "shop-v2", "variant2": "shop-v3", "variant3": "shop-v4"}


def experiment(**fields) -> Experiment:
    settings = {"variant_count": 3, "traffic_split": 0.75, "max_duration_days": 14, "min_improvement": 0.05,
                "min_sample_size": 50, "started_at": timezone.now()}  # fmt: skip
    return Experiment(**{**settings, **fields})


def arm(rate: float, status: str, lift: float, low: float | None, high: float | None, **extra) -> dict:
    return {
        "summary": {"n_assigned": 300, "units": 300, "n": 300, "successes": round(300 * rate), "rate": rate},
        "relative_lift": lift,
        "sequential": {"ci_low": low, "ci_high": high, "alpha_level": extra.pop("level", 0.05 / 3)},
        "status": status,
        "dropped_at_look": extra.pop("dropped", None),
    }


def analysis(verdict: str, winner: str | None = None, **arms_figures) -> dict:
    return {
        "control": {"n_assigned": 300, "units": 300, "n": 300, "successes": 150, "rate": 0.5},
        "arms": arms_figures,
        "alpha": 0.05,
        "verdict": verdict,
        "winner": winner,
        "winner_runner_up_distinguishable": None,
        "versions": VERSIONS,
        "look": {"method": "group_sequential", "look": 4, "planned_looks": 14, "information_fraction": 0.6},
        "final_look": False,
        "srm_p_value": 0.4,
    }


def test_shares_are_equal_over_every_arm():
    assert arms.shares(experiment()) == {
        "control": pytest.approx(0.25),
        "variant": pytest.approx(0.25),
        "variant2": pytest.approx(0.25),
        "variant3": pytest.approx(0.25),
    }


def test_only_a_planned_look_drops_an_arm_and_it_stays_dropped():
    worse = {"arms": {"variant": {"status": "worse"}, "variant2": {"status": "open"}}}
    interim = Look(0, 14, (0.2,), False)
    assert arms.plan_after({"fractions": [0.2]}, worse, interim) == {"fractions": [0.2]}
    planned = Look(2, 14, (0.2, 0.4), False)
    plan = arms.plan_after({"fractions": [0.2, 0.4]}, worse, planned)
    assert plan["decided"] == {"variant": "worse"} and plan["decided_at"] == {"variant": 2}
    # At look 3 the arm is still "worse" (passed to analyse_multi as decided): its look stays 2.
    later = arms.plan_after(
        plan, {"arms": {**worse["arms"], "variant2": {"status": "worse"}}}, Look(3, 14, (0.2, 0.4, 0.6))
    )
    assert later["decided_at"] == {"variant": 2, "variant2": 3}
    # A "better" arm is not kept: it ends the experiment, or (unconfirmed) is tested again.
    assert (
        arms.plan_after(plan, {"arms": {"variant2": {"status": "better"}}}, Look(3, 14, (0.2, 0.4, 0.6)))
        == plan
    )


def test_the_winner_is_named_against_the_control_and_a_distinguishable_runner_up():
    figures = analysis(
        "variant_better",
        "variant2",
        variant=arm(0.3, "worse", -0.4, -0.6, -0.2, dropped=3),
        variant2=arm(0.8, "better", 0.6, 0.3, 0.9, level=0.025),
        variant3=arm(0.7, "better", 0.4, 0.1, 0.7),
    )
    figures["winner_runner_up_distinguishable"] = True
    decision, reason, winner = arms.decision_for(experiment(), figures, timezone.now())
    assert (decision, winner) == ("variant_better", "variant2")
    assert reason.startswith(
        "variant2 (shop-v3) is significantly better than the control (shop-v1) and than variant3 (shop-v4): "
        "success 50.0% → 80.0% per user, improvement +60.0%, lift at least +30.0% (with 95% confidence); "
        "decision interval [+30.0%, +90.0%] at its Holm level α = 0.025, planned look 4 of 14, "
        "information 60%."
    )
    runner_up = "variant3 (shop-v4) is better than the control too (success 50.0% → 70.0% per user)"
    assert f"{runner_up}, the winner's lead over it is significant." in reason
    assert reason.endswith(
        "variant (shop-v2) was dropped at look 3: significantly worse than the control "
        "(success 50.0% → 30.0% per user, relative lift -40.0%)."
    )
    figures["winner_runner_up_distinguishable"] = False
    _, reason, _ = arms.decision_for(experiment(), figures, timezone.now())
    assert "and than" not in reason and "the two do not differ significantly" in reason


def test_a_winner_whose_interval_still_includes_no_change_is_not_declared():
    figures = analysis("variant_better", "variant2", variant2=arm(0.6, "better", 0.2, -0.01, 0.4))
    assert arms.decision_for(experiment(variant_count=1), figures, timezone.now()) is None
    figures["final_look"] = True
    decision, reason, winner = arms.decision_for(experiment(), figures, timezone.now())
    assert (decision, winner) == ("inconclusive", None)
    assert "variant2 (shop-v3) crossed its boundary" in reason and "[-1.0%, +40.0%]" in reason


def test_the_final_look_names_each_open_arm():
    figures = analysis(
        "inconclusive",
        variant=arm(0.51, "no_difference", 0.02, -0.03, 0.04),
        variant2=arm(0.55, "inconclusive", 0.1, -0.02, 0.22),
        variant3=arm(0.2, "worse", -0.6, -0.8, -0.4, dropped=2),
    )
    figures["final_look"] = True
    decision, reason, _ = arms.decision_for(experiment(), figures, timezone.now())
    assert decision == "inconclusive" and reason.startswith("Inconclusive at the final look")
    assert "variant (shop-v2) relative lift +2.0%, decision interval [-3.0%, +4.0%]" in reason
    assert "lies within ±5%" in reason and "still allows a change of 5% or more" in reason
    assert "variant3 (shop-v4) was dropped at look 2" in reason


def test_running_without_a_verdict_waits_until_the_deadline():
    figures = analysis("keep_running", variant=arm(0.5, "open", 0, None, None))
    figures["arms"]["variant"]["summary"]["units"] = 12
    figures["control"]["units"] = 10
    e = experiment(variant_count=1, traffic_split=0.5)
    assert arms.decision_for(e, figures, e.started_at + timedelta(days=13)) is None
    decision, reason, _ = arms.decision_for(e, figures, e.started_at + timedelta(days=14))
    assert decision == "inconclusive"
    assert "Max duration (14 days) reached with 10 control, 12 variant users with feedback" in reason
