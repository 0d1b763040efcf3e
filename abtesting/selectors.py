"""Reads for experiments: per-arm counts aggregated by the database, lists, detail and daily history.

Over 400 lines because the per-arm tallies, the incremental look and the full recount share one
SQL definition of what counts; a third of it is the explanation below.

What counts, per arm
--------------------
- ``n_assigned``: the units routing sent to the arm, which the SRM check compares with the configured
  split. The unit is what was randomised: a user (counted once, however many interactions they have),
  or, for a request without a user ref (assigned per request), the interaction itself.
- per *unit* (user, or request without a user ref: the unit routing randomised), the unit's rated
  interactions ``n_u`` (feedback that says anything about success, ``SIGNAL_Q``: helpful or a rating), its
  successes ``s_u``, and its ratings (count ``m_u``, sum ``r_u``). **An interaction's first signal
  feedback decides** (first stored, by id), using the one success definition (``feedback.models.SUCCESS_Q``,
  a generated column): it is the customer's reaction to the answer itself, and it never changes once
  counted, so the counts can be kept incrementally (below). A later change of mind does not move it.
- per arm, the sums the user-level analysis needs (``abtesting.statistics.ArmCounts``): units with
  feedback, ``sum n_u``, ``sum s_u``, ``sum n_u^2``, ``sum s_u^2``, ``sum n_u s_u`` and the same for ratings.
  Squares are not additive, so each unit's running totals are kept in ``ExperimentUnit`` and a look adds
  ``(n + a)^2 - n^2`` for a unit that gained ``a`` (``abtesting.services.experiment_tally_refresh``).

The SRM check counts units too: counting interactions, a chance imbalance of a few percent in how users
fell into the arms is multiplied by their repeat visits, and a test that assumes independent units then
flags "sample ratio mismatch" on perfectly healthy assignment.

Incremental counting
--------------------
``unit_deltas`` takes id bounds: the analysis keeps the totals and two watermarks (the last interaction id
and feedback id counted) on the experiment, and each look adds only rows stored since, so a look at an
experiment with a million interactions touches the last hour's rows (``tasks.refresh_tallies`` runs
hourly), not a million (see ``bench/abtest.py``). This is exact because of the first-feedback rule above:
a new feedback row counts if and only if no earlier signal feedback of its interaction exists, whatever
batch that earlier row was counted in. It assumes feedback's ``helpful``/``rating`` are never edited and
rows never deleted (the product only adds feedback); ``experiment_arm_counts`` recounts from scratch.
A look's new rows are grouped per unit in SQL (one GROUP BY over the new feedback), then merged into the
units' totals: a look at 1M interactions from 100k users touches the last hour's units, not 100k
(``python -m bench abtest``).
Watermarks stop short of the last ``TALLY_LAG`` of rows so that, on PostgreSQL, a transaction that took
an id earlier but commits later is not skipped (on SQLite writes are serial anyway).
"""

from __future__ import annotations

import math
from dataclasses import fields as dataclass_fields
from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
    prefetch_related_objects,
)
from django.utils import timezone

from abtesting.assignment import CONTROL, VARIANT
from abtesting.models import Experiment, ExperimentSnapshot, ExperimentUnit, ExperimentVariant
from abtesting.statistics import (
    ArmCounts,
    detectable_lift,
    inflation_factor,
    required_units,
    unit_variance,
)
from assistants.models import Assistant
from feedback.models import SIGNAL_Q, Feedback, Interaction

ARMS = (CONTROL, VARIANT)  # an A/B test's arms; a multi-arm experiment's are ``Experiment.arms``
TALLY_LAG = timedelta(minutes=2)


SUMS = tuple(f.name for f in dataclass_fields(ArmCounts))


def empty_counts(arms: tuple[str, ...] = ARMS) -> dict[str, dict[str, float]]:
    """Per arm, every ``ArmCounts`` field at 0 (the tally's starting point)."""
    return {arm: dict.fromkeys(SUMS, 0) for arm in arms}


def unit_key(user_ref: str, interaction_id: int) -> str:
    """The randomised unit: the user, or the request itself when it has no user reference."""
    return f"u:{user_ref}" if user_ref else f"i:{interaction_id}"


def unit_deltas(
    *,
    experiment_id: int,
    assistant_id: int,
    interaction_floor: int = 0,
    interaction_after: int = 0,
    interaction_upto: int | None = None,
    feedback_after: int = 0,
    feedback_upto: int | None = None,
    arms: tuple[str, ...] = ARMS,
) -> tuple[dict[str, int], list[tuple[str, str, int, int, int, float]]]:
    """(new assigned units per arm, per-unit additions ``(arm, unit, n, successes, rating_n, rating_sum)``).

    Interactions with id in ``(max(interaction_floor, interaction_after), interaction_upto]`` add to the
    assigned units their users not seen in the experiment (above the floor) before, plus each interaction
    without a user ref; feedback with id in ``(feedback_after, feedback_upto]`` on interactions above
    ``interaction_floor`` (a rollout stage's start) counts when it is its interaction's first signal / first
    rating. No bounds: the whole experiment. One query per arm (``arms``: the experiment's), plus one.

    Only the experiment's own assistant's interactions count: ``experiment_id`` and ``arm`` are whatever the
    client logged, so without ``assistant_id`` one assistant's key could rig another assistant's test.
    """
    assigned = dict.fromkeys(arms, 0)
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
    for arm in arms:
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
        assigned[arm] = units["users"] + units["anonymous"]

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
    ).filter(exp=experiment_id, asst=assistant_id, interaction__arm__in=arms)
    if interaction_floor:
        feedback = feedback.filter(iid__gt=interaction_floor)
    # One pass over the new feedback, grouped per unit; "first" is decided per row by the correlated
    # NOT EXISTS, which uses the feedback.interaction_id index (+ rowid): one index probe per new row.
    first_signal = Q(~Exists(earlier_signal))
    first_rating = Q(~Exists(earlier_rating), rating__isnull=False)
    rows = (
        feedback.filter(SIGNAL_Q)
        .values(
            arm=F("interaction__arm"),
            user=F("interaction__user_ref"),
            anonymous=Case(When(interaction__user_ref="", then=F("interaction_id")), default=Value(0)),
        )
        .annotate(
            n=Count("id", filter=first_signal),
            successes=Count("id", filter=first_signal & Q(success=True)),
            rating_n=Count("id", filter=first_rating),
            rating_sum=Sum("rating", filter=first_rating),
        )
        .order_by()
        # Tuples, not dicts: ~1,400 rows per hourly look at 1M interactions.
        .values_list("arm", "user", "anonymous", "n", "successes", "rating_n", "rating_sum")
    )
    deltas = [
        (arm, unit_key(user, anonymous), n, successes, rating_n, float(rating_sum or 0))
        for arm, user, anonymous, n, successes, rating_n, rating_sum in rows
        if n or rating_n
    ]
    return assigned, deltas


def unit_totals(*, experiment_id: int, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
    """The stored ``(n, successes, rating_n, rating_sum)`` of these (arm, unit) pairs (absent: new unit)."""
    out: dict[tuple[str, str], tuple] = {}
    for arm in sorted({a for a, _ in keys}):
        units = sorted({unit for a, unit in keys if a == arm})
        # Per arm, so (experiment, arm, unit) is an exact probe of the unique index (without the arm the
        # database scans the experiment's every unit for each one); chunks keep each IN list well below
        # SQLite's bound on query parameters.
        for start in range(0, len(units), 2000):
            rows = ExperimentUnit.objects.filter(
                experiment_id=experiment_id, arm=arm, unit__in=units[start : start + 2000]
            ).values_list("unit", "n", "successes", "rating_n", "rating_sum")
            for unit, *values in rows:
                out[(arm, unit)] = tuple(values)
    return out


def add_unit_deltas(
    counts: dict[str, dict[str, float]],
    deltas: list[tuple[str, str, int, int, int, float]],
    previous: dict[tuple[str, str], tuple],
) -> list[tuple[str, str, int, int, int, float]]:
    """Add per-unit additions to the arms' sums in place; return the units' new totals.

    Pure arithmetic (no queries): ``previous`` holds each unit's totals before, from ``unit_totals``.
    A unit's square grows by ``(n + a)^2 - n^2``, which is why the previous totals are needed.
    """
    totals = []
    for arm, unit, dn, ds, dm, dr in deltas:
        n0, s0, m0, r0 = previous.get((arm, unit), (0, 0, 0, 0.0))
        n1, s1, m1, r1 = n0 + dn, s0 + ds, m0 + dm, r0 + dr
        a = counts[arm]
        a["units"] += n0 == 0 and n1 > 0
        a["n"] += dn
        a["successes"] += ds
        a["n_sq"] += n1 * n1 - n0 * n0
        a["s_sq"] += s1 * s1 - s0 * s0
        a["ns"] += n1 * s1 - n0 * s0
        a["rating_units"] += m0 == 0 and m1 > 0
        a["rating_n"] += dm
        a["rating_sum"] += dr
        a["rating_n_sq"] += m1 * m1 - m0 * m0
        a["rating_sum_sq"] += r1 * r1 - r0 * r0
        a["rating_cross"] += m1 * r1 - m0 * r0
        totals.append((arm, unit, n1, s1, m1, r1))
    return totals


def to_arm_counts(values: dict[str, float]) -> ArmCounts:
    return ArmCounts(
        **{
            name: (float(values.get(name, 0)) if isinstance(default, float) else int(values.get(name, 0)))
            for name, default in ((f.name, f.default) for f in dataclass_fields(ArmCounts))
        }
    )


def experiment_counts_by_arm(experiment: Experiment) -> dict[str, ArmCounts]:
    """Every arm's counts, from scratch over the experiment (the current stage, for a rollout)."""
    arms = experiment.arms
    assigned, deltas = unit_deltas(
        experiment_id=experiment.pk,
        assistant_id=experiment.assistant_id,
        interaction_floor=int((experiment.tally or {}).get("interaction_floor", 0)),
        arms=arms,
    )
    counts = empty_counts(arms)
    for arm in arms:
        counts[arm]["n_assigned"] = assigned[arm]
    add_unit_deltas(counts, deltas, {})
    return {arm: to_arm_counts(counts[arm]) for arm in arms}


def experiment_arm_counts(experiment: Experiment) -> tuple[ArmCounts, ArmCounts]:
    """(control, variant) counted from scratch over the experiment (the current stage, for a rollout)."""
    counts = experiment_counts_by_arm(experiment)
    return counts[CONTROL], counts[VARIANT]


def pooled_counts(arms: list[ArmCounts]) -> ArmCounts:
    """Several arms' sums as one arm (every field adds): a multi-arm plan's blinded, pooled input."""
    return ArmCounts(**{name: sum(getattr(a, name) for a in arms) for name in SUMS})


def traffic_profile(
    *, assistant: Assistant, days: int = 14, now: datetime | None = None
) -> tuple[ArmCounts, float] | None:
    """The assistant's recent rated traffic: (per-unit sums as one arm, units per day), or None if none.

    The planning input before an experiment has data of its own: how many units a day can feed a test and
    how their outcomes vary (within-user correlation included). One GROUP BY over ``days`` of feedback.
    """
    now = now or timezone.now()
    since = now - timedelta(days=days)
    earlier_signal = Feedback.objects.filter(
        SIGNAL_Q, interaction_id=OuterRef("interaction_id"), id__lt=OuterRef("id")
    )
    rows = (
        Feedback.objects.filter(SIGNAL_Q, assistant=assistant, created_at__gte=since)
        .filter(~Exists(earlier_signal))
        .values(
            user=F("interaction__user_ref"),
            anonymous=Case(When(interaction__user_ref="", then=F("interaction_id")), default=Value(0)),
        )
        .annotate(n=Count("id"), successes=Count("id", filter=Q(success=True)))
        .order_by()
    )
    counts = {CONTROL: dict.fromkeys(SUMS, 0)}
    add_unit_deltas(
        counts,
        [(CONTROL, unit_key(r["user"], r["anonymous"]), r["n"], r["successes"], 0, 0.0) for r in rows],
        {},
    )
    if not counts[CONTROL]["units"]:
        return None
    first = Feedback.objects.filter(assistant=assistant, created_at__gte=since).order_by("created_at").first()
    span = max(1.0, (now - first.created_at).total_seconds() / 86400) if first is not None else float(days)
    return to_arm_counts(counts[CONTROL]), counts[CONTROL]["units"] / span


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


EXTRA_VARIANTS = Prefetch("extra_variants", queryset=ExperimentVariant.objects.select_related("version"))


def extra_variants_fetch(experiments: list[Experiment]) -> list[Experiment]:
    """Fetch the further variants of the multi-arm experiments among these, in one query (none when they
    are all A/B tests), so ``Experiment.arm_versions`` costs no query per row."""
    prefetch_related_objects([e for e in experiments if e.is_multi_arm], EXTRA_VARIANTS)
    return experiments


def experiment_list(
    *,
    assistant: Assistant | None = None,
    assistant_ids: list[int] | None = None,
    status: str | None = None,
    purpose: str | None = None,
    prefetch: bool = False,
) -> QuerySet[Experiment]:
    """Experiments, newest first, with every version they name (further variants: ``extra_variants_fetch``,
    or ``prefetch`` for an API page)."""
    qs = Experiment.objects.select_related("assistant", "control", "variant", "winner", "stopped_by")
    if prefetch:
        qs = qs.prefetch_related(EXTRA_VARIANTS)
    if assistant is not None:
        qs = qs.filter(assistant=assistant)
    if assistant_ids is not None:
        qs = qs.filter(assistant_id__in=assistant_ids)
    if status:
        qs = qs.filter(status=status)
    if purpose:
        qs = qs.filter(purpose=purpose)
    return qs.order_by("-started_at", "-id")


def experiment_get(*, experiment_id: int) -> Experiment | None:
    experiment = (
        Experiment.objects.select_related("assistant", "control", "variant", "winner", "stopped_by")
        .filter(pk=experiment_id)
        .first()
    )
    # Only a multi-arm experiment has further variants: an A/B test's page costs no query for them.
    return extra_variants_fetch([experiment])[0] if experiment is not None else None


def experiment_running(*, assistant: Assistant) -> Experiment | None:
    return Experiment.objects.filter(assistant=assistant, status=Experiment.Status.RUNNING).first()


def experiment_results_for(*, experiment: Experiment, version_id: int | None) -> dict[str, Any]:
    """The seed's ``abTestResults`` of the arm that served ``version_id`` (its own figures against the
    control), from the last stored analysis.

    A two-arm test has one such arm. A multi-arm test's headline figures describe its winner, else its best
    arm; a job whose candidate neither won nor led must keep its candidate's figures, since those are the
    version a reviewer approves and whose success rate becomes the deployment's baseline.
    """
    analysis = experiment.last_analysis or {}
    results = dict(analysis.get("ab_test_results") or {})
    by_arm = analysis.get("ab_test_results_by_arm") or {}
    if not experiment.is_multi_arm or not by_arm:
        return results
    for arm, version in experiment.arm_versions():
        if version.pk == version_id and arm in by_arm:
            return dict(by_arm[arm])
    return results


def experiment_history(*, experiment: Experiment) -> list[dict[str, Any]]:
    """One point per day (the day's last analysis) for the history chart.

    A multi-arm experiment's points also carry ``arm_rates`` (every arm's success rate, in arm order) and
    ``arm``: the arm the seed-style figures are of (the winner, or the best arm that day).
    """
    arms = experiment.arms
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
        if experiment.is_multi_arm:
            points[-1]["arm"] = results.get("arm")
            points[-1]["arm_rates"] = [_arm_rate(analysis, arm) for arm in arms]
    return points


def _arm_rate(analysis: Any, arm: str) -> float | None:
    """An arm's success rate in a stored multi-arm analysis (None where it has none)."""
    if not isinstance(analysis, dict):
        return None
    if arm == CONTROL:
        return (analysis.get("control") or {}).get("rate")
    return (((analysis.get("arms") or {}).get(arm) or {}).get("summary") or {}).get("rate")


def power_plan(
    *,
    assistant: Assistant,
    traffic_split: float,
    max_duration_days: float,
    significance_level: float,
    min_improvement: float,
    power: float = 0.8,
    look_interval_minutes: int = 1440,
    now: datetime | None = None,
) -> dict[str, Any]:
    """What an A/B test with these settings can detect at the assistant's current traffic.

    The same sample-size formula as the test (pooled, per user, inflated for the group-sequential design
    of one look per ``look_interval_minutes`` up to ``max_duration_days``), fed with the last 14 days of
    rated traffic: the lift detectable
    with ``power`` by ``max_duration_days``, the users the plan needs for ``min_improvement``, and a
    warning when the duration cannot reach it.
    """
    profile = traffic_profile(assistant=assistant, now=now)
    out: dict[str, Any] = {
        "units_per_day": None,
        "success_rate": None,
        "detectable_lift": None,
        "required_units": None,
        "days_needed": None,
        "warning": "",
    }
    if profile is None:
        out["warning"] = (
            "No rated traffic in the last 14 days: the power of an A/B test cannot be planned yet."
        )
        return out
    counts, per_day = profile
    pooled = unit_variance(counts, ArmCounts())
    if pooled is None:
        out["warning"] = (
            "Too little rated traffic (or every outcome the same) to plan the power of an A/B test."
        )
        return out
    p, unit_var = pooled
    looks = max(1, math.ceil(max_duration_days * 1440 / max(1, look_interval_minutes) - 1e-9))
    design = {
        "unit_var": unit_var,
        "split": traffic_split,
        "alpha": significance_level,
        "power": power,
        "inflation": inflation_factor(significance_level, looks, power),
    }
    detectable = detectable_lift(p, per_day * max_duration_days, **design)
    required = required_units(p, min_improvement, **design)
    out.update(
        units_per_day=per_day,
        success_rate=p,
        detectable_lift=detectable,
        required_units=required,
        days_needed=required / per_day if required and per_day else None,
    )
    if detectable is None or detectable > min_improvement:
        reach = "no lift" if detectable is None else f"only a lift of {detectable:+.1%} or more"
        needed = f"about {out['days_needed']:.0f} days" if out["days_needed"] else "more traffic"
        out["warning"] = (
            f"At the current traffic ({per_day:.0f} users with feedback a day) a "
            f"{max_duration_days:g}-day test detects {reach} with {power:.0%} power, not the "
            f"{min_improvement:.0%} minimum improvement: it needs {needed}, or a larger minimum improvement."
        )
    return out
