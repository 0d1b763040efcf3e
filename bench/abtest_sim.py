"""Monte-Carlo check of the A/B decision rules on returning users, through the product's own functions.

Each simulated experiment: every day ``users_per_arm_per_day`` new users (Poisson) arrive in each arm
(with ``ramp``, day 1 brings 10 % of day 7's traffic, rising linearly). A user has a success probability
drawn from a Beta with mean ``p`` and within-user correlation ``rho`` (the intra-class correlation of
their outcomes; rho = 0: every user has ``p``) and ``1 + Poisson(VISITS - 1)`` rated interactions,
spread uniformly over the ``SPREAD_DAYS`` after their arrival. The daily task runs at the end of each
day and does what ``abtesting.tasks.experiment_check`` does, minus the database:

``services.next_look`` (is a planned look due, at which information fraction) →
``statistics.analyse`` → ``services.analysis_record`` → ``services.decision_for`` → and for the
training loop's auto-deploy rule ``services.lift_clears`` (lower end of the decision interval ≥ the
threshold). The per-arm sums come from the simulated users exactly as ``ExperimentUnit`` rows would give
them. The confidence sequence is tuned, once, for the units the traffic brings over the planned duration.

Reference: a fixed-horizon user-level test (the pooled z of ``statistics.pooled_z``, |z| >= z_{alpha/2})
on the data of the sequential design's last look (the same total sample).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from scipy import stats

VISITS = 3.0  # mean rated interactions per user
SPREAD_DAYS = 14


def _users(
    rng: np.random.Generator, days: int, per_day: float, p: float, rho: float, ramp: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(visits per user per day, successes per user per day) as (users x days) count arrays."""
    factor = np.ones(days)
    if ramp:
        factor[: min(days, 7)] = np.linspace(0.1, 1.0, 7)[: min(days, 7)]
    arrivals = rng.poisson(per_day * factor)
    arrival_day = np.repeat(np.arange(days), arrivals)
    n_users = arrival_day.size
    if rho > 0:
        k = (1 - rho) / rho
        p_u = rng.beta(p * k, (1 - p) * k, size=n_users)
    else:
        p_u = np.full(n_users, p)
    visits = 1 + rng.poisson(VISITS - 1, size=n_users)
    user = np.repeat(np.arange(n_users), visits)
    day = np.repeat(arrival_day, visits) + rng.integers(0, SPREAD_DAYS, size=user.size)
    keep = day < days
    success = rng.random(user.size) < p_u[user]
    flat = user[keep] * days + day[keep]
    n = np.bincount(flat, minlength=n_users * days).reshape(n_users, days)
    s = np.bincount(flat, weights=success[keep], minlength=n_users * days).reshape(n_users, days)
    return n, s, arrival_day


def _arm_counts_by_day(n: np.ndarray, s: np.ndarray, arrival_day: np.ndarray, days: int) -> list:
    """ArmCounts at the end of each day (cumulative per-user sums, as ExperimentUnit rows would hold)."""
    from abtesting.statistics import ArmCounts

    cn, cs = n.cumsum(axis=1), s.cumsum(axis=1)
    assigned = np.searchsorted(np.sort(arrival_day), np.arange(1, days + 1), side="left")
    out = []
    for d in range(days):
        nd, sd = cn[:, d], cs[:, d]
        out.append(
            ArmCounts(
                n_assigned=int(assigned[d]),
                units=int((nd > 0).sum()),
                n=int(nd.sum()),
                successes=int(sd.sum()),
                n_sq=float((nd * nd).sum()),
                s_sq=float((sd * sd).sum()),
                ns=float((nd * sd).sum()),
            )
        )
    return out


class _Stub:
    """The fields of an Experiment that the decision reads (no database row needed)."""

    def __init__(self, days: int, alpha: float, min_improvement: float, min_sample_size: int):
        self.started_at = datetime(2026, 1, 1, tzinfo=UTC)
        self.max_duration_days = float(days)
        self.traffic_split = 0.5
        self.significance_level = alpha
        self.min_improvement = min_improvement
        self.min_sample_size = min_sample_size


def run_one(
    rng: np.random.Generator,
    *,
    days: int,
    per_day: float,
    p_control: float,
    lift: float,
    rho: float,
    ramp: bool,
    alpha: float,
    min_improvement: float,
    min_sample_size: int,
    threshold: float,
) -> dict[str, Any]:
    """One experiment through the daily task's functions; its decision and the reference test."""
    from abtesting import services, statistics

    arms = []
    for p in (p_control, p_control * (1 + lift)):
        n, s, arrival = _users(rng, days, per_day, p, rho, ramp)
        arms.append(_arm_counts_by_day(n, s, arrival, days))
    stub = _Stub(days, alpha, min_improvement, min_sample_size)
    # Tuned once at the start from the traffic expected over the planned duration (as _cs_tuning does).
    tuning = max(2 * min_sample_size, round(2 * per_day * days))
    plan: dict[str, Any] = {"cs_tuning_n": tuning}
    decision, clears, srm_flag, last_day = "", False, False, days - 1
    for d in range(days):
        c, v = arms[0][d], arms[1][d]
        look, plan = services.next_look(
            plan,
            elapsed_days=d + 1,
            max_duration_days=days,
            control=c,
            variant=v,
            split=0.5,
            alpha=alpha,
            min_improvement=min_improvement,
        )
        result = statistics.analyse(
            control=c,
            variant=v,
            split=0.5,
            alpha=alpha,
            min_improvement=min_improvement,
            min_sample_size=min_sample_size,
            look=look,
            cs_tuning_n=tuning,
            required=plan.get("units_max"),
        )
        record = services.analysis_record(result, look)
        outcome = services.decision_for(stub, record, stub.started_at + timedelta(days=d + 1))
        if outcome is not None:
            decision = outcome[0]
            srm_flag = decision == "invalid_srm"
            clears = (
                services.lift_clears(record["ab_test_results"], threshold) and decision == "variant_better"
            )
            last_day = d
            break
    z_fixed = statistics.pooled_z(arms[0][last_day], arms[1][last_day])
    return {
        "decision": decision,
        "auto_deploy": clears,
        "srm": srm_flag,
        "fixed": float(np.sign(z_fixed)) if abs(z_fixed) >= stats.norm.isf(alpha / 2) else 0.0,
        "last_day": last_day + 1,
        "naive_interaction_level": None,
    }


def simulate(
    *,
    n_experiments: int,
    days: int,
    per_day: float = 100,
    p_control: float = 0.7,
    lift: float = 0.0,
    rho: float = 0.1,
    ramp: bool = False,
    alpha: float = 0.05,
    min_improvement: float = 0.05,
    min_sample_size: int = 100,
    threshold: float = 0.15,
    seed: int = 0,
) -> dict[str, Any]:
    """Rates over ``n_experiments`` seeded experiments of one scenario."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    runs = [
        run_one(
            rng,
            days=days,
            per_day=per_day,
            p_control=p_control,
            lift=lift,
            rho=rho,
            ramp=ramp,
            alpha=alpha,
            min_improvement=min_improvement,
            min_sample_size=min_sample_size,
            threshold=threshold,
        )
        for _ in range(n_experiments)
    ]
    decisions = [r["decision"] for r in runs]
    out = {
        "better": float(np.mean([d == "variant_better" for d in decisions])),
        "worse": float(np.mean([d == "variant_worse" for d in decisions])),
        "any": float(np.mean([d in ("variant_better", "variant_worse") for d in decisions])),
        "invalid_srm": float(np.mean([r["srm"] for r in runs])),
        "auto_deploy": float(np.mean([r["auto_deploy"] for r in runs])),
        "fixed_better": float(np.mean([r["fixed"] > 0 for r in runs])),
        "fixed_any": float(np.mean([r["fixed"] != 0 for r in runs])),
        "mean_days": float(np.mean([r["last_day"] for r in runs])),
        "mc_se": math.sqrt(alpha * (1 - alpha) / n_experiments),
        "n_experiments": n_experiments,
        "seconds": time.perf_counter() - start,
    }
    return out


def simulate_srm(*, n_experiments: int, looks: int, per_day: float = 100, seed: int = 0) -> dict[str, Any]:
    """False ``invalid_srm`` of the sequential SRM test at a true 50/50 split, vectorised (no other test)."""
    from abtesting.statistics import SRM_THRESHOLD, srm_sequential_p

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    n_c = rng.poisson(per_day, size=(n_experiments, looks)).cumsum(axis=1)
    n_v = rng.poisson(per_day, size=(n_experiments, looks)).cumsum(axis=1)
    flagged = (srm_sequential_p(n_c, n_v, 0.5) < SRM_THRESHOLD).any(axis=1)
    chi2 = stats.chi2.sf((n_v - n_c) ** 2 / (n_c + n_v), 1)
    return {
        "sequential": float(flagged.mean()),
        "daily_chi_square": float((chi2 < SRM_THRESHOLD).any(axis=1).mean()),
        "n_experiments": n_experiments,
        "seconds": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------- multi-arm (issue 18)


def _sum_counts(arms: list) -> Any:
    """Field-wise sum of ArmCounts: all variants together, for the blinded plan."""
    from dataclasses import fields

    from abtesting.statistics import ArmCounts

    return ArmCounts(**{f.name: sum(getattr(a, f.name) for a in arms) for f in fields(ArmCounts)})


def _multi_look(plan: dict[str, Any], *, day: int, days: int, control, variants: list, alpha: float,
                min_improvement: float) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """The planned look of a k-arm experiment: ``services.next_look`` on the control and all variants
    together, with the plan's maximum fixed (once, blinded: pooled rate and per-unit variance over all
    arms) by ``multiarm.required_units_multi`` for k equal arms.
    """
    from abtesting import multiarm, services, statistics

    pooled = _sum_counts(variants)
    planned = services.planned_looks(days)
    if not plan.get("units_max"):
        blind = statistics.unit_variance(control, pooled)
        required = None
        if blind is not None:
            required = multiarm.required_units_multi(
                blind[0], min_improvement, variants=len(variants), unit_var=blind[1], alpha=alpha,
                planned_looks=planned,
            )  # fmt: skip
        if required is None:
            return statistics.Look(0, planned, tuple(plan.get("fractions", ())), False), plan
        plan = {**plan, "units_max": required}
    return services.next_look(
        plan, elapsed_days=day + 1, max_duration_days=days, control=control, variant=pooled,
        split=len(variants) / (len(variants) + 1), alpha=alpha, min_improvement=min_improvement,
    )  # fmt: skip


def run_one_multi(
    rng: np.random.Generator,
    *,
    days: int,
    per_day: float,
    p_control: float,
    lifts: tuple[float, ...],
    rho: float,
    alpha: float,
    min_improvement: float,
    min_sample_size: int,
) -> dict[str, Any]:
    """One control + k variants experiment, a look a day through ``multiarm.analyse_multi``.

    An arm decided "worse" is dropped: from then on its counts stay as they were (no traffic); the others
    keep theirs. The experiment ends at the first verdict other than ``keep_running``.
    """
    from abtesting.multiarm import analyse_multi

    names = ["variant", *(f"variant{i}" for i in range(2, len(lifts) + 1))]
    by_day = {}
    for arm, lift in zip(["control", *names], (0.0, *lifts), strict=True):
        n, s, arrival = _users(rng, days, per_day, p_control * (1 + lift), rho, False)
        by_day[arm] = _arm_counts_by_day(n, s, arrival, days)
    shares = dict.fromkeys(["control", *names], 1 / (len(names) + 1))
    tuning = max(2 * min_sample_size, round((len(names) + 1) * per_day * days))
    plan: dict[str, Any] = {"cs_tuning_n": tuning}
    decided: dict[str, str] = {}
    dropped_on: dict[str, int] = {}
    verdict, winner, last_day, seconds, analyses = "keep_running", None, days - 1, 0.0, 0
    for d in range(days):
        control = by_day["control"][d]
        variants = {a: by_day[a][dropped_on.get(a, d)] for a in names}
        look, plan = _multi_look(
            plan, day=d, days=days, control=control, variants=list(variants.values()), alpha=alpha,
            min_improvement=min_improvement,
        )  # fmt: skip
        start = time.perf_counter()
        result = analyse_multi(
            control=control, variants=variants, shares=shares, alpha=alpha, min_improvement=min_improvement,
            min_sample_size=min_sample_size, look=look, cs_tuning_n=tuning, decided=decided,
            required=plan.get("units_max"),
        )  # fmt: skip
        seconds += time.perf_counter() - start
        analyses += 1
        decided = {a: r.status for a, r in result.arms.items() if r.status in ("better", "worse")}
        for arm, status in decided.items():
            if status == "worse":
                dropped_on.setdefault(arm, d)
        if result.verdict != "keep_running":
            verdict, winner, last_day = result.verdict, result.winner, d
            break
    return {
        "verdict": verdict,  # keep_running here: the deadline came first (the app calls it inconclusive)
        "winner": winner,
        "better": sorted(a for a, s in decided.items() if s == "better"),
        "worse": sorted(a for a, s in decided.items() if s == "worse"),
        "last_day": last_day + 1,
        "analyse_seconds": seconds,
        "analyses": analyses,
    }


def simulate_multi(
    *,
    n_experiments: int,
    days: int = 30,
    per_day: float = 100,
    p_control: float = 0.7,
    lifts: tuple[float, ...] = (0.0, 0.0),
    rho: float = 0.1,
    alpha: float = 0.05,
    min_improvement: float = 0.05,
    min_sample_size: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Rates over ``n_experiments`` seeded k-arm experiments; ``lifts``: the variants' true relative lifts."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    runs = [
        run_one_multi(
            rng,
            days=days,
            per_day=per_day,
            p_control=p_control,
            lifts=lifts,
            rho=rho,
            alpha=alpha,
            min_improvement=min_improvement,
            min_sample_size=min_sample_size,
        )  # fmt: skip
        for _ in range(n_experiments)
    ]
    names = ["variant", *(f"variant{i}" for i in range(2, len(lifts) + 1))]
    return {
        "any_better": float(np.mean([bool(r["better"]) for r in runs])),
        "any_decision": float(np.mean([bool(r["better"] or r["worse"]) for r in runs])),
        "any_worse": float(np.mean([bool(r["worse"]) for r in runs])),
        "wins": {a: float(np.mean([r["winner"] == a for r in runs])) for a in names},
        "verdicts": {
            v: float(np.mean([r["verdict"] == v for r in runs])) for v in {r["verdict"] for r in runs}
        },
        "invalid_srm": float(np.mean([r["verdict"] == "invalid_srm" for r in runs])),
        "mean_days": float(np.mean([r["last_day"] for r in runs])),
        "ms_per_analysis": 1000 * sum(r["analyse_seconds"] for r in runs) / sum(r["analyses"] for r in runs),
        "mc_se": math.sqrt(alpha * (1 - alpha) / n_experiments),
        "n_experiments": n_experiments,
        "seconds": time.perf_counter() - start,
    }
