"""Monte-Carlo check of the A/B decision rules under daily peeking (vectorised with numpy).

Each simulated experiment gets ``per_arm_per_look`` interactions per arm per day for
``looks`` days and is analysed every day. Compared rules:

* ``naive``: pooled z-test at alpha every day, stop at the first p < alpha;
* ``sequential``: the product's group-sequential test (Lan-DeMets O'Brien-Fleming spending);
* ``confidence_sequence``: GrowthBook-style asymptotic confidence sequence alone;
* ``fixed``: one z-test on day ``looks`` (no peeking; the power reference).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy import stats

from abtesting.statistics import cs_p_value, group_sequential_boundaries, pooled_z, unpooled_z


def _first_crossing_sign(reject: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Sign of z at each experiment's first rejecting look (0 if it never rejects)."""
    first = reject.argmax(axis=1)
    sign = np.sign(z[np.arange(z.shape[0]), first])
    return np.where(reject.any(axis=1), sign, 0.0)


def _simulate(
    n_experiments: int, looks: int, per_arm_per_look: int, p_c: float, p_v: float, alpha: float, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    shape = (n_experiments, looks)
    # Daily binomial batches, accumulated: the cumulative counts seen at each daily look.
    s_c = rng.binomial(per_arm_per_look, p_c, size=shape).cumsum(axis=1)
    s_v = rng.binomial(per_arm_per_look, p_v, size=shape).cumsum(axis=1)
    n = per_arm_per_look * np.arange(1, looks + 1)
    z = pooled_z(s_c, n, s_v, n)
    z_crit = stats.norm.isf(alpha / 2)
    bounds = np.asarray(group_sequential_boundaries(alpha, looks))
    seq_reject = np.abs(z) >= bounds
    # The CS is tuned for the planned total sample size, as the product does.
    cs_p = cs_p_value(unpooled_z(s_c, n, s_v, n), 2 * n, alpha, tuning_n=2 * n[-1])
    days = np.where(seq_reject.any(axis=1), seq_reject.argmax(axis=1) + 1, looks)
    return {
        "naive": _first_crossing_sign(np.abs(z) >= z_crit, z),
        "sequential": _first_crossing_sign(seq_reject, z),
        "confidence_sequence": _first_crossing_sign(cs_p <= alpha, z),
        "fixed": np.where(np.abs(z[:, -1]) >= z_crit, np.sign(z[:, -1]), 0.0),
        "sequential_days": days,
    }


def simulate_aa(
    n_experiments: int = 2000,
    looks: int = 30,
    per_arm_per_look: int = 100,
    p: float = 0.7,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """False-positive rates (any rejection, either direction) of each rule in A/A experiments."""
    start = time.perf_counter()
    sim = _simulate(n_experiments, looks, per_arm_per_look, p, p, alpha, seed)
    out: dict[str, Any] = {f"fpr_{rule}": float(np.mean(sim[rule] != 0)) for rule in
                           ("naive", "sequential", "confidence_sequence", "fixed")}  # fmt: skip
    out["mc_se"] = float(np.sqrt(alpha * (1 - alpha) / n_experiments))
    out.update(n_experiments=n_experiments, looks=looks, per_arm_per_look=per_arm_per_look, p=p, alpha=alpha)
    out["seconds"] = time.perf_counter() - start
    return out


def simulate_power(
    n_experiments: int = 2000,
    looks: int = 30,
    per_arm_per_look: int = 100,
    p_control: float = 0.7,
    relative_lift: float = 0.05,
    alpha: float = 0.05,
    seed: int = 1,
) -> dict[str, Any]:
    """Power (rejection in the right direction) of each rule when the variant is truly better."""
    start = time.perf_counter()
    p_v = p_control * (1 + relative_lift)
    sim = _simulate(n_experiments, looks, per_arm_per_look, p_control, p_v, alpha, seed)
    out: dict[str, Any] = {f"power_{rule}": float(np.mean(sim[rule] > 0)) for rule in
                           ("naive", "sequential", "confidence_sequence", "fixed")}  # fmt: skip
    out["sequential_vs_fixed"] = out["power_sequential"] / out["power_fixed"] if out["power_fixed"] else None
    # Days until the sequential rule stops (the full duration when it never does).
    out["sequential_mean_days"] = float(sim["sequential_days"].mean())
    out.update(n_experiments=n_experiments, looks=looks, per_arm_per_look=per_arm_per_look,
               p_control=p_control, p_variant=p_v, alpha=alpha)  # fmt: skip
    out["seconds"] = time.perf_counter() - start
    return out
