"""training.reports: a job's progress bar and its JSON reports as table rows."""

from __future__ import annotations

import pytest

from training.models import TrainingJob
from training.reports import evaluation_report, job_progress_info, labelled_rows, scalar_rows

S = TrainingJob.Status


@pytest.mark.parametrize(
    ("status", "metrics", "percent", "step", "label", "settled"),
    [
        (S.PENDING, {}, 12, 1, "Step 1 of 8: pending", False),
        (S.PREPARING, {}, 25, 2, "Step 2 of 8: preparing", False),
        # Training moves from the previous step's share to its own with the trainer's progress.
        (S.TRAINING, {}, 25, 3, "Step 3 of 8: training", False),
        (S.TRAINING, {"progress": 0.5}, 31, 3, "Step 3 of 8: training (50 % trained)", False),
        (S.TRAINING, {"progress": 7}, 25, 3, "Step 3 of 8: training", False),  # nonsense is ignored
        (S.TESTING, {}, 62, 5, "Step 5 of 8: testing", False),
        (S.AWAITING_APPROVAL, {}, 75, 6, "Step 6 of 8: awaiting approval", True),
        (S.DEPLOYED, {}, 100, 8, "Step 8 of 8: deployed", True),
        (S.FAILED, {}, 100, None, "Failed", True),
    ],
)
def test_the_progress_bar_and_its_label_say_the_same_step(status, metrics, percent, step, label, settled):
    info = job_progress_info(TrainingJob(status=status, metrics=metrics))
    assert (info["percent"], info["step"], info["steps"], info["settled"]) == (percent, step, 8, settled)
    assert info["label"] == label


def test_a_report_flattens_one_level():
    rows = scalar_rows({"examples": 100, "dropped": {"dupes": 3, "deep": {"x": 1}}, "curve": [1, 2]})
    assert rows == [("examples", 100), ("dropped.dupes", 3)]
    assert scalar_rows(None) == [] and scalar_rows({"a": 1, "b": 2}, skip=("a",)) == [("b", 2)]


def test_the_evaluation_compares_candidate_and_live_with_intervals():
    report = evaluation_report(
        {
            "candidate": {"accuracy": 0.8, "accuracy_ci": [0.8, 0.7, 0.9], "version": "v2"},
            "live": {"accuracy": 0.6, "version": "v1"},
            "accuracy_difference_ci": [0.2, 0.05, 0.35],
            "prompts": 10,
        }
    )
    accuracy = next(row for row in report["rows"] if row["name"] == "accuracy")
    assert (
        accuracy["candidate"] == 0.8 and accuracy["live"] == 0.6 and accuracy["delta"] == pytest.approx(0.2)
    )
    assert accuracy["candidate_ci"] == (0.7, 0.9) and accuracy["delta_ci"] == (0.05, 0.35)
    assert ("prompts", 10) in report["other"]


def test_no_evaluation_is_no_section():
    assert evaluation_report({}) is None


def test_report_rows_get_human_labels_and_keep_their_key():
    report = {
        "filteredCount": 96,
        "filteredByReason": {"low_rating": 10},
        "dedup": {"numPerm": 128},
        "custom": 1,
    }
    assert labelled_rows(scalar_rows(report)) == [
        ("Rows kept by the filters", "filteredCount", 96),
        ("Removed: low rating", "filteredByReason.low_rating", 10),
        ("Duplicates: MinHash permutations", "dedup.numPerm", 128),
        ("custom", "custom", 1),  # no label: the key as it is
    ]
