"""manage.py export_training_data."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from feedback.models import Feedback, Interaction
from training.management.commands.export_training_data import ProgressBar
from training.models import TrainingDataset

T0 = timezone.now() - timedelta(days=1)


@pytest.fixture
def rows(assistant):
    for n in range(30):
        i = Interaction.objects.create(
            assistant=assistant,
            request_id=f"r{n}",
            messages=[{"role": "user", "content": f"Can I return item {n} after {n + 3} weeks?"}],
            response=f"Yes, item {n} can be returned within {n + 30} days of delivery.",
            created_at=T0 + timedelta(seconds=n),
        )
        Feedback.objects.create(
            interaction=i,
            assistant=assistant,
            kind="rating",
            rating=5 if n % 3 else 2,
            helpful=bool(n % 3),
            created_at=i.created_at,
        )


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_training_data", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_exports_jsonl_with_a_stats_summary(rows, tmp_path):
    target = tmp_path / "train.jsonl"
    out, _ = run(
        "--assistant", "shop", "--format", "chat_completion", "--out", str(target), "--validation-share", "0"
    )
    lines = target.read_text().splitlines()
    assert len(lines) == 20
    assert json.loads(lines[0])["messages"][-1]["role"] == "assistant"
    assert "Feedback rows:     30" in out
    assert "not_helpful 10" in out
    assert "Pre-flight checks passed." in out
    assert TrainingDataset.objects.count() == 1


def test_it_writes_the_validation_split_next_to_the_output_as_json(rows, tmp_path):
    target = tmp_path / "data.json"
    run(
        "--assistant",
        "shop",
        "--out",
        str(target),
        "--validation-share",
        "0.3",
        "--seed",
        "3",
        "--include-negative",
    )
    train = json.loads(target.read_text())
    validation = json.loads((tmp_path / "data.validation.json").read_text())
    assert len(train) + len(validation) == 30 and validation


def test_filters_are_passed_through(rows, tmp_path):
    target = tmp_path / "c.jsonl"
    run("--assistant", "shop", "--format", "classification", "--out", str(target), "--validation-share", "0")
    labels = [json.loads(x)["label"] for x in target.read_text().splitlines()]
    assert labels.count("negative") == 10 and labels.count("positive") == 20


def test_it_fails_loudly_on_an_invalid_dataset(assistant, tmp_path):
    with pytest.raises(CommandError, match="failed the pre-flight checks"):
        run("--assistant", "shop", "--out", str(tmp_path / "x.jsonl"))


def test_it_reports_bad_input(assistant, tmp_path):
    with pytest.raises(CommandError, match="No assistant 'nope'"):
        run("--assistant", "nope", "--out", str(tmp_path / "x.jsonl"))
    with pytest.raises(CommandError, match="min_rating"):
        run("--assistant", "shop", "--out", str(tmp_path / "x.jsonl"), "--min-rating", "9")


def test_the_progress_bar_draws_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar(stream)
        bar(50, 100)
        bar(100, 100)
        bar.close()
    assert "100.0%" in tty.getvalue() and "100/100 rows" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_an_unusable_out_path_is_a_clear_error_not_a_traceback(rows, tmp_path):
    with pytest.raises(CommandError, match="not a directory"):
        run("--assistant", "shop", "--out", str(tmp_path))
    assert TrainingDataset.objects.count() == 0  # refused before building
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(CommandError, match="could not be written"):
        run("--assistant", "shop", "--out", str(blocker / "x.jsonl"), "--validation-share", "0")


@pytest.mark.parametrize("value", ["2026-02-30", "2026-02-30T10:00:00", "yesterday"])
def test_an_impossible_date_is_a_clear_error(rows, tmp_path, value):
    with pytest.raises(CommandError, match="since: Use an ISO date"):
        run("--assistant", "shop", "--out", str(tmp_path / "x.jsonl"), "--since", value)
