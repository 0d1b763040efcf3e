"""Statistics for A/B tests between two assistant versions (pure scipy/numpy, no Django).

The primary metric is the success rate (share of interactions with positive feedback);
the secondary metric is the average rating. Everything returned is JSON-safe: floats are
finite or ``None`` where undefined, never NaN/inf.

Why a sequential rule
---------------------
The product recomputes every experiment once a day. Declaring a winner the first day a
plain z-test gives p < alpha inflates the false-positive rate from 5% to ~25-30% over 30
daily looks. Two always-valid procedures are used instead:

* **Planned daily looks -> group-sequential test** (Lan-DeMets alpha spending with the
  O'Brien-Fleming-type function ``alpha(t) = 2 - 2*Phi(z_{alpha/2} / sqrt(t))``). The plan
  is one look per day for ``max_duration`` days, so look ``k`` of ``K`` has information
  fraction ``t_k = k / K``. Boundaries ``c_1..c_K`` for the pooled z statistic come from
  the exact recursive numerical integration of Armitage, McPherson & Rowe (1969), as in
  Jennison & Turnbull (2000, ch. 19). OBF spending keeps almost all the power of a
  fixed-horizon test (~97% of it for 30 daily looks) because it spends nearly nothing
  early. The interval reported is the repeated confidence interval (RCI)
  ``estimate +/- c_k * SE``, valid jointly over all planned looks; the p-value is the
  repeated p-value (smallest level whose boundary the current z reaches).
* **Looks beyond the plan (or no plan) -> confidence sequence**: the asymptotic
  confidence sequence of Waudby-Smith et al. (2021, "Time-uniform central limit theory")
  as used by GrowthBook, tuned for the planned total sample size. Valid at any number of
  arbitrarily timed looks, but it costs power (~0.58 vs ~0.85 in the reference
  scenario), which is why it is only the fallback. It is reported at every look.

Significance (z, p-values) is always tested on the *difference* in success rates (pooled z
for the fixed and group-sequential tests, unpooled for the confidence sequence, whose
theory is stated for the estimator's own variance); intervals are reported for the
*relative lift* ``p_v / p_c - 1`` with delta-method standard errors, because the product's
``min_improvement`` is relative.

Verdict rules (:func:`analyse`)
-------------------------------
1. SRM p-value < ``SRM_THRESHOLD`` (0.001) -> ``invalid_srm``; this always wins.
2. Fewer than ``min_sample_size`` (and never fewer than 2) interactions with feedback in
   either arm -> ``keep_running``.
3. Sequential test significant and lift > 0 -> ``variant_better``; lift < 0 -> ``variant_worse``.
4. At or after the final planned look without significance: ``no_difference`` if the
   sequential CI of the relative lift lies entirely within (-min_improvement, +min_improvement),
   otherwise ``inconclusive``.
5. Otherwise -> ``keep_running``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from scipy import optimize, special, stats

SRM_THRESHOLD = 0.001
VERDICTS = ("variant_better", "variant_worse", "no_difference", "inconclusive", "invalid_srm", "keep_running")

# Group-sequential numerical integration: the grid stops at |Z| = 8.5 (null mass beyond it
# is < 1e-16) and uses 6 Simpson intervals per SD of the increment: boundaries agree with a
# 16-per-SD grid to ~2e-6 and the K=2 case matches the bivariate normal to 1e-6.
_ZCAP = 8.5
_GRID_PER_SD = 6
# Spending increments below this are so far in the tail that earlier looks cannot matter:
# the boundary is then the marginal normal quantile (avoids root-finding on ~1e-30 values).
_TINY_SPEND = 1e-10
# Below this many interactions per arm no test is attempted, whatever min_sample_size says.
_MIN_N = 2
# Repeated p-values are searched on [_P_FLOOR, 1); smaller ones are reported as _P_FLOOR (shown as "< 1e-8").
_P_FLOOR = 1e-8


def _finite(x: Any) -> float | None:
    """Python float if finite, else None (the JSON-safety guard used for every output)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _check_counts(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"invalid counts: {successes} successes out of {n}")


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


# --------------------------------------------------------------------------- fixed horizon


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for one arm's rate; (0, 1) when n == 0 (no information)."""
    _check_counts(successes, n)
    _check_alpha(alpha)
    if n == 0:
        return (0.0, 1.0)
    z = float(stats.norm.isf(alpha / 2))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0/n and n/n the bound is 0 or 1 analytically; rounding would give -1e-17 or 0.9999999999999999.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def pooled_z(s_c: Any, n_c: Any, s_v: Any, n_v: Any) -> Any:
    """Pooled two-proportion z (variant minus control); works elementwise on numpy arrays.

    Where the statistic is undefined (an empty arm, or all-success/all-failure so the pooled
    variance is 0) it is 0: the data carry no evidence of a difference.
    """
    s_c, n_c, s_v, n_v = (np.asarray(a, dtype=float) for a in (s_c, n_c, s_v, n_v))
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (s_c + s_v) / (n_c + n_v)
        var = pooled * (1 - pooled) * (1 / n_c + 1 / n_v)
        z = (s_v / n_v - s_c / n_c) / np.sqrt(var)
    return np.where((n_c > 0) & (n_v > 0) & (var > 0), z, 0.0)


def two_proportion_ztest(s_c: int, n_c: int, s_v: int, n_v: int) -> tuple[float, float]:
    """Pooled two-sided z-test; returns (z, p). Undefined cases give (0.0, 1.0)."""
    _check_counts(s_c, n_c)
    _check_counts(s_v, n_v)
    z = float(pooled_z(s_c, n_c, s_v, n_v))
    return (z, float(2 * stats.norm.sf(abs(z))))


class LiftCI(NamedTuple):
    """Relative lift p_v/p_c - 1 with its CI and p-value; None where undefined."""

    lift: float | None
    low: float | None
    high: float | None
    p_value: float | None


def _relative_lift_var(s_c: int, n_c: int, s_v: int, n_v: int) -> tuple[float, float] | None:
    """(lift, delta-method variance of the lift) or None if the control rate is 0 or an arm is empty."""
    if n_c == 0 or n_v == 0 or s_c == 0:
        return None
    mu_c, mu_v = s_c / n_c, s_v / n_v
    var_c, var_v = mu_c * (1 - mu_c) / n_c, mu_v * (1 - mu_v) / n_v
    # Variance of a ratio of independent means (first-order Taylor expansion).
    return (mu_v / mu_c - 1, var_v / mu_c**2 + var_c * mu_v**2 / mu_c**4)


def relative_lift_ci(s_c: int, n_c: int, s_v: int, n_v: int, alpha: float = 0.05) -> LiftCI:
    """Fixed-horizon relative lift, delta-method CI with Welch t (GrowthBook TwoSidedTTest, relative).

    Per-arm variance is the binomial p(1-p) (GrowthBook's ProportionStatistic), and the
    degrees of freedom are Welch-Satterthwaite on the two arms' variances.
    """
    _check_counts(s_c, n_c)
    _check_counts(s_v, n_v)
    _check_alpha(alpha)
    lv = _relative_lift_var(s_c, n_c, s_v, n_v)
    if lv is None:
        return LiftCI(None, None, None, None)
    lift, var = lv
    mu_c, mu_v = s_c / n_c, s_v / n_v
    a, b = mu_c * (1 - mu_c), mu_v * (1 - mu_v)
    if var <= 0 or n_c < 2 or n_v < 2:
        return LiftCI(lift, None, None, None)
    dof = (b / n_v + a / n_c) ** 2 / (b**2 / (n_v**2 * (n_v - 1)) + a**2 / (n_c**2 * (n_c - 1)))
    se = math.sqrt(var)
    half = float(stats.t.ppf(1 - alpha / 2, dof)) * se
    p = float(2 * stats.t.sf(abs(lift) / se, dof))
    return LiftCI(lift, lift - half, lift + half, p)


def summary_from_sums(n: int, s: float, ss: float) -> tuple[float | None, float | None]:
    """(mean, sample variance with n-1) from count, sum and sum of squares; None where undefined."""
    if n <= 0:
        return (None, None)
    mean = s / n
    if n < 2:
        return (mean, None)
    # ss - s^2/n can go slightly negative from cancellation when all values are equal.
    return (mean, max(0.0, (ss - s * s / n) / (n - 1)))


@dataclass(frozen=True)
class WelchResult:
    mean_control: float | None
    mean_variant: float | None
    difference: float | None
    t: float | None
    df: float | None
    p_value: float | None
    enough_data: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def welch_ttest(
    mean_c: float | None,
    var_c: float | None,
    n_c: int,
    mean_v: float | None,
    var_v: float | None,
    n_v: int,
) -> WelchResult:
    """Welch's unequal-variance t-test from summary statistics (variant minus control)."""
    m_c, m_v = _finite(mean_c), _finite(mean_v)
    diff = m_v - m_c if m_c is not None and m_v is not None else None
    if n_c < 2 or n_v < 2 or var_c is None or var_v is None:
        return WelchResult(m_c, m_v, diff, None, None, None, False, "need at least 2 ratings per arm")
    a, b = var_c / n_c, var_v / n_v
    if a + b <= 0:
        return WelchResult(m_c, m_v, diff, None, None, None, False, "ratings have zero variance in both arms")
    t = (m_v - m_c) / math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (n_c - 1) + b * b / (n_v - 1))
    p = 2 * stats.t.sf(abs(t), df)
    return WelchResult(m_c, m_v, diff, _finite(t), _finite(df), _finite(p), True, "")


def srm_test(n_c: int, n_v: int, split_variant: float) -> float:
    """Sample-ratio-mismatch chi-square goodness-of-fit p-value for assigned counts."""
    if not 0.0 < split_variant < 1.0:
        raise ValueError(f"split_variant must be in (0, 1), got {split_variant}")
    total = n_c + n_v
    if total == 0:
        return 1.0
    expected = [total * (1 - split_variant), total * split_variant]
    return float(stats.chisquare([n_c, n_v], f_exp=expected).pvalue)


def sample_size_per_arm(
    p_control: float, mde_abs: float, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Evan Miller's per-arm sample size for an absolute MDE; None if p_control + mde is not a rate."""
    _check_alpha(alpha)
    p2 = p_control + mde_abs
    if mde_abs == 0 or not 0 < p_control < 1 or not 0 < p2 < 1:
        return None
    z_a, z_b = stats.norm.isf(alpha / 2), stats.norm.ppf(power)
    sd1 = math.sqrt(2 * p_control * (1 - p_control))
    sd2 = math.sqrt(p_control * (1 - p_control) + p2 * (1 - p2))
    n = (z_a * sd1 + z_b * sd2) ** 2 / mde_abs**2
    # Ceil, after dropping float/quantile noise (the reference case is 7663.0003 -> 7,663).
    return math.ceil(round(n, 2))


def sample_size_per_arm_relative(
    p_control: float, mde_rel: float, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Per-arm sample size for a relative MDE (the product's ``min_improvement``)."""
    return sample_size_per_arm(p_control, p_control * mde_rel, alpha, power)


# --------------------------------------------------------------------------- group-sequential


def obf_spending(t: Any, alpha: float) -> Any:
    """Lan-DeMets O'Brien-Fleming-type two-sided alpha spent by information fraction t."""
    t = np.minimum(np.asarray(t, dtype=float), 1.0)
    return 2 * stats.norm.sf(stats.norm.isf(alpha / 2) / np.sqrt(t))


def _phi(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _simpson_grid(half_width: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points on [-half_width, half_width] (ends exactly at the boundary) and Simpson weights."""
    m = 2 * max(1, math.ceil(half_width / step)) + 1
    x = np.linspace(-half_width, half_width, m)
    w = np.full(m, 2.0)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    return x, w * (x[1] - x[0]) / 3


def _excess_exit(c: float, x: np.ndarray, g: np.ndarray, root_t: float, sd: float, target: float) -> float:
    """P(first crossing of |Z| >= c at this look) minus the alpha to spend here."""
    b = c * root_t
    # special.ndtr rather than stats.norm: this runs ~1,000 times per design.
    return float(g @ (special.ndtr((x - b) / sd) + special.ndtr(-(b + x) / sd))) - target


@lru_cache(maxsize=512)
def gs_boundaries(alpha: float, fractions: tuple[float, ...]) -> tuple[float, ...]:
    """Two-sided z boundaries c_k for looks at information fractions t_1 < ... <= 1.

    Works on the score scale S_k = Z_k sqrt(t_k), a Brownian motion under H0: the density
    of S_k on the continuation region (no earlier crossing) is propagated look to look by
    integrating the Gaussian increment against it on a Simpson grid; c_k solves
    P(no crossing before k, |Z_k| >= c_k) = alpha(t_k) - alpha(t_{k-1}).
    Boundary k depends only on t_1..t_k, so a plan can be extended without changing the past.
    """
    _check_alpha(alpha)
    t = np.asarray(fractions, dtype=float)
    if t.size == 0 or t[0] <= 0 or t[-1] > 1 or np.any(np.diff(t) <= 0):
        raise ValueError(f"fractions must increase within (0, 1], got {fractions}")
    spent = obf_spending(t, alpha)
    bounds: list[float] = []
    x = g = np.empty(0)  # grid and (weight * density) of S_{k-1} on the continuation region
    for k, tk in enumerate(t):
        inc = spent[k] - (spent[k - 1] if k else 0.0)
        sd = math.sqrt(tk - t[k - 1]) if k else math.sqrt(tk)
        if k == 0 or inc < _TINY_SPEND:
            c = float(stats.norm.isf(inc / 2))
        else:
            c = optimize.brentq(_excess_exit, 0.0, 40.0, args=(x, g, math.sqrt(tk), sd, inc), xtol=1e-12)
        bounds.append(c)
        if k + 1 == t.size:
            break
        step = min(sd, math.sqrt(t[k + 1] - tk)) / _GRID_PER_SD
        y, w = _simpson_grid(min(c, _ZCAP) * math.sqrt(tk), step)
        if k == 0:
            f = _phi(y / sd) / sd
        else:
            f = _phi((y[:, None] - x[None, :]) / sd) @ g / sd
        x, g = y, w * f
    return tuple(bounds)


def group_sequential_boundaries(alpha: float, planned_looks: int) -> tuple[float, ...]:
    """Boundaries for ``planned_looks`` equally spaced looks (one per day)."""
    if planned_looks < 1:
        raise ValueError("planned_looks must be >= 1")
    return gs_boundaries(float(alpha), tuple(k / planned_looks for k in range(1, planned_looks + 1)))


def repeated_p_value(z: float, look: int, planned_looks: int) -> float:
    """Smallest alpha at which |z| reaches look ``look``'s boundary (floored at 1e-8)."""
    fractions = tuple(k / planned_looks for k in range(1, look + 1))
    z = abs(z)

    def gap(log_a: float) -> float:
        return gs_boundaries(math.exp(log_a), fractions)[-1] - z

    lo, hi = math.log(_P_FLOOR), math.log(0.9999)
    if gap(hi) >= 0:
        return 1.0
    if gap(lo) <= 0:
        return _P_FLOOR
    # The boundary falls as alpha grows, so the root in log(alpha) is unique.
    return math.exp(optimize.brentq(gap, lo, hi, xtol=1e-4))


# --------------------------------------------------------------------------- confidence sequence


def cs_rho(alpha: float, tuning_n: float) -> float:
    """Tuning rho that makes the confidence sequence tightest at total sample size tuning_n."""
    la = -2 * math.log(alpha)
    return math.sqrt((la + math.log(la + 1)) / tuning_n)


def cs_halfwidth(variance: Any, n_total: Any, alpha: float, tuning_n: float) -> Any:
    """Half-width of the asymptotic confidence sequence (Waudby-Smith et al. eq. 9; GrowthBook).

    ``variance`` is the estimator's variance; sigma^2 = variance * N is the per-observation scale.
    Elementwise on numpy arrays.
    """
    rho2 = cs_rho(alpha, tuning_n) ** 2
    n = np.asarray(n_total, dtype=float)
    s2 = np.asarray(variance, dtype=float) * n
    nr = n * rho2 + 1
    return np.sqrt(s2 * 2 * nr * np.log(np.sqrt(nr) / alpha) / (n * n * rho2))


def cs_p_value(z: Any, n_total: Any, alpha: float, tuning_n: float) -> Any:
    """Always-valid p-value: the alpha at which the confidence sequence just touches 0.

    Inverting |est| = halfwidth gives p = sqrt(N rho^2 + 1) * exp(-z^2 N rho^2 / (2 (N rho^2 + 1))).
    rho is tuned with the *design* alpha, so the p-value and the interval agree at that alpha.
    """
    rho2 = cs_rho(alpha, tuning_n) ** 2
    nr = np.asarray(n_total, dtype=float) * rho2
    z = np.asarray(z, dtype=float)
    return np.minimum(1.0, np.sqrt(nr + 1) * np.exp(-z * z * nr / (2 * (nr + 1))))


def unpooled_z(s_c: Any, n_c: Any, s_v: Any, n_v: Any) -> Any:
    """Wald z of the difference with unpooled variance (0 where undefined); elementwise."""
    s_c, n_c, s_v, n_v = (np.asarray(a, dtype=float) for a in (s_c, n_c, s_v, n_v))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_c, p_v = s_c / n_c, s_v / n_v
        var = p_c * (1 - p_c) / n_c + p_v * (1 - p_v) / n_v
        z = (p_v - p_c) / np.sqrt(var)
    return np.where((n_c > 0) & (n_v > 0) & (var > 0), z, 0.0)


# --------------------------------------------------------------------------- product entry point


@dataclass(frozen=True)
class ArmCounts:
    n_assigned: int  # units routed to the arm: users, plus requests without a user ref (for SRM)
    n: int  # interactions with success/failure feedback
    successes: int
    rating_n: int = 0
    rating_sum: float = 0.0
    rating_sumsq: float = 0.0


@dataclass(frozen=True)
class ArmSummary:
    n_assigned: int
    n: int
    successes: int
    rate: float | None
    rate_low: float | None
    rate_high: float | None
    rating_n: int
    rating_mean: float | None


@dataclass(frozen=True)
class SequentialResult:
    method: str  # "group_sequential" (planned look) or "confidence_sequence" (beyond the plan)
    look: int
    planned_looks: int
    information_fraction: float | None
    boundary_z: float | None  # |z| needed at this look (group-sequential only)
    alpha_spent: float | None
    z: float  # statistic the decision uses (pooled z, or unpooled z for the CS)
    p_value: float  # repeated p-value (GS) or always-valid p-value (CS)
    significant: bool
    ci_low: float | None  # the sequential CI of the relative lift used for decisions
    ci_high: float | None
    rci_low: float | None  # repeated CI (GS only)
    rci_high: float | None
    cs_low: float | None  # confidence sequence, always reported
    cs_high: float | None
    cs_p_value: float
    cs_tuning_n: int


@dataclass(frozen=True)
class Analysis:
    control: ArmSummary
    variant: ArmSummary
    alpha: float
    min_improvement: float
    absolute_lift: float | None
    relative_lift: float | None
    relative_lift_low: float | None  # fixed-horizon delta-method CI (not valid under peeking)
    relative_lift_high: float | None
    relative_lift_p_value: float | None
    z: float
    p_value: float  # fixed-horizon pooled z-test (not valid under peeking)
    sequential: SequentialResult
    srm_p_value: float
    srm_ok: bool
    required_n_per_arm: int | None  # fixed-horizon n for min_improvement at the control rate
    progress: float | None
    ratings: WelchResult
    enough_data: bool
    reason: str
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _arm_summary(arm: ArmCounts, alpha: float) -> ArmSummary:
    _check_counts(arm.successes, arm.n)
    low, high = wilson_interval(arm.successes, arm.n, alpha) if arm.n else (None, None)
    mean, _ = summary_from_sums(arm.rating_n, arm.rating_sum, arm.rating_sumsq)
    return ArmSummary(
        arm.n_assigned,
        arm.n,
        arm.successes,
        arm.successes / arm.n if arm.n else None,
        low,
        high,
        arm.rating_n,
        _finite(mean),
    )


def _sequential(
    c: ArmCounts, v: ArmCounts, alpha: float, look: int, planned_looks: int, min_sample_size: int
) -> SequentialResult:
    lv = _relative_lift_var(c.successes, c.n, v.successes, v.n)
    lift, se = (lv[0], math.sqrt(lv[1])) if lv and lv[1] > 0 else (None, None)
    n_total = c.n + v.n
    # rho is tuned for the total sample size expected at the end of the plan (steady traffic
    # assumed); traffic volume does not depend on outcomes, so this keeps validity under H0.
    if planned_looks >= 1:
        tuning = max(1, round(n_total * planned_looks / look))
    else:
        tuning = max(1, 2 * min_sample_size, n_total)
    z_u = float(unpooled_z(c.successes, c.n, v.successes, v.n))
    cs_p = float(cs_p_value(z_u, max(n_total, 1), alpha, tuning))
    cs_low = cs_high = None
    if se is not None:
        half = float(cs_halfwidth(se * se, n_total, alpha, tuning))
        cs_low, cs_high = lift - half, lift + half

    if 1 <= look <= planned_looks:
        bounds = group_sequential_boundaries(alpha, planned_looks)
        b = bounds[look - 1]
        z = float(pooled_z(c.successes, c.n, v.successes, v.n))
        rci_low = rci_high = None
        if se is not None:
            rci_low, rci_high = lift - b * se, lift + b * se
        return SequentialResult(
            "group_sequential", look, planned_looks, look / planned_looks, b,
            float(obf_spending(look / planned_looks, alpha)), z, repeated_p_value(z, look, planned_looks),
            abs(z) >= b, rci_low, rci_high, rci_low, rci_high, cs_low, cs_high, cs_p, tuning,
        )  # fmt: skip
    return SequentialResult(
        "confidence_sequence", look, planned_looks, None, None, None, z_u, cs_p,
        cs_p <= alpha, cs_low, cs_high, None, None, cs_low, cs_high, cs_p, tuning,
    )  # fmt: skip


def analyse(
    *,
    control: ArmCounts,
    variant: ArmCounts,
    split: float,
    alpha: float,
    min_improvement: float,
    min_sample_size: int,
    look: int,
    planned_looks: int,
    power: float = 0.8,
) -> Analysis:
    """Full analysis of one experiment at daily look ``look`` (1-based) of ``planned_looks``.

    ``split`` is the variant's share of traffic; ``min_improvement`` is relative (0.05 = +5%).
    Verdict rules (in order): SRM p < 0.001 -> invalid_srm; either arm below
    ``min_sample_size`` -> keep_running; sequential test significant -> variant_better /
    variant_worse by the sign of the lift; at/after the final planned look -> no_difference
    if the sequential CI of the relative lift lies within (-min_improvement, +min_improvement),
    else inconclusive; otherwise keep_running. See the module docstring for which
    sequential method applies.
    """
    _check_alpha(alpha)
    if look < 1:
        raise ValueError("look is 1-based (the first daily analysis is look 1)")
    c, v = control, variant
    arm_c, arm_v = _arm_summary(c, alpha), _arm_summary(v, alpha)
    srm_p = srm_test(c.n_assigned, v.n_assigned, split)
    srm_ok = srm_p >= SRM_THRESHOLD
    z, p = two_proportion_ztest(c.successes, c.n, v.successes, v.n)
    rel = relative_lift_ci(c.successes, c.n, v.successes, v.n, alpha)
    abs_lift = arm_v.rate - arm_c.rate if arm_c.rate is not None and arm_v.rate is not None else None
    seq = _sequential(c, v, alpha, look, planned_looks, min_sample_size)

    required = None
    if arm_c.rate is not None:
        required = sample_size_per_arm_relative(arm_c.rate, min_improvement, alpha, power)
    progress = min(1.0, min(c.n, v.n) / required) if required else None

    mean_c, var_c = summary_from_sums(c.rating_n, c.rating_sum, c.rating_sumsq)
    mean_v, var_v = summary_from_sums(v.rating_n, v.rating_sum, v.rating_sumsq)
    ratings = welch_ttest(mean_c, var_c, c.rating_n, mean_v, var_v, v.rating_n)

    enough, reason = True, ""
    needed = max(min_sample_size, _MIN_N)
    pooled_rate = (c.successes + v.successes) / (c.n + v.n) if c.n + v.n else 0.0
    if min(c.n, v.n) < needed:
        enough, reason = False, f"need {needed} interactions with feedback per arm, have {c.n} and {v.n}"
    elif pooled_rate in (0.0, 1.0):
        enough, reason = False, "every interaction has the same outcome in both arms: no variance to test"
    elif arm_c.rate == 0.0:
        reason = "control success rate is 0: relative lift undefined, decision on the difference"

    final = planned_looks >= 1 and look >= planned_looks
    if not srm_ok:
        verdict = "invalid_srm"
    elif min(c.n, v.n) < needed:
        verdict = "keep_running"
    elif seq.significant:
        verdict = "variant_better" if seq.z > 0 else "variant_worse"
    elif final:
        inside = seq.ci_low is not None and -min_improvement < seq.ci_low and seq.ci_high < min_improvement
        verdict = "no_difference" if inside else "inconclusive"
    else:
        verdict = "keep_running"

    return Analysis(
        arm_c, arm_v, alpha, min_improvement, _finite(abs_lift),
        *(_finite(x) for x in rel), z, p, seq, srm_p, srm_ok, required, progress,
        ratings, enough, reason, verdict,
    )  # fmt: skip
