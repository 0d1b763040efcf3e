"""Retention: an assistant's raw interactions and feedback deleted once they are older than a cut-off.

The cut-off is a local midnight (``retention_cutoff``), so whole days go at once: the dashboard's figures
for a whole day come from the daily rollups alone (``feedback.rollups``), which are only ever added to,
so deleting a day's raw rows leaves every figure for it as it was. Rows are deleted through the same
batched deletion as a customer's erasure (``feedback.erasure.interactions_delete_in_batches``): each
batch of interactions, with their feedback and whatever refers to it (dataset provenance, the curation
log), is one short transaction, so ingestion carries on between batches.

An interaction older than the cut-off is kept (and deleted by a later pass) while
- the rollups have not counted it or one of its feedback rows yet (id past ``RollupMark``): the pass
  brings the rollups up to date first, so this holds back only rows stored during the pass (a late
  import of old rows), and no figure ever loses a row it has not counted;
- any of its feedback is younger than the cut-off: that feedback is kept its full N days, and it needs
  its interaction;
- the caller says so (``keep_experiments``, ``keep_interactions``): ``training.retention`` keeps the rows
  of a running A/B experiment and the feedback in the dataset of a job in progress until they end.

Rows are found by walking the (assistant, created_at) index from the oldest, a chunk at a time, so a
pass over a million old rows reads each once, and rows kept for one of the reasons above are stepped
over rather than read again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from feedback.erasure import BATCH_SIZE, Deleted, interactions_delete_in_batches
from feedback.models import Feedback, Interaction, RollupMark
from feedback.rollups import local_midnight, rollups_refresh

# Interactions selected per query; deleted BATCH_SIZE at a time.
CHUNK_BATCHES = 10


def retention_cutoff(*, days: int, now: datetime | None = None) -> datetime:
    """The local midnight ``days`` days before today's: rows created before it are due.

    A row is therefore kept at least ``days`` whole days and at most one day more (plus the time until
    the next nightly pass).
    """
    if days < 1:
        raise ValueError("Retention must keep rows at least 1 day.")
    today = timezone.localdate(now) if now is not None else timezone.localdate()
    return local_midnight(today - dt.timedelta(days=days))


@dataclass
class Expired:
    """What ``interactions_expire`` did: the batched deletion's counts, and what it had to keep."""

    cutoff: datetime
    deleted: Deleted = field(default_factory=Deleted)
    kept: int = 0
    complete: bool = True  # False: stopped at the deadline, rows remain for the next pass


def interactions_due(
    *,
    assistant_id: int,
    cutoff: datetime,
    keep_experiments: Collection[int] = (),
    keep_interactions: QuerySet | None = None,
) -> QuerySet[Interaction]:
    """The assistant's interactions that may be deleted now (see the module docstring for what is kept).

    ``keep_interactions``: a query of interaction ids (``.values("...")``) never to delete; it runs in
    the database as a subquery, so this app needs to know nothing of what it selects.
    """
    mark = RollupMark.objects.filter(pk=1).values_list("feedback_id", "interaction_id").first() or (0, 0)
    feedback_mark, interaction_mark = mark
    young_feedback = Feedback.objects.filter(interaction_id=OuterRef("pk")).filter(
        Q(created_at__gte=cutoff) | Q(id__gt=feedback_mark)
    )
    qs = Interaction.objects.filter(
        assistant_id=assistant_id, created_at__lt=cutoff, id__lte=interaction_mark
    ).exclude(Exists(young_feedback))
    if keep_experiments:
        qs = qs.exclude(experiment_id__in=list(keep_experiments))
    if keep_interactions is not None:
        qs = qs.exclude(pk__in=keep_interactions)
    return qs


def interactions_expire(
    *,
    assistant_id: int,
    cutoff: datetime,
    keep_experiments: Collection[int] = (),
    keep_interactions: QuerySet | None = None,
    batch_size: int = BATCH_SIZE,
    should_stop: Callable[[], bool] | None = None,
) -> Expired:
    """Delete the assistant's interactions older than ``cutoff`` (a local midnight) and their feedback.

    The rollups are refreshed first, so every day deleted is in them. ``should_stop`` is asked before
    each chunk (a time budget, work that must not lose rows now): when it says True, ``complete`` says
    False and the next pass carries on. Idempotent: rows are deleted by primary key, so a repeated or
    concurrent pass deletes nothing twice.
    """
    if cutoff != local_midnight(timezone.localtime(cutoff).date()):
        raise ValueError("The cut-off must be a local midnight: the rollups hold whole days only.")
    rollups_refresh()
    result = Expired(cutoff=cutoff)
    due = interactions_due(
        assistant_id=assistant_id,
        cutoff=cutoff,
        keep_experiments=keep_experiments,
        keep_interactions=keep_interactions,
    )
    after: tuple[datetime, int] | None = None
    while True:
        if should_stop is not None and should_stop():
            result.complete = False
            break
        page = due
        if after is not None:
            # Keyset over the (assistant, created_at) index: resumes where the last chunk ended, so rows
            # kept by a reason above are stepped over, never read again.
            page = page.filter(created_at__gte=after[0]).exclude(created_at=after[0], pk__lte=after[1])
        rows = list(
            page.order_by("created_at", "pk").values_list("created_at", "pk")[: batch_size * CHUNK_BATCHES]
        )
        if not rows:
            break
        after = rows[-1]
        deleted = interactions_delete_in_batches([pk for _, pk in rows], batch_size=batch_size, fair=True)
        _add(result.deleted, deleted)
    result.kept = Interaction.objects.filter(assistant_id=assistant_id, created_at__lt=cutoff).count()
    return result


def _add(total: Deleted, part: Deleted) -> None:
    total.interactions += part.interactions
    total.feedback += part.feedback
    total.other.update(part.other)
    total.batches += part.batches
    total.longest_batch_seconds = max(total.longest_batch_seconds, part.longest_batch_seconds)
