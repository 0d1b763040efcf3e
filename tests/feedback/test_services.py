from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from feedback.models import Feedback, is_success
from feedback.services import (
    feedback_correct,
    feedback_set_excluded,
    feedback_submit,
    interaction_log,
    should_ask_for_feedback,
)


def make_interaction(assistant, request_id="r1"):
    return interaction_log(
        assistant=assistant, request_id=request_id, messages=[{"role": "user", "content": "q"}], response="a"
    ).interaction


@pytest.mark.parametrize(
    ("helpful", "rating", "expected"),
    [
        (True, None, True),
        (None, 4, True),
        (None, 5, True),
        (False, 3, False),
        (None, None, False),
        (False, 4, True),
    ],
)
def test_one_definition_of_success_in_python_and_sql(assistant, helpful, rating, expected):
    interaction = make_interaction(assistant)
    row = Feedback.objects.create(
        interaction=interaction, assistant=assistant, kind="rating", helpful=helpful, rating=rating
    )
    row.refresh_from_db()
    assert row.success is expected
    assert is_success(helpful=helpful, rating=rating) is expected


def test_sampling_is_deterministic_per_interaction(assistant):
    assistant.feedback_sample_rate = 0.5
    assistant.save()
    asked = [should_ask_for_feedback(interaction=make_interaction(assistant, f"r{i}")) for i in range(400)]
    assert 150 < sum(asked) < 250  # ~50% sampled


def test_curation_is_logged(assistant, alice):
    interaction = make_interaction(assistant)
    row = feedback_submit(interaction=interaction, data={"helpful": False}).feedback
    feedback_set_excluded(feedback=row, excluded=True, user=alice)
    feedback_correct(feedback=row, corrected_answer="  The right answer. ", user=alice)
    row.refresh_from_db()
    assert row.excluded_from_training and row.corrected_answer == "The right answer."
    assert list(row.curation_log.values_list("action", "user__username")) == [
        ("correct", "alice"),
        ("exclude", "alice"),
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_store_one_row(assistant):
    """The idempotency race: the unique constraint decides, the loser replays the winner's row."""
    if connection.vendor == "sqlite":
        threads_n = 4  # SQLite serialises writers; still exercises the IntegrityError path
    else:
        threads_n = 8
    interaction = make_interaction(assistant)
    barrier = threading.Barrier(threads_n)
    results, errors = [], []

    def worker():
        try:
            barrier.wait(timeout=10)
            results.append(
                feedback_submit(interaction=interaction, data={"rating": 5}, idempotency_key="same")
            )
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert Feedback.objects.filter(idempotency_key="same").count() == 1
    assert sum(r.created for r in results) == 1
    assert len({r.feedback.pk for r in results}) == 1
