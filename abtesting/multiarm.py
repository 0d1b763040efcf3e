"""Statistics for multi-arm experiments: a control and k variants (pure scipy/numpy, no Django).

Over 400 lines because the procedure's validity argument lives here, next to the step-down it justifies,
and the JSON-safe result needs its own small dataclasses.

Everything per arm is :mod:`abtesting.statistics`' two-arm machinery, unchanged: the user is the unit
(per-unit sums, delta-method variances), each variant is compared with the control by the pooled z at a
planned look of the group-sequential plan (Lan-DeMets O'Brien-Fleming spending at the experiment's
information fractions) and by the always-valid confidence sequence in between. What this module adds is
how k comparisons share one alpha, when an arm is dropped, who wins, and the sample ratio check for k arms.

Holm inside the group-sequential plan
-------------------------------------
There are k null hypotheses ``H_i``: "variant i has the control's success rate". At each planned look the
arms not yet decided are ordered by ``|z|`` (all share the look's information fractions, so this is
the order of their p-values); with ``m`` hypotheses not yet rejected, the first is tested against the
O'Brien-Fleming boundary for level ``alpha / m`` at the plan's fractions (``gs_boundaries(alpha / m,
fractions)[-1]``), and if rejected the next against ``alpha / (m - 1)``, and so on until one is not
rejected. A hypothesis rejected at an earlier look stays rejected and its alpha stays passed on.
The fractions are the experiment's (the caller's plan, which must not look at the differences between
arms: units with feedback over a blinded maximum, see :func:`required_units_multi`), one set for all
comparisons, as the procedure below assumes.

This is the sequentially rejective graphical procedure for group-sequential trials of Maurer & Bretz
(2013, Stat. Biopharm. Res. 5:311) with equal weights and Holm's graph (each rejected hypothesis passes
its weight equally to the others), and it controls the familywise error rate strongly, over all arms
and all looks, at ``alpha``: by the closure principle, each intersection ``H_J`` is tested by the
Bonferroni combination of |J| group-sequential tests at level ``alpha / |J|`` each (one spending
function, one set of fractions: each has probability <= alpha / |J| of ever crossing under its null, so
the union has <= alpha, whatever the correlation through the shared control); these tests are consonant,
and the shortcut of the closed procedure is exactly the step-down above, carried across looks (Maurer &
Bretz, Theorem 1). Testing only at the current look after alpha has been passed on (not re-testing
earlier looks at the new boundaries, which their procedure allows) rejects a subset: still valid.
Dunnett's test would use the correlation (about 1/2 with equal shares) for a little more power; Holm
needs no distributional assumption across arms and keeps every boundary the two-arm one.

Directions: a rejected arm with ``z > 0`` is "better", with ``z < 0`` "worse". A rejection counts only
when the arm's decision interval of the relative lift (the repeated CI at its Holm level) agrees with
the direction, as the two-arm decision requires (the test is on the difference of rates, the interval
on the relative lift; on small samples they can disagree): rejecting fewer hypotheses never costs validity.

A "worse" arm is dropped: its traffic stops, the others go on, and the alpha it held is passed on. At a
look where at least one arm is "better" the experiment ends and the winner is the better arm with the
highest success rate (which of two better arms is higher is a comparison outside the tested family: it
is reported with its own repeated CI at the Bonferroni level ``alpha / k``, so a reviewer sees whether it
is distinguishable). Between planned looks (``Look.index == 0``) each arm is shown with the confidence
sequence at its Holm level; nothing is decided there, so no alpha is spent twice.

Sample ratio mismatch for k arms
--------------------------------
:func:`srm_sequential_p_multi` is Lindon & Malek's (2020) Dirichlet-multinomial test: the Bayes factor of a
Dirichlet(c s_1, ..., c s_k) mixture over the arms' shares against the configured shares ``s``. Under the
configured split the mixture likelihood ratio is a nonnegative martingale with mean 1 in the number of
assigned units, so by Ville's inequality P(1/BF ever <= x) <= x however many looks are taken; with two
arms it is :func:`abtesting.statistics.srm_sequential_p` exactly.

Arms decided "worse" are left out of the check: their traffic stopped, so their counts no longer grow at
their configured share and would flag a mismatch that is the design's. Routing keeps the remaining arms'
*relative* shares, so the units of the remaining arms, over the whole experiment (before and after the
drop), are a multinomial sequence with those shares renormalised, and the Dirichlet-multinomial
martingale over them is valid on its own. Each drop starts a test on a smaller set of arms; by the union
bound over the at most k nested sets, a false ``invalid_srm`` has probability at most
k * ``SRM_THRESHOLD`` (0.4 % with four variants), in practice far less (the bench measures it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import special

from abtesting.statistics import (
    _MIN_N,
    SRM_PRIOR_CONCENTRATION,
    SRM_THRESHOLD,
    ArmCounts,
    ArmSummary,
    Look,
    SequentialResult,
    _arm_summary,
    _check_alpha,
    _finite,
    _sequential,
    _sf,
    inflation_factor,
    pooled_z,
    required_units,
    unpooled_z,
)

CONTROL = "control"
ARM_STATUSES = ("open", "better", "worse", "no_difference", "inconclusive")


# --------------------------------------------------------------------------- sample ratio mismatch


def srm_sequential_p_multi(
    counts: Sequence[float], shares: Sequence[float], concentration: float = SRM_PRIOR_CONCENTRATION
) -> Any:
    """Always-valid SRM p-value for k arms: Lindon & Malek's Dirichlet-multinomial mixture.

    ``counts``: units assigned per arm (arms on the last axis: a (..., k) array gives one p-value per
    row, for the bench). ``shares``: each arm's configured share; only their proportions matter (they are
    renormalised, so a subset of arms can be passed with its configured shares). ``1 / BF`` of a
    Dirichlet(c s) mixture over the shares against ``s``; with k = 2 it equals
    ``statistics.srm_sequential_p``. A float for one set of counts.
    """
    s = np.asarray(shares, dtype=float)
    if s.ndim != 1 or s.size < 2 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"shares must be >= 2 positive numbers, got {shares}")
    s = s / s.sum()
    n = np.asarray(counts, dtype=float)
    if n.shape[-1:] != s.shape or np.any(n < 0):
        raise ValueError(f"counts must be {s.size} non-negative numbers per row, got shape {n.shape}")
    a = concentration * s
    # log of B(a + n) / B(a) with the multivariate Beta B(a) = prod Gamma(a_i) / Gamma(sum a_i).
    log_mixture = (
        special.gammaln(a + n).sum(axis=-1)
        - special.gammaln(a.sum() + n.sum(axis=-1))
        - special.gammaln(a).sum()
        + special.gammaln(a.sum())
    )
    log_bf = log_mixture - (n * np.log(s)).sum(axis=-1)
    p = np.minimum(1.0, np.exp(-log_bf))
    return float(p) if np.ndim(p) == 0 else p


# --------------------------------------------------------------------------- planning


def required_units_multi(
    p_control: float,
    mde_rel: float,
    *,
    variants: int,
    unit_var: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    planned_looks: int = 1,
) -> int | None:
    """Units (all arms together, equal shares) for each comparison to detect ``mde_rel`` with ``power``.

    One pairwise comparison (control vs a variant, half the pair each) at the Bonferroni level
    ``alpha / variants`` (the first Holm step, the strictest), inflated for the group-sequential design at
    that level, then times (variants + 1) / 2 for the whole experiment. None as ``required_units``.
    """
    if variants < 1:
        raise ValueError("variants must be >= 1")
    level = alpha / variants
    pair = required_units(
        p_control,
        mde_rel,
        unit_var=unit_var,
        split=0.5,
        alpha=level,
        power=power,
        inflation=inflation_factor(level, planned_looks, power) if planned_looks > 1 else 1.0,
    )
    return None if pair is None else math.ceil(pair * (variants + 1) / 2)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ArmSequential(SequentialResult):
    """The two-arm sequential figures at the arm's Holm level ``alpha_level`` (None: decided earlier).

    ``significant``: rejected (at this look, or at an earlier one for a decided arm).
    """

    alpha_level: float | None = None


@dataclass(frozen=True)
class ArmResult:
    summary: ArmSummary
    relative_lift: float | None
    absolute_lift: float | None
    sequential: ArmSequential
    status: str  # one of ARM_STATUSES


@dataclass(frozen=True)
class MultiAnalysis:
    control: ArmSummary
    arms: dict[str, ArmResult]  # in arm order ("variant", "variant2", ...)
    alpha: float
    min_improvement: float
    srm_p_value: float  # always-valid SRM p-value over the arms not decided "worse"
    srm_ok: bool
    srm_arms: tuple[str, ...]  # the arms the SRM check covered
    holm_order: tuple[str, ...]  # the arms tested at this look, in the step-down's order
    required_units: int | None  # planned maximum units, all arms
    progress: float | None
    enough_data: bool
    reason: str
    winner: str | None
    winner_runner_up_distinguishable: bool | None  # None unless two or more arms are "better"
    winner_vs_runner_up: dict[str, Any] | None  # the winner's relative lift over the runner-up, its RCI
    verdict: str  # one of statistics.VERDICTS (the two-arm verdicts; "variant_worse": every variant worse)
    arm: str  # the arm ``ab_test_results`` describes: the winner, else the variant with the highest rate
    ab_test_results: dict[str, Any]
    # The same names for every variant arm: a job whose candidate is not the winner (an inconclusive
    # test) must show and keep its own candidate's figures, not the best arm's.
    ab_test_results_by_arm: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lift(c: ArmCounts, v: ArmCounts) -> tuple[float | None, float | None]:
    """(relative lift, absolute lift), None where undefined."""
    r_c = c.successes / c.n if c.n else None
    r_v = v.successes / v.n if v.n else None
    if r_c is None or r_v is None:
        return None, None
    return (_finite(r_v / r_c - 1) if r_c > 0 else None), r_v - r_c


def _confirmed(seq: SequentialResult) -> bool:
    """The test crossed and the decision interval of the relative lift agrees with its direction."""
    if not seq.significant or seq.z == 0:
        return False
    if seq.z > 0:
        return seq.ci_low is None or seq.ci_low > 0
    return seq.ci_high is None or seq.ci_high < 0


def _with_level(seq: SequentialResult, level: float | None, **changes: Any) -> ArmSequential:
    return ArmSequential(**{**vars(seq), **changes}, alpha_level=level)


def _ab_test_results(
    arm: str,
    control: ArmCounts,
    result: ArmResult,
    c_summary: ArmSummary,
    k: int,
    look: Look,
    alpha: float,
    srm_p: float,
    z_pooled: float,
) -> dict[str, Any]:
    """The seed's ``abTestResults`` names for one arm, as ``services.ab_test_results`` builds them.

    ``pValue``: the pair's fixed-horizon p-value, Bonferroni-adjusted over the k arms, and only at the
    final planned look (before that, or after an early stop, peeking makes it meaningless).
    ``ciLevel``: the level of the arm's decision interval (its Holm level).
    """
    seq, v = result.sequential, result.summary
    end = look.group_sequential and look.final
    level = seq.alpha_level if seq.alpha_level is not None else alpha / k
    return {
        "arm": arm,
        "controlSuccessRate": c_summary.rate,
        "variantSuccessRate": v.rate,
        "improvement": result.relative_lift,
        "improvementLow": seq.ci_low,
        "improvementHigh": seq.ci_high,
        "significant": result.status in ("better", "worse"),
        "unit": "user",
        "sampleSize": control.units + v.units,
        "interactions": control.n + v.n,
        "pValue": min(1.0, k * float(2 * _sf(abs(z_pooled)))) if end else None,
        "sequentialPValue": seq.p_value,
        "ci": [seq.ci_low, seq.ci_high],
        "ciLevel": 1 - level,
        "method": seq.method,
        "look": seq.look,
        "plannedLooks": seq.planned_looks,
        "srmPValue": srm_p,
        "arms": k + 1,
    }


def _check_inputs(variants: Mapping[str, ArmCounts], shares: Mapping[str, float], decided: Mapping[str, str]):
    if not variants:
        raise ValueError("a multi-arm analysis needs at least one variant")
    if CONTROL in variants:
        raise ValueError(f"{CONTROL!r} is the control, not a variant")
    missing = {CONTROL, *variants} - set(shares)
    if missing:
        raise ValueError(f"no share for arm(s) {sorted(missing)}")
    if any(not float(shares[a]) > 0 for a in (CONTROL, *variants)):
        raise ValueError(f"every arm's share must be positive, got {dict(shares)}")
    for arm, status in decided.items():
        if arm not in variants or status not in ("better", "worse"):
            raise ValueError(f"decided must map variants to 'better' or 'worse', got {arm!r}: {status!r}")


# --------------------------------------------------------------------------- product entry point


def analyse_multi(
    *,
    control: ArmCounts,
    variants: dict[str, ArmCounts],
    shares: dict[str, float],
    alpha: float,
    min_improvement: float,
    min_sample_size: int,
    look: Look,
    cs_tuning_n: int,
    decided: dict[str, str] | None = None,
    required: int | None = None,
) -> MultiAnalysis:
    """One look of a multi-arm experiment: each variant against the control, Holm over the arms inside the
    group-sequential plan (sequentially rejective, Maurer & Bretz 2013 with equal weights).

    ``variants``: arm name -> counts, in arm order ("variant", "variant2", ...). ``shares``: each arm's share
    of traffic, "control" included (they sum to 1). ``decided``: arms already rejected at earlier looks
    (arm -> "better" | "worse"); they keep their status and free their alpha for the others.
    ``look``: as statistics.analyse (index >= 1: a planned look of the plan with its information fractions;
    0: interim, judged by the confidence sequence at the Holm level, never decides). ``required``: the
    plan's maximum units (all arms), if fixed. The rules are in the module docstring.
    """
    _check_alpha(alpha)
    decided = dict(decided or {})
    _check_inputs(variants, shares, decided)
    names = list(variants)
    k = len(names)
    c = control

    # 1. Sample ratio: the arms still receiving traffic, at their configured relative shares.
    srm_arms = (CONTROL, *(a for a in names if decided.get(a) != "worse"))
    if len(srm_arms) >= 2:
        counts = [(c if a == CONTROL else variants[a]).n_assigned for a in srm_arms]
        srm_p = float(srm_sequential_p_multi(counts, [float(shares[a]) for a in srm_arms]))
    else:
        srm_p = 1.0  # only the control left: nothing to compare
    srm_ok = srm_p >= SRM_THRESHOLD

    # 2. Enough data: min_sample_size units with feedback in the control and in every open arm.
    open_arms = [a for a in names if a not in decided]
    needed = max(min_sample_size, _MIN_N)
    short = [a for a in (CONTROL, *open_arms) if (c if a == CONTROL else variants[a]).units < needed]
    enough, reason = not short, ""
    in_test = [c, *(variants[a] for a in open_arms)]
    n_all, s_all = sum(a.n for a in in_test), sum(a.successes for a in in_test)
    if short:
        have = ", ".join(f"{a} {(c if a == CONTROL else variants[a]).units}" for a in short)
        reason = f"need {needed} users with feedback in the control and in each open arm; have {have}"
    elif s_all in (0, n_all):
        enough, reason = False, "every interaction has the same outcome in every arm: no variance to test"
    elif c.successes == 0:
        reason = "control success rate is 0: relative lift undefined, decisions on the difference"
    can_decide = look.group_sequential and srm_ok and not short

    # 3. Holm's step-down over the open arms at this look (the CS at an interim look, deciding nothing).
    z_of = pooled_z if look.group_sequential else unpooled_z
    z = {a: z_of(c, variants[a]) for a in open_arms}
    order = sorted(open_arms, key=lambda a: -abs(z[a]))  # stable: arm order on ties
    remaining = len(open_arms)  # hypotheses not rejected yet (earlier rejections passed their alpha on)
    stepping = True
    status: dict[str, str] = dict(decided)
    seqs: dict[str, ArmSequential] = {}
    for arm in order:
        level = alpha / remaining
        seq = _sequential(c, variants[arm], level, look, cs_tuning_n)
        rejected = stepping and _confirmed(seq)
        if rejected and can_decide:
            status[arm] = "better" if seq.z > 0 else "worse"
        if rejected:
            remaining -= 1  # passes its alpha on (only hypothetically at an interim look)
        else:
            stepping = False  # Holm stops at the first hypothesis it cannot reject
        seqs[arm] = _with_level(seq, level, significant=rejected)
    for arm in names:
        if arm in decided:  # decided at an earlier look: figures shown at the strictest level, alpha / k
            seqs[arm] = _with_level(
                _sequential(c, variants[arm], alpha / k, look, cs_tuning_n), None, significant=True
            )

    # 4. The final look: every arm still open is judged by its decision interval.
    final = look.group_sequential and look.final and srm_ok and not short
    for arm in names:
        if arm not in status and final:
            low, high = seqs[arm].ci_low, seqs[arm].ci_high
            inside = low is not None and -min_improvement < low and high < min_improvement
            status[arm] = "no_difference" if inside else "inconclusive"
        status.setdefault(arm, "open")

    c_summary = _arm_summary(c, alpha)
    arms: dict[str, ArmResult] = {}
    for arm in names:
        rel, absolute = _lift(c, variants[arm])
        arms[arm] = ArmResult(_arm_summary(variants[arm], alpha), rel, absolute, seqs[arm], status[arm])

    def rate(arm: str) -> float:
        r = arms[arm].summary.rate
        return -1.0 if r is None else r

    # 5. The verdict and the winner.
    better = [a for a in names if status[a] == "better"]
    winner = max(better, key=rate) if better else None  # max keeps the first on ties: arm order
    distinguishable, versus = None, None
    if winner is not None and len(better) > 1:
        runner = max((a for a in better if a != winner), key=rate)
        pair = _sequential(variants[runner], variants[winner], alpha / k, look, cs_tuning_n)
        if pair.ci_low is not None:
            distinguishable = pair.ci_low > 0 or pair.ci_high < 0
        else:
            distinguishable = bool(pair.significant)
        versus = {
            "arm": runner,
            "relative_lift": _lift(variants[runner], variants[winner])[0],
            "ci_low": pair.ci_low,
            "ci_high": pair.ci_high,
            "alpha_level": alpha / k,
        }
    if not srm_ok:
        verdict = "invalid_srm"
    elif winner is not None:
        verdict = "variant_better"
    elif all(status[a] == "worse" for a in names):
        verdict = "variant_worse"
    elif final:
        judged = [status[a] for a in names if status[a] != "worse"]
        verdict = "no_difference" if all(s == "no_difference" for s in judged) else "inconclusive"
    else:
        verdict = "keep_running"

    shown = winner or max(names, key=rate)
    units = c.units + sum(variants[a].units for a in names)
    by_arm = {
        arm: _ab_test_results(arm, c, arms[arm], c_summary, k, look, alpha, srm_p, pooled_z(c, variants[arm]))
        for arm in names
    }
    results = by_arm[shown]
    return MultiAnalysis(
        control=c_summary,
        arms=arms,
        alpha=alpha,
        min_improvement=min_improvement,
        srm_p_value=srm_p,
        srm_ok=srm_ok,
        srm_arms=srm_arms,
        holm_order=tuple(order),
        required_units=required,
        progress=min(1.0, units / required) if required else None,
        enough_data=enough,
        reason=reason,
        winner=winner,
        winner_runner_up_distinguishable=distinguishable,
        winner_vs_runner_up=versus,
        verdict=verdict,
        arm=shown,
        ab_test_results=results,
        ab_test_results_by_arm=by_arm,
    )
