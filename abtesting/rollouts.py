"""Progressive rollouts: a new version ramps up through traffic stages (default 10% → 50% → 100%).

A rollout is an experiment with ``purpose="rollout"``: the live version is the control, each stage is a
test on its own traffic with its own confidence sequence, and a guardrail rolls back at once when the new
version does significantly worse. Stage moves are conditional UPDATEs on the stage index, so two workers
never advance one stage twice. Stopping a rollout by hand is ``abtesting.services.experiment_stop``.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from abtesting import services
from abtesting.exceptions import ExperimentError
from abtesting.formatting import arm_rate, signed_pct
from abtesting.models import Experiment, ExperimentUnit
from assistants.models import Assistant, Deployment, ModelVersion
from assistants.services import deployment_make_live, deployment_record_stage

DEFAULT_STAGES = (0.1, 0.5, 1.0)
DEFAULT_STAGE_HOURS = 48.0
# A rollout stage without enough feedback to judge is held up to this many times its hold time, then
# advanced anyway (low-traffic assistants must not stall forever); the Deployment note says so.
MAX_STAGE_HOLD_FACTOR = 2.0


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
    services.settings_check(
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
        experiment = services.experiment_create(
            assistant=assistant,
            plan={
                "cs_tuning_n": services.cs_tuning(
                    assistant=assistant, days=hours / 24, min_sample_size=min_sample_size, now=now
                )
            },
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
        if services.experiment_conclude(
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
    analysis = services.experiment_analyse(experiment=experiment, now=now)
    verdict = analysis["verdict"]
    stage_no = f"{experiment.stage_index + 1}/{len(experiment.stages)}"
    if verdict in ("variant_worse", "invalid_srm"):
        outcome = services.decision_for(experiment, analysis, now)
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
        f"guardrail passed (success {arm_rate(analysis['control'])} vs {arm_rate(analysis['variant'])}, "
        f"lift {signed_pct(analysis['relative_lift'])})"
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
            if services.experiment_conclude(
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
    # Each stage is a new test on its own traffic, with its own confidence sequence tuned once, here.
    plan = {
        "cs_tuning_n": services.cs_tuning(
            assistant=experiment.assistant,
            days=experiment.stage_hours / 24,
            min_sample_size=experiment.min_sample_size,
            now=now,
        )
    }
    with transaction.atomic():
        tally = services.fresh_tally()
        moved = Experiment.objects.filter(
            pk=experiment.pk, status=Experiment.Status.RUNNING, stage_index=experiment.stage_index
        ).update(stage_index=next_index, traffic_split=share, stage_started_at=now, tally=tally, plan=plan)
        if moved:
            ExperimentUnit.objects.filter(experiment_id=experiment.pk).delete()
            deployment_record_stage(
                version=experiment.variant,
                traffic_share=share,
                note=f"Rollout stage {next_index + 1}/{len(experiment.stages)}: {share:.0%} of traffic; "
                f"stage {stage_no} {guard}.",
            )
    experiment.refresh_from_db()
    return experiment
