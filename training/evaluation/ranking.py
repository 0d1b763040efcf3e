"""Ranking a comparison's candidates on the same validation prompts, with intervals.

Every candidate answered the same prompts and was graded by the same grader (``run.evaluate_prompts``
per candidate, one grader for all), so their scores are paired by prompt. The **score** is the
candidate's accuracy: the share of prompts its answer passes. Prompts some candidate could not be graded
on are left out for all, so every score rests on the same prompts.

Intervals come from one paired bootstrap over the prompts (over customers when some asked several:
``intervals.compare_means``), so each candidate's 95 % interval and the interval of the best-minus-runner-
up difference are read from the same resamples. The best is **distinguishable from the runner-up** when
that difference's interval excludes 0: a reviewer can then trust the order of the first two; otherwise
the data do not tell them apart and the online test (or the reviewer) must.

Candidates are ordered by score, then by mean grader score (quality), then by their position in the
comparison; a candidate whose evaluation stopped (judge budget, a version that could not answer) is not
ranked and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from training.evaluation import intervals
from training.evaluation.run import EvaluationReport

METRIC = "accuracy"


@dataclass(frozen=True)
class RankEntry:
    key: int  # the candidate's id
    label: str
    version: str
    rank: int | None
    score: intervals.Interval
    quality: float | None
    excluded: str = ""  # why it is not ranked

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.key,
            "label": self.label,
            "version": self.version,
            "rank": self.rank,
            "score": self.score.estimate,
            "score_ci": [self.score.low, self.score.high] if self.score.low is not None else [],
            "quality": self.quality,
            "excluded": self.excluded,
        }


@dataclass(frozen=True)
class Ranking:
    entries: tuple[RankEntry, ...]  # ranked ones first, in rank order
    prompts: int  # the prompts every ranked score rests on
    difference: intervals.Interval  # best − runner-up score
    distinguishable: bool | None  # None: fewer than two ranked
    clustered: bool

    @property
    def ranked(self) -> list[RankEntry]:
        return [e for e in self.entries if e.rank is not None]

    @property
    def best(self) -> RankEntry | None:
        ranked = self.ranked
        return ranked[0] if ranked else None

    @property
    def runner_up(self) -> RankEntry | None:
        ranked = self.ranked
        return ranked[1] if len(ranked) > 1 else None

    def as_dict(self) -> dict[str, Any]:
        best, runner_up = self.best, self.runner_up
        return {
            "metric": METRIC,
            "prompts": self.prompts,
            "clustered": self.clustered,
            "bootstrap": {
                "resamples": intervals.RESAMPLES,
                "seed": intervals.SEED,
                "confidence": intervals.CONFIDENCE,
            },
            "entries": [e.as_dict() for e in self.entries],
            "best": best.label if best else None,
            "runner_up": runner_up.label if runner_up else None,
            "difference": self.difference.as_list(),
            "distinguishable": self.distinguishable,
        }

    def describe(self) -> str:
        """One sentence for the timeline and the decision's evidence."""
        ranked = self.ranked
        if not ranked:
            return "No candidate could be ranked."
        parts = [
            f"{e.rank}. {e.label} {_pct(e.score.estimate)} [{_pct(e.score.low)}, {_pct(e.score.high)}]"
            for e in ranked
        ]
        text = f"Ranked on {self.prompts} validation prompts by accuracy: " + "; ".join(parts)
        if self.distinguishable is not None:
            diff = self.difference
            text += (
                f". Best minus runner-up {_points(diff.estimate)} (95 % CI {_points(diff.low)} to "
                f"{_points(diff.high)}): "
                + ("distinguishable" if self.distinguishable else "not distinguishable")
            )
        unranked = [f"{e.label} ({e.excluded})" for e in self.entries if e.rank is None]
        if unranked:
            text += ". Not ranked: " + "; ".join(unranked)
        return text + "."


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f} points"


def _graded(row) -> bool:
    return not row.candidate.error and row.candidate.passed is not None


def rank_reports(reports: Sequence[tuple[int, str, EvaluationReport]]) -> Ranking:
    """Rank ``(candidate id, label, its report)``, given in the comparison's order (the last tie-break)."""
    usable = [(key, label, r) for key, label, r in reports if not r.stopped_reason and r.rows]
    excluded = {
        key: (f"evaluation stopped: {r.stopped_reason}" if r.stopped_reason else "no validation prompts")
        for key, _, r in reports
        if r.stopped_reason or not r.rows
    }
    n = min((len(r.rows) for _, _, r in usable), default=0)
    common = [k for k in range(n) if all(_graded(r.rows[k]) for _, _, r in usable)]
    if not usable or not common:
        if usable:
            excluded.update({key: "no prompt every candidate could be graded on" for key, _, _ in usable})
        entries = tuple(
            RankEntry(key, label, r.candidate.version, None, intervals.NONE, None, excluded[key])
            for key, label, r in reports
        )
        return Ranking(entries, 0, intervals.NONE, None, False)

    rows0 = usable[0][2].rows
    customers = [rows0[k].customer for k in common]
    clusters = customers if all(customers) else None
    passed = [[float(r.rows[k].candidate.passed) for k in common] for _, _, r in usable]
    quality = [sum(r.rows[k].candidate.score or 0.0 for k in common) / len(common) for _, _, r in usable]
    means, _ = intervals.compare_means(passed, clusters=clusters)
    order = sorted(
        range(len(usable)), key=lambda i: (-(means[i].estimate or 0.0), -quality[i], i)
    )  # stable: the comparison's order breaks remaining ties
    difference, distinguishable = intervals.NONE, None
    if len(order) > 1:
        _, (difference,) = intervals.compare_means(passed, pairs=[(order[0], order[1])], clusters=clusters)
        distinguishable = difference.low is not None and (difference.low > 0 or difference.high < 0)
    ranked = [
        RankEntry(usable[i][0], usable[i][1], usable[i][2].candidate.version, rank, means[i], quality[i])
        for rank, i in enumerate(order, 1)
    ]
    unranked = [
        RankEntry(key, label, r.candidate.version, None, intervals.NONE, None, excluded[key])
        for key, label, r in reports
        if key in excluded
    ]
    clustered = clusters is not None and len(set(clusters)) < len(common)
    return Ranking(tuple(ranked + unranked), len(common), difference, distinguishable, clustered)
