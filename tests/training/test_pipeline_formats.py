"""Each dataset format, produced from real feedback rows."""

from __future__ import annotations

import json
from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone

from feedback.models import Feedback, Interaction
from training.pipeline import dataset_build
from training.pipeline.validate import DEFAULT_CONTEXT_LIMIT, check_preference

T0 = timezone.now() - timedelta(days=1)
OPTS = {"deduplicate": False, "validation_share": 0.0}


def make(assistant, n: int, *, answer: str | None = None, **fb) -> Interaction:
    i = Interaction.objects.create(
        assistant=assistant,
        request_id=f"r{n}",
        messages=[{"role": "user", "content": f"Question {n}: where is order {n}?"}],
        response=answer if answer is not None else f"Order {n} ships on Monday.",
        created_at=T0 + timedelta(seconds=n),
    )
    if fb:
        fb.setdefault("kind", "rating")
        Feedback.objects.create(interaction=i, assistant=assistant, created_at=i.created_at, **fb)
    return i


def lines(path: str) -> list[dict]:
    with default_storage.open(path, "rb") as f:
        return [json.loads(line) for line in f]


def test_rag_documents_carry_source_metadata(assistant):
    i = make(assistant, 1, rating=5, helpful=True)
    make(
        assistant, 2, answer="Wrong.", rating=1, corrected_answer="Order 2 ships Tuesday.", kind="correction"
    )
    ds = dataset_build(assistant=assistant, format="rag_documents", options=OPTS)
    assert ds.is_valid, ds.validation_errors
    docs = lines(ds.train_file)
    fb = Feedback.objects.get(interaction=i)
    assert docs[0] == {
        "id": f"feedback_{fb.pk}",
        "content": "Order 1 ships on Monday.",
        "metadata": {
            "source": "feedback",
            "feedback_id": fb.pk,
            "interaction_id": i.pk,
            "rating": 5,
            "helpful": True,
            "category": "positive_feedback",
            "question": "Question 1: where is order 1?",
        },
    }
    assert (
        docs[1]["content"] == "Order 2 ships Tuesday."
        and docs[1]["metadata"]["category"] == "corrected_answer"
    )


def test_classification_labels_follow_the_documented_rule(assistant):
    make(assistant, 1, rating=5)
    make(assistant, 2, rating=1)
    make(assistant, 3, rating=3)
    make(assistant, 4, helpful=True, kind="thumbs")
    make(assistant, 5, helpful=False, rating=5)  # any negative signal wins
    make(assistant, 6, comment="no signal", kind="text")
    ds = dataset_build(assistant=assistant, format="classification", options=OPTS)
    assert ds.is_valid, ds.validation_errors
    rows = lines(ds.train_file)
    assert [r["label"] for r in rows] == ["positive", "negative", "neutral", "helpful", "negative"]
    assert rows[0]["text"] == "Customer: Question 1: where is order 1?\nAssistant: Order 1 ships on Monday."
    assert ds.stats["filteredByReason"] == {"no_label": 1}


def test_preference_pairs_come_from_corrections_of_poor_answers(assistant):
    for n in range(10):
        make(
            assistant,
            n,
            answer=f"Sorry, no idea about {n}.",
            rating=1,
            corrected_answer=f"Order {n} ships Friday.",
            kind="correction",
        )
    make(assistant, 20, rating=5, helpful=True)  # good answer, no correction → no pair
    make(
        assistant, 21, rating=5, corrected_answer="Polished wording.", kind="correction"
    )  # original was fine
    ds = dataset_build(assistant=assistant, format="preference", options=OPTS)
    assert ds.is_valid, ds.validation_errors
    rows = lines(ds.train_file)
    assert len(rows) == 10
    assert rows[0] == {
        "input": {
            "messages": [
                {"role": "system", "content": "You help shop customers."},
                {"role": "user", "content": "Question 0: where is order 0?"},
            ]
        },
        "preferred_output": [{"role": "assistant", "content": "Order 0 ships Friday."}],
        "non_preferred_output": [{"role": "assistant", "content": "Sorry, no idea about 0."}],
    }
    assert ds.stats["filteredByReason"] == {"no_correction": 1, "original_not_poor": 1}
    assert [check_preference(row, DEFAULT_CONTEXT_LIMIT)[0] for row in rows] == [None] * 10


def test_chat_metadata_stays_out_of_the_uploaded_file(assistant):
    for n in range(10):
        make(assistant, n, rating=5, helpful=True)
    ds = dataset_build(assistant=assistant, options=OPTS)
    assert all(set(r) == {"messages"} for r in lines(ds.train_file))


def test_the_interactions_own_system_prompt_gives_way_and_turns_are_kept(assistant):
    i = Interaction.objects.create(
        assistant=assistant,
        request_id="multi",
        messages=[
            {"role": "system", "content": "App prompt"},
            {"role": "user", "content": "Hi, my parcel is late."},
            {"role": "assistant", "content": "Which order?"},
            {"role": "user", "content": "Order 77."},
        ],
        response="Order 77 arrives tomorrow.",
        created_at=T0,
    )
    Feedback.objects.create(
        interaction=i, assistant=assistant, kind="rating", rating=5, helpful=True, created_at=T0
    )
    ds = dataset_build(assistant=assistant, options={**OPTS, "system_prompt": "Be brief."})
    assert lines(ds.train_file)[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi, my parcel is late."},
        {"role": "assistant", "content": "Which order?"},
        {"role": "user", "content": "Order 77."},
        {"role": "assistant", "content": "Order 77 arrives tomorrow."},
    ]
