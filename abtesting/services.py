"""Writes for experiments: start, tally, analyse, decide, stop. Progressive rollouts: ``abtesting.rollouts``.

Over 400 lines because an experiment's life cycle shares one tally format, one analysis record and one
guarded conclusion (``experiment_conclude``); the pure parts live in ``statistics``, ``assignment`` and
``formatting``.

Every state change is one conditional UPDATE on ``status="running"`` (plus, for a rollout stage, the stage
index), so a retried task, two workers or a double click can never conclude, stop or advance an experiment
twice; the loser sees 0 rows updated and does nothing. When an experiment leaves ``running``,
``abtesting.signals.experiment_concluded`` is sent after the commit (the training job listens).

Decisions (``experiment_decide``), applied to the analysis of ``abtesting.statistics.analyse`` at a planned
look (``next_look``: at most one per look interval, ``Experiment.look_interval_minutes``, a day by default;
information fraction = users with feedback / the plan's maximum):

- ``invalid_srm``: the arms' assigned users do not match the configured split (always-valid sequential SRM
  p < 0.001, at any look). The assignment is broken, so nothing measured can be trusted: concluded
  ``invalid_srm`` at once; the training job must not deploy on it.
- fewer than ``min_sample_size`` users with feedback in either arm: no decision (keep running).
- the test significant and worse (and the decision interval of the lift below 0): stopped early,
  ``variant_worse``; routing ignores a concluded experiment, so all traffic is back on the control (the
  live version) from the next request.
- the test significant and better (and the decision interval above 0): ``variant_better``. When the test
  and the interval disagree (small samples) it keeps running.
- the final look (``max_duration_days`` passed, or the planned users reached) without significance:
  ``no_difference`` when the decision interval of the relative lift lies within ±``min_improvement`` (any
  real effect is too small to matter), else ``inconclusive`` (more data was needed).
- ``max_duration_days`` passed without ``min_sample_size`` per arm: ``inconclusive`` (not enough feedback).

A multi-arm test (``experiment_start(extra_variants=...)``: a control and up to four variants with equal
shares) is counted per arm the same way and analysed by ``abtesting.multiarm.analyse_multi`` (Holm over the
arms inside the same plan, whose information is every arm's units); an arm found worse at a planned look
is dropped (routing stops sending users to it), and the decisions and their reasons are ``abtesting.arms``'s.
A ``variant_better`` decision records ``Experiment.winner`` (an A/B test's variant, or the winning arm's).

Analyses between planned looks (``experiment_interim``: the dashboard, the API) are interim: shown with the
always-valid confidence sequence, never decided on. A person's stop is not a decision either: the stored
analysis then reads "stopped early by X: no decision" (``Experiment.outcome``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from abtesting import arms, selectors, statistics
from abtesting.assignment import CONTROL, MAX_VARIANTS, arm_names
from abtesting.exceptions import ExperimentBusy, ExperimentError, ExperimentNotRunning
from abtesting.formatting import arm_rate, signed_pct
from abtesting.models import (
    MAX_PLANNED_LOOKS,
    Experiment,
    ExperimentSnapshot,
    ExperimentUnit,
    ExperimentVariant,
)
from abtesting.multiarm import analyse_multi, required_units_multi
from abtesting.signals import experiment_concluded
from abtesting.statistics import SRM_THRESHOLD, Analysis, ArmCounts, Look, analyse
from assistants.models import Assistant, Deployment, ModelVersion
from assistants.services import deployment_make_live

logger = logging.getLogger(__name__)

DAY_MINUTES = 1440  # the default look interval: one planned look a day


# --------------------------------------------------------------------------- start


def settings_check(
    *,
    assistant: Assistant,
    control: ModelVersion,
    variant: ModelVersion,
    traffic_split: float,
    min_sample_size: int,
    max_duration_days: float,
    significance_level: float,
    min_improvement: float,
    allow_full_split: bool = False,
) -> None:
    if control.assistant_id != assistant.pk or variant.assistant_id != assistant.pk:
        raise ExperimentError(f"Both versions must belong to assistant '{assistant.slug}'.")
    if control.pk == variant.pk:
        raise ExperimentError(
            f"Control and variant are the same version ('{control.name}'); pick two versions."
        )
    upper_ok = traffic_split <= 1.0 if allow_full_split else traffic_split < 1.0
    if not (0.0 < traffic_split and upper_ok):
        raise ExperimentError(
            f"traffic_split must be between 0 and 1 (the variant's share), got {traffic_split}."
        )
    if min_sample_size < 1:
        raise ExperimentError("min_sample_size must be at least 1 interaction with feedback per arm.")
    if not max_duration_days > 0:
        raise ExperimentError("max_duration_days must be positive.")
    if not 0.0 < significance_level < 1.0:
        raise ExperimentError(f"significance_level must be in (0, 1), e.g. 0.05; got {significance_level}.")
    if not min_improvement > 0:
        raise ExperimentError(
            f"min_improvement must be a positive relative lift, e.g. 0.05; got {min_improvement}."
        )


def variants_check(*, assistant: Assistant, control: ModelVersion, variants: list[ModelVersion]) -> None:
    """A multi-arm test's variants: at most ``MAX_VARIANTS``, distinct versions of the assistant, none of
    them the control (each arm must test something the others do not)."""
    if len(variants) > MAX_VARIANTS:
        raise ExperimentError(
            f"A multi-arm test has at most {MAX_VARIANTS} variants besides the control; got {len(variants)} "
            f"({', '.join(v.name for v in variants)}). Test the best {MAX_VARIANTS} offline candidates."
        )
    foreign = [v.name for v in variants if v.assistant_id != assistant.pk]
    if foreign:
        raise ExperimentError(
            f"Every variant must be a version of assistant '{assistant.slug}'; "
            f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not."
        )
    if any(v.pk == control.pk for v in variants):
        raise ExperimentError(
            f"The control '{control.name}' is also listed as a variant; the variants must be other versions."
        )
    seen: set[int] = set()
    for v in variants:
        if v.pk in seen:
            raise ExperimentError(
                f"Version '{v.name}' is listed as a variant twice; each arm must test a different version."
            )
        seen.add(v.pk)


TALLY_VERSION = 2  # per-unit sums (user-level analysis); an older tally is recounted from scratch


def fresh_tally(arms: tuple[str, ...] = selectors.ARMS) -> dict[str, Any]:
    """Counting starts at the rows stored from now on (the experiment's or the rollout stage's start)."""
    interaction_id, feedback_id = selectors.max_ids()
    return {
        "version": TALLY_VERSION,
        "interaction_floor": interaction_id,
        "interaction_upto": interaction_id,
        "feedback_upto": feedback_id,
        **selectors.empty_counts(arms),
    }


def cs_tuning(
    *,
    assistant: Assistant,
    days: float,
    min_sample_size: int,
    now: datetime | None = None,
    variants: int = 1,
) -> int:
    """Units the confidence sequence is tuned for, fixed once at the start (never re-tuned per look).

    The units the assistant's recent traffic would bring in ``days`` (no outcome of the experiment is
    used, so the sequence stays valid), and never fewer than ``min_sample_size`` per arm. A multi-arm
    test's sequences compare the control with one variant: tuned for that pair's share of the traffic.
    """
    profile = selectors.traffic_profile(assistant=assistant, now=now)
    expected = profile[1] * days if profile else 0.0
    if variants > 1:
        expected *= 2 / (variants + 1)
    return max(2 * min_sample_size, round(expected), 10)


def experiment_create(
    *, assistant: Assistant, extra_variants: Sequence[ModelVersion] = (), **fields: Any
) -> Experiment:
    """Create the experiment (and a multi-arm one's further variants) in one transaction."""
    arms = arm_names(1 + len(extra_variants))
    try:
        with transaction.atomic():
            experiment = Experiment.objects.create(
                assistant=assistant,
                tally=fresh_tally(arms),
                variant_count=1 + len(extra_variants),
                **fields,
            )
            ExperimentVariant.objects.bulk_create(
                ExperimentVariant(experiment=experiment, arm=arm, version=version)
                for arm, version in zip(arms[2:], extra_variants, strict=True)
            )
            return experiment
    except IntegrityError:
        running = selectors.experiment_running(assistant=assistant)
        what = (
            f"experiment {running.pk} ({running.purpose}: {running.control} vs {running.variant})"
            if running
            else "an experiment"
        )
        raise ExperimentBusy(
            f"Assistant '{assistant.slug}' already runs {what}; one experiment runs at a time. "
            "Wait for it to conclude or stop it (POST /api/v1/experiments/<id>/stop)."
        ) from None


def experiment_start(
    *,
    assistant: Assistant,
    control: ModelVersion,
    variant: ModelVersion,
    traffic_split: float = 0.5,
    min_sample_size: int = 100,
    max_duration_days: float = 7,
    significance_level: float = 0.05,
    min_improvement: float = 0.05,
    purpose: str = Experiment.Purpose.AB_TEST,
    look_interval_minutes: int = DAY_MINUTES,
    now: datetime | None = None,
    extra_variants: Sequence[ModelVersion] = (),
) -> Experiment:
    """Start an A/B test; raises ``ExperimentBusy`` if one already runs for the assistant (DB constraint).

    ``look_interval_minutes``: the planned looks' cadence (one per interval, ``next_look``).
    ``extra_variants``: a multi-arm test, arms "control", "variant" (``variant``), "variant2", ... (at
    most ``MAX_VARIANTS`` variants in all), with the traffic split equally among all arms: the
    ``traffic_split`` argument is then ignored and stored as the variants' total share k / (k + 1).
    """
    extra_variants = list(extra_variants)
    if extra_variants:
        variants_check(assistant=assistant, control=control, variants=[variant, *extra_variants])
        if purpose != Experiment.Purpose.AB_TEST:
            raise ExperimentError(
                "A progressive rollout ramps up one new version; test several variants in an A/B test."
            )
        k = 1 + len(extra_variants)
        traffic_split = k / (k + 1)
    if int(look_interval_minutes) < 1:
        raise ExperimentError("look_interval_minutes must be at least 1 (one planned look per minute).")
    looks = planned_looks(max_duration_days, int(look_interval_minutes) / DAY_MINUTES)
    if looks > max(MAX_PLANNED_LOOKS, math.ceil(max_duration_days)):
        raise ExperimentError(
            f"{max_duration_days:g} days at one look per {look_interval_minutes} minutes is {looks} planned "
            f"looks; at most {MAX_PLANNED_LOOKS}: lengthen the look interval or shorten the max duration."
        )
    settings_check(
        assistant=assistant,
        control=control,
        variant=variant,
        traffic_split=traffic_split,
        min_sample_size=min_sample_size,
        max_duration_days=max_duration_days,
        significance_level=significance_level,
        min_improvement=min_improvement,
    )
    now = now or timezone.now()
    return experiment_create(
        assistant=assistant,
        extra_variants=extra_variants,
        plan={
            "cs_tuning_n": cs_tuning(
                assistant=assistant,
                days=max_duration_days,
                min_sample_size=min_sample_size,
                now=now,
                variants=1 + len(extra_variants),
            )
        },
        purpose=purpose,
        control=control,
        variant=variant,
        traffic_split=traffic_split,
        min_sample_size=min_sample_size,
        max_duration_days=max_duration_days,
        significance_level=significance_level,
        min_improvement=min_improvement,
        look_interval_minutes=int(look_interval_minutes),
        started_at=now,
    )


# --------------------------------------------------------------------------- counting and analysis


def _empty_tally(floor: int, arms: tuple[str, ...] = selectors.ARMS) -> dict[str, Any]:
    return {
        "version": TALLY_VERSION,
        "interaction_floor": floor,
        "interaction_upto": floor,
        # Feedback on interactions above the floor was stored after them: 0 counts it all.
        "feedback_upto": 0,
        **selectors.empty_counts(arms),
    }


def experiment_tally_refresh(
    *, experiment: Experiment, now: datetime | None = None, lag: timedelta = selectors.TALLY_LAG
) -> dict[str, Any]:
    """Add the rows stored since the last refresh to the experiment's per-unit and per-arm sums.

    The new rows are grouped per unit outside any lock; the merge (each touched unit's previous totals,
    the arms' sums of squares, the watermarks) happens under the experiment's row lock and only if nobody
    refreshed meanwhile (same watermarks), otherwise their result is kept. See ``abtesting.selectors`` for
    why this is exact, and why the newest ``lag`` of rows waits for the next refresh.
    """
    now = now or timezone.now()
    arms = experiment.arms
    tally = experiment.tally or {}
    if tally.get("version") != TALLY_VERSION:
        # Counted per interaction by an older version: recount this experiment (stage) per unit.
        tally = _empty_tally(int(tally.get("interaction_floor", 0)), arms)
    interaction_mark, feedback_mark = selectors.id_watermarks(now=now, lag=lag)
    interaction_mark = max(interaction_mark, tally["interaction_upto"])
    feedback_mark = max(feedback_mark, tally["feedback_upto"])
    if (interaction_mark, feedback_mark) == (tally["interaction_upto"], tally["feedback_upto"]):
        return tally
    assigned, deltas = selectors.unit_deltas(
        experiment_id=experiment.pk,
        assistant_id=experiment.assistant_id,
        interaction_floor=tally["interaction_floor"],
        interaction_after=tally["interaction_upto"],
        interaction_upto=interaction_mark,
        feedback_after=tally["feedback_upto"],
        feedback_upto=feedback_mark,
        arms=arms,
    )
    with transaction.atomic():
        current = Experiment.objects.select_for_update().only("tally").get(pk=experiment.pk).tally or {}
        marks = ("interaction_upto", "feedback_upto", "interaction_floor")
        if current.get("version") == TALLY_VERSION and tuple(current.get(m, 0) for m in marks) != tuple(
            tally[m] for m in marks
        ):
            experiment.tally = current  # a concurrent refresh (or a new rollout stage) won: use its counts
            return current
        if current.get("version") != TALLY_VERSION:
            ExperimentUnit.objects.filter(experiment_id=experiment.pk).delete()
        zero = selectors.empty_counts((CONTROL,))[CONTROL]
        counts = {arm: dict(tally.get(arm) or zero) for arm in arms}
        for arm in arms:
            counts[arm]["n_assigned"] += assigned[arm]
        previous = selectors.unit_totals(
            experiment_id=experiment.pk, keys=[(arm, unit) for arm, unit, *_ in deltas]
        )
        totals = selectors.add_unit_deltas(counts, deltas, previous)
        _units_upsert(experiment.pk, totals)
        new = {
            "version": TALLY_VERSION,
            "interaction_floor": tally["interaction_floor"],
            "interaction_upto": interaction_mark,
            "feedback_upto": feedback_mark,
            **counts,
        }
        Experiment.objects.filter(pk=experiment.pk).update(tally=new)
    experiment.tally = new
    return new


def _units_upsert(experiment_id: int, totals: list[tuple[str, str, int, int, int, float]]) -> None:
    """Store the touched units' new totals: INSERT ... ON CONFLICT DO UPDATE.

    Plain SQL rather than ``bulk_create(update_conflicts=True)``: the ORM spent ~0.15 ms of Python per
    row building and quoting it, nearly half of an hourly look at 1M interactions (1,400 users touched).
    On PostgreSQL one statement over ``unnest`` of the columns: executemany's 1,400 upserts took
    70–120 ms there, half of a look (SQLite's in-process statements cost a few ms).
    """
    if not totals:
        return
    table = ExperimentUnit._meta.db_table
    conflict = (
        " ON CONFLICT (experiment_id, arm, unit) DO UPDATE SET n = excluded.n,"
        " successes = excluded.successes, rating_n = excluded.rating_n, rating_sum = excluded.rating_sum"
    )
    columns = f"INSERT INTO {table} (experiment_id, arm, unit, n, successes, rating_n, rating_sum)"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One row per (arm, unit) (a statement may not update a row twice): the last total wins, as
            # it would with one statement per row.
            rows = list({(arm, unit): (arm, unit, *rest) for arm, unit, *rest in totals}.values())
            arrays = [list(column) for column in zip(*rows, strict=True)]
            cursor.execute(
                f"{columns} SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::int8[], %s::int8[], "
                f"%s::int8[], %s::float8[]){conflict}",
                [experiment_id, *arrays],
            )
        else:
            cursor.executemany(
                f"{columns} VALUES (%s, %s, %s, %s, %s, %s, %s){conflict}",
                [(experiment_id, *row) for row in totals],
            )


def planned_looks(max_duration_days: float, look_interval_days: float = 1.0) -> int:
    """How many looks the plan has: one per look interval up to the maximum duration."""
    return max(1, math.ceil(max_duration_days / look_interval_days - 1e-9))


def looks_due(elapsed_days: float, max_duration_days: float, look_interval_days: float = 1.0) -> int:
    """The number of planned looks whose interval has elapsed (look ``k`` from interval ``k`` on)."""
    planned = planned_looks(max_duration_days, look_interval_days)
    return min(planned, math.floor(elapsed_days / look_interval_days + 1e-9))


def next_look(
    plan: dict[str, Any],
    *,
    elapsed_days: float,
    max_duration_days: float,
    look_interval_days: float = 1.0,
    control: ArmCounts,
    variant: ArmCounts,
    split: float,
    alpha: float,
    min_improvement: float,
    power: float = 0.8,
    variants: int = 1,
) -> tuple[Look, dict[str, Any]]:
    """The planned look the task takes now, and the plan with it recorded (pure; the task stores it).

    At most one look per whole look interval elapsed (``look_interval_days``, a day by default: look ``k``
    from interval ``k`` on; the final look once ``max_duration_days`` has passed), and only when there is
    new information. The interval sets only the cadence: the boundaries follow the information fractions,
    which are by data. Its fraction is the units
    with feedback / the planned maximum; the maximum is fixed at the first look from the *pooled* rate and
    per-unit variance (blinded: it does not depend on the difference between the arms), for
    ``min_improvement`` with ``power``, inflated for the group-sequential design. The final look (by time,
    or once the maximum is reached) has fraction 1: it spends the alpha left. When no look is due the
    result is ``Look(index=0)``: an interim analysis, decided by nothing.

    A multi-arm test (``variants`` = k > 1) passes its variants pooled as ``variant``: the fraction is over
    every arm's units, and the maximum is what one comparison (the control against one variant, equal
    shares) needs at alpha / k, Holm's first and strictest level, times the k + 1 arms over the pair's 2.
    """
    planned = planned_looks(max_duration_days, look_interval_days)
    fractions = [float(t) for t in plan.get("fractions", [])]
    not_a_look = Look(0, planned, tuple(fractions), False)
    taken = len(fractions)
    final_due = elapsed_days >= max_duration_days
    due = looks_due(elapsed_days, max_duration_days, look_interval_days)
    if taken >= planned or (taken >= due and not final_due) or (fractions and fractions[-1] >= 1.0):
        # Beyond the plan (all alpha spent, e.g. the final look lacked min_sample_size): interim only.
        return not_a_look, plan
    new = dict(plan)
    if not new.get("units_max"):
        pooled = statistics.unit_variance(control, variant)
        required = None
        if pooled is not None and variants > 1:
            required = required_units_multi(
                pooled[0],
                min_improvement,
                variants=variants,
                unit_var=pooled[1],
                alpha=alpha,
                power=power,
                planned_looks=planned,
            )
        elif pooled is not None:
            required = statistics.required_units(
                pooled[0],
                min_improvement,
                unit_var=pooled[1],
                split=split,
                alpha=alpha,
                power=power,
                inflation=statistics.inflation_factor(alpha, planned, power),
            )
        if required is None:
            return not_a_look, plan  # nothing to plan on yet (no variance): no alpha spent
        new["units_max"] = required
        new["planned_at_units"] = control.units + variant.units
    t = (control.units + variant.units) / new["units_max"]
    final = final_due or t >= 1.0 or taken + 1 >= planned
    if final:
        t = 1.0
    elif t <= 0 or (fractions and t <= fractions[-1]):
        return not_a_look, plan  # no new information since the last look
    new["fractions"] = [*fractions, t]
    return Look(taken + 1, planned, tuple(new["fractions"]), final), new


def look_interval_days(experiment: Experiment) -> float:
    return max(1, experiment.look_interval_minutes or DAY_MINUTES) / DAY_MINUTES


def look_due(experiment: Experiment, now: datetime | None = None) -> bool:
    """Whether a running A/B test has a planned look to take (its interval elapsed, or its final look).

    Cheap (no counting): the every-minute task analyses only the experiments for which this holds. A look
    that could not be taken (no new information yet) stays due and is tried again on the next run.
    """
    if not experiment.is_running or experiment.purpose != Experiment.Purpose.AB_TEST:
        return False
    now = now or timezone.now()
    elapsed = max(0.0, (now - experiment.started_at).total_seconds() / 86400)
    if elapsed >= experiment.max_duration_days:
        return True  # the final look, or the deadline's decision
    fractions = (experiment.plan or {}).get("fractions", [])
    interval = look_interval_days(experiment)
    if fractions and float(fractions[-1]) >= 1.0:
        return False  # the plan is spent: only the deadline decides now
    return len(fractions) < looks_due(elapsed, experiment.max_duration_days, interval)


def _look(experiment: Experiment, now: datetime, control: ArmCounts, variant: ArmCounts, planned_look: bool):
    """(look, plan after it, elapsed days). A rollout stage is judged by the confidence sequence alone."""
    plan = experiment.plan or {}
    if experiment.purpose == Experiment.Purpose.ROLLOUT:
        since = experiment.stage_started_at or experiment.started_at
        return Look(), plan, max(0.0, (now - since).total_seconds() / 86400)
    elapsed = max(0.0, (now - experiment.started_at).total_seconds() / 86400)
    interval = look_interval_days(experiment)
    planned = planned_looks(experiment.max_duration_days, interval)
    if not planned_look:
        return Look(0, planned, tuple(plan.get("fractions", ())), False), plan, elapsed
    look, plan = next_look(
        plan,
        elapsed_days=elapsed,
        max_duration_days=experiment.max_duration_days,
        look_interval_days=interval,
        control=control,
        variant=variant,
        split=experiment.traffic_split,
        alpha=experiment.significance_level,
        min_improvement=experiment.min_improvement,
        variants=experiment.variant_count,
    )
    return look, plan, elapsed


def ab_test_results(analysis: dict[str, Any]) -> dict[str, Any]:
    """The seed's ``abTestResults`` names (plus the decision interval) from an analysis.

    ``pValue`` (fixed horizon) only once the planned end is reached, as a reference: before that, or after
    an early stop, peeking makes it meaningless. ``improvementLow`` is what deployment rules compare.
    """
    seq = analysis["sequential"]
    end = seq["method"] == "group_sequential" and analysis.get("final_look", False)
    return {
        "controlSuccessRate": analysis["control"]["rate"],
        "variantSuccessRate": analysis["variant"]["rate"],
        "improvement": analysis["relative_lift"],
        "improvementLow": seq["ci_low"],
        "improvementHigh": seq["ci_high"],
        "significant": analysis["verdict"] in ("variant_better", "variant_worse"),
        "unit": "user",
        "sampleSize": analysis["control"]["units"] + analysis["variant"]["units"],
        "interactions": analysis["control"]["n"] + analysis["variant"]["n"],
        "pValue": analysis["fixed_p_value"] if end else None,
        "sequentialPValue": seq["p_value"],
        "ci": [seq["ci_low"], seq["ci_high"]],
        "ciLevel": 1 - analysis["alpha"],
        "method": seq["method"],
        "look": seq["look"],
        "plannedLooks": seq["planned_looks"],
        "srmPValue": analysis["srm_p_value"],
        "arm": "variant",
    }


def analysis_record(result: Analysis, look: Look) -> dict[str, Any]:
    """The stored form of an analysis: its figures, where it stands in the plan, the seed's names."""
    analysis = result.as_dict()
    analysis["final_look"] = look.final
    # An A/B test's analysis between planned looks is interim: shown, never decided on.
    analysis["interim"] = look.planned > 0 and not look.group_sequential
    analysis["ab_test_results"] = ab_test_results(analysis)
    return analysis


def lift_clears(results: dict[str, Any], threshold: float) -> bool:
    """A/B evidence clears a deployment threshold: a significant improvement whose decision interval's
    *lower end* is at least ``threshold``. The point estimate overshoots the truth when a sequential test
    stops early, so comparing it would deploy a +10 % variant on a 15 % threshold far too often.
    """
    low = results.get("improvementLow")
    return bool(results.get("significant")) and low is not None and low >= threshold


def _compute(
    experiment: Experiment, now: datetime, *, lag: timedelta, planned_look: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(analysis, plan after it): count (incrementally, in SQL) and analyse; stores nothing but the tally."""
    if experiment.is_multi_arm:
        return _compute_multi(experiment, now, lag=lag, planned_look=planned_look)
    tally = experiment_tally_refresh(experiment=experiment, now=now, lag=lag)
    control = selectors.to_arm_counts(tally["control"])
    variant = selectors.to_arm_counts(tally["variant"])
    look, plan, elapsed = _look(experiment, now, control, variant, planned_look)
    units = control.units + variant.units
    # Units expected by the planned end at the traffic seen so far: what the plan can detect.
    projected = None
    if experiment.purpose == Experiment.Purpose.AB_TEST and elapsed >= 1:
        # After a whole day only: extrapolating the first minutes' traffic would promise anything.
        projected = units * max(1.0, experiment.max_duration_days / elapsed)
    result = analyse(
        control=control,
        variant=variant,
        split=experiment.traffic_split,
        alpha=experiment.significance_level,
        min_improvement=experiment.min_improvement,
        min_sample_size=experiment.min_sample_size,
        look=look,
        cs_tuning_n=int(plan.get("cs_tuning_n") or max(2 * experiment.min_sample_size, 10)),
        required=plan.get("units_max"),
        projected_units=projected,
    )
    analysis = analysis_record(result, look)
    analysis["analysed_at"] = now.isoformat()
    analysis["elapsed_days"] = elapsed
    analysis["traffic_split"] = experiment.traffic_split
    analysis["max_duration_days"] = experiment.max_duration_days
    if experiment.purpose == Experiment.Purpose.ROLLOUT:
        analysis["stage"] = {
            "index": experiment.stage_index,
            "share": experiment.traffic_split,
            "stages": experiment.stages,
        }
    return analysis, plan


def _compute_multi(
    experiment: Experiment, now: datetime, *, lag: timedelta, planned_look: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``_compute`` for a multi-arm test: every arm against the control (``abtesting.arms``).

    The plan's information is over every arm's units (the variants pooled, blinded, like an A/B test's);
    the arms dropped at earlier looks are passed on as decided.
    """
    tally = experiment_tally_refresh(experiment=experiment, now=now, lag=lag)
    zero = selectors.empty_counts((CONTROL,))[CONTROL]
    counts = {arm: selectors.to_arm_counts(tally.get(arm) or zero) for arm in experiment.arms}
    control = counts.pop(CONTROL)
    pooled = selectors.pooled_counts(list(counts.values()))
    look, plan, elapsed = _look(experiment, now, control, pooled, planned_look)
    result = analyse_multi(
        control=control,
        variants=counts,
        shares=arms.shares(experiment),
        alpha=experiment.significance_level,
        min_improvement=experiment.min_improvement,
        min_sample_size=experiment.min_sample_size,
        look=look,
        cs_tuning_n=int(plan.get("cs_tuning_n") or max(2 * experiment.min_sample_size, 10)),
        decided=arms.decided(plan) or None,
        required=plan.get("units_max"),
    )
    versions = {arm: version.name for arm, version in experiment.arm_versions()}
    analysis, plan = arms.analysis_record(result, look, plan=plan, versions=versions)
    analysis["analysed_at"] = now.isoformat()
    analysis["elapsed_days"] = elapsed
    analysis["traffic_split"] = experiment.traffic_split
    analysis["max_duration_days"] = experiment.max_duration_days
    return analysis, plan


def experiment_analyse(
    *, experiment: Experiment, now: datetime | None = None, final: bool = False, planned_look: bool = False
) -> dict[str, Any]:
    """Count, analyse, store ``last_analysis`` (and the plan, and today's snapshot); return the analysis.

    ``planned_look`` (the every-minute task, when a look is due): take the planned look that is due, if
    any (``next_look``). Without it the analysis is interim (confidence sequence) for an A/B test, and
    the guardrail for a rollout.
    A stopped or concluded experiment is not re-analysed: its final analysis is returned as stored.
    ``final`` (the experiment is about to end) counts up to the newest rows: there will be no later
    refresh for rows held back by the tally's lag, and a row still uncommitted is lost either way.
    """
    if not experiment.is_running:
        return experiment.last_analysis
    now = now or timezone.now()
    lag = timedelta(0) if final else selectors.TALLY_LAG
    analysis, plan = _compute(experiment, now, lag=lag, planned_look=planned_look)
    with transaction.atomic():
        # The plan records the looks taken: written only if no other worker took one meanwhile.
        current = Experiment.objects.select_for_update().only("status", "plan").get(pk=experiment.pk)
        updated = current.status == Experiment.Status.RUNNING and current.plan == experiment.plan
        if updated:
            Experiment.objects.filter(pk=experiment.pk).update(
                last_analysis=analysis, analysed_at=now, plan=plan
            )
            ExperimentSnapshot.objects.update_or_create(
                experiment=experiment,
                day=timezone.localdate(now),
                defaults={"analysis": analysis, "created_at": now},
            )
    if updated:
        experiment.last_analysis, experiment.analysed_at, experiment.plan = analysis, now, plan
        _log_look(experiment, analysis)
    else:
        experiment.refresh_from_db()
    return analysis


def _log_look(experiment: Experiment, analysis: dict[str, Any]) -> None:
    # A multi-arm analysis keeps where it stands in the plan under "look" (its arms each have "sequential").
    sequential = analysis.get("sequential") or analysis.get("look") or {}
    look, planned = sequential.get("look") or 0, sequential.get("planned_looks") or 0
    where = f"planned look {look} of {planned}" if look else "interim look"
    logger.info(
        "Experiment %s (%s) %s: %s",
        experiment.pk,
        experiment.purpose,
        where,
        analysis.get("verdict"),
        extra={
            "experiment_id": experiment.pk,
            "assistant_id": experiment.assistant_id,
            "purpose": experiment.purpose,
            "look": look,
            "planned_looks": planned,
            "verdict": analysis.get("verdict"),
            "p_value": analysis.get("p_value"),
            "winner": analysis.get("winner"),
        },
    )


INTERIM_CACHE_SECONDS = 60


def experiment_interim(*, experiment: Experiment, now: datetime | None = None) -> dict[str, Any] | None:
    """Live figures of a running A/B test for the dashboard and the API, computed on demand.

    Interim: judged by the always-valid confidence sequence (valid however often anyone looks); nothing
    is decided and no look of the plan is used. Cached for ``INTERIM_CACHE_SECONDS`` so a page that many
    people reload counts the new rows once a minute. None when the experiment is not running.
    """
    if not experiment.is_running:
        return None
    key = f"abtesting:interim:{experiment.pk}:{experiment.tally.get('interaction_floor', 0)}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    analysis, _ = _compute(experiment, now or timezone.now(), lag=selectors.TALLY_LAG, planned_look=False)
    cache.set(key, analysis, INTERIM_CACHE_SECONDS)
    return analysis


# --------------------------------------------------------------------------- decisions


def experiment_conclude(
    *,
    experiment: Experiment,
    status: str,
    decision: str,
    reason: str,
    now: datetime,
    user: AbstractBaseUser | None = None,
    winner: ModelVersion | None = None,
) -> bool:
    """Leave ``running`` once: True if this call did it (and the signal will be sent on commit).

    ``winner``: the version found best (decision ``variant_better``), kept as ``Experiment.winner``.
    """
    fields: dict[str, Any] = {
        "status": status,
        "decision": decision,
        "decision_reason": reason,
        "ended_at": now,
    }
    if winner is not None:
        fields["winner"] = winner
    if user is not None and getattr(user, "is_authenticated", False):
        fields["stopped_by"] = user
    with transaction.atomic():
        updated = Experiment.objects.filter(pk=experiment.pk, status=Experiment.Status.RUNNING).update(
            **fields
        )
        if not updated:
            experiment.refresh_from_db()
            return False
        for name, value in fields.items():
            setattr(experiment, name, value)
        transaction.on_commit(lambda: _concluded(experiment, status, decision, reason))
    return True


def _concluded(experiment: Experiment, status: str, decision: str, reason: str) -> None:
    """Once committed: one log line, then the signal to the apps above."""
    logger.info(
        "Experiment %s %s (decision %s): %s",
        experiment.pk,
        status,
        decision or "none",
        reason,
        extra={
            "experiment_id": experiment.pk,
            "assistant_id": experiment.assistant_id,
            "purpose": experiment.purpose,
            "status": status,
            "decision": decision,
        },
    )
    experiment_concluded.send(sender=Experiment, experiment=experiment)


def _ci(analysis: dict[str, Any]) -> str:
    low, high = analysis["ab_test_results"]["ci"]
    return "n/a" if low is None or high is None else f"[{low:+.1%}, {high:+.1%}]"


def _at_least(analysis: dict[str, Any]) -> str:
    """ "lift at least X % (with 1 - alpha confidence)": the decision interval's lower end, for reviewers."""
    low = analysis["sequential"]["ci_low"]
    if low is None:
        return ""
    return f"lift at least {low:+.1%} (with {1 - analysis['alpha']:.0%} confidence)"


def decision_for(experiment: Experiment, analysis: dict[str, Any], now: datetime) -> tuple[str, str] | None:
    """(decision, reason) the analysis calls for, or None to keep running."""
    verdict = analysis["verdict"]
    c, v = analysis["control"], analysis["variant"]
    lift = signed_pct(analysis["relative_lift"])
    seq = analysis["sequential"]
    where = (
        f"planned look {seq['look']} of {seq['planned_looks']}, information {seq['information_fraction']:.0%}"
        if seq["method"] == "group_sequential"
        else "always-valid confidence sequence"
    )
    # The test runs on the difference of rates, the interval shown to reviewers is of the relative lift
    # (delta method); on small samples they can disagree. A winner or loser is declared only when both
    # agree, so a decision never comes with an interval that includes "no change".
    unconfirmed = (verdict == "variant_better" and seq["ci_low"] is not None and seq["ci_low"] <= 0) or (
        verdict == "variant_worse" and seq["ci_high"] is not None and seq["ci_high"] >= 0
    )
    if unconfirmed:
        if analysis.get("final_look") or now >= experiment.started_at + timedelta(
            days=experiment.max_duration_days
        ):
            return (
                Experiment.Decision.INCONCLUSIVE,
                f"Inconclusive at the final look: the test on the success rates crossed its boundary but the "
                f"decision interval of the relative lift {_ci(analysis)} still includes no change.",
            )
        return None
    if verdict == "invalid_srm":
        return (
            Experiment.Decision.INVALID_SRM,
            f"Sample ratio mismatch: {c['n_assigned']} control vs {v['n_assigned']} variant users "
            "(each request without a user ref counts as one) for a "
            f"{experiment.traffic_split:.0%} variant split (always-valid SRM p = "
            f"{analysis['srm_p_value']:.2g} < {SRM_THRESHOLD}). Assignment or logging is broken, so the "
            "results cannot be trusted; do not deploy on them. Check that apps log the experiment and arm "
            "that /api/v1/route returned.",
        )
    if verdict == "variant_worse":
        high = seq["ci_high"]
        return (
            Experiment.Decision.VARIANT_WORSE,
            f"Stopped early: the variant is significantly worse "
            f"(success {arm_rate(c)} → {arm_rate(v)} per user, relative lift {lift}, "
            f"at most {signed_pct(high)} with {1 - analysis['alpha']:.0%} confidence; "
            f"decision interval {_ci(analysis)}, {where}). All traffic is back on the control.",
        )
    if verdict == "variant_better":
        return (
            Experiment.Decision.VARIANT_BETTER,
            f"The variant is significantly better: success {arm_rate(c)} → {arm_rate(v)} per user, "
            f"improvement {lift}, {_at_least(analysis)}; decision interval {_ci(analysis)}, {where}.",
        )
    if verdict == "no_difference":
        return (
            Experiment.Decision.NO_DIFFERENCE,
            f"No difference that matters at the final look: relative lift {lift}, "
            f"decision interval {_ci(analysis)} lies within ±{experiment.min_improvement:.0%}.",
        )
    if verdict == "inconclusive":
        return (
            Experiment.Decision.INCONCLUSIVE,
            f"Inconclusive at the final look: relative lift {lift}, "
            f"decision interval {_ci(analysis)} still allows a "
            f"change of {experiment.min_improvement:.0%} or more; more feedback was needed.",
        )
    deadline = experiment.started_at + timedelta(days=experiment.max_duration_days)
    if now >= deadline:
        return (
            Experiment.Decision.INCONCLUSIVE,
            f"Max duration ({experiment.max_duration_days:g} days) reached with {c['units']} control and "
            f"{v['units']} variant users with feedback, below the {experiment.min_sample_size} per arm "
            "needed to decide.",
        )
    return None


def experiment_decide(
    *, experiment: Experiment, analysis: dict[str, Any] | None = None, now: datetime | None = None
) -> Experiment:
    """Apply the analysis' verdict to a running A/B test (see the module docstring); idempotent."""
    if not experiment.is_running:
        return experiment
    now = now or timezone.now()
    if analysis is None:
        analysis = experiment.last_analysis or experiment_analyse(experiment=experiment, now=now)
    if experiment.is_multi_arm:
        outcome = arms.decision_for(experiment, analysis, now)
    else:
        two_arm = decision_for(experiment, analysis, now)
        better = two_arm is not None and two_arm[0] == Experiment.Decision.VARIANT_BETTER
        outcome = None if two_arm is None else (*two_arm, "variant" if better else None)
    if outcome is None:
        return experiment
    decision, reason, winning_arm = outcome
    # The winner's version: an A/B test's variant, or the winning arm's (one query for a further variant).
    winner = dict(experiment.arm_versions())[winning_arm] if winning_arm else None
    experiment_conclude(
        experiment=experiment,
        status=Experiment.Status.CONCLUDED,
        decision=decision,
        reason=reason,
        now=now,
        winner=winner,
    )
    return experiment


def experiment_stop(
    *, experiment: Experiment, user: AbstractBaseUser | None = None, reason: str, now: datetime | None = None
) -> Experiment:
    """A person ends a running experiment; all traffic returns to the live version.

    Raises ExperimentNotRunning (409, naming the experiment's status) when it already ended: stopping
    twice, or stopping a concluded test, is refused the same way on the dashboard and in the API.

    The experiment is analysed one last time first, so what the reviewer (and a training job waiting
    on it) sees afterwards covers all traffic up to the stop, not the last scheduled look.
    Stopping a rollout also records a Deployment row (reason rollback) for the move back to the control.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ExperimentError("Say why the experiment is stopped (reason).")
    if not experiment.is_running:
        raise ExperimentNotRunning(experiment)
    now = now or timezone.now()
    experiment_analyse(experiment=experiment, now=now, final=True)
    with transaction.atomic():
        stopped = experiment_conclude(
            experiment=experiment,
            status=Experiment.Status.STOPPED,
            decision=Experiment.Decision.NONE,
            reason=reason,
            now=now,
            user=user,
        )
        if not stopped:  # another request stopped or concluded it first (experiment is now refreshed)
            raise ExperimentNotRunning(experiment)
        # Stopping early is not a result: whatever the interim figures looked like, nothing was
        # decided, and the stored analysis must not read as a verdict anywhere it is shown.
        analysis = dict(experiment.last_analysis or {})
        analysis.update(verdict="no_decision", stopped_early=experiment.outcome)
        if "ab_test_results" in analysis:
            analysis["ab_test_results"] = {
                **analysis["ab_test_results"],
                "pValue": None,
                "significant": False,
                "outcome": experiment.outcome,
            }
        Experiment.objects.filter(pk=experiment.pk).update(last_analysis=analysis)
        experiment.last_analysis = analysis
        if experiment.purpose == Experiment.Purpose.ROLLOUT:
            deployment_make_live(
                version=experiment.control,
                reason=Deployment.Reason.ROLLBACK,
                user=user,
                note=f"Rollout of {experiment.variant.name} stopped: {reason}",
            )
    return experiment
