"""Ranking a comparison's candidates (training/evaluation/ranking.py) and the paired intervals behind it
(``intervals.compare_means``)."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation import intervals
from training.evaluation.graders import Grade
from training.evaluation.ranking import rank_reports
from training.evaluation.run import EvaluationReport, PromptRow, VersionScore


def _report(version: str, passed: list[bool | None], *, customers: list[str] | None = None, **kw):
    rows = [
        PromptRow(
            question=f"q{k}",
            reference="r",
            reference_is_correction=False,
            customer=(customers or [""] * len(passed))[k],
            candidate_answer="a",
            live_answer="",
            candidate=Grade(None if p is None else float(p), p, "", "" if p is not None else "judge failed"),
            live=None,
            pairwise=None,
        )
        for k, p in enumerate(passed)
    ]
    return EvaluationReport(
        prompts=len(rows),
        candidate=VersionScore(version, None, None, None, len(rows)),
        live=None,
        rows=rows,
        **kw,
    )


def test_candidates_are_ranked_by_accuracy_with_intervals():
    rng = np.random.default_rng(3)
    strong = list(rng.random(200) < 0.8)
    weak = list(rng.random(200) < 0.5)
    middle = list(rng.random(200) < 0.65)

    ranking = rank_reports(
        [
            (1, "weak", _report("v1", weak)),
            (2, "strong", _report("v2", strong)),
            (3, "mid", _report("v3", middle)),
        ]
    )

    assert [(e.label, e.rank) for e in ranking.entries] == [("strong", 1), ("mid", 2), ("weak", 3)]
    assert ranking.prompts == 200 and not ranking.clustered
    for entry, column in zip(ranking.entries, (strong, middle, weak), strict=True):
        assert entry.score.estimate == pytest.approx(np.mean(column))
        assert entry.score.low < entry.score.estimate < entry.score.high
    assert ranking.best.label == "strong" and ranking.runner_up.label == "mid"
    assert ranking.difference.estimate == pytest.approx(np.mean(strong) - np.mean(middle))
    assert ranking.distinguishable is True and ranking.difference.low > 0
    assert "1. strong" in ranking.describe() and ": distinguishable" in ranking.describe()


def test_twins_are_not_distinguishable_and_ties_keep_the_comparisons_order():
    same = [True, False] * 30

    ranking = rank_reports([(1, "A", _report("v1", same)), (2, "B", _report("v2", same))])

    assert [e.label for e in ranking.ranked] == ["A", "B"]
    assert ranking.difference.as_list() == [0.0, 0.0, 0.0]
    assert ranking.distinguishable is False


def test_the_pairing_tells_apart_what_separate_intervals_would_not():
    # B passes exactly the prompts A passes, plus 8 more of 100: their own intervals overlap widely, but
    # prompt by prompt B is never worse, so the paired difference excludes 0.
    a = [k < 50 for k in range(100)]
    b = [k < 58 for k in range(100)]

    ranking = rank_reports([(1, "A", _report("v1", a)), (2, "B", _report("v2", b))])

    best, runner = ranking.ranked
    assert best.label == "B" and best.score.low < runner.score.high  # the separate intervals overlap
    assert ranking.distinguishable is True and ranking.difference.low > 0


def test_prompts_some_candidate_could_not_be_graded_on_are_left_out_for_all():
    a = [True, True, None, False]
    b = [False, True, True, False]

    ranking = rank_reports([(1, "A", _report("v1", a)), (2, "B", _report("v2", b))])

    assert ranking.prompts == 3
    assert [(e.label, e.score.estimate) for e in ranking.ranked] == [
        ("A", pytest.approx(2 / 3)),
        ("B", pytest.approx(1 / 3)),
    ]


def test_a_stopped_evaluation_is_not_ranked_and_says_why():
    stopped = _report("v2", [], stopped_reason="the judge budget of $1.00 is spent")

    ranking = rank_reports([(1, "A", _report("v1", [True, False, True])), (2, "B", stopped)])

    assert [(e.label, e.rank) for e in ranking.entries] == [("A", 1), ("B", None)]
    assert ranking.entries[1].excluded == "evaluation stopped: the judge budget of $1.00 is spent"
    assert ranking.distinguishable is None and ranking.runner_up is None
    assert "Not ranked: B (evaluation stopped" in ranking.describe()


def test_without_prompts_nothing_is_ranked():
    ranking = rank_reports([(1, "A", _report("v1", [])), (2, "B", _report("v2", []))])

    assert ranking.best is None and ranking.prompts == 0
    assert {e.excluded for e in ranking.entries} == {"no validation prompts"}


def test_customers_with_several_prompts_are_resampled_whole():
    customers = [f"c{k // 4}" for k in range(80)]
    a = [k % 4 != 0 for k in range(80)]
    b = [k % 2 == 0 for k in range(80)]

    ranking = rank_reports(
        [(1, "A", _report("v1", a, customers=customers)), (2, "B", _report("v2", b, customers=customers))]
    )

    assert ranking.clustered is True
    assert ranking.as_dict()["clustered"] is True


def test_compare_means_shares_its_resamples():
    x = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0] * 10
    means, (diff,) = intervals.compare_means([x, x], pairs=[(0, 1)])
    assert means[0] == means[1]
    assert diff.as_list() == [0.0, 0.0, 0.0]  # identical columns stay identical in every resample
    assert intervals.compare_means([[], []], pairs=[(0, 1)]) == ([intervals.NONE] * 2, [intervals.NONE])
