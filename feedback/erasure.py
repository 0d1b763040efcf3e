"""Deleting customers' rows in batches, and the keyed hash that names a customer in erasure records.

``interactions_delete_in_batches`` is the one way rows leave this app on purpose: a customer's erasure
and retention (``feedback.retention``) both use it. Each batch is its own short transaction
(``BATCH_SIZE`` interactions with their feedback and whatever refers to that feedback: dataset
provenance, the curation log), so no lock is held for longer than one batch, and ingestion carries on
between batches. A batch deletes rows by primary key only, so repeating it (a retried call, two
erasures of the same customer at once) deletes nothing twice and never fails.

What is deleted rather than anonymised, and why: an interaction holds what the customer wrote and a
feedback row what they thought of it, both personal data, and a row kept "anonymised" would still carry a
timestamp, a model version and an A/B arm that the company's own logs can link back to the customer. So
both are deleted. The aggregates that must survive already live elsewhere, without any link to a person:
job metrics, experiments' analysis snapshots, dataset stats, and (issue 14) the daily rollups.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db import connections, router, transaction
from django.utils.crypto import salted_hmac

from feedback.models import Feedback, Interaction

BATCH_SIZE = 200
MIN_PAUSE_SECONDS = 0.005  # a fair run's shortest pause between batches (SQLite)
_SALT = "trainloop.feedback.erasure.user_ref"


def user_ref_digest(user_ref: str) -> str:
    """Keyed hash (HMAC-SHA256 keyed by SECRET_KEY) of a user reference: equal refs, equal digests; without
    the key the ref cannot be recovered or confirmed by guessing. Rotating SECRET_KEY changes the digests
    of new records (old ones then no longer match a repeated request)."""
    return salted_hmac(_SALT, user_ref, algorithm="sha256").hexdigest()


@dataclass
class Deleted:
    interactions: int = 0
    feedback: int = 0
    other: Counter = field(default_factory=Counter)
    batches: int = 0
    longest_batch_seconds: float = 0.0


_INTERACTION = Interaction._meta.label
_FEEDBACK = Feedback._meta.label


def interactions_delete(ids: Sequence[int]) -> Counter:
    """Delete these interactions and everything that cascades from them, in one transaction.

    Rows per model label, e.g. ``{"feedback.Interaction": 3, "feedback.Feedback": 5,
    "training.DatasetExample": 7}``. The ORM's collector follows every foreign key to Feedback and
    Interaction, including those of apps above this one, without this app importing them.
    """
    if not ids:
        return Counter()
    using = router.db_for_write(Interaction)
    with transaction.atomic(using=using):
        _, per_model = Interaction.objects.using(using).filter(pk__in=list(ids)).delete()
    return Counter({label: n for label, n in per_model.items() if n})


def interactions_delete_in_batches(
    ids: Sequence[int],
    *,
    batch_size: int = BATCH_SIZE,
    before_each: Callable[[list[int]], None] | None = None,
    fair: bool = False,
) -> Deleted:
    """Delete ``ids`` ``batch_size`` at a time, each batch in its own transaction.

    ``before_each(batch)`` runs inside the batch's transaction, before the delete: the caller records what
    the rows were part of (the datasets that contained them) while the references still exist, and
    atomically with their removal.

    ``fair``: on SQLite, pause after each batch for as long as it took. SQLite has one write lock for the
    whole database, and a writer waiting for it polls at growing intervals (its busy timeout), so batches
    that follow each other at once can hold ingestion off for the whole run (measured: one write waited
    0.53 s, the whole pass, behind 50 back-to-back batches; ``python -m bench retention``). The pause
    lets it in between batches, at the price of a run at least twice as long. PostgreSQL locks only the
    deleted rows, which no writer waits for, so it needs no pause.
    """
    result = Deleted()
    using = router.db_for_write(Interaction)
    pause = fair and connections[using].vendor == "sqlite"
    for start in range(0, len(ids), batch_size):
        batch = list(ids[start : start + batch_size])
        began = time.perf_counter()
        with transaction.atomic(using=using):
            if before_each is not None:
                before_each(batch)
            per_model = interactions_delete(batch)
        took = time.perf_counter() - began
        result.longest_batch_seconds = max(result.longest_batch_seconds, took)
        if pause:
            time.sleep(max(took, MIN_PAUSE_SECONDS))
        result.batches += 1
        result.interactions += per_model.pop(_INTERACTION, 0)
        result.feedback += per_model.pop(_FEEDBACK, 0)
        result.other.update(per_model)
    return result
