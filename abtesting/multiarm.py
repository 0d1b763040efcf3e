"""TEMPORARY PLACEHOLDER of interface A (issue 18), written by helper "multiarm-app" for its own tests.

The real module is helper "multiarm-stats"'s (branch i18-stats); the lead drops this file at the merge.
Minimal: each variant against the control with the pooled z, Holm over the open arms at the planned
look's boundary (gs_boundaries at alpha / m), the confidence sequence between looks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import special

from abtesting.statistics import (
    SRM_PRIOR_CONCENTRATION,
    SRM_THRESHOLD,
    ArmCounts,
    ArmSummary,
    Look,
    _arm_summary,
    _finite,
    cs_halfwidth,
    cs_p_value,
    gs_boundaries,
    pooled_z,
    relative_lift_var,
    unpooled_z,
)


def srm_sequential_p_multi(
    counts: Sequence[float], shares: Sequence[float], concentration: float = SRM_PRIOR_CONCENTRATION
) -> float:
    """1 / Bayes factor of a Dirichlet(concentration * shares) mixture against the configured shares."""
    n = np.asarray(counts, dtype=float)
    p = np.asarray(shares, dtype=float)
    p = p / p.sum()
    a = concentration * p
    log_bf = (
        special.gammaln(a.sum())
        - special.gammaln(a.sum() + n.sum())
        + float(np.sum(special.gammaln(a + n) - special.gammaln(a)))
        - float(np.sum(n * np.log(p)))
    )
    return float(min(1.0, math.exp(-log_bf))) if log_bf > -700 else 1.0


@dataclass(frozen=True)
class MultiAnalysis:
    control: ArmSummary
    arms: dict[str, dict[str, Any]]
    srm_p_value: float
    srm_ok: bool
    alpha: float
    min_improvement: float
    enough_data: bool
    reason: str
    winner: str | None
    winner_runner_up_distinguishable: bool | None
    verdict: str
    ab_test_results: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    decided = dict(decided or {})
    live = ["control", *[a for a in variants if decided.get(a) != "worse"]]
    counts = {"control": control, **variants}
    srm_p = srm_sequential_p_multi([counts[a].n_assigned for a in live], [shares[a] for a in live])
    srm_ok = srm_p >= SRM_THRESHOLD
    needed = max(min_sample_size, 2)
    open_arms = [a for a in variants if a not in decided]
    enough = all(counts[a].units >= needed for a in ["control", *open_arms])
    gs = look.group_sequential
    z = {a: pooled_z(control, v) if gs else unpooled_z(control, v) for a, v in variants.items()}
    status = {a: {"better": "better", "worse": "worse"}.get(decided.get(a, ""), "open") for a in variants}
    level = dict.fromkeys(variants, alpha / max(1, len(variants)))
    m = len(variants) - sum(1 for a in variants if a in decided)
    tuning = max(1, int(cs_tuning_n))
    if enough and srm_ok:
        for a in sorted(open_arms, key=lambda a: -abs(z[a])):
            level[a] = alpha / max(1, m)
            if gs:
                rejected = abs(z[a]) >= gs_boundaries(level[a], look.fractions)[-1]
            else:
                units = control.units + variants[a].units
                rejected = float(cs_p_value(z[a], max(units, 1), level[a], tuning)) <= level[a]
            if not rejected:
                break
            if gs:
                status[a] = "better" if z[a] > 0 else "worse"
            m -= 1
    arms: dict[str, dict[str, Any]] = {}
    for a, v in variants.items():
        lv = relative_lift_var(control, v)
        lift, se = (lv[0], math.sqrt(lv[1])) if lv and lv[1] > 0 else (None, None)
        units = control.units + v.units
        b = gs_boundaries(level[a], look.fractions)[-1] if gs else None
        low = high = None
        if se is not None:
            half = b * se if gs else float(cs_halfwidth(se * se, units, level[a], tuning))
            low, high = lift - half, lift + half
        if gs and look.final and status[a] == "open" and enough:
            inside = low is not None and -min_improvement < low and high < min_improvement
            status[a] = "no_difference" if inside else "inconclusive"
        summary = _arm_summary(v, alpha)
        abs_lift = (
            summary.rate - _arm_summary(control, alpha).rate
            if summary.rate is not None and control.n
            else None
        )
        arms[a] = {
            "summary": asdict(summary),
            "relative_lift": _finite(lift),
            "absolute_lift": _finite(abs_lift),
            "sequential": {
                "method": "group_sequential" if gs else "confidence_sequence",
                "look": look.index,
                "planned_looks": look.planned,
                "information_fraction": look.fractions[-1] if gs else None,
                "boundary_z": b,
                "z": z[a],
                "p_value": float(cs_p_value(unpooled_z(control, v), max(units, 1), level[a], tuning)),
                "significant": status[a] in ("better", "worse"),
                "ci_low": _finite(low),
                "ci_high": _finite(high),
                "alpha_level": level[a],
            },
            "status": status[a],
        }
    better = [a for a in variants if status[a] == "better"]
    winner = max(better, key=lambda a: arms[a]["summary"]["rate"] or 0.0) if better else None
    if not srm_ok:
        verdict = "invalid_srm"
    elif winner is not None:
        verdict = "variant_better"
    elif all(status[a] == "worse" for a in variants):
        verdict = "variant_worse"
    elif gs and look.final and enough:
        verdict = "no_difference" if all(status[a] == "no_difference" for a in open_arms) else "inconclusive"
    else:
        verdict = "keep_running"
    best = winner or max(variants, key=lambda a: arms[a]["summary"]["rate"] or -1.0)
    seq = arms[best]["sequential"]
    c_sum = _arm_summary(control, alpha)
    results = {
        "controlSuccessRate": c_sum.rate,
        "variantSuccessRate": arms[best]["summary"]["rate"],
        "improvement": arms[best]["relative_lift"],
        "improvementLow": seq["ci_low"],
        "improvementHigh": seq["ci_high"],
        "significant": verdict in ("variant_better", "variant_worse"),
        "unit": "user",
        "sampleSize": control.units + variants[best].units,
        "interactions": control.n + variants[best].n,
        "pValue": None,
        "sequentialPValue": seq["p_value"],
        "ci": [seq["ci_low"], seq["ci_high"]],
        "ciLevel": 1 - alpha,
        "method": seq["method"],
        "look": look.index,
        "plannedLooks": look.planned,
        "srmPValue": srm_p,
        "arm": best,
    }
    reason = "" if enough else f"need {needed} users with feedback in the control and in each open arm"
    return MultiAnalysis(
        c_sum, arms, srm_p, srm_ok, alpha, min_improvement, enough, reason, winner,
        None, verdict, results,
    )  # fmt: skip
