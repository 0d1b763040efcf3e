"""Reads for experiments: per-arm counts aggregated by the database, lists, detail and daily history.

What counts, per arm
--------------------
- ``n_assigned``: the units routing sent to the arm, which the SRM check compares with the configured
  split. The unit is what was randomised: a user (counted once, however many interactions they have),
  or, for a request without a user ref (assigned per request), the interaction itself.
- ``n`` / ``successes``: interactions with feedback that says anything about success (``SIGNAL_Q``:
  helpful or a rating), and of those the successful ones. **An interaction's first signal feedback
  decides** (first stored, by id), using the one success definition (``feedback.models.SUCCESS_Q``, a
  generated column). Why the first: it is the customer's reaction to the answer itself, and it never
  changes once counted, so the counts can be kept incrementally (below) instead of re-aggregating
  millions of rows on every look. A later change of mind does not move the interaction.
- ``rating_n`` / ``rating_sum`` / ``rating_sumsq``: the interaction's first rating (1–5), for the Welch
  t-test on the average rating (the secondary metric).

The unit of analysis for the success rate is the interaction. Assignment is per user, so interactions
of one user are correlated; with many users each contributing a few interactions the effect on the
variance is small, and it is the unit the seed's ``abTestResults`` are stated in. The SRM check cannot
take that shortcut: counting interactions, a chance imbalance of a few percent in how *users* fell
into the arms is multiplied by their repeat visits, and the chi-square (which assumes independent units)
then flags "sample ratio mismatch" on perfectly healthy assignment — with 600 customers returning over
two weeks it did in a few percent of seeded runs, which would block a good deployment.

Incremental counting
--------------------
``arm_counts`` takes id bounds: the analysis keeps the totals and two watermarks (the last interaction id
and feedback id counted) on the experiment, and each look adds only rows stored since, so a look at an
experiment with a million interactions touches the last hour's rows (``tasks.refresh_tallies`` runs
hourly), not a million (see ``bench/abtest.py``). This is exact because of the first-feedback rule above:
a new feedback row counts if and only if no earlier signal feedback of its interaction exists, whatever
batch that earlier row was counted in. It assumes feedback's ``helpful``/``rating`` are never edited and
rows never deleted (the product only adds feedback); ``experiment_arm_counts`` recounts from scratch.
Watermarks stop short of the last ``TALLY_LAG`` of rows so that, on PostgreSQL, a transaction that took
an id earlier but commits later is not skipped (on SQLite writes are serial anyway).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum

from abtesting.assignment import CONTROL, VARIANT
from abtesting.models import Experiment, ExperimentSnapshot
from abtesting.statistics import ArmCounts
from assistants.models import Assistant
from feedback.models import SIGNAL_Q, Feedback, Interaction

ARMS = (CONTROL, VARIANT)
TALLY_LAG = timedelta(minutes=2)


def empty_counts() -> dict[str, list[float]]:
    return {arm: [0, 0, 0, 0, 0.0, 0.0] for arm in ARMS}


def arm_counts(
    *,
    experiment_id: int,
    assistant_id: int,
    interaction_floor: int = 0,
    interaction_after: int = 0,
    interaction_upto: int | None = None,
    feedback_after: int = 0,
    feedback_upto: int | None = None,
) -> dict[str, list[float]]:
    """Per arm ``[n_assigned, n, successes, rating_n, rating_sum, rating_sumsq]`` over id ranges (3 queries).

    Interactions with id in ``(max(interaction_floor, interaction_after), interaction_upto]`` add to
    ``n_assigned`` their users not seen in the experiment (above the floor) before, plus each interaction
    without a user ref; feedback with id in ``(feedback_after, feedback_upto]`` on interactions above
    ``interaction_floor`` (a rollout stage's start) counts when it is its interaction's first signal / first
    rating. No bounds: the whole experiment.

    Only the experiment's own assistant's interactions count: ``experiment_id`` and ``arm`` are whatever the
    client logged, so without ``assistant_id`` one assistant's key could rig another assistant's test.
    """
    out = empty_counts()
    low = max(interaction_floor, interaction_after)
    new_user = ~Q(user_ref="")
    if low > interaction_floor:
        # A user is new to the experiment unless they have an interaction in it up to ``low`` (above the
        # floor): one probe of the (experiment_id, user_ref, id) index per interaction counted.
        # "+ 0" keeps the id and assistant comparisons off the indexes: SQLite would otherwise scan the
        # assistant's rows over the id range for every probe (quadratic in the experiment's size).
        seen = (
            Interaction.objects.filter(experiment_id=experiment_id, user_ref=OuterRef("user_ref"))
            .alias(iid=F("id") + 0, asst=F("assistant_id") + 0)
            .filter(asst=assistant_id, iid__gt=interaction_floor, iid__lte=low)
        )
        new_user &= ~Exists(seen)
    for arm in ARMS:
        # Per arm, so both equalities and the id range fit the (experiment_id, arm) index (+ rowid).
        qs = Interaction.objects.filter(
            experiment_id=experiment_id, arm=arm, assistant_id=assistant_id, id__gt=low
        )
        if interaction_upto is not None:
            qs = qs.filter(id__lte=interaction_upto)
        units = qs.aggregate(
            users=Count("user_ref", distinct=True, filter=new_user),
            anonymous=Count("id", filter=Q(user_ref="")),
        )
        out[arm][0] = units["users"] + units["anonymous"]

    earlier_signal = Feedback.objects.filter(
        SIGNAL_Q, interaction_id=OuterRef("interaction_id"), id__lt=OuterRef("id")
    )
    earlier_rating = Feedback.objects.filter(
        rating__isnull=False, interaction_id=OuterRef("interaction_id"), id__lt=OuterRef("id")
    )
    feedback = Feedback.objects.filter(id__gt=feedback_after)
    if feedback_upto is not None:
        feedback = feedback.filter(id__lte=feedback_upto)
    # "+ 0" keeps these comparisons off the indexes: SQLite has no statistics and would otherwise drive the
    # join from the experiment's whole (experiment_id, arm) index instead of the new feedback ids.
    feedback = feedback.alias(
        exp=F("interaction__experiment_id") + 0,
        asst=F("interaction__assistant_id") + 0,
        iid=F("interaction_id") + 0,
    ).filter(exp=experiment_id, asst=assistant_id, interaction__arm__in=ARMS)
    if interaction_floor:
        feedback = feedback.filter(iid__gt=interaction_floor)
    # One pass over the new feedback; "first" is decided per row by the correlated NOT EXISTS, which uses
    # the feedback.interaction_id index (+ rowid) and so costs one index probe per new row.
    first_signal = Q(~Exists(earlier_signal))
    first_rating = Q(~Exists(earlier_rating), rating__isnull=False)
    rows = (
        feedback.filter(SIGNAL_Q)
        .values("interaction__arm")
        .annotate(
            n=Count("id", filter=first_signal),
            successes=Count("id", filter=first_signal & Q(success=True)),
            rating_n=Count("id", filter=first_rating),
            rating_sum=Sum("rating", filter=first_rating),
            rating_sumsq=Sum(F("rating") * F("rating"), filter=first_rating),
        )
        .order_by()
    )
    for row in rows:
        out[row["interaction__arm"]][1:] = [
            row["n"],
            row["successes"],
            row["rating_n"],
            float(row["rating_sum"] or 0),
            float(row["rating_sumsq"] or 0),
        ]
    return out


def to_arm_counts(values: list[float]) -> ArmCounts:
    n_assigned, n, successes, rating_n, rating_sum, rating_sumsq = values
    return ArmCounts(
        int(n_assigned), int(n), int(successes), int(rating_n), float(rating_sum), float(rating_sumsq)
    )


def experiment_arm_counts(experiment: Experiment) -> tuple[ArmCounts, ArmCounts]:
    """(control, variant) counted from scratch over the experiment (the current stage, for a rollout)."""
    counts = arm_counts(
        experiment_id=experiment.pk,
        assistant_id=experiment.assistant_id,
        interaction_floor=int((experiment.tally or {}).get("interaction_floor", 0)),
    )
    return to_arm_counts(counts[CONTROL]), to_arm_counts(counts[VARIANT])


def id_watermarks(*, now: datetime, lag: timedelta = TALLY_LAG) -> tuple[int, int]:
    """(interaction id, feedback id) of the newest rows stored at least ``lag`` before ``now`` (0 if none)."""
    cutoff = now - lag
    marks = []
    for model in (Interaction, Feedback):
        # The created_at index answers this from its last entry; no scan.
        last = (
            model.objects.filter(created_at__lte=cutoff)
            .order_by("-created_at")
            .values_list("id", flat=True)[:1]
        )
        marks.append(last[0] if last else 0)
    return marks[0], marks[1]


def max_ids() -> tuple[int, int]:
    """The newest interaction and feedback ids right now (a rollout stage's starting line)."""
    ids = []
    for model in (Interaction, Feedback):
        last = model.objects.order_by("-id").values_list("id", flat=True)[:1]
        ids.append(last[0] if last else 0)
    return ids[0], ids[1]


def experiment_list(
    *, assistant: Assistant | None = None, assistant_ids: list[int] | None = None, status: str | None = None
) -> QuerySet[Experiment]:
    qs = Experiment.objects.select_related("assistant", "control", "variant")
    if assistant is not None:
        qs = qs.filter(assistant=assistant)
    if assistant_ids is not None:
        qs = qs.filter(assistant_id__in=assistant_ids)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-started_at", "-id")


def experiment_get(*, experiment_id: int) -> Experiment | None:
    return (
        Experiment.objects.select_related("assistant", "control", "variant", "stopped_by")
        .filter(pk=experiment_id)
        .first()
    )


def experiment_running(*, assistant: Assistant) -> Experiment | None:
    return Experiment.objects.filter(assistant=assistant, status=Experiment.Status.RUNNING).first()


def experiment_history(*, experiment: Experiment) -> list[dict[str, Any]]:
    """One point per day (the day's last analysis) for the history chart."""
    points = []
    for day, analysis in ExperimentSnapshot.objects.filter(experiment=experiment).values_list(
        "day", "analysis"
    ):
        results = analysis.get("ab_test_results", {}) if isinstance(analysis, dict) else {}
        points.append(
            {
                "day": day.isoformat(),
                "control_success_rate": results.get("controlSuccessRate"),
                "variant_success_rate": results.get("variantSuccessRate"),
                "improvement": results.get("improvement"),
                "ci": results.get("ci"),
                "sample_size": results.get("sampleSize"),
                "sequential_p_value": results.get("sequentialPValue"),
                "verdict": analysis.get("verdict") if isinstance(analysis, dict) else None,
            }
        )
    return points
