"""Intervals for offline evaluation: a paired, seeded bootstrap over prompts, and Wilson for win rates.

**Paired bootstrap.** Candidate and live answered the *same* prompts, so their scores are resampled
together (one index draw per resample serves every statistic); the candidate-minus-live interval then
reflects the pairing, which is much tighter than two independent intervals would suggest. When prompts are
clustered — several prompts from one customer, whose questions resemble each other — whole customers are
resampled instead (cluster bootstrap), because treating correlated prompts as independent makes intervals
too narrow. Percentile intervals, ``RESAMPLES`` resamples, a fixed seed: the same data always gives the
same interval, on every machine.

**Wilson for the pairwise win rate.** Each prompt's outcome is 1 (candidate won both orders), 0 (lost
both) or in between (ties, or a verdict that flipped with the order). The Wilson interval is for a
Bernoulli mean; a [0, 1] outcome with the same mean has variance at most p(1 − p), so treating the sum of
outcomes as successes out of n prompts gives an interval at least as wide as needed (conservative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

RESAMPLES = 2000
SEED = 17
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float | None
    low: float | None
    high: float | None

    def as_list(self) -> list[float | None]:
        return [self.estimate, self.low, self.high]


NONE = Interval(None, None, None)


CHUNK = 100  # resamples drawn at a time: 100 × n indices, so 10,000 prompts need 8 MB, not 160 MB


def _resampled_means(
    columns: Sequence[np.ndarray], clusters: Sequence[str] | None, seed: int
) -> list[np.ndarray]:
    """For each column, its mean in each of RESAMPLES resamples of the prompts (or of whole clusters).

    All columns share each resample, which keeps candidate and live paired.
    """
    n = len(columns[0])
    rng = np.random.default_rng(seed)
    out: list[list[np.ndarray]] = [[] for _ in columns]
    if not clusters or len(set(clusters)) == n:
        for lo in range(0, RESAMPLES, CHUNK):
            idx = rng.integers(0, n, size=(min(CHUNK, RESAMPLES - lo), n))
            for k, col in enumerate(columns):
                out[k].append(col[idx].mean(axis=1))
        return [np.concatenate(parts) for parts in out]
    # Cluster bootstrap: draw clusters with replacement; a resample's mean is its clusters' total over
    # their size, computed from per-cluster sums so no ragged index arrays are needed.
    names = sorted(set(clusters))
    position = {c: i for i, c in enumerate(names)}
    member = np.fromiter((position[c] for c in clusters), dtype=np.int64, count=n)
    size = np.bincount(member, minlength=len(names)).astype(float)
    sums = [np.bincount(member, weights=col, minlength=len(names)) for col in columns]
    for lo in range(0, RESAMPLES, CHUNK):
        draws = rng.integers(0, len(names), size=(min(CHUNK, RESAMPLES - lo), len(names)))
        total = size[draws].sum(axis=1)
        for k in range(len(columns)):
            out[k].append(sums[k][draws].sum(axis=1) / total)
    return [np.concatenate(parts) for parts in out]


def _percentiles(samples: np.ndarray, estimate: float) -> Interval:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return Interval(estimate, None, None)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high))


@dataclass(frozen=True)
class PairedIntervals:
    candidate_accuracy: Interval
    live_accuracy: Interval
    candidate_quality: Interval
    live_quality: Interval
    accuracy_difference: Interval  # candidate − live, absolute points
    improvement: Interval  # (candidate − live) / live, relative
    clustered: bool
    resamples: int = RESAMPLES
    seed: int = SEED


def paired_bootstrap(
    *,
    candidate_passed: Sequence[float],
    candidate_quality: Sequence[float],
    live_passed: Sequence[float] | None,
    live_quality: Sequence[float] | None,
    clusters: Sequence[str] | None = None,
    seed: int = SEED,
) -> PairedIntervals:
    """Intervals for accuracy, mean quality and the improvement, resampling prompts (or customers)."""
    n = len(candidate_passed)
    if n == 0:
        return PairedIntervals(NONE, NONE, NONE, NONE, NONE, NONE, False)
    clustered = bool(clusters) and len(set(clusters)) < n
    cp, cq = np.asarray(candidate_passed, float), np.asarray(candidate_quality, float)
    if live_passed is None or live_quality is None:
        c_acc, c_q = _resampled_means([cp, cq], clusters, seed)
        cand_acc, cand_q = _percentiles(c_acc, float(cp.mean())), _percentiles(c_q, float(cq.mean()))
        return PairedIntervals(cand_acc, NONE, cand_q, NONE, NONE, NONE, clustered, seed=seed)
    lp, lq = np.asarray(live_passed, float), np.asarray(live_quality, float)
    c_acc, c_q, l_acc, l_q = _resampled_means([cp, cq, lp, lq], clusters, seed)
    cand_acc, cand_q = _percentiles(c_acc, float(cp.mean())), _percentiles(c_q, float(cq.mean()))
    diff = c_acc - l_acc
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(l_acc > 0, diff / l_acc, np.nan)
    live_mean = float(lp.mean())
    point_rel = (float(cp.mean()) - live_mean) / live_mean if live_mean > 0 else None
    return PairedIntervals(
        candidate_accuracy=cand_acc,
        live_accuracy=_percentiles(l_acc, live_mean),
        candidate_quality=cand_q,
        live_quality=_percentiles(l_q, float(lq.mean())),
        accuracy_difference=_percentiles(diff, float(cp.mean()) - live_mean),
        improvement=_percentiles(rel, point_rel) if point_rel is not None else NONE,
        clustered=clustered,
        seed=seed,
    )


def compare_means(
    columns: Sequence[Sequence[float]],
    *,
    pairs: Sequence[tuple[int, int]] = (),
    clusters: Sequence[str] | None = None,
    seed: int = SEED,
) -> tuple[list[Interval], list[Interval]]:
    """Each column's mean, and for each pair ``(i, j)`` the difference of means column i − column j, all
    with 95 % intervals from one shared bootstrap over the prompts (or customers): the columns are scores
    of several versions on the *same* prompts, so every resample keeps them paired (a comparison's
    candidates, ``training.evaluation.ranking``)."""
    if not columns or len(columns[0]) == 0:
        return [NONE for _ in columns], [NONE for _ in pairs]
    arrays = [np.asarray(c, float) for c in columns]
    samples = _resampled_means(arrays, clusters, seed)
    means = [_percentiles(s, float(a.mean())) for s, a in zip(samples, arrays, strict=True)]
    differences = [
        _percentiles(samples[i] - samples[j], float(arrays[i].mean() - arrays[j].mean())) for i, j in pairs
    ]
    return means, differences


def win_rate_interval(
    outcomes: Sequence[float], *, clusters: Sequence[str] | None = None, seed: int = SEED
) -> tuple[Interval, str]:
    """The candidate's pairwise win rate (ties count half) with a 95 % interval and the method's name.

    Wilson over prompts; a cluster bootstrap when some customer contributed several prompts.
    """
    n = len(outcomes)
    if n == 0:
        return NONE, ""
    values = np.asarray(outcomes, float)
    estimate = float(values.mean())
    if clusters and len(set(clusters)) < n:
        (means,) = _resampled_means([values], clusters, seed)
        return _percentiles(means, estimate), "cluster bootstrap over customers"
    low, high = wilson_interval(float(values.sum()), n, alpha=1 - CONFIDENCE)
    return Interval(estimate, low, high), "Wilson over prompts"


def wilson_interval(successes: float, n: int, alpha: float = 1 - CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion (``n`` > 0). Written out rather than scipy's
    ``binomtest(...).proportion_ci``, which takes whole successes only: ties count half in win rates."""
    z = float(stats.norm.isf(alpha / 2))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
