"""Statistics for A/B tests between two assistant versions (pure scipy/numpy, no Django).

Over 400 lines because the group-sequential plan (spending function, boundaries, information
fraction), the per-user tests and their intervals share one plan and one set of JSON-safe conventions;
much of it is the explanation of why each figure is valid the way the product uses it.

The primary metric is the success rate (share of rated interactions with positive feedback); the
secondary metric is the average rating. Everything returned is JSON-safe: floats are finite or ``None``
where undefined, never NaN/inf.

The unit is the user
--------------------
Routing randomises *users* (a request without a user reference is its own unit), and a returning
customer's interactions are correlated: one who is well served tends to be well served again. Testing
per interaction treats those interactions as independent and understates the variance (at a within-user
correlation of 0.3 a per-interaction test says "better/worse" in about 20 % of A/A runs; docs/PERFORMANCE.md).
So every figure is computed per randomised unit: for each unit ``u`` of an arm, ``n_u`` rated interactions
and ``s_u`` successes; the rate is the ratio estimator ``r = sum(s_u) / sum(n_u)`` and its variance is the
delta method's ``sum((s_u - r n_u)^2) / (sum n_u)^2`` (as GrowthBook and Eppo do when the analysis unit
differs from the randomisation unit). The sums it needs (``sum n_u``, ``sum s_u``, ``sum n_u^2``, ``sum
s_u^2``, ``sum n_u s_u``) are kept per arm (:class:`ArmCounts`). With one interaction per user every formula
reduces to the usual binomial one.

Decisions: a group-sequential test at planned looks
---------------------------------------------------
The task takes at most one planned look per look interval (a day by default; the policy sets it). At
look ``k`` the information fraction is
``t_k`` = units with feedback so far / the planned maximum (fixed at the first look from the required
sample size, see :func:`required_units`), and the final look (``max_duration_days`` reached, or
``t_k >= 1``) uses ``t = 1``: it spends whatever alpha is left. The boundaries ``c_k`` for the pooled z
statistic are the Lan-DeMets O'Brien-Fleming boundaries for these actual fractions, computed by the
exact recursive numerical integration of Armitage, McPherson & Rowe (1969) (:func:`gs_boundaries`).
The spending convention is the published one (gsDesign ``sfLDOF``, rpact ``asOF``): each side spends
``alpha_1(t) = 2 - 2 Phi(z_{alpha_1/2} / sqrt(t))`` with ``alpha_1 = alpha / 2``, so for alpha = 0.05 and 5
equally spaced looks the boundaries are 4.877, 3.357, 2.680, 2.290, 2.031 (``tests`` check them).
The decision interval is the repeated confidence interval ``lift +/- c_k SE`` of the relative lift,
valid jointly over all looks, and the training loop deploys on its *lower* end.

Anything else: the always-valid confidence sequence
---------------------------------------------------
Interim views (a dashboard or API request at any time), looks beyond the plan and the rollout guardrail
(hourly) use the asymptotic confidence sequence of Waudby-Smith et al. (2021) as in GrowthBook, tuned
*once* when the experiment (or rollout stage) starts for the sample size expected by then, never per
look: it is valid however often it is looked at, and costs power, which is why planned looks decide.

Verdict rules (:func:`analyse`)
-------------------------------
1. The sequential SRM test (:func:`srm_sequential_p`) below ``SRM_THRESHOLD`` -> ``invalid_srm``.
2. Fewer than ``min_sample_size`` (never fewer than 2) units with feedback in either arm -> ``keep_running``.
3. The test significant and lift > 0 -> ``variant_better``; lift < 0 -> ``variant_worse``.
4. At the final planned look without significance: ``no_difference`` if the decision interval of the
   relative lift lies within (-min_improvement, +min_improvement), otherwise ``inconclusive``.
5. Otherwise -> ``keep_running``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from scipy import optimize, special

# Threshold of the always-valid SRM p-value: P(ever below it over any number of looks | true split) <= it.
SRM_THRESHOLD = 0.001
# Concentration of the Beta prior (centred on the configured split) of the sequential SRM test. Any value
# keeps the test valid; 100 makes it sensitive to mismatches of a few percent within a few thousand units.
SRM_PRIOR_CONCENTRATION = 100.0
VERDICTS = ("variant_better", "variant_worse", "no_difference", "inconclusive", "invalid_srm", "keep_running")

# Group-sequential numerical integration: the grid stops at |Z| = 8.5 (null mass beyond it is < 1e-16)
# and uses 6 Simpson intervals per SD of the increment: boundaries agree with a 16-per-SD grid to ~2e-6.
_ZCAP = 8.5
_GRID_PER_SD = 6
# Spending increments below this are so far in the tail that earlier looks cannot matter: the boundary
# is then the marginal normal quantile (avoids root-finding on ~1e-30 values).
_TINY_SPEND = 1e-10
# Below this many units per arm no test is attempted, whatever min_sample_size says.
_MIN_N = 2


def _finite(x: Any) -> float | None:
    """Python float if finite, else None (the JSON-safety guard used for every output)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# scipy.special's ufuncs rather than scipy.stats.norm: same values, ~50x less overhead per call, which
# matters in the Monte-Carlo bench (tens of thousands of analyses).
def _isf(q: Any) -> Any:
    return -special.ndtri(q)


def _sf(x: Any) -> Any:
    return special.ndtr(-np.asarray(x, dtype=float))


def _ppf(q: Any) -> Any:
    return special.ndtri(q)


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


# --------------------------------------------------------------------------- per-unit sums


@dataclass(frozen=True)
class ArmCounts:
    """One arm's per-unit sums. A unit is a user, or a request without a user reference."""

    n_assigned: int = 0  # units routed to the arm (for the SRM check), with or without feedback
    units: int = 0  # units with at least one rated interaction
    n: int = 0  # rated interactions (success or failure feedback)
    successes: int = 0
    n_sq: float = 0.0  # sum over units of n_u^2
    s_sq: float = 0.0  # sum of s_u^2
    ns: float = 0.0  # sum of n_u * s_u
    rating_units: int = 0
    rating_n: int = 0  # rated interactions with a 1-5 rating
    rating_sum: float = 0.0
    rating_n_sq: float = 0.0  # sum of m_u^2 (m_u: the unit's ratings)
    rating_sum_sq: float = 0.0  # sum of r_u^2 (r_u: the unit's sum of ratings)
    rating_cross: float = 0.0  # sum of m_u * r_u

    def __post_init__(self) -> None:
        if min(self.n_assigned, self.units, self.n, self.successes, self.rating_n) < 0:
            raise ValueError("counts cannot be negative")
        if self.successes > self.n or self.units > self.n:
            raise ValueError(
                f"invalid counts: {self.successes} successes, {self.units} units, {self.n} interactions"
            )

    @classmethod
    def one_per_unit(cls, n_assigned: int, n: int, successes: int) -> ArmCounts:
        """Every unit has exactly one rated interaction (the binomial case)."""
        return cls(n_assigned, n, n, successes, float(n), float(successes), float(successes))


def ratio_variance(n_sum: Any, s_sum: Any, n_sq: Any, s_sq: Any, ns: Any, rate: Any) -> Any:
    """Delta-method variance of ``sum(s_u) / sum(n_u)`` around ``rate``; elementwise, NaN where undefined.

    ``sum((s_u - rate n_u)^2) / (sum n_u)^2``: with ``rate`` the arm's own ratio it is the estimator's
    variance, with the pooled ratio it is its variance under "no difference" (the pooled test).
    """
    n_sum, rate = np.asarray(n_sum, dtype=float), np.asarray(rate, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = np.asarray(s_sq) - 2 * rate * np.asarray(ns) + rate * rate * np.asarray(n_sq)
        return np.maximum(resid, 0.0) / (n_sum * n_sum)


def _rate_var(a: ArmCounts, rate: float | None = None) -> float | None:
    """``ratio_variance`` for one arm (scalar arithmetic: this runs several times per analysis)."""
    if a.n == 0:
        return None
    r = a.successes / a.n if rate is None else rate
    return max(a.s_sq - 2 * r * a.ns + r * r * a.n_sq, 0.0) / (a.n * a.n)


def pooled_z(c: ArmCounts, v: ArmCounts) -> float:
    """z of the difference in success rates, variances at the pooled rate (the test under H0).

    0 where undefined (an empty arm, or no variance): the data carry no evidence of a difference.
    """
    if c.n == 0 or v.n == 0:
        return 0.0
    pooled = (c.successes + v.successes) / (c.n + v.n)
    var = _rate_var(c, pooled) + _rate_var(v, pooled)
    if not var > 0:
        return 0.0
    return (v.successes / v.n - c.successes / c.n) / math.sqrt(var)


def unpooled_z(c: ArmCounts, v: ArmCounts) -> float:
    """Wald z of the difference with each arm's own variance (the confidence sequence's statistic)."""
    if c.n == 0 or v.n == 0:
        return 0.0
    var = _rate_var(c) + _rate_var(v)
    if not var > 0:
        return 0.0
    return (v.successes / v.n - c.successes / c.n) / math.sqrt(var)


def relative_lift_var(c: ArmCounts, v: ArmCounts) -> tuple[float, float] | None:
    """(relative lift r_v / r_c - 1, its delta-method variance), or None if r_c is 0 or an arm is empty."""
    if c.n == 0 or v.n == 0 or c.successes == 0:
        return None
    r_c, r_v = c.successes / c.n, v.successes / v.n
    var_c, var_v = _rate_var(c), _rate_var(v)
    # Ratio of independent estimates, first-order Taylor expansion.
    return (r_v / r_c - 1, var_v / r_c**2 + var_c * r_v**2 / r_c**4)


class Interval(NamedTuple):
    estimate: float | None
    low: float | None
    high: float | None
    p_value: float | None


def relative_lift_ci(c: ArmCounts, v: ArmCounts, alpha: float = 0.05) -> Interval:
    """Fixed-horizon relative lift with its (1 - alpha) delta-method interval and p-value.

    Valid only for a single look at a sample size fixed in advance: not a basis for decisions.
    """
    _check_alpha(alpha)
    lv = relative_lift_var(c, v)
    if lv is None:
        return Interval(None, None, None, None)
    lift, var = lv
    if not var > 0:
        return Interval(lift, None, None, None)
    se = math.sqrt(var)
    half = float(_isf(alpha / 2)) * se
    return Interval(lift, lift - half, lift + half, float(2 * _sf(abs(lift) / se)))


def rating_difference(c: ArmCounts, v: ArmCounts, alpha: float = 0.05) -> dict[str, Any]:
    """Average rating per arm (ratio estimator over units) and the difference with a fixed-horizon test.

    The secondary metric: shown for information, never used to decide.
    """
    means, variances = [], []
    for a in (c, v):
        if a.rating_n == 0:
            means.append(None)
            variances.append(None)
            continue
        mean = a.rating_sum / a.rating_n
        means.append(mean)
        variances.append(
            float(
                ratio_variance(a.rating_n, a.rating_sum, a.rating_n_sq, a.rating_sum_sq, a.rating_cross, mean)
            )
        )
    out: dict[str, Any] = {
        "mean_control": _finite(means[0]),
        "mean_variant": _finite(means[1]),
        "difference": None,
        "low": None,
        "high": None,
        "z": None,
        "p_value": None,
        "enough_data": False,
        "reason": "",
    }
    if means[0] is None or means[1] is None:
        out["reason"] = "no ratings in one arm"
        return out
    out["difference"] = means[1] - means[0]
    if min(c.rating_units, v.rating_units) < _MIN_N:
        out["reason"] = f"need at least {_MIN_N} rating users per arm"
        return out
    var = variances[0] + variances[1]
    if not var > 0:
        out["reason"] = "ratings have zero variance in both arms"
        return out
    se = math.sqrt(var)
    half = float(_isf(alpha / 2)) * se
    z = out["difference"] / se
    out.update(
        low=out["difference"] - half,
        high=out["difference"] + half,
        z=z,
        p_value=float(2 * _sf(abs(z))),
        enough_data=True,
    )
    return out


# --------------------------------------------------------------------------- sample ratio mismatch


def srm_sequential_p(
    n_c: Any, n_v: Any, split_variant: float, concentration: float = SRM_PRIOR_CONCENTRATION
) -> Any:
    """Always-valid SRM p-value: Lindon & Malek (2020) sequential multinomial test, for two arms.

    ``1 / BF`` where BF is the Bayes factor of a Beta(k s, k (1 - s)) mixture over the variant's share
    against the configured share ``s``: the mixture likelihood ratio is a martingale under a true split,
    so by Ville's inequality P(ever <= x) <= x however many looks are taken. Elementwise.
    """
    if not 0.0 < split_variant < 1.0:
        raise ValueError(f"split_variant must be in (0, 1), got {split_variant}")
    n_c, n_v = np.asarray(n_c, dtype=float), np.asarray(n_v, dtype=float)
    a, b = concentration * split_variant, concentration * (1 - split_variant)
    log_bf = (
        special.betaln(a + n_v, b + n_c)
        - special.betaln(a, b)
        - n_v * math.log(split_variant)
        - n_c * math.log(1 - split_variant)
    )
    return np.minimum(1.0, np.exp(-log_bf))


# --------------------------------------------------------------------------- group-sequential


def obf_spending(t: Any, alpha: float) -> Any:
    """Two-sided alpha spent by information fraction t: Lan-DeMets O'Brien-Fleming, per side alpha / 2.

    gsDesign's ``sfLDOF`` (and rpact's ``asOF``) with one-sided level ``alpha / 2``, doubled.
    """
    t = np.minimum(np.asarray(t, dtype=float), 1.0)
    side = alpha / 2
    return 2 * (2 * _sf(_isf(side / 2) / np.sqrt(t)))


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


def _exit_mass(c: float, x: np.ndarray, g: np.ndarray, root_t: float, sd: float, drift: float = 0.0) -> float:
    """P(no earlier crossing, |Z_k| >= c) from the previous look's continuation density (weights g on x)."""
    b = c * root_t
    # special.ndtr rather than stats.norm: this runs ~1,000 times per design.
    return float(g @ (special.ndtr((x + drift - b) / sd) + special.ndtr(-(b + x + drift) / sd)))


def _excess_exit(c: float, x: np.ndarray, g: np.ndarray, root_t: float, sd: float, target: float) -> float:
    return _exit_mass(c, x, g, root_t, sd) - target


@dataclass(frozen=True)
class _GsState:
    """Boundaries for looks 1..k and what look k+1 needs: S_{k-1}'s continuation density and look k's step."""

    bounds: tuple[float, ...]
    t: float
    sd: float  # SD of the increment from look k-1 to look k
    x: np.ndarray = field(repr=False)
    g: np.ndarray = field(repr=False)


_GS_CACHE: dict[tuple[float, tuple[float, ...]], _GsState] = {}
_GS_CACHE_MAX = 20_000


def _continuation(prev: _GsState, next_sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid and (weight * density) of S at look ``prev`` on its continuation region (|Z| < c)."""
    step = min(prev.sd, next_sd) / _GRID_PER_SD
    y, w = _simpson_grid(min(prev.bounds[-1], _ZCAP) * math.sqrt(prev.t), step)
    if prev.x.size == 0:
        f = _phi(y / prev.sd) / prev.sd
    else:
        f = _phi((y[:, None] - prev.x[None, :]) / prev.sd) @ prev.g / prev.sd
    return y, w * f


def _gs_state(alpha: float, fractions: tuple[float, ...]) -> _GsState:
    key = (alpha, fractions)
    hit = _GS_CACHE.get(key)
    if hit is not None:
        return hit
    # Boundary k depends only on t_1..t_k: extend the longest cached prefix one look at a time, so the
    # daily look (and each simulated look) costs one step, not k.
    start = len(fractions) - 1
    while start > 0 and (alpha, fractions[:start]) not in _GS_CACHE:
        start -= 1
    state = _GS_CACHE.get((alpha, fractions[:start])) if start else None
    spent = obf_spending(np.asarray(fractions), alpha)
    for k in range(start, len(fractions)):
        tk = fractions[k]
        inc = float(spent[k] - (spent[k - 1] if k else 0.0))
        if state is None:
            # A first look at a tiny fraction spends ~0 (underflows to 0): a finite, unreachable boundary.
            c = float(_isf(max(inc, 1e-300) / 2))
            state = _GsState((c,), tk, math.sqrt(tk), np.empty(0), np.empty(0))
        else:
            sd = math.sqrt(tk - state.t)
            x, g = _continuation(state, sd)
            if inc < _TINY_SPEND:
                c = float(_isf(max(inc, 1e-300) / 2))
            else:
                c = optimize.brentq(
                    _excess_exit,
                    0.0,
                    40.0,
                    args=(x, g, math.sqrt(tk), sd, inc),
                    xtol=1e-12,
                )
            state = _GsState((*state.bounds, c), tk, sd, x, g)
        if len(_GS_CACHE) >= _GS_CACHE_MAX:
            _GS_CACHE.clear()
        _GS_CACHE[(alpha, fractions[: k + 1])] = state
    return state


def gs_boundaries(alpha: float, fractions: tuple[float, ...]) -> tuple[float, ...]:
    """Two-sided z boundaries c_k for looks at information fractions t_1 < ... <= 1 (any spacing).

    Works on the score scale S_k = Z_k sqrt(t_k), a Brownian motion under H0: the density of S_k on the
    continuation region (no earlier crossing) is propagated look to look by integrating the Gaussian
    increment against it on a Simpson grid; c_k solves
    P(no crossing before k, |Z_k| >= c_k) = alpha(t_k) - alpha(t_{k-1}).
    """
    _check_alpha(alpha)
    fractions = tuple(float(t) for t in fractions)
    t = np.asarray(fractions)
    if t.size == 0 or t[0] <= 0 or t[-1] > 1 or np.any(np.diff(t) <= 0):
        raise ValueError(f"fractions must increase within (0, 1], got {fractions}")
    return _gs_state(float(alpha), fractions).bounds


def gs_boundaries_cache_clear() -> None:
    _GS_CACHE.clear()


def group_sequential_boundaries(alpha: float, planned_looks: int) -> tuple[float, ...]:
    """Boundaries for ``planned_looks`` equally spaced looks."""
    if planned_looks < 1:
        raise ValueError("planned_looks must be >= 1")
    return gs_boundaries(float(alpha), tuple(k / planned_looks for k in range(1, planned_looks + 1)))


def gs_power(alpha: float, fractions: tuple[float, ...], drift: float) -> float:
    """P(crossing the upper boundary at some look) when E[Z at t = 1] = drift (one direction)."""
    bounds = gs_boundaries(alpha, fractions)
    power, x, g, t_prev = 0.0, np.empty(0), np.empty(0), 0.0
    for k, (tk, c) in enumerate(zip(fractions, bounds, strict=True)):
        sd = math.sqrt(tk - t_prev)
        mu = drift * (tk - t_prev)  # drift of the increment on the score scale
        b = c * math.sqrt(tk)
        if k == 0:
            power += float(special.ndtr((mu - b) / sd))
        else:
            power += float(g @ special.ndtr((x + mu - b) / sd))
        if k + 1 == len(fractions):
            break
        step = min(sd, math.sqrt(fractions[k + 1] - tk)) / _GRID_PER_SD
        y, w = _simpson_grid(min(c, _ZCAP) * math.sqrt(tk), step)
        f = _phi((y - mu) / sd) / sd if k == 0 else _phi((y[:, None] - x[None, :] - mu) / sd) @ g / sd
        x, g, t_prev = y, w * f, tk
    return power


@lru_cache(maxsize=256)
def inflation_factor(alpha: float, planned_looks: int, power: float = 0.8) -> float:
    """Maximum sample size of the OBF design with ``planned_looks`` equal looks / the fixed-horizon size.

    The design needs drift theta (E[Z] at the end) such that gs_power = power; a fixed test needs
    z_{alpha/2} + z_beta; the sample size scales with the drift squared.
    """
    fractions = tuple(k / planned_looks for k in range(1, planned_looks + 1))
    fixed = float(_isf(alpha / 2) + _ppf(power))
    theta = optimize.brentq(
        lambda d: gs_power(alpha, fractions, d) - power, fixed * 0.9, fixed * 1.5, xtol=1e-8
    )
    return (theta / fixed) ** 2


# --------------------------------------------------------------------------- confidence sequence


def cs_rho(alpha: float, tuning_n: float) -> float:
    """Tuning rho that makes the confidence sequence tightest at total sample size tuning_n."""
    la = -2 * math.log(alpha)
    return math.sqrt((la + math.log(la + 1)) / tuning_n)


def cs_halfwidth(variance: Any, n_total: Any, alpha: float, tuning_n: float) -> Any:
    """Half-width of the asymptotic confidence sequence (Waudby-Smith et al. eq. 9; GrowthBook).

    ``variance`` is the estimator's variance; sigma^2 = variance * N is the per-unit scale. Elementwise.
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


# --------------------------------------------------------------------------- planning


def unit_variance(c: ArmCounts, v: ArmCounts) -> tuple[float, float] | None:
    """(pooled success rate, per-unit variance of the rate) from both arms together, or None.

    Blinded: it does not look at the difference between the arms, so fixing the plan from it does not
    bias the test. Per-unit variance = units * Var(rate); p (1 - p) with one interaction per unit.
    """
    units, n = c.units + v.units, c.n + v.n
    if units < 2 * _MIN_N or n == 0:
        return None
    p = (c.successes + v.successes) / n
    if not 0.0 < p < 1.0:
        return None
    var = float(
        ratio_variance(n, c.successes + v.successes, c.n_sq + v.n_sq, c.s_sq + v.s_sq, c.ns + v.ns, p)
    )
    if not var > 0:
        return None
    return p, var * units


def required_units(
    p_control: float,
    mde_rel: float,
    *,
    unit_var: float | None = None,
    split: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
    inflation: float = 1.0,
) -> int | None:
    """Units (both arms together) the pooled test needs to detect a relative lift ``mde_rel``.

    The test's own variances: under H0 at the average rate, under H1 each arm's. ``unit_var`` is the
    per-unit variance at ``p_control`` (``unit_variance``); the design effect ``unit_var / (p (1 - p))``
    scales the binomial variance at every rate. ``inflation`` is the group-sequential design's
    (``inflation_factor``). None when ``p_control (1 + mde_rel)`` is not a rate.
    """
    _check_alpha(alpha)
    p1, p2 = p_control, p_control * (1 + mde_rel)
    if mde_rel == 0 or not 0 < p1 < 1 or not 0 < p2 < 1 or not 0 < split < 1:
        return None
    deff = unit_var / (p1 * (1 - p1)) if unit_var else 1.0
    p_bar = (1 - split) * p1 + split * p2
    arms = 1 / (1 - split) + 1 / split
    sd0 = math.sqrt(deff * p_bar * (1 - p_bar) * arms)
    sd1 = math.sqrt(deff * (p1 * (1 - p1) / (1 - split) + p2 * (1 - p2) / split))
    z_a, z_b = float(_isf(alpha / 2)), float(_ppf(power))
    n = inflation * (z_a * sd0 + z_b * sd1) ** 2 / (p2 - p1) ** 2
    # Ceil after dropping float/quantile noise.
    return math.ceil(round(n, 2))


def detectable_lift(
    p_control: float,
    units_total: float,
    *,
    unit_var: float | None = None,
    split: float = 0.5,
    alpha: float = 0.05,
    power: float = 0.8,
    inflation: float = 1.0,
) -> float | None:
    """Smallest relative lift ``required_units`` reaches with ``units_total`` units (None if none can)."""
    if units_total <= 0 or not 0 < p_control < 1:
        return None
    top = (1 / p_control - 1) * 0.999  # p_control * (1 + lift) must stay below 1

    def gap(lift: float) -> float:
        need = required_units(
            p_control, lift, unit_var=unit_var, split=split, alpha=alpha, power=power, inflation=inflation
        )
        return (need or math.inf) - units_total

    if gap(top) > 0:
        return None
    return float(optimize.brentq(gap, 1e-6, top, xtol=1e-5))


# --------------------------------------------------------------------------- product entry point


@dataclass(frozen=True)
class Look:
    """Where an analysis stands in the plan.

    ``index`` >= 1: a planned look of the group-sequential test, at the information ``fractions`` of looks
    1..index (the last one is this look's; 1.0 at the final look). ``index`` = 0: not a planned look (an
    interim view, a look beyond the plan, a rollout guardrail): the confidence sequence applies.
    """

    index: int = 0
    planned: int = 0
    fractions: tuple[float, ...] = ()
    final: bool = False

    @property
    def group_sequential(self) -> bool:
        return self.index >= 1 and len(self.fractions) == self.index


@dataclass(frozen=True)
class ArmSummary:
    n_assigned: int
    units: int
    n: int
    successes: int
    rate: float | None
    rate_low: float | None
    rate_high: float | None
    rating_n: int
    rating_mean: float | None


@dataclass(frozen=True)
class SequentialResult:
    method: str  # "group_sequential" (a planned look) or "confidence_sequence" (anything else)
    look: int
    planned_looks: int
    information_fraction: float | None
    boundary_z: float | None  # |z| needed at this look (group-sequential only)
    alpha_spent: float | None
    z: float  # the statistic the decision uses (pooled z, or unpooled z for the CS)
    p_value: float  # always-valid p-value of the confidence sequence
    significant: bool
    ci_low: float | None  # the decision interval of the relative lift (RCI at a planned look, else the CS)
    ci_high: float | None
    cs_low: float | None  # confidence sequence, always reported
    cs_high: float | None
    cs_tuning_n: int


@dataclass(frozen=True)
class Analysis:
    control: ArmSummary
    variant: ArmSummary
    alpha: float
    min_improvement: float
    absolute_lift: float | None
    relative_lift: float | None
    # Fixed-horizon figures: valid for one look at a pre-set sample size only, never shown as evidence
    # while the test runs or after an early stop.
    fixed_lift_low: float | None
    fixed_lift_high: float | None
    fixed_z: float
    fixed_p_value: float
    sequential: SequentialResult
    srm_p_value: float  # always-valid (sequential) SRM p-value
    srm_ok: bool
    required_units: int | None  # planned maximum units, both arms (the group-sequential design's)
    progress: float | None  # units with feedback so far / required_units
    detectable_lift: float | None  # relative lift detectable with `power` at the projected units
    ratings: dict[str, Any]
    enough_data: bool
    reason: str
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _arm_summary(arm: ArmCounts, alpha: float) -> ArmSummary:
    rate = arm.successes / arm.n if arm.n else None
    low = high = None
    var = _rate_var(arm)
    if rate is not None and var is not None:
        half = float(_isf(alpha / 2)) * math.sqrt(var)
        low, high = max(0.0, rate - half), min(1.0, rate + half)
    mean = arm.rating_sum / arm.rating_n if arm.rating_n else None
    return ArmSummary(
        arm.n_assigned, arm.units, arm.n, arm.successes, rate, low, high, arm.rating_n, _finite(mean)
    )


def _sequential(c: ArmCounts, v: ArmCounts, alpha: float, look: Look, cs_tuning_n: int) -> SequentialResult:
    lv = relative_lift_var(c, v)
    lift, se = (lv[0], math.sqrt(lv[1])) if lv and lv[1] > 0 else (None, None)
    n_units = c.units + v.units
    tuning = max(1, int(cs_tuning_n))
    z_u = unpooled_z(c, v)
    cs_p = float(cs_p_value(z_u, max(n_units, 1), alpha, tuning))
    cs_low = cs_high = None
    if se is not None:
        half = float(cs_halfwidth(se * se, n_units, alpha, tuning))
        cs_low, cs_high = lift - half, lift + half
    if look.group_sequential:
        b = gs_boundaries(alpha, look.fractions)[-1]
        z = pooled_z(c, v)
        low = high = None
        if se is not None:
            low, high = lift - b * se, lift + b * se
        t = look.fractions[-1]
        return SequentialResult(
            "group_sequential", look.index, look.planned, t, b, float(obf_spending(t, alpha)), z, cs_p,
            abs(z) >= b, low, high, cs_low, cs_high, tuning,
        )  # fmt: skip
    return SequentialResult(
        "confidence_sequence", look.index, look.planned, None, None, None, z_u, cs_p,
        cs_p <= alpha, cs_low, cs_high, cs_low, cs_high, tuning,
    )  # fmt: skip


def analyse(
    *,
    control: ArmCounts,
    variant: ArmCounts,
    split: float,
    alpha: float,
    min_improvement: float,
    min_sample_size: int,
    look: Look,
    cs_tuning_n: int,
    required: int | None = None,
    projected_units: float | None = None,
    power: float = 0.8,
) -> Analysis:
    """Full analysis of one experiment (see the module docstring for the rules).

    ``split`` is the variant's share of traffic; ``min_improvement`` is relative (0.05 = +5 %);
    ``required`` is the plan's maximum number of units (both arms), if fixed; ``projected_units`` the
    units expected by ``max_duration_days`` at the current traffic, for the detectable lift.
    """
    _check_alpha(alpha)
    c, v = control, variant
    arm_c, arm_v = _arm_summary(c, alpha), _arm_summary(v, alpha)
    srm_p = float(srm_sequential_p(c.n_assigned, v.n_assigned, split))
    srm_ok = srm_p >= SRM_THRESHOLD
    fixed = relative_lift_ci(c, v, alpha)
    z = pooled_z(c, v)
    abs_lift = arm_v.rate - arm_c.rate if arm_c.rate is not None and arm_v.rate is not None else None
    seq = _sequential(c, v, alpha, look, cs_tuning_n)

    n_units = c.units + v.units
    progress = min(1.0, n_units / required) if required else None
    detectable = None
    plan = unit_variance(c, v)
    if plan is not None and projected_units:
        inflation = inflation_factor(alpha, look.planned) if look.planned else 1.0
        detectable = detectable_lift(
            plan[0],
            projected_units,
            unit_var=plan[1],
            split=split,
            alpha=alpha,
            power=power,
            inflation=inflation,
        )

    enough, reason = True, ""
    needed = max(min_sample_size, _MIN_N)
    pooled_rate = (c.successes + v.successes) / (c.n + v.n) if c.n + v.n else 0.0
    if min(c.units, v.units) < needed:
        enough, reason = False, f"need {needed} users with feedback per arm, have {c.units} and {v.units}"
    elif pooled_rate in (0.0, 1.0):
        enough, reason = False, "every interaction has the same outcome in both arms: no variance to test"
    elif arm_c.rate == 0.0:
        reason = "control success rate is 0: relative lift undefined, decision on the difference"

    if not srm_ok:
        verdict = "invalid_srm"
    elif min(c.units, v.units) < needed:
        verdict = "keep_running"
    elif seq.significant and (look.group_sequential or look.planned == 0):
        # An A/B test decides at planned looks only (spending its alpha twice, at planned looks and on the
        # confidence sequence in between, would double it); planned == 0 is a test judged by the CS alone.
        verdict = "variant_better" if seq.z > 0 else "variant_worse"
    elif look.group_sequential and look.final:
        inside = seq.ci_low is not None and -min_improvement < seq.ci_low and seq.ci_high < min_improvement
        verdict = "no_difference" if inside else "inconclusive"
    else:
        verdict = "keep_running"

    return Analysis(
        arm_c, arm_v, alpha, min_improvement, _finite(abs_lift), _finite(fixed.estimate),
        _finite(fixed.low), _finite(fixed.high), z, float(2 * _sf(abs(z))), seq, srm_p, srm_ok,
        required, progress, detectable, rating_difference(c, v, alpha), enough, reason, verdict,
    )  # fmt: skip
