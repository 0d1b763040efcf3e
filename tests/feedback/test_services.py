from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from feedback.models import Feedback, is_success
from feedback.services import (
    feedback_correct,
    feedback_set_excluded,
    feedback_submit,
    feedback_submit_batch,
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


def _batch_in_thread(interaction, key, *, outer_transaction=False):
    """Store one keyed item from another thread; returns (thread, errors)."""
    from django.db import transaction

    errors: list[Exception] = []

    def run():
        try:
            if outer_transaction:
                with transaction.atomic():
                    feedback_submit_batch(items=[(interaction, {"rating": 4}, key)])
            else:
                feedback_submit_batch(items=[(interaction, {"rating": 4}, key)])
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _hold_writer_queue():
    """Take the SQLite writers' queue as another process would (its own open file description)."""
    import fcntl
    import os

    fd = os.open(f"{connection.settings_dict['NAME']}-writers", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _release(fd):
    import fcntl
    import os

    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@pytest.mark.django_db(transaction=True)
def test_a_batch_waits_for_its_turn_behind_another_sqlite_writer(assistant):
    interaction = make_interaction(assistant)
    if connection.vendor != "sqlite":
        # PostgreSQL has row-level concurrency: no queue, the batch goes straight in.
        thread, errors = _batch_in_thread(interaction, "k1")
        thread.join(timeout=10)
        assert not thread.is_alive() and not errors
        assert Feedback.objects.filter(idempotency_key="k1").count() == 1
        return
    fd = _hold_writer_queue()
    try:
        thread, errors = _batch_in_thread(interaction, "k1")
        thread.join(timeout=0.5)
        assert thread.is_alive(), "the batch wrote while another writer had the turn"
        assert not Feedback.objects.filter(idempotency_key="k1").exists()
    finally:
        _release(fd)
    thread.join(timeout=10)
    assert not thread.is_alive() and not errors, errors
    assert Feedback.objects.filter(idempotency_key="k1").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_batch_inside_a_callers_transaction_does_not_queue(assistant):
    # Queuing while the caller's transaction may hold SQLite's write lock could deadlock: it must not.
    interaction = make_interaction(assistant)
    fd = _hold_writer_queue() if connection.vendor == "sqlite" else None
    try:
        thread, errors = _batch_in_thread(interaction, "k2", outer_transaction=True)
        thread.join(timeout=10)
        assert not thread.is_alive(), "the nested batch waited for the writers' queue"
        assert not errors, errors
    finally:
        if fd is not None:
            _release(fd)
        thread.join(timeout=10)
    assert Feedback.objects.filter(idempotency_key="k2").count() == 1


def test_a_batch_is_one_insert_statement_whatever_its_size(assistant):
    from django.test.utils import CaptureQueriesContext

    interaction = make_interaction(assistant)
    items = [(interaction, {"rating": 1 + i % 5, "comment": f"c{i}"}, f"k{i}") for i in range(1000)]
    with CaptureQueriesContext(connection) as queries:
        stored = feedback_submit_batch(items=items)
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    if connection.vendor == "postgresql":
        assert len(inserts) == 1, "PostgreSQL stores a batch with one statement"
    assert stored.created == 1000
    rows = dict(Feedback.objects.values_list("idempotency_key", "id"))
    assert stored.ids == [rows[f"k{i}"] for i in range(1000)], "ids come back in item order"
    assert list(Feedback.objects.order_by("id").values_list("rating", flat=True)[:6]) == [1, 2, 3, 4, 5, 1]


def test_a_batch_replays_stored_keys_and_stores_the_rest_in_item_order(assistant):
    interaction = make_interaction(assistant)
    first = feedback_submit_batch(
        items=[(interaction, {"rating": 5}, "a"), (interaction, {"rating": 4}, "b")]
    )
    again = feedback_submit_batch(
        items=[
            (interaction, {"rating": 3}, None),
            (interaction, {"rating": 4}, "b"),
            (interaction, {"rating": 2}, "c"),
            (interaction, {"rating": 5}, "a"),
            (interaction, {"rating": 1}, None),
        ]
    )
    assert again.created == 3
    assert again.ids[1] == first.ids[1] and again.ids[3] == first.ids[0]
    new = Feedback.objects.in_bulk([again.ids[0], again.ids[2], again.ids[4]])
    assert [new[again.ids[i]].rating for i in (0, 2, 4)] == [3, 2, 1]


def test_a_different_body_under_a_stored_key_stores_nothing_of_the_batch(assistant):
    from feedback.services import IdempotencyConflict

    interaction = make_interaction(assistant)
    feedback_submit_batch(items=[(interaction, {"rating": 5}, "a")])
    with pytest.raises(IdempotencyConflict, match="item 1: idempotency key 'a' was used with a different"):
        feedback_submit_batch(items=[(interaction, {"rating": 4}, "new"), (interaction, {"rating": 1}, "a")])
    assert list(Feedback.objects.values_list("idempotency_key", flat=True)) == ["a"]


def test_keys_are_per_assistant_within_one_batch(assistant):
    from assistants.services import assistant_create

    other = assistant_create(slug="other", name="Other")
    mine, theirs = make_interaction(assistant), make_interaction(other)
    stored = feedback_submit_batch(items=[(mine, {"rating": 5}, "same"), (theirs, {"rating": 5}, "same")])
    assert stored.created == 2 and len(set(stored.ids)) == 2
    again = feedback_submit_batch(items=[(theirs, {"rating": 5}, "same"), (mine, {"rating": 5}, "same")])
    assert again.created == 0 and again.ids == stored.ids[::-1]


@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_batches_store_one_row_per_key(assistant):
    """Batches racing over the same keys: each key gets one row, and every batch answers its ids."""
    threads_n = 4 if connection.vendor == "sqlite" else 6
    interaction = make_interaction(assistant)
    barrier = threading.Barrier(threads_n)
    results, errors = [], []

    def worker(n):
        # Each batch shares 50 keys with every other one and has 50 of its own.
        items = [(interaction, {"rating": 1 + i % 5}, f"shared-{i}") for i in range(50)]
        items += [(interaction, {"rating": 3}, f"own-{n}-{i}") for i in range(50)]
        try:
            barrier.wait(timeout=10)
            results.append(feedback_submit_batch(items=items))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert Feedback.objects.filter(idempotency_key__startswith="shared-").count() == 50
    assert Feedback.objects.count() == 50 + 50 * threads_n
    assert sum(r.created for r in results) == 50 + 50 * threads_n
    assert len({tuple(r.ids[:50]) for r in results}) == 1, "every batch answers the same ids for shared keys"


def test_a_batch_stores_any_text_and_value_exactly(assistant):
    interaction = make_interaction(assistant)
    texts = ['say "hi"', 'back\\slash \\" mix', "{a,b}", "NULL", "", "tab\tnew\nline", "émoji 🙂", "a,b;c'd"]
    items = [
        (interaction, {"comment": text, "helpful": (None, True, False)[i % 3], "confidence": i / 7}, None)
        for i, text in enumerate(texts)
    ]
    items.append(
        (interaction, {"rating": 5, "accuracy": 1, "suggestion": "x" * 5000, "confidence": 1e-05}, None)
    )
    stored = feedback_submit_batch(items=items)
    rows = Feedback.objects.in_bulk(stored.ids)
    assert [rows[pk].comment for pk in stored.ids[:-1]] == texts
    assert [rows[pk].helpful for pk in stored.ids[:3]] == [None, True, False]
    assert [rows[pk].confidence for pk in stored.ids[:-1]] == [i / 7 for i in range(len(texts))]
    last = rows[stored.ids[-1]]
    assert (last.rating, last.accuracy, last.suggestion, last.confidence) == (5, 1, "x" * 5000, 1e-05)
    assert last.success and not rows[stored.ids[2]].success
