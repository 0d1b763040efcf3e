"""Writes for experiments: start, analyse, decide, stop, and progressive rollouts.

Every state change is one conditional UPDATE on ``status="running"`` (plus, for a rollout stage, the stage
index), so a retried task, two workers or a double click can never conclude, stop or advance an experiment
twice; the loser sees 0 rows updated and does nothing. When an experiment leaves ``running``,
``abtesting.signals.experiment_concluded`` is sent after the commit (the training job listens).

Decisions (``experiment_decide``), applied to the analysis of ``abtesting.statistics.analyse``:

- ``invalid_srm``: the arms' assigned counts do not match the configured split (SRM p < 0.001). The
  assignment is broken, so nothing measured can be trusted: concluded ``invalid_srm`` at once; the
  training job must not deploy on it.
- fewer than ``min_sample_size`` interactions with feedback in either arm: no decision (keep running).
- sequential test significant and worse (and the sequential CI of the lift below 0): stopped early,
  ``variant_worse``; routing ignores a concluded experiment, so all traffic is back on the control (the
  live version) from the next request.
- sequential test significant and better (and the sequential CI of the lift above 0): ``variant_better``
  with the measured improvement. When the test and the CI disagree (small samples) it keeps running.
- the final planned look (day ``ceil(max_duration_days)``) without significance: ``no_difference`` when the
  sequential CI of the relative lift lies within ±``min_improvement`` (any real effect is too small to
  matter), else ``inconclusive`` (the CI still allows an effect that would matter: more data was needed).
- ``max_duration_days`` passed without ``min_sample_size`` per arm: ``inconclusive`` (not enough feedback).

Looks are days: look = whole days since the start + 1, of ``ceil(max_duration_days)`` planned looks, so
the group-sequential boundaries hold as long as decisions are taken once a day (``tasks.analyse_running``
is scheduled daily). Analyses between looks (the API, the dashboard) are for display.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from abtesting import selectors
from abtesting.models import Experiment, ExperimentSnapshot
from abtesting.signals import experiment_concluded
from abtesting.statistics import analyse
from assistants.models import Assistant, Deployment, ModelVersion
from assistants.services import deployment_make_live, deployment_record_stage

DEFAULT_STAGES = (0.1, 0.5, 1.0)
DEFAULT_STAGE_HOURS = 48.0
# A rollout stage without enough feedback to judge is held up to this many times its hold time, then
# advanced anyway (low-traffic assistants must not stall forever); the Deployment note says so.
MAX_STAGE_HOLD_FACTOR = 2.0


class ExperimentBusy(Exception):
    """The assistant already runs an experiment (A/B test or rollout); only one may run at a time.

    The training orchestrator keeps a job that wants to A/B test in ``testing`` and retries on its next
    tick, so jobs queue behind the running experiment instead of failing.
    """


class ExperimentError(ValueError):
    """Settings that cannot make a valid experiment; the message says what to change."""


# --------------------------------------------------------------------------- start


def _validate(
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


def _fresh_tally() -> dict[str, Any]:
    """Counting starts at the rows stored from now on (the experiment's or the rollout stage's start)."""
    interaction_id, feedback_id = selectors.max_ids()
    return {
        "interaction_floor": interaction_id,
        "interaction_upto": interaction_id,
        "feedback_upto": feedback_id,
        **selectors.empty_counts(),
    }


def _create(*, assistant: Assistant, **fields: Any) -> Experiment:
    try:
        with transaction.atomic():
            return Experiment.objects.create(assistant=assistant, tally=_fresh_tally(), **fields)
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
    now: datetime | None = None,
) -> Experiment:
    """Start an A/B test; raises ``ExperimentBusy`` if one already runs for the assistant (DB constraint)."""
    _validate(
        assistant=assistant,
        control=control,
        variant=variant,
        traffic_split=traffic_split,
        min_sample_size=min_sample_size,
        max_duration_days=max_duration_days,
        significance_level=significance_level,
        min_improvement=min_improvement,
    )
    return _create(
        assistant=assistant,
        purpose=purpose,
        control=control,
        variant=variant,
        traffic_split=traffic_split,
        min_sample_size=min_sample_size,
        max_duration_days=max_duration_days,
        significance_level=significance_level,
        min_improvement=min_improvement,
        started_at=now or timezone.now(),
    )


# --------------------------------------------------------------------------- counting and analysis


def experiment_tally_refresh(
    *, experiment: Experiment, now: datetime | None = None, lag: timedelta = selectors.TALLY_LAG
) -> dict[str, Any]:
    """Add the rows stored since the last refresh to the experiment's per-arm counts; return the tally.

    Counting runs outside any lock; the write is conditional on nobody having refreshed meanwhile (same
    watermarks), otherwise their result is kept. See ``abtesting.selectors`` for why this is exact, and
    why the newest ``lag`` of rows waits for the next refresh.
    """
    now = now or timezone.now()
    tally = experiment.tally or {
        "interaction_floor": 0,
        "interaction_upto": 0,
        "feedback_upto": 0,
        **selectors.empty_counts(),
    }
    interaction_mark, feedback_mark = selectors.id_watermarks(now=now, lag=lag)
    interaction_mark = max(interaction_mark, tally["interaction_upto"])
    feedback_mark = max(feedback_mark, tally["feedback_upto"])
    if (interaction_mark, feedback_mark) == (tally["interaction_upto"], tally["feedback_upto"]):
        return tally
    delta = selectors.arm_counts(
        experiment_id=experiment.pk,
        assistant_id=experiment.assistant_id,
        interaction_floor=tally["interaction_floor"],
        interaction_after=tally["interaction_upto"],
        interaction_upto=interaction_mark,
        feedback_after=tally["feedback_upto"],
        feedback_upto=feedback_mark,
    )
    new = {
        "interaction_floor": tally["interaction_floor"],
        "interaction_upto": interaction_mark,
        "feedback_upto": feedback_mark,
        **{arm: [a + b for a, b in zip(tally[arm], delta[arm], strict=True)] for arm in selectors.ARMS},
    }
    with transaction.atomic():
        current = Experiment.objects.select_for_update().only("tally").get(pk=experiment.pk).tally or {}
        if (
            current.get("interaction_upto", 0),
            current.get("feedback_upto", 0),
            current.get("interaction_floor", 0),
        ) != (
            tally["interaction_upto"],
            tally["feedback_upto"],
            tally["interaction_floor"],
        ):
            experiment.tally = current  # a concurrent refresh (or a new rollout stage) won: use its counts
            return current
        Experiment.objects.filter(pk=experiment.pk).update(tally=new)
    experiment.tally = new
    return new


def _looks(experiment: Experiment, now: datetime) -> tuple[int, int, float]:
    """(look, planned_looks, elapsed days). A rollout stage is watched with the confidence sequence.

    ``planned_looks=0`` makes ``analyse`` use the always-valid confidence sequence, which stays valid however
    often the hourly rollout task looks within a stage.
    """
    if experiment.purpose == Experiment.Purpose.ROLLOUT:
        since = experiment.stage_started_at or experiment.started_at
        elapsed = max(0.0, (now - since).total_seconds() / 86400)
        return max(1, math.floor(elapsed) + 1), 0, elapsed
    elapsed = max(0.0, (now - experiment.started_at).total_seconds() / 86400)
    planned = max(1, math.ceil(experiment.max_duration_days))
    return min(planned, math.floor(elapsed) + 1), planned, elapsed


def ab_test_results(analysis: dict[str, Any]) -> dict[str, Any]:
    """The seed's ``abTestResults`` names (plus the sequential figures) from an analysis."""
    seq = analysis["sequential"]
    return {
        "controlSuccessRate": analysis["control"]["rate"],
        "variantSuccessRate": analysis["variant"]["rate"],
        "improvement": analysis["relative_lift"],
        "sampleSize": analysis["control"]["n"] + analysis["variant"]["n"],
        "pValue": analysis["p_value"],
        "sequentialPValue": seq["p_value"],
        "ci": [seq["ci_low"], seq["ci_high"]],
        "srmPValue": analysis["srm_p_value"],
    }


def experiment_analyse(
    *, experiment: Experiment, now: datetime | None = None, final: bool = False
) -> dict[str, Any]:
    """Count (incrementally, in SQL), analyse, store ``last_analysis`` and today's snapshot; return it.

    A stopped or concluded experiment is not re-analysed: its final analysis is returned as stored.
    ``final`` (the experiment is about to end) counts up to the newest rows: there will be no later
    refresh for rows held back by the tally's lag, and a row still uncommitted is lost either way.
    """
    if not experiment.is_running:
        return experiment.last_analysis
    now = now or timezone.now()
    lag = timedelta(0) if final else selectors.TALLY_LAG
    tally = experiment_tally_refresh(experiment=experiment, now=now, lag=lag)
    control = selectors.to_arm_counts(tally["control"])
    variant = selectors.to_arm_counts(tally["variant"])
    look, planned, elapsed = _looks(experiment, now)
    result = analyse(
        control=control,
        variant=variant,
        split=experiment.traffic_split,
        alpha=experiment.significance_level,
        min_improvement=experiment.min_improvement,
        min_sample_size=experiment.min_sample_size,
        look=look,
        planned_looks=planned,
    )
    analysis = result.as_dict()
    analysis["ab_test_results"] = ab_test_results(analysis)
    analysis["analysed_at"] = now.isoformat()
    analysis["elapsed_days"] = elapsed
    analysis["traffic_split"] = experiment.traffic_split
    if experiment.purpose == Experiment.Purpose.ROLLOUT:
        analysis["stage"] = {
            "index": experiment.stage_index,
            "share": experiment.traffic_split,
            "stages": experiment.stages,
        }
    with transaction.atomic():
        updated = Experiment.objects.filter(pk=experiment.pk, status=Experiment.Status.RUNNING).update(
            last_analysis=analysis, analysed_at=now
        )
        if updated:
            ExperimentSnapshot.objects.update_or_create(
                experiment=experiment,
                day=timezone.localdate(now),
                defaults={"analysis": analysis, "created_at": now},
            )
    if updated:
        experiment.last_analysis, experiment.analysed_at = analysis, now
    return analysis


# --------------------------------------------------------------------------- decisions


def _conclude(
    *,
    experiment: Experiment,
    status: str,
    decision: str,
    reason: str,
    now: datetime,
    user: AbstractBaseUser | None = None,
) -> bool:
    """Leave ``running`` once: True if this call did it (and the signal will be sent on commit)."""
    fields: dict[str, Any] = {
        "status": status,
        "decision": decision,
        "decision_reason": reason,
        "ended_at": now,
    }
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
        transaction.on_commit(lambda: experiment_concluded.send(sender=Experiment, experiment=experiment))
    return True


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


def _ci(analysis: dict[str, Any]) -> str:
    low, high = analysis["ab_test_results"]["ci"]
    return "n/a" if low is None or high is None else f"[{low:+.1%}, {high:+.1%}]"


def _decision_for(experiment: Experiment, analysis: dict[str, Any], now: datetime) -> tuple[str, str] | None:
    """(decision, reason) the analysis calls for, or None to keep running."""
    verdict = analysis["verdict"]
    c, v = analysis["control"], analysis["variant"]
    lift = _pct(analysis["relative_lift"])
    seq = analysis["sequential"]
    seq_p = seq["p_value"]
    # The test runs on the difference of rates, the CI shown to reviewers is of the relative lift (delta
    # method); on small samples they can disagree. A winner or loser is declared only when both agree,
    # so a decision never comes with a CI that includes "no change".
    unconfirmed = (verdict == "variant_better" and seq["ci_low"] is not None and seq["ci_low"] <= 0) or (
        verdict == "variant_worse" and seq["ci_high"] is not None and seq["ci_high"] >= 0
    )
    if unconfirmed:
        final = seq["planned_looks"] >= 1 and seq["look"] >= seq["planned_looks"]
        if final or now >= experiment.started_at + timedelta(days=experiment.max_duration_days):
            return (
                Experiment.Decision.INCONCLUSIVE,
                f"Inconclusive at the final look: the test on the success rates crossed its boundary but the "
                f"sequential CI of the relative lift {_ci(analysis)} still includes no change.",
            )
        return None
    if verdict == "invalid_srm":
        return (
            Experiment.Decision.INVALID_SRM,
            f"Sample ratio mismatch: {c['n_assigned']} control vs {v['n_assigned']} variant users "
            "(each request without a user ref counts as one) for a "
            f"{experiment.traffic_split:.0%} variant split (SRM p = {analysis['srm_p_value']:.2g} < 0.001). "
            "Assignment or logging is broken, so the results cannot be trusted; do not deploy on them. Check "
            "that apps log the experiment and arm that /api/v1/route returned.",
        )
    if verdict == "variant_worse":
        return (
            Experiment.Decision.VARIANT_WORSE,
            f"Stopped early: the variant is significantly worse (success {_rate(c)} → {_rate(v)}, "
            f"relative lift {lift}, sequential CI {_ci(analysis)}, sequential p = {seq_p:.3g}). "
            "All traffic is back on the control.",
        )
    if verdict == "variant_better":
        return (
            Experiment.Decision.VARIANT_BETTER,
            f"The variant is significantly better: success {_rate(c)} → {_rate(v)}, improvement "
            f"{lift}, sequential CI {_ci(analysis)}, sequential p = {seq_p:.3g}.",
        )
    if verdict == "no_difference":
        return (
            Experiment.Decision.NO_DIFFERENCE,
            f"No difference that matters at the final look: relative lift {lift}, "
            f"sequential CI {_ci(analysis)} "
            f"lies within ±{experiment.min_improvement:.0%}.",
        )
    if verdict == "inconclusive":
        return (
            Experiment.Decision.INCONCLUSIVE,
            f"Inconclusive at the final look: relative lift {lift}, "
            f"sequential CI {_ci(analysis)} still allows a "
            f"change of {experiment.min_improvement:.0%} or more; more feedback was needed.",
        )
    deadline = experiment.started_at + timedelta(days=experiment.max_duration_days)
    if now >= deadline:
        return (
            Experiment.Decision.INCONCLUSIVE,
            f"Max duration ({experiment.max_duration_days:g} days) reached with {c['n']} control and "
            f"{v['n']} variant interactions with feedback, below the {experiment.min_sample_size} per arm "
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
    outcome = _decision_for(experiment, analysis, now)
    if outcome is not None:
        decision, reason = outcome
        _conclude(
            experiment=experiment,
            status=Experiment.Status.CONCLUDED,
            decision=decision,
            reason=reason,
            now=now,
        )
    return experiment


def experiment_stop(
    *, experiment: Experiment, user: AbstractBaseUser | None = None, reason: str, now: datetime | None = None
) -> Experiment:
    """A person ends a running experiment; all traffic returns to the live version. Idempotent.

    The experiment is analysed one last time first, so what the reviewer (and a training job waiting
    on it) sees afterwards covers all traffic up to the stop, not the last scheduled look.
    Stopping a rollout also records a Deployment row (reason rollback) for the move back to the control.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ExperimentError("Say why the experiment is stopped (reason).")
    now = now or timezone.now()
    if experiment.is_running:
        experiment_analyse(experiment=experiment, now=now, final=True)
    with transaction.atomic():
        stopped = _conclude(
            experiment=experiment,
            status=Experiment.Status.STOPPED,
            decision=Experiment.Decision.NONE,
            reason=reason,
            now=now,
            user=user,
        )
        if stopped and experiment.purpose == Experiment.Purpose.ROLLOUT:
            deployment_make_live(
                version=experiment.control,
                reason=Deployment.Reason.ROLLBACK,
                user=user,
                note=f"Rollout of {experiment.variant.name} stopped: {reason}",
            )
    return experiment


# --------------------------------------------------------------------------- progressive rollout


def _stages(stages: tuple[float, ...] | list[float] | None) -> list[float]:
    values = [float(s) for s in (stages or DEFAULT_STAGES)]
    if (
        not values
        or values[-1] != 1.0
        or values[0] <= 0
        or any(b <= a for a, b in zip(values[:-1], values[1:], strict=True))
    ):
        raise ExperimentError(f"Rollout stages must increase and end at 1.0, e.g. 0.1,0.5,1.0; got {values}.")
    if len(values) < 2:
        raise ExperimentError(
            "A rollout needs at least one stage below 1.0; to switch at once, deploy directly."
        )
    return values


def rollout_start(
    *,
    assistant: Assistant,
    version: ModelVersion,
    stages: tuple[float, ...] | list[float] | None = None,
    stage_hours: float | None = None,
    user: AbstractBaseUser | None = None,
    min_sample_size: int = 100,
    significance_level: float = 0.05,
    min_improvement: float = 0.05,
    now: datetime | None = None,
) -> Experiment:
    """Ramp ``version`` up through ``stages`` (default 10% → 50% → 100%), each held ``stage_hours``.

    The caller passes the policy's stages and hold time (abtesting cannot import training). The live version
    is the control; a Deployment row (reason rollout_stage) records the first stage.
    """
    shares = _stages(stages)
    hours = float(stage_hours if stage_hours is not None else DEFAULT_STAGE_HOURS)
    if hours <= 0:
        raise ExperimentError("stage_hours must be positive.")
    live = Assistant.objects.select_related("live_version").get(pk=assistant.pk).live_version
    if live is None:
        raise ExperimentError(
            f"Assistant '{assistant.slug}' has no live version to roll out against; "
            f"make '{version.name}' live directly."
        )
    _validate(
        assistant=assistant,
        control=live,
        variant=version,
        traffic_split=shares[0],
        min_sample_size=min_sample_size,
        max_duration_days=1,
        significance_level=significance_level,
        min_improvement=min_improvement,
    )
    now = now or timezone.now()
    with transaction.atomic():
        experiment = _create(
            assistant=assistant,
            purpose=Experiment.Purpose.ROLLOUT,
            control=live,
            variant=version,
            traffic_split=shares[0],
            min_sample_size=min_sample_size,
            # Each stage held once; a stage short of data may hold longer (MAX_STAGE_HOLD_FACTOR).
            max_duration_days=len(shares) * hours / 24,
            significance_level=significance_level,
            min_improvement=min_improvement,
            stages=shares,
            stage_index=0,
            stage_hours=hours,
            stage_started_at=now,
            started_at=now,
        )
        deployment_record_stage(
            version=version,
            traffic_share=shares[0],
            user=user,
            note=f"Rollout stage 1/{len(shares)}: {shares[0]:.0%} of traffic (experiment {experiment.pk}).",
        )
    return experiment


def _rollback(*, experiment: Experiment, decision: str, reason: str, now: datetime) -> None:
    with transaction.atomic():
        if _conclude(
            experiment=experiment,
            status=Experiment.Status.CONCLUDED,
            decision=decision,
            reason=reason,
            now=now,
        ):
            deployment_make_live(version=experiment.control, reason=Deployment.Reason.ROLLBACK, note=reason)


def rollout_advance(*, experiment: Experiment, now: datetime | None = None) -> Experiment:
    """Watch a rollout stage; roll back if the new version is significantly worse, else move on when held.

    Run hourly (``tasks.advance_rollouts``). The guardrail compares the two versions on the current stage's
    interactions only (the split changes between stages, and the SRM check needs one split), with the
    always-valid confidence sequence, so checking every hour does not inflate false rollbacks. At the last
    stage (100%) the version is made live (Deployment reason approval) and the rollout concludes.
    """
    if not experiment.is_running or experiment.purpose != Experiment.Purpose.ROLLOUT:
        return experiment
    now = now or timezone.now()
    analysis = experiment_analyse(experiment=experiment, now=now)
    verdict = analysis["verdict"]
    stage_no = f"{experiment.stage_index + 1}/{len(experiment.stages)}"
    if verdict in ("variant_worse", "invalid_srm"):
        outcome = _decision_for(experiment, analysis, now)
        if outcome is None:
            # The test says worse but the lift's CI still includes no change (small samples): hold the
            # stage, neither rolling back nor moving on, until more feedback settles it.
            return experiment
        decision, why = outcome
        reason = (
            f"Rollout of {experiment.variant.name} rolled back at stage {stage_no} "
            f"({experiment.traffic_split:.0%}): {why}"
        )
        _rollback(experiment=experiment, decision=decision, reason=reason, now=now)
        return experiment

    held_hours = (now - (experiment.stage_started_at or experiment.started_at)).total_seconds() / 3600
    if held_hours < experiment.stage_hours:
        return experiment
    enough = min(analysis["control"]["n"], analysis["variant"]["n"]) >= experiment.min_sample_size
    if not enough and held_hours < experiment.stage_hours * MAX_STAGE_HOLD_FACTOR:
        return experiment  # hold on until the guardrail has enough feedback to judge
    guard = (
        f"guardrail passed (success {_rate(analysis['control'])} vs {_rate(analysis['variant'])}, "
        f"lift {_pct(analysis['relative_lift'])})"
        if enough
        else f"not enough feedback to judge after {held_hours:.0f} h "
        f"({analysis['control']['n']}/{analysis['variant']['n']} of {experiment.min_sample_size} per arm)"
    )
    next_index = experiment.stage_index + 1
    share = experiment.stages[next_index]
    if share >= 1.0:
        decision = (
            Experiment.Decision.VARIANT_BETTER
            if verdict == "variant_better"
            else Experiment.Decision.NO_DIFFERENCE
        )
        reason = f"Rollout complete: {experiment.variant.name} is live after stage {stage_no}, {guard}."
        with transaction.atomic():
            if _conclude(
                experiment=experiment,
                status=Experiment.Status.CONCLUDED,
                decision=decision,
                reason=reason,
                now=now,
            ):
                deployment_make_live(
                    version=experiment.variant, reason=Deployment.Reason.APPROVAL, note=reason
                )
        return experiment
    with transaction.atomic():
        tally = _fresh_tally()
        moved = Experiment.objects.filter(
            pk=experiment.pk, status=Experiment.Status.RUNNING, stage_index=experiment.stage_index
        ).update(stage_index=next_index, traffic_split=share, stage_started_at=now, tally=tally)
        if moved:
            deployment_record_stage(
                version=experiment.variant,
                traffic_share=share,
                note=f"Rollout stage {next_index + 1}/{len(experiment.stages)}: {share:.0%} of traffic; "
                f"stage {stage_no} {guard}.",
            )
    experiment.refresh_from_db()
    return experiment


def _rate(arm: dict[str, Any]) -> str:
    return "n/a" if arm.get("rate") is None else f"{arm['rate']:.1%}"
