"""dataset_build from real database rows: filters, combining, corrections, split, stats, provenance."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.utils import timezone

from feedback.models import Feedback, Interaction
from training.models import DatasetExample, RetrainPolicy
from training.pipeline import DatasetInvalid, DatasetOptions, dataset_build, dataset_require_valid
from training.pipeline.validate import DEFAULT_CONTEXT_LIMIT, check_chat

T0 = timezone.now() - timedelta(days=1)
NO_DEDUP = {"deduplicate": False, "validation_share": 0.0}


def interaction(
    assistant, n: int, question: str | None = None, answer: str | None = None, **kw
) -> Interaction:
    return Interaction.objects.create(
        assistant=assistant,
        request_id=f"r{n}",
        messages=[{"role": "user", "content": question or f"Question number {n} about order {n * 7}?"}],
        response=answer if answer is not None else f"Answer number {n}: your order {n * 7} ships soon.",
        created_at=T0 + timedelta(seconds=n),
        **kw,
    )


def feedback(i: Interaction, *, minutes: int = 0, **kw) -> Feedback:
    kw.setdefault("kind", "rating")
    return Feedback.objects.create(
        interaction=i, assistant=i.assistant, created_at=i.created_at + timedelta(minutes=minutes), **kw
    )


def good(assistant, n: int, **kw) -> Interaction:
    i = interaction(assistant, n, **kw)
    feedback(i, rating=5, helpful=True)
    return i


def lines(path: str) -> list[dict]:
    with default_storage.open(path, "rb") as f:
        return [json.loads(line) for line in f]


def test_it_builds_a_valid_chat_dataset_from_good_feedback(assistant):
    for n in range(12):
        good(assistant, n)
    ds = dataset_build(assistant=assistant, options=NO_DEDUP)
    assert ds.is_valid, ds.validation_errors
    assert ds.train_count == 12 and ds.validation_count == 0
    rows = lines(ds.train_file)
    assert rows[0] == {
        "messages": [
            {"role": "system", "content": "You help shop customers."},
            {"role": "user", "content": "Question number 0 about order 0?"},
            {"role": "assistant", "content": "Answer number 0: your order 0 ships soon."},
        ]
    }
    assert [check_chat(row, DEFAULT_CONTEXT_LIMIT)[0] for row in rows] == [None] * 12  # the upload's checks
    import hashlib

    with default_storage.open(ds.train_file, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == ds.train_sha256
    assert ds.stats["sourceCount"] == 12 and ds.stats["exampleCount"] == 12
    assert ds.stats["avgRating"] == 5
    assert set(
        DatasetExample.objects.filter(dataset=ds).values_list("feedback__interaction__request_id", flat=True)
    ) == {f"r{n}" for n in range(12)}


def test_it_applies_the_seed_quality_filter(assistant):
    kept = [good(assistant, n) for n in range(10)]
    feedback(interaction(assistant, 20), rating=3, helpful=True)  # below min_rating
    feedback(interaction(assistant, 21), rating=5, helpful=False)  # thumbs-down
    feedback(interaction(assistant, 22), rating=5, helpful=True, confidence=0.5)  # unsure
    feedback(interaction(assistant, 23), kind="text", comment="meh")  # no signal
    feedback(interaction(assistant, 24), rating=4)  # rating stands in for the thumbs-up
    feedback(interaction(assistant, 25), helpful=True, kind="thumbs")  # thumbs-up alone
    ds = dataset_build(assistant=assistant, options=NO_DEDUP)
    reasons = ds.stats["filteredByReason"]
    assert reasons == {
        "rating_below_min": 1,
        "not_helpful": 1,
        "confidence_below_min": 1,
        "no_positive_signal": 1,
    }
    assert ds.train_count == len(kept) + 2
    assert ds.stats["candidateCount"] == 16 and ds.stats["filteredCount"] == 12
    assert ds.stats["filterRate"] == pytest.approx(0.25)
    assert sum(reasons.values()) + ds.stats["exampleCount"] == ds.stats["sourceCount"]

    relaxed = dataset_build(assistant=assistant, options={**NO_DEDUP, "include_negative": True})
    assert relaxed.stats["filteredByReason"] == {"confidence_below_min": 1}


def test_it_takes_filter_defaults_from_the_policy(assistant):
    RetrainPolicy.objects.create(assistant=assistant, min_rating=3, system_prompt="Policy prompt.")
    for n in range(10):
        good(assistant, n)
    feedback(interaction(assistant, 30), rating=3, helpful=True)
    ds = dataset_build(assistant=assistant, options=NO_DEDUP)
    assert ds.train_count == 11
    assert lines(ds.train_file)[0]["messages"][0] == {"role": "system", "content": "Policy prompt."}
    assert ds.options["min_rating"] == 3


def test_a_correction_replaces_the_target_even_for_a_poor_answer(assistant):
    for n in range(10):
        good(assistant, n)
    bad = interaction(assistant, 40, answer="I don't know.")
    feedback(bad, rating=1, helpful=False)
    feedback(bad, minutes=5, kind="correction", corrected_answer="Open Settings > Security > Reset password.")
    ds = dataset_build(assistant=assistant, options=NO_DEDUP)
    targets = [r["messages"][-1]["content"] for r in lines(ds.train_file)]
    assert "Open Settings > Security > Reset password." in targets
    assert "I don't know." not in targets


def test_excluded_feedback_never_enters(assistant):
    for n in range(10):
        good(assistant, n)
    i = good(assistant, 50)
    feedback(i, minutes=1, helpful=True, kind="thumbs", excluded_from_training=True)
    ds = dataset_build(assistant=assistant, options=NO_DEDUP)
    assert ds.train_count == 10
    assert ds.stats["filteredByReason"] == {"excluded_from_training": 2}
    assert not DatasetExample.objects.filter(dataset=ds, feedback__interaction=i).exists()


def test_several_feedback_rows_make_one_example_latest_opinion_wins(assistant):
    for n in range(10):
        good(assistant, n)
    changed_mind = interaction(assistant, 60)
    feedback(changed_mind, rating=5, helpful=True)
    feedback(changed_mind, minutes=3, rating=2)  # latest rating wins → dropped
    happy = interaction(assistant, 61)
    f1 = feedback(happy, rating=2)
    f2 = feedback(happy, minutes=3, rating=5, helpful=True, kind="rating")
    ds = dataset_build(assistant=assistant, options=NO_DEDUP)
    assert ds.train_count == 11
    assert ds.stats["filteredByReason"] == {"rating_below_min": 2, "combined_into_one_example": 1}
    # Provenance records every row that went into the example, queryable both ways.
    assert set(
        DatasetExample.objects.filter(dataset=ds, feedback__interaction=happy).values_list(
            "feedback", flat=True
        )
    ) == {f1.pk, f2.pk}
    assert f2.datasets.get() == ds


def test_the_split_is_deterministic_and_stable_across_rebuilds(assistant):
    for n in range(200):
        good(assistant, n)
    opts = {"deduplicate": False, "validation_share": 0.2, "seed": 7}
    a = dataset_build(assistant=assistant, options=opts)
    for n in range(200, 260):
        good(assistant, n)
    b = dataset_build(assistant=assistant, options=opts)

    def splits(ds):
        return dict(
            DatasetExample.objects.filter(dataset=ds).values_list("feedback__interaction_id", "split")
        )

    sa, sb = splits(a), splits(b)
    assert all(sb[k] == v for k, v in sa.items())
    assert 20 <= a.validation_count <= 60
    assert a.validation_count + a.train_count == 200
    other_seed = dataset_build(assistant=assistant, options={**opts, "seed": 8})
    assert splits(other_seed) != sb


def test_max_examples_keeps_the_newest(assistant):
    for n in range(15):
        good(assistant, n)
    ds = dataset_build(assistant=assistant, options={**NO_DEDUP, "max_examples": 11})
    assert ds.train_count == 11
    assert ds.stats["filteredByReason"] == {"over_max_examples": 4}
    ids = set(
        DatasetExample.objects.filter(dataset=ds).values_list("feedback__interaction__request_id", flat=True)
    )
    assert ids == {f"r{n}" for n in range(4, 15)}


def test_it_removes_near_duplicates_keeping_the_best_rated(assistant):
    for n in range(12):
        good(assistant, n)
    base = "Your refund for order 4411 was approved today and will reach your card within five business days"
    low = interaction(assistant, 70, question="Where is my refund?", answer=base + ".")
    feedback(low, rating=4, helpful=True)
    high = interaction(assistant, 71, question="Where is my refund?", answer=base + "!")
    feedback(high, rating=5, helpful=True)
    ds = dataset_build(assistant=assistant, options={"validation_share": 0.0})
    assert ds.stats["filteredByReason"] == {"near_duplicate": 1}
    assert ds.stats["deduplicatedCount"] == 13
    kept = DatasetExample.objects.filter(dataset=ds, feedback__interaction__in=[low, high]).get()
    assert kept.feedback.interaction == high


def test_an_invalid_dataset_is_stored_with_errors_naming_the_example(assistant):
    for n in range(3):
        good(assistant, n)
    broken = Interaction.objects.create(
        assistant=assistant,
        request_id="bad",
        messages=[{"role": "user", "content": "Hi?"}, {"role": "tool", "content": "x"}],
        response="Hello.",
        created_at=T0 + timedelta(seconds=99),
    )
    feedback(broken, rating=5, helpful=True)
    ds = dataset_build(assistant=assistant, options=NO_DEDUP)
    assert not ds.is_valid
    errors = ds.validation_errors
    assert errors[0]["example"] == 3 and errors[0]["split"] == "train"
    assert "Example 3" in errors[0]["error"] and "unknown role 'tool'" in errors[0]["error"]
    assert "at least 10" in errors[-1]["error"]
    with pytest.raises(DatasetInvalid, match="Example 3"):
        dataset_require_valid(ds)


def test_it_counts_estimated_tokens_against_the_context_limit(assistant):
    for n in range(10):
        good(assistant, n)
    huge = interaction(assistant, 80, answer="word " * 80_000)
    feedback(huge, rating=5, helpful=True)
    ds = dataset_build(assistant=assistant, options={**NO_DEDUP, "base_model": "gpt-3.5-turbo-0125"})
    assert [e["example"] for e in ds.validation_errors] == [10]
    assert "16385-token" in ds.validation_errors[0]["error"]


def test_it_rejects_options_no_build_could_honour(assistant):
    with pytest.raises(ValidationError) as exc:
        dataset_build(assistant=assistant, options={"min_rating": 9, "similarity_threshold": 0})
    assert set(exc.value.message_dict) == {"min_rating", "similarity_threshold"}
    with pytest.raises(ValidationError):
        dataset_build(assistant=assistant, format="poetry")
    with pytest.raises(ValidationError):
        DatasetOptions.from_policy(None, colour="blue")


def test_feedback_ids_and_date_window_limit_the_source(assistant):
    made = [good(assistant, n) for n in range(14)]
    ids = list(Feedback.objects.filter(interaction__in=made[:11]).values_list("id", flat=True))
    ds = dataset_build(assistant=assistant, options=NO_DEDUP, feedback_ids=ids)
    assert ds.stats["sourceCount"] == 11
    windowed = dataset_build(
        assistant=assistant, options={**NO_DEDUP, "since": (T0 + timedelta(seconds=3)).isoformat()}
    )
    assert windowed.stats["sourceCount"] == 11


def test_progress_is_reported(assistant):
    for n in range(10):
        good(assistant, n)
    seen = []
    dataset_build(
        assistant=assistant, options=NO_DEDUP, progress=lambda done, total: seen.append((done, total))
    )
    assert seen[-1] == (10, 10)


def test_an_excluded_row_outside_the_window_or_the_ids_still_excludes_its_interaction(assistant):
    for n in range(10):
        good(assistant, n)
    i = interaction(assistant, 90)
    excluded = feedback(i, minutes=-3 * 24 * 60, kind="thumbs", helpful=True, excluded_from_training=True)
    later = feedback(i, minutes=1, rating=5, helpful=True)
    windowed = dataset_build(
        assistant=assistant, options={**NO_DEDUP, "since": (T0 - timedelta(days=1)).isoformat()}
    )
    assert windowed.stats["sourceCount"] == 11  # the excluded row is outside the window…
    assert windowed.train_count == 10  # …and still keeps its interaction out
    assert windowed.stats["filteredByReason"] == {"excluded_from_training": 1}
    ids = list(Feedback.objects.exclude(pk=excluded.pk).values_list("id", flat=True))
    picked = dataset_build(assistant=assistant, options=NO_DEDUP, feedback_ids=ids)
    assert picked.train_count == 10
    assert not DatasetExample.objects.filter(feedback=later).exists()


def test_feedback_ids_beyond_the_database_parameter_limit_work(assistant):
    made = [good(assistant, n) for n in range(12)]
    wanted = list(Feedback.objects.filter(interaction__in=made[:11]).values_list("id", flat=True))
    # More ids than SQLite binds as parameters (250,000 in Debian's build, 32,766 in most others),
    # plus ids that cannot exist.
    noise = range(10**9, 10**9 + 260_000)
    ds = dataset_build(assistant=assistant, options=NO_DEDUP, feedback_ids=[*wanted, *noise, 2**70])
    assert ds.stats["sourceCount"] == 11 and ds.train_count == 11


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"max_examples": 5.5}, "max_examples"),
        ({"min_rating": "4"}, "min_rating"),
        ({"deduplicate": "no"}, "deduplicate"),
        ({"min_confidence": float("nan")}, "min_confidence"),
        ({"system_prompt": 7}, "system_prompt"),
        ({"since": "2026-02-30"}, "since"),
        ({"until": "2026-02-30T10:00:00"}, "until"),
    ],
)
def test_options_of_the_wrong_type_or_impossible_dates_are_refused_by_name(overrides, field):
    # Job dataset_options are free JSON: they must be refused when the job starts, not break the worker.
    with pytest.raises(ValidationError) as exc:
        DatasetOptions.from_policy(None, **overrides)
    assert set(exc.value.message_dict) == {field}
