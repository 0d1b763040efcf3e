"""Golden values, guards, verdict rules and seeded Monte-Carlo checks for abtesting.statistics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from abtesting.statistics import (
    SRM_THRESHOLD,
    VERDICTS,
    ArmCounts,
    Look,
    analyse,
    cs_halfwidth,
    cs_p_value,
    detectable_lift,
    group_sequential_boundaries,
    gs_boundaries,
    gs_power,
    inflation_factor,
    obf_spending,
    pooled_z,
    ratio_variance,
    relative_lift_ci,
    required_units,
    srm_sequential_p,
    unit_variance,
)

ALPHA = 0.05


def _json_safe(d: dict) -> None:
    json.dumps(d, allow_nan=False)  # raises on NaN/inf and on non-JSON types


def _units(n_u: np.ndarray, s_u: np.ndarray, assigned: int | None = None) -> ArmCounts:
    """ArmCounts from per-unit arrays, the way ExperimentUnit rows sum up."""
    n_u, s_u = np.asarray(n_u, dtype=float), np.asarray(s_u, dtype=float)
    units = int((n_u > 0).sum())
    return ArmCounts(
        n_assigned=units if assigned is None else assigned,
        units=units,
        n=int(n_u.sum()),
        successes=int(s_u.sum()),
        n_sq=float((n_u**2).sum()),
        s_sq=float((s_u**2).sum()),
        ns=float((n_u * s_u).sum()),
    )


# ------------------------------------------------------------------ published boundaries (golden)


def test_boundaries_match_gsdesign_and_rpact_for_five_looks() -> None:
    """gsDesign sfLDOF / rpact asOF, two-sided alpha = 0.05, 5 equally spaced looks."""
    assert group_sequential_boundaries(0.05, 5) == pytest.approx(
        (4.877, 3.357, 2.680, 2.290, 2.031), abs=1e-3
    )


def test_boundaries_match_gsdesign_and_rpact_for_three_looks() -> None:
    assert group_sequential_boundaries(0.05, 3) == pytest.approx((3.710, 2.511, 1.993), abs=1e-3)


def test_the_spending_function_is_the_published_one() -> None:
    # Per side alpha/2 = 0.025 spent as 2 - 2 Phi(z_{0.0125} / sqrt(t)); all of alpha at t = 1.
    assert obf_spending(1.0, ALPHA) == pytest.approx(ALPHA)
    side = 2 - 2 * stats.norm.cdf(stats.norm.isf(0.0125) / math.sqrt(0.2))
    assert obf_spending(0.2, ALPHA) == pytest.approx(2 * side)


def test_boundaries_single_look_is_fixed_test() -> None:
    assert group_sequential_boundaries(0.05, 1)[0] == pytest.approx(1.959964, abs=1e-6)


def test_boundaries_two_looks_exact() -> None:
    """Against the bivariate normal: total two-sided crossing probability must be alpha."""
    c1, c2 = gs_boundaries(0.05, (0.5, 1.0))
    mvn = stats.multivariate_normal([0, 0], [[1, math.sqrt(0.5)], [math.sqrt(0.5), 1]])
    inside = mvn.cdf([c1, c2]) - mvn.cdf([-c1, c2]) - mvn.cdf([c1, -c2]) + mvn.cdf([-c1, -c2])
    assert 1 - inside == pytest.approx(0.05, abs=1e-6)


def test_boundaries_for_unequal_fractions_spend_exactly_alpha() -> None:
    """Information by data: looks at any fractions (a ramp, a missed day) still total alpha."""
    fractions = (0.02, 0.1, 0.35, 0.4, 0.8, 1.0)
    bounds = np.asarray(gs_boundaries(ALPHA, fractions))
    rng = np.random.default_rng(11)
    steps = rng.standard_normal((400_000, len(fractions))) * np.sqrt(np.diff((0.0, *fractions)))
    z = steps.cumsum(axis=1) / np.sqrt(fractions)
    crossed = (np.abs(z) >= bounds).any(axis=1).mean()
    assert crossed == pytest.approx(ALPHA, abs=3 * math.sqrt(ALPHA * (1 - ALPHA) / 400_000))


def test_boundaries_are_prefix_consistent_and_decreasing() -> None:
    full = group_sequential_boundaries(0.05, 30)
    part = gs_boundaries(0.05, tuple(k / 30 for k in range(1, 11)))
    assert part == pytest.approx(full[:10])
    assert all(a > b for a, b in zip(full, full[1:], strict=False))


def test_inflation_factor_of_the_design() -> None:
    # OBF, 5 looks, 80 % power: the maximum sample is ~2.5 % above the fixed-horizon one.
    assert inflation_factor(ALPHA, 5) == pytest.approx(1.025, abs=2e-3)
    assert inflation_factor(ALPHA, 1) == pytest.approx(1.0, abs=1e-6)
    fractions = tuple(k / 5 for k in range(1, 6))
    drift = math.sqrt(inflation_factor(ALPHA, 5)) * (stats.norm.isf(0.025) + stats.norm.ppf(0.8))
    assert gs_power(ALPHA, fractions, drift) == pytest.approx(0.8, abs=1e-6)


def test_cs_p_value_agrees_with_interval() -> None:
    var, n, tuning = 0.0004, 4000, 6000
    half = float(cs_halfwidth(var, n, ALPHA, tuning))
    assert float(cs_p_value(half / math.sqrt(var), n, ALPHA, tuning)) == pytest.approx(ALPHA)


# ------------------------------------------------------------------ the user as the unit


def test_one_interaction_per_user_is_the_binomial_test() -> None:
    c, v = ArmCounts.one_per_unit(1000, 1000, 100), ArmCounts.one_per_unit(1000, 1000, 120)
    assert pooled_z(c, v) == pytest.approx(1.429301, abs=1e-6)  # the classical pooled two-proportion z


def test_ratio_variance_is_the_delta_method_on_user_sums() -> None:
    rng = np.random.default_rng(3)
    n_u = 1 + rng.poisson(3, 500)
    s_u = rng.binomial(n_u, rng.beta(2, 1, 500))
    r = s_u.sum() / n_u.sum()
    # GrowthBook's ratio-metric formula with population moments over units.
    mu_n, mu_s = n_u.mean(), s_u.mean()
    var_n, var_s, cov = n_u.var(), s_u.var(), np.mean((n_u - mu_n) * (s_u - mu_s))
    expected = (var_s / mu_n**2 - 2 * mu_s * cov / mu_n**3 + mu_s**2 * var_n / mu_n**4) / len(n_u)
    a = _units(n_u, s_u)
    assert float(ratio_variance(a.n, a.successes, a.n_sq, a.s_sq, a.ns, r)) == pytest.approx(expected)


def test_returning_users_widen_the_variance() -> None:
    """Within-user correlation: the user-level variance exceeds the per-interaction binomial one."""
    rng = np.random.default_rng(5)
    n_u = np.full(2000, 5)
    s_u = rng.binomial(5, rng.beta(0.7 * 2.33, 0.3 * 2.33, 2000))  # rho = 0.3
    a = _units(n_u, s_u)
    r = a.successes / a.n
    user_level = float(ratio_variance(a.n, a.successes, a.n_sq, a.s_sq, a.ns, r))
    assert user_level > 1.8 * r * (1 - r) / a.n  # design effect 1 + (5 - 1) * 0.3 = 2.2


def test_aa_user_level_test_holds_alpha_with_correlated_users() -> None:
    """A fixed-horizon A/A test with rho = 0.3 and 5 interactions per user: the user-level z keeps 5 %.

    (The per-interaction test it replaces rejects 17.9 % of these seeded runs.)
    """
    rng = np.random.default_rng(8)
    reps, users = 2000, 400
    rejections = 0
    for _ in range(reps):
        arms = []
        for _arm in range(2):
            s_u = rng.binomial(5, rng.beta(0.7 * 2.33, 0.3 * 2.33, users))
            arms.append(_units(np.full(users, 5), s_u))
        rejections += abs(pooled_z(*arms)) >= 1.959964
    assert rejections / reps <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / reps)


# ------------------------------------------------------------------ SRM


def test_sequential_srm_stays_quiet_over_thirty_looks_at_a_true_split() -> None:
    rng = np.random.default_rng(2)
    n_c = rng.poisson(100, size=(20_000, 30)).cumsum(axis=1)
    n_v = rng.poisson(100, size=(20_000, 30)).cumsum(axis=1)
    false_alarms = (srm_sequential_p(n_c, n_v, 0.5) < SRM_THRESHOLD).any(axis=1).mean()
    assert false_alarms <= 0.001 + 3 * math.sqrt(0.001 * 0.999 / 20_000)


def test_sequential_srm_flags_a_real_mismatch() -> None:
    assert srm_sequential_p(5000, 5600, 0.5) < SRM_THRESHOLD
    assert srm_sequential_p(5000, 5000, 0.5) == 1.0
    assert srm_sequential_p(2000, 8000, 0.8) > 0.1  # a 20/80 split asked for
    with pytest.raises(ValueError):
        srm_sequential_p(1, 1, 1.0)


# ------------------------------------------------------------------ planning


def test_required_units_match_the_pooled_test() -> None:
    # Fleiss without continuity correction (H0 variance at the average rate 0.055), 0.05 vs 0.06:
    # (1.95996 sqrt(2 * 0.055 * 0.945) + 0.84162 sqrt(0.05 * 0.95 + 0.06 * 0.94))^2 / 0.01^2 = 8,157.7.
    assert required_units(0.05, 0.2) == 2 * 8158
    assert required_units(0.05, 0.2, inflation=1.1) == pytest.approx(1.1 * 2 * 8158, abs=2)
    assert required_units(0.0, 0.2) is None and required_units(0.99, 0.05) is None


def test_the_design_effect_scales_the_sample() -> None:
    base = required_units(0.7, 0.05)
    assert required_units(0.7, 0.05, unit_var=2 * 0.7 * 0.3) == pytest.approx(2 * base, rel=1e-3)


def test_detectable_lift_inverts_the_sample_size() -> None:
    lift = detectable_lift(0.7, 2000, inflation=1.03)
    assert required_units(0.7, lift, inflation=1.03) == pytest.approx(2000, rel=1e-3)
    assert detectable_lift(0.7, 0) is None


def test_unit_variance_is_blinded_and_needs_variance() -> None:
    c = ArmCounts.one_per_unit(100, 100, 70)
    v = ArmCounts.one_per_unit(100, 100, 90)
    p, var = unit_variance(c, v)
    assert p == pytest.approx(0.8) and var == pytest.approx(0.8 * 0.2)
    assert unit_variance(ArmCounts.one_per_unit(5, 5, 5), ArmCounts.one_per_unit(5, 5, 5)) is None


# ------------------------------------------------------------------ analyse(): guards and verdicts


def _arm(n: int, s: int, *, assigned: int | None = None) -> ArmCounts:
    return ArmCounts.one_per_unit(n if assigned is None else assigned, n, s)


def _planned(k: int, of: int = 30) -> Look:
    return Look(k, of, tuple(i / of for i in range(1, k + 1)), k == of)


def _run(c: ArmCounts, v: ArmCounts, *, look: Look | None = None, mss: int = 100, mi: float = 0.05):
    return analyse(control=c, variant=v, split=0.5, alpha=ALPHA, min_improvement=mi, min_sample_size=mss,
                   look=look if look is not None else _planned(30), cs_tuning_n=8000)  # fmt: skip


@pytest.mark.parametrize(
    ("c", "v"),
    [
        (_arm(0, 0), _arm(0, 0)),  # 0/0
        (_arm(50, 0), _arm(50, 0)),  # 0/n both arms
        (_arm(50, 50), _arm(50, 50)),  # n/n both arms
        (_arm(1, 1), _arm(1, 0)),  # n = 1
        (_arm(0, 0), _arm(40, 30)),  # one empty arm
    ],
)
def test_degenerate_inputs_are_json_safe_and_flagged(c: ArmCounts, v: ArmCounts) -> None:
    for mss in (0, 100):
        res = _run(c, v, mss=mss)
        _json_safe(res.as_dict())
        assert res.enough_data is False and res.reason
        assert res.verdict in VERDICTS and res.verdict not in ("variant_better", "variant_worse")


def test_zero_control_rate_decides_on_difference() -> None:
    res = _run(_arm(1000, 0), _arm(1000, 30))
    _json_safe(res.as_dict())
    assert res.relative_lift is None and res.enough_data and "relative lift undefined" in res.reason
    assert res.verdict == "variant_better"


def test_ratings_are_compared_per_user() -> None:
    c = ArmCounts(10, 10, 10, 7, 10.0, 7.0, 7.0, 10, 10, 40.0, 10.0, 160.0, 40.0)
    v = ArmCounts(10, 10, 10, 8, 10.0, 8.0, 8.0, 10, 10, 40.0, 10.0, 160.0, 40.0)  # all 4s
    ratings = _run(c, v).ratings
    assert ratings["mean_control"] == ratings["mean_variant"] == 4.0
    assert ratings["enough_data"] is False and ratings["p_value"] is None and ratings["reason"]


def test_srm_always_wins() -> None:
    res = _run(_arm(3000, 2400, assigned=5000), _arm(3000, 2100, assigned=5600), look=_planned(3))
    assert res.srm_p_value < SRM_THRESHOLD and not res.srm_ok and res.verdict == "invalid_srm"


def test_keep_running_before_min_sample_size() -> None:
    res = _run(_arm(80, 20), _arm(80, 70), look=_planned(5), mss=100)  # hugely significant but too small
    assert res.sequential.significant and res.verdict == "keep_running" and not res.enough_data


def test_better_and_worse_at_a_planned_look() -> None:
    better = _run(_arm(3000, 2100), _arm(3000, 2280))
    assert better.sequential.method == "group_sequential" and better.verdict == "variant_better"
    assert better.sequential.ci_low > 0 and better.sequential.cs_low is not None
    assert _run(_arm(3000, 2280), _arm(3000, 2100)).verdict == "variant_worse"


def test_an_interim_analysis_never_decides() -> None:
    """Between planned looks (Look index 0 of a planned test) the CS is shown, nothing is decided."""
    res = _run(_arm(3000, 2100), _arm(3000, 2400), look=Look(0, 30, (0.1, 0.2), False))
    assert res.sequential.method == "confidence_sequence" and res.sequential.significant
    assert res.verdict == "keep_running"


def test_a_test_without_a_plan_is_decided_by_the_confidence_sequence() -> None:
    """The rollout guardrail (planned = 0): the always-valid CS decides at any look."""
    res = _run(_arm(3000, 2100), _arm(3000, 2400), look=Look())
    assert res.sequential.method == "confidence_sequence" and res.verdict == "variant_better"
    assert res.sequential.significant == (res.sequential.p_value <= ALPHA)


def test_early_look_needs_more_evidence_than_fixed_test() -> None:
    # z ~ 2.4: significant for a fixed test but not at look 10 of 30.
    res = _run(_arm(1000, 700), _arm(1000, 745), look=_planned(10))
    assert res.fixed_p_value < ALPHA and not res.sequential.significant and res.verdict == "keep_running"


def test_final_look_no_difference_vs_inconclusive() -> None:
    tight = _run(_arm(20000, 14000), _arm(20000, 14010), mi=0.05)
    assert tight.verdict == "no_difference"
    assert -0.05 < tight.sequential.ci_low and tight.sequential.ci_high < 0.05
    assert _run(_arm(500, 350), _arm(500, 355), mi=0.05).verdict == "inconclusive"


def test_the_decision_interval_is_lift_plus_minus_boundary_se() -> None:
    res = _run(_arm(1500, 1050), _arm(1500, 1090), look=_planned(15))
    seq, c = res.sequential, group_sequential_boundaries(ALPHA, 30)[14]
    assert seq.boundary_z == pytest.approx(c)
    assert (seq.ci_low + seq.ci_high) / 2 == pytest.approx(res.relative_lift)
    # Wider than the fixed-horizon interval: peeking costs width.
    assert seq.ci_high - seq.ci_low > res.fixed_lift_high - res.fixed_lift_low


def test_intervals_are_at_the_real_level() -> None:
    """Labels say 1 - alpha: at alpha = 0.1 the fixed interval uses z_{0.05}, not 1.96."""
    c, v = _arm(1000, 700), _arm(1000, 730)
    fixed = relative_lift_ci(c, v, 0.10)
    se = (fixed.high - fixed.low) / 2 / stats.norm.isf(0.05)
    assert fixed.p_value == pytest.approx(2 * stats.norm.sf(abs(fixed.estimate) / se))


def test_analysis_dict_is_complete_and_json_safe() -> None:
    c = ArmCounts(1200, 1200, 1200, 840, 1200.0, 840.0, 840.0, 300, 300, 1200.0, 300.0, 5100.0, 1200.0)
    v = ArmCounts(1210, 1210, 1210, 880, 1210.0, 880.0, 880.0, 310, 310, 1270.0, 310.0, 5400.0, 1270.0)
    d = analyse(
        control=c, variant=v, split=0.5, alpha=ALPHA, min_improvement=0.05, min_sample_size=100,
        look=_planned(12), cs_tuning_n=5000, required=6000, projected_units=5000,
    ).as_dict()  # fmt: skip
    _json_safe(d)
    assert d["required_units"] == 6000 and d["progress"] == pytest.approx(2410 / 6000)
    assert 0 < d["detectable_lift"] < 1
    assert d["control"]["rate_low"] < d["control"]["rate"] < d["control"]["rate_high"]
    assert d["ratings"]["enough_data"] and d["sequential"]["method"] == "group_sequential"
