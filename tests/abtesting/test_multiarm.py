"""Behaviour of abtesting.multiarm: the k-arm SRM test, Holm inside the plan, drops, the winner rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from abtesting.multiarm import (
    ARM_STATUSES,
    analyse_multi,
    required_units_multi,
    srm_sequential_p_multi,
)
from abtesting.statistics import (
    SRM_THRESHOLD,
    VERDICTS,
    ArmCounts,
    Look,
    analyse,
    gs_boundaries,
    inflation_factor,
    pooled_z,
    required_units,
    srm_sequential_p,
)

ALPHA = 0.05
PLANNED = 10
MID = Look(5, PLANNED, tuple(k / PLANNED for k in range(1, 6)), False)  # planned look 5 of 10
FINAL = Look(PLANNED, PLANNED, tuple(k / PLANNED for k in range(1, PLANNED + 1)), True)


def _arm(units: int, successes: int, assigned: int | None = None) -> ArmCounts:
    """One rated interaction per user (the binomial case)."""
    return ArmCounts.one_per_unit(units if assigned is None else assigned, units, successes)


def _shares(*variants: str) -> dict[str, float]:
    arms = ("control", *variants)
    return {a: 1 / len(arms) for a in arms}


def _analyse(control: ArmCounts, variants: dict[str, ArmCounts], look: Look = MID, **kw):
    params = dict(alpha=ALPHA, min_improvement=0.05, min_sample_size=100, look=look, cs_tuning_n=6000)
    params.update(kw)
    return analyse_multi(control=control, variants=variants, shares=_shares(*variants), **params)


def _json_safe(d: dict) -> None:
    json.dumps(d, allow_nan=False)  # raises on NaN/inf and on non-JSON types


# ------------------------------------------------------------------ sample ratio mismatch


@pytest.mark.parametrize("split", [0.5, 0.2, 0.75])
def test_srm_with_two_arms_is_the_two_arm_test(split: float) -> None:
    n_c = np.array([0, 10, 500, 480, 5000, 4000, 123456])
    n_v = np.array([0, 12, 500, 560, 5300, 1000, 130000])
    two_arm = srm_sequential_p(n_c, n_v, split)
    multi = srm_sequential_p_multi(np.stack([n_c, n_v], axis=-1), [1 - split, split])
    assert multi == pytest.approx(two_arm, rel=1e-7, abs=1e-300)
    assert srm_sequential_p_multi([480, 560], [1 - split, split]) == pytest.approx(
        float(two_arm[3]), rel=1e-7
    )


def test_srm_flags_a_broken_three_arm_split_and_not_a_true_one() -> None:
    equal = [1 / 3] * 3
    assert srm_sequential_p_multi([3000, 2950, 3040], equal) > 0.5
    assert srm_sequential_p_multi([3000, 3000, 2600], equal) < SRM_THRESHOLD
    # Only the proportions matter, so a subset of arms can be passed with its configured shares.
    assert srm_sequential_p_multi([3000, 2600], [0.25, 0.25]) == pytest.approx(
        srm_sequential_p_multi([3000, 2600], [0.5, 0.5])
    )
    # Unequal configured shares: 50/25/25 traffic that matches them passes, an equal split does not.
    assert srm_sequential_p_multi([5000, 2520, 2480], [0.5, 0.25, 0.25]) > 0.5
    assert srm_sequential_p_multi([3333, 3333, 3334], [0.5, 0.25, 0.25]) < SRM_THRESHOLD


def test_srm_stays_quiet_over_thirty_looks_at_a_true_three_arm_split() -> None:
    """Always valid: P(ever below the threshold over 30 looks) <= the threshold, at a true split."""
    rng = np.random.default_rng(18)
    runs, looks = 20_000, 30
    counts = rng.multinomial(100 * 3, [1 / 3] * 3, size=(runs, looks)).cumsum(axis=1)
    flagged = (srm_sequential_p_multi(counts, [1 / 3] * 3) < SRM_THRESHOLD).any(axis=1).mean()
    assert flagged <= SRM_THRESHOLD + 3 * math.sqrt(SRM_THRESHOLD / runs)
    # ... and it is not blind: a 10 % shortfall in one arm is found within the same 30 looks.
    broken = rng.multinomial(300, [0.35, 0.35, 0.30], size=(2000, looks)).cumsum(axis=1)
    assert (srm_sequential_p_multi(broken, [1 / 3] * 3) < SRM_THRESHOLD).any(axis=1).mean() > 0.9


def test_srm_rejects_impossible_shares() -> None:
    with pytest.raises(ValueError):
        srm_sequential_p_multi([10, 10], [1.0, 0.0])
    with pytest.raises(ValueError):
        srm_sequential_p_multi([10, 10, 10], [0.5, 0.5])


def test_a_mismatch_makes_the_analysis_invalid_whatever_the_rates() -> None:
    c, v = _arm(3000, 2100), _arm(3000, 2600)  # variant clearly better...
    result = _analyse(
        c, {"variant": v, "variant2": _arm(2500, 1750)}
    )  # ...but variant2 lost 1/6 of its users
    assert result.verdict == "invalid_srm"
    assert not result.srm_ok
    assert result.winner is None
    assert {a["status"] for a in result.as_dict()["arms"].values()} == {"open"}  # nothing decided on it


def test_a_dropped_arm_leaves_the_srm_check_and_the_others_keep_their_shares() -> None:
    c, v2 = _arm(4000, 2800), _arm(4000, 2800)
    frozen = _arm(1500, 700)  # dropped as "worse" at an earlier look: no traffic since
    variants = {"variant": frozen, "variant2": v2}
    kept = _analyse(c, variants, decided={"variant": "worse"})
    assert kept.srm_ok
    assert kept.srm_arms == ("control", "variant2")
    assert kept.as_dict()["arms"]["variant"]["status"] == "worse"
    # The same counts with the arm still counted would be flagged: the exclusion is what keeps it valid.
    assert _analyse(c, variants).verdict == "invalid_srm"
    # The remaining arms are still checked, at their configured relative shares.
    assert _analyse(
        c, {"variant": frozen, "variant2": _arm(3400, 2380)}, decided={"variant": "worse"}
    ).verdict == ("invalid_srm")


# ------------------------------------------------------------------ Holm inside the plan


def test_holm_tests_the_largest_z_at_alpha_over_m_then_passes_its_alpha_on() -> None:
    c = _arm(3000, 2100)
    variants = {"variant": _arm(3000, 2550), "variant2": _arm(3000, 2220), "variant3": _arm(3000, 2120)}
    result = _analyse(c, variants).as_dict()
    assert result["holm_order"] == ("variant", "variant2", "variant3")  # by |z|, descending
    seq = {a: result["arms"][a]["sequential"] for a in variants}
    assert seq["variant"]["alpha_level"] == pytest.approx(ALPHA / 3)
    assert seq["variant"]["boundary_z"] == pytest.approx(gs_boundaries(ALPHA / 3, MID.fractions)[-1])
    assert seq["variant"]["significant"]  # rejected at alpha/3: its alpha passes to the rest
    assert seq["variant2"]["alpha_level"] == pytest.approx(ALPHA / 2)
    assert seq["variant2"]["boundary_z"] == pytest.approx(gs_boundaries(ALPHA / 2, MID.fractions)[-1])
    assert not seq["variant2"]["significant"]
    # Holm stops at the first hypothesis it cannot reject: the rest stay at the same level.
    assert seq["variant3"]["alpha_level"] == pytest.approx(ALPHA / 2)


def test_a_z_between_the_levels_waits_for_alpha_to_be_passed_on() -> None:
    """Crossing alpha/1's boundary but not alpha/2's: rejected only once the other arm was rejected."""
    b_half, b_full = gs_boundaries(ALPHA / 2, MID.fractions)[-1], gs_boundaries(ALPHA, MID.fractions)[-1]
    c = _arm(4000, 2800)
    # The variant whose z is nearest the middle of the two boundaries (rates from 70 % up, by 1 user).
    v = min(
        (_arm(4000, s) for s in range(2800, 3200)),
        key=lambda v: abs(pooled_z(c, v) - (b_full + b_half) / 2),
    )
    assert b_full < pooled_z(c, v) < b_half
    alone = _analyse(c, {"variant": v, "variant2": _arm(4000, 2800)})
    assert alone.as_dict()["arms"]["variant"]["status"] == "open"  # tested at alpha/2
    passed_on = _analyse(c, {"variant": v, "variant2": _arm(1000, 500)}, decided={"variant2": "worse"})
    assert passed_on.as_dict()["arms"]["variant"]["sequential"]["alpha_level"] == pytest.approx(ALPHA)
    assert passed_on.as_dict()["arms"]["variant"]["status"] == "better"
    assert passed_on.winner == "variant"


# ------------------------------------------------------------------ decisions


@pytest.mark.parametrize("look", [MID, FINAL, Look(0, PLANNED, MID.fractions, False)])
@pytest.mark.parametrize("successes", [2100, 2160, 2240, 2400, 1900])
def test_one_variant_is_the_two_arm_analysis(look: Look, successes: int) -> None:
    """k = 1: Holm is the plain test at alpha, so the figures and verdict are statistics.analyse's."""
    c, v = _arm(3000, 2100), _arm(3000, successes)
    two = analyse(
        control=c, variant=v, split=0.5, alpha=ALPHA, min_improvement=0.05, min_sample_size=100, look=look,
        cs_tuning_n=6000,
    ).as_dict()  # fmt: skip
    multi = _analyse(c, {"variant": v}, look=look)
    seq = multi.as_dict()["arms"]["variant"]["sequential"]
    for key in ("method", "boundary_z", "z", "p_value", "significant", "ci_low", "ci_high"):
        assert seq[key] == (
            pytest.approx(two["sequential"][key]) if key != "method" else two["sequential"][key]
        )
    assert seq["alpha_level"] == ALPHA
    if look.group_sequential:
        assert multi.verdict == two["verdict"]
    assert multi.srm_p_value == pytest.approx(two["srm_p_value"])


def test_a_clearly_better_arm_is_declared_and_wins() -> None:
    c = _arm(3000, 2100)
    result = _analyse(c, {"variant": _arm(3000, 2100), "variant2": _arm(3000, 2550)})
    d = result.as_dict()
    assert d["arms"]["variant2"]["status"] == "better"
    assert d["arms"]["variant"]["status"] == "open"
    assert (result.verdict, result.winner, result.arm) == ("variant_better", "variant2", "variant2")
    assert result.winner_runner_up_distinguishable is None
    results = d["ab_test_results"]
    assert results["arm"] == "variant2"
    assert results["variantSuccessRate"] == pytest.approx(0.85)
    assert results["controlSuccessRate"] == pytest.approx(0.70)
    assert results["significant"] is True
    assert results["improvementLow"] == d["arms"]["variant2"]["sequential"]["ci_low"] > 0
    assert results["pValue"] is None  # not the final look
    # Every arm has its own figures, for a job whose candidate is another arm than the winner.
    by_arm = d["ab_test_results_by_arm"]
    assert by_arm["variant2"] == results
    assert by_arm["variant"]["arm"] == "variant"
    assert by_arm["variant"]["variantSuccessRate"] == pytest.approx(0.70)
    assert by_arm["variant"]["significant"] is False


def test_two_better_arms_the_higher_rate_wins() -> None:
    c = _arm(3000, 2100)
    result = _analyse(c, {"variant": _arm(3000, 2400), "variant2": _arm(3000, 2550)})
    statuses = {a: r["status"] for a, r in result.as_dict()["arms"].items()}
    assert statuses == {"variant": "better", "variant2": "better"}
    assert result.winner == "variant2"
    assert result.winner_vs_runner_up["arm"] == "variant"
    assert result.winner_runner_up_distinguishable is True  # 85 % vs 80 % on 3,000 users each
    close = _analyse(c, {"variant": _arm(3000, 2500), "variant2": _arm(3000, 2510)})
    assert close.winner == "variant2"
    assert close.winner_runner_up_distinguishable is False


def test_a_clearly_worse_arm_is_dropped_while_the_others_stay_open() -> None:
    c = _arm(3000, 2100)
    result = _analyse(c, {"variant": _arm(3000, 1700), "variant2": _arm(3000, 2130)})
    statuses = {a: r["status"] for a, r in result.as_dict()["arms"].items()}
    assert statuses == {"variant": "worse", "variant2": "open"}
    assert result.verdict == "keep_running"
    assert result.winner is None
    assert result.arm == "variant2"  # the figures of the best arm so far


def test_every_arm_worse_is_variant_worse() -> None:
    c = _arm(3000, 2100)
    now = _analyse(c, {"variant": _arm(3000, 1700), "variant2": _arm(3000, 1650)})
    assert now.verdict == "variant_worse"
    # One dropped earlier, the other now.
    later = _analyse(
        c, {"variant": _arm(1000, 550), "variant2": _arm(3000, 1650)}, decided={"variant": "worse"}
    )
    assert later.verdict == "variant_worse"


def test_final_look_no_difference_vs_inconclusive() -> None:
    c = _arm(20000, 14000)
    tight = _analyse(c, {"variant": _arm(20000, 14020), "variant2": _arm(20000, 13990)}, look=FINAL)
    assert tight.verdict == "no_difference"
    assert {r["status"] for r in tight.as_dict()["arms"].values()} == {"no_difference"}
    assert tight.ab_test_results["pValue"] is not None  # the fixed-horizon reference, at the end only
    c = _arm(300, 210)
    wide = _analyse(c, {"variant": _arm(300, 215), "variant2": _arm(300, 205)}, look=FINAL)
    assert wide.verdict == "inconclusive"
    assert {r["status"] for r in wide.as_dict()["arms"].values()} == {"inconclusive"}


def test_final_look_with_a_dropped_arm_judges_the_rest() -> None:
    c = _arm(20000, 14000)
    result = _analyse(
        c,
        {"variant": _arm(5000, 3000), "variant2": _arm(20000, 14010)},
        look=FINAL,
        decided={"variant": "worse"},
    )
    assert result.verdict == "no_difference"
    assert result.as_dict()["arms"]["variant"]["status"] == "worse"


def test_an_interim_look_never_decides() -> None:
    c = _arm(5000, 3500)
    variants = {"variant": _arm(5000, 4500), "variant2": _arm(5000, 2500)}
    interim = Look(0, PLANNED, MID.fractions, False)
    result = _analyse(c, variants, look=interim)
    d = result.as_dict()
    assert result.verdict == "keep_running"
    assert {r["status"] for r in d["arms"].values()} == {"open"}
    seq = d["arms"]["variant"]["sequential"]
    assert seq["method"] == "confidence_sequence"
    assert seq["significant"]  # shown, at its Holm level ...
    assert seq["alpha_level"] == pytest.approx(ALPHA / 2)
    assert seq["p_value"] <= ALPHA / 2
    # ... and the same data at a planned look decide.
    assert _analyse(c, variants).verdict == "variant_better"


def test_too_few_users_keep_running() -> None:
    c = _arm(99, 50)
    result = _analyse(c, {"variant": _arm(99, 95), "variant2": _arm(150, 140)})
    assert result.verdict == "keep_running"
    assert not result.enough_data
    assert "need 100 users" in result.reason
    assert {r["status"] for r in result.as_dict()["arms"].values()} == {"open"}
    # Also at the final look: the deadline's decision is the app's, not a verdict on too little data.
    assert (
        _analyse(c, {"variant": _arm(99, 95), "variant2": _arm(150, 140)}, look=FINAL).verdict
        == "keep_running"
    )


@pytest.mark.parametrize(
    "control, variants",
    [
        (ArmCounts(), {"variant": ArmCounts(), "variant2": ArmCounts()}),
        (_arm(500, 0), {"variant": _arm(500, 0), "variant2": _arm(500, 0)}),
        (_arm(500, 500), {"variant": _arm(500, 500), "variant2": _arm(500, 500)}),
        (_arm(500, 0), {"variant": _arm(500, 40), "variant2": ArmCounts()}),
    ],
)
@pytest.mark.parametrize("look", [MID, FINAL, Look(0, PLANNED, MID.fractions, False)])
def test_degenerate_counts_are_json_safe(control: ArmCounts, variants: dict, look: Look) -> None:
    result = _analyse(control, variants, look=look, min_sample_size=0)
    d = result.as_dict()
    _json_safe(d)
    assert result.verdict in VERDICTS
    assert all(r["status"] in ARM_STATUSES for r in d["arms"].values())


def test_inputs_are_checked() -> None:
    c = _arm(100, 50)
    with pytest.raises(ValueError):
        analyse_multi(
            control=c, variants={"variant": c}, shares={"variant": 0.5}, alpha=ALPHA, min_improvement=0.05,
            min_sample_size=10, look=MID, cs_tuning_n=100,
        )  # fmt: skip
    with pytest.raises(ValueError):
        _analyse(c, {"variant": c}, decided={"variant2": "worse"})
    with pytest.raises(ValueError):
        _analyse(c, {"variant": c}, decided={"variant": "no_difference"})


def test_required_units_multi_is_the_pairwise_plan_at_the_bonferroni_level() -> None:
    one = required_units(0.7, 0.05, alpha=ALPHA, inflation=inflation_factor(ALPHA, 30))
    assert required_units_multi(0.7, 0.05, variants=1, alpha=ALPHA, planned_looks=30) == one
    pair = required_units(0.7, 0.05, alpha=ALPHA / 2, inflation=inflation_factor(ALPHA / 2, 30))
    assert required_units_multi(0.7, 0.05, variants=2, alpha=ALPHA, planned_looks=30) == math.ceil(pair * 1.5)


# ------------------------------------------------------------------ familywise error, seeded Monte Carlo


def test_aaa_familywise_error_holds_alpha_over_looks() -> None:
    """A/A/A, 10 equally spaced planned looks, drops and passed-on alpha as the product runs them."""
    rng = np.random.default_rng(20261218)
    runs, looks, per_look, p = 1000, PLANNED, 60, 0.7
    fractions = tuple(k / looks for k in range(1, looks + 1))
    arms = ("control", "variant", "variant2")
    succ = rng.binomial(per_look, p, size=(runs, len(arms), looks)).cumsum(axis=2)
    better = any_decision = 0
    for run in range(runs):
        decided: dict[str, str] = {}
        for k in range(looks):
            n = per_look * (k + 1)
            counts = {a: _arm(n, int(succ[run, i, k])) for i, a in enumerate(arms)}
            result = _analyse(
                counts["control"],
                {a: counts[a] for a in arms[1:]},
                look=Look(k + 1, looks, fractions[: k + 1], k + 1 == looks),
                min_sample_size=50,
                decided=decided,
            )
            decided = {a: r.status for a, r in result.arms.items() if r.status in ("better", "worse")}
            if result.verdict != "keep_running":
                break
        better += any(s == "better" for s in decided.values())
        any_decision += bool(decided)
    se = math.sqrt(ALPHA * (1 - ALPHA) / runs)
    assert better / runs <= ALPHA + 3 * se
    assert any_decision / runs <= ALPHA + 3 * se
    assert any_decision > 0  # the test can reject at all (it spends its alpha, about 5 % of runs)
