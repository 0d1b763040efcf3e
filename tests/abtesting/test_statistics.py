"""Golden values, guards, verdict rules and seeded Monte-Carlo acceptance tests for abtesting.statistics."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy import stats

from abtesting.statistics import (
    SRM_THRESHOLD,
    VERDICTS,
    ArmCounts,
    analyse,
    cs_halfwidth,
    cs_p_value,
    group_sequential_boundaries,
    gs_boundaries,
    relative_lift_ci,
    repeated_p_value,
    sample_size_per_arm,
    sample_size_per_arm_relative,
    srm_test,
    summary_from_sums,
    two_proportion_ztest,
    welch_ttest,
    wilson_interval,
)

ALPHA = 0.05
REPS = 2000
MC_SE = math.sqrt(ALPHA * (1 - ALPHA) / REPS)


def _bench() -> ModuleType:
    # Loaded by path so the test does not depend on how the bench package is wired up.
    path = Path(__file__).resolve().parents[2] / "bench" / "abtest_sim.py"
    spec = importlib.util.spec_from_file_location("abtest_sim", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _json_safe(d: dict) -> None:
    json.dumps(d, allow_nan=False)  # raises on NaN/inf and on non-JSON types


# ------------------------------------------------------------------ golden values


def test_two_proportion_ztest_golden() -> None:
    z, p = two_proportion_ztest(100, 1000, 120, 1000)
    assert z == pytest.approx(1.429301, abs=1e-6)
    assert p == pytest.approx(0.152918, abs=1e-6)
    assert two_proportion_ztest(200, 1000, 250, 1000)[1] == pytest.approx(0.0074196, abs=1e-7)


def test_relative_lift_matches_growthbook_ttest() -> None:
    lift, low, high, p = relative_lift_ci(14, 28, 16, 30, 0.05)
    assert (lift, low, high, p) == pytest.approx((0.06667, -0.47767, 0.61101, 0.80707), abs=1e-5)


def test_srm_golden() -> None:
    assert srm_test(5000, 5200, 0.5) == pytest.approx(0.04767, abs=1e-5)
    assert srm_test(0, 0, 0.5) == 1.0
    assert SRM_THRESHOLD == 0.001


def test_sample_size_evan_miller() -> None:
    assert sample_size_per_arm(0.05, 0.01) == 7663
    assert sample_size_per_arm_relative(0.05, 0.2) == 7663
    assert sample_size_per_arm(0.0, 0.01) is None
    assert sample_size_per_arm_relative(0.99, 0.05) is None  # 1.0395 is not a rate


def test_wilson_known_value_and_edges() -> None:
    low, high = wilson_interval(7, 10)
    assert (low, high) == pytest.approx((0.3968, 0.8922), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 20)[0] == 0.0
    assert wilson_interval(20, 20)[1] == 1.0


def test_summary_and_welch() -> None:
    values_c, values_v = np.array([3.0, 4, 5, 4, 4]), np.array([4.0, 5, 5, 4, 5, 5])
    m_c, v_c = summary_from_sums(5, values_c.sum(), (values_c**2).sum())
    m_v, v_v = summary_from_sums(6, values_v.sum(), (values_v**2).sum())
    res = welch_ttest(m_c, v_c, 5, m_v, v_v, 6)
    ref = stats.ttest_ind(values_v, values_c, equal_var=False)
    assert res.t == pytest.approx(ref.statistic) and res.p_value == pytest.approx(ref.pvalue)
    assert res.enough_data


# ------------------------------------------------------------------ group-sequential boundaries


def test_boundaries_single_look_is_fixed_test() -> None:
    assert group_sequential_boundaries(0.05, 1)[0] == pytest.approx(1.959964, abs=1e-6)


def test_boundaries_two_looks_exact() -> None:
    """Against the bivariate normal: total two-sided crossing probability must be alpha."""
    c1, c2 = gs_boundaries(0.05, (0.5, 1.0))
    mvn = stats.multivariate_normal([0, 0], [[1, math.sqrt(0.5)], [math.sqrt(0.5), 1]])
    inside = mvn.cdf([c1, c2]) - mvn.cdf([-c1, c2]) - mvn.cdf([c1, -c2]) + mvn.cdf([-c1, -c2])
    assert c1 == pytest.approx(stats.norm.isf(0.025) / math.sqrt(0.5))
    assert 1 - inside == pytest.approx(0.05, abs=1e-6)


def test_boundaries_are_prefix_consistent_and_decreasing() -> None:
    full = group_sequential_boundaries(0.05, 30)
    part = gs_boundaries(0.05, tuple(k / 30 for k in range(1, 11)))
    assert part == pytest.approx(full[:10])
    assert all(a > b for a, b in zip(full, full[1:], strict=False))
    assert 1.96 < full[-1] < 2.25  # OBF keeps the last boundary close to the fixed test


def test_repeated_p_value_inverts_the_boundary() -> None:
    bounds = group_sequential_boundaries(0.05, 30)
    assert repeated_p_value(bounds[-1], 30, 30) == pytest.approx(0.05, rel=1e-3)
    assert repeated_p_value(bounds[9], 10, 30) == pytest.approx(0.05, rel=1e-3)
    assert repeated_p_value(0.0, 5, 30) == 1.0


def test_cs_p_value_agrees_with_interval() -> None:
    var, n, tuning = 0.0004, 4000, 6000
    half = float(cs_halfwidth(var, n, ALPHA, tuning))
    assert float(cs_p_value(half / math.sqrt(var), n, ALPHA, tuning)) == pytest.approx(ALPHA)


# ------------------------------------------------------------------ Monte-Carlo acceptance


def test_aa_false_positive_rate_naive_vs_sequential() -> None:
    res = _bench().simulate_aa(n_experiments=REPS, looks=30, per_arm_per_look=100, p=0.7, alpha=ALPHA, seed=0)
    assert res["fpr_sequential"] <= ALPHA + 3 * MC_SE
    assert res["fpr_confidence_sequence"] <= ALPHA + 3 * MC_SE
    assert res["fpr_naive"] > 0.2  # daily peeking at p < 0.05: ~28%
    assert res["seconds"] < 30


def test_power_sequential_close_to_fixed_horizon() -> None:
    res = _bench().simulate_power(n_experiments=REPS, looks=30, per_arm_per_look=100, p_control=0.7,
                                  relative_lift=0.05, alpha=ALPHA, seed=1)  # fmt: skip
    assert res["power_fixed"] == pytest.approx(0.853, abs=0.03)
    assert res["power_sequential"] >= 0.9 * res["power_fixed"]
    assert res["power_confidence_sequence"] < res["power_sequential"]  # why the CS is only the fallback


def _wilson_coverage(n: int, ps: np.ndarray) -> np.ndarray:
    """Exact coverage at each p: total binomial probability of the outcomes whose interval covers p."""
    k = np.arange(n + 1)
    low, high = np.array([wilson_interval(int(i), n) for i in k]).T
    covers = (low[None, :] <= ps[:, None]) & (ps[:, None] <= high[None, :])
    return (stats.binom.pmf(k[None, :], n, ps[:, None]) * covers).sum(axis=1)


@pytest.mark.parametrize(("n", "p"), [(3000, 0.7), (1000, 0.05)])
def test_wilson_coverage_exact_at_product_scale(n: int, p: float) -> None:
    assert _wilson_coverage(n, np.array([p]))[0] >= 0.95 - 0.002


def test_wilson_coverage_small_n_on_average() -> None:
    """Wilson's exact coverage oscillates with p at small n (dips to ~0.94); it is 95% on average."""
    covs = _wilson_coverage(300, np.linspace(0.05, 0.95, 181))
    assert covs.mean() >= 0.948 and covs.min() >= 0.93


def _cumulative_arms(seed: int, looks: int = 30, per_look: int = 100, p_c: float = 0.7, p_v: float = 0.735):
    rng = np.random.default_rng(seed)
    s_c = rng.binomial(per_look, p_c, (REPS, looks)).cumsum(axis=1)
    s_v = rng.binomial(per_look, p_v, (REPS, looks)).cumsum(axis=1)
    return s_c, s_v, per_look * np.arange(1, looks + 1)


def test_fixed_horizon_lift_ci_coverage() -> None:
    s_c, s_v, n = _cumulative_arms(seed=3)
    true = 0.735 / 0.7 - 1
    cis = [
        relative_lift_ci(int(a), int(n[-1]), int(b), int(n[-1]))
        for a, b in zip(s_c[:, -1], s_v[:, -1], strict=True)
    ]
    assert np.mean([ci.low <= true <= ci.high for ci in cis]) >= 0.95 - 3 * MC_SE


def test_sequential_intervals_cover_jointly_across_all_looks() -> None:
    """RCI (lift +/- c_k SE) and the confidence sequence must hold at all 30 looks at once."""
    s_c, s_v, n = _cumulative_arms(seed=4)
    true = 0.735 / 0.7 - 1
    m_c, m_v = s_c / n, s_v / n
    lift = m_v / m_c - 1
    var = m_v * (1 - m_v) / n / m_c**2 + m_c * (1 - m_c) / n * m_v**2 / m_c**4  # delta method, as the module
    bounds = np.asarray(group_sequential_boundaries(ALPHA, 30))
    assert np.mean((np.abs(lift - true) <= bounds * np.sqrt(var)).all(axis=1)) >= 0.95 - 3 * MC_SE
    half = cs_halfwidth(var, 2 * n, ALPHA, tuning_n=2 * n[-1])
    assert np.mean((np.abs(lift - true) <= half).all(axis=1)) >= 0.95 - 3 * MC_SE


# ------------------------------------------------------------------ analyse(): guards and verdicts


def _arm(
    n: int, s: int, *, assigned: int | None = None, rn: int = 0, rs: float = 0.0, rss: float = 0.0
) -> ArmCounts:
    return ArmCounts(n if assigned is None else assigned, n, s, rn, rs, rss)


def _run(c: ArmCounts, v: ArmCounts, *, look: int = 30, planned: int = 30, mss: int = 100, mi: float = 0.05):
    return analyse(control=c, variant=v, split=0.5, alpha=ALPHA, min_improvement=mi, min_sample_size=mss,
                   look=look, planned_looks=planned)  # fmt: skip


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


def test_zero_variance_ratings() -> None:
    c = _arm(200, 140, rn=50, rs=250.0, rss=1250.0)  # all 5s
    v = _arm(200, 150, rn=50, rs=250.0, rss=1250.0)
    res = _run(c, v)
    _json_safe(res.as_dict())
    assert res.ratings.enough_data is False and res.ratings.p_value is None and res.ratings.reason
    one = _run(_arm(200, 140, rn=1, rs=4.0, rss=16.0), v).ratings
    assert one.enough_data is False and one.t is None


def test_srm_always_wins() -> None:
    res = _run(_arm(3000, 2400, assigned=5000), _arm(3000, 2100, assigned=5600), look=3)
    assert res.srm_p_value < SRM_THRESHOLD and not res.srm_ok and res.verdict == "invalid_srm"


def test_keep_running_before_min_sample_size() -> None:
    res = _run(_arm(80, 20), _arm(80, 70), look=5, mss=100)  # hugely significant but too small
    assert res.sequential.significant and res.verdict == "keep_running" and not res.enough_data


def test_better_and_worse() -> None:
    better = _run(_arm(3000, 2100), _arm(3000, 2280), look=30)
    assert better.sequential.method == "group_sequential" and better.verdict == "variant_better"
    assert better.sequential.rci_low > 0 and better.sequential.cs_low is not None
    worse = _run(_arm(3000, 2280), _arm(3000, 2100), look=30)
    assert worse.verdict == "variant_worse"


def test_early_look_needs_more_evidence_than_fixed_test() -> None:
    # z ~ 2.4: significant for a fixed test but not at look 10 of 30 (boundary ~3.45).
    res = _run(_arm(1000, 700), _arm(1000, 745), look=10)
    assert res.p_value < ALPHA and not res.sequential.significant and res.verdict == "keep_running"


def test_final_look_no_difference_vs_inconclusive() -> None:
    tight = _run(_arm(20000, 14000), _arm(20000, 14010), look=30, mi=0.05)
    assert tight.verdict == "no_difference"
    assert -0.05 < tight.sequential.ci_low and tight.sequential.ci_high < 0.05
    wide = _run(_arm(500, 350), _arm(500, 355), look=30, mi=0.05)
    assert wide.verdict == "inconclusive"


def test_rci_is_lift_plus_minus_boundary_se() -> None:
    res = _run(_arm(1500, 1050), _arm(1500, 1090), look=15)
    seq, c = res.sequential, group_sequential_boundaries(ALPHA, 30)[14]
    assert seq.boundary_z == pytest.approx(c)
    assert (seq.rci_low + seq.rci_high) / 2 == pytest.approx(res.relative_lift)
    # RCI is wider than the fixed-horizon CI: peeking costs width.
    assert seq.rci_high - seq.rci_low > res.relative_lift_high - res.relative_lift_low


def test_beyond_plan_uses_confidence_sequence() -> None:
    res = _run(_arm(4000, 2800), _arm(4000, 2960), look=40, planned=30)
    seq = res.sequential
    assert seq.method == "confidence_sequence" and seq.boundary_z is None and seq.rci_low is None
    assert (seq.ci_low, seq.ci_high) == (seq.cs_low, seq.cs_high)
    assert seq.significant == (seq.p_value <= ALPHA)
    assert res.verdict in ("variant_better", "no_difference", "inconclusive")
    _json_safe(res.as_dict())


def test_analysis_dict_is_complete_and_json_safe() -> None:
    c = _arm(1200, 840, rn=300, rs=1200.0, rss=5100.0)
    v = _arm(1210, 880, rn=310, rs=1270.0, rss=5400.0)
    d = _run(c, v, look=12).as_dict()
    _json_safe(d)
    assert d["required_n_per_arm"] > 0 and 0 < d["progress"] <= 1
    assert d["control"]["rate_low"] < d["control"]["rate"] < d["control"]["rate_high"]
    assert d["ratings"]["enough_data"] and d["sequential"]["method"] == "group_sequential"
