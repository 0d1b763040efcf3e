"""Running a job: each stage's work (prepare the data, train, evaluate, A/B test) and the loop over them.

A stage claims the job's lease first, does its work, writes its results only while it still holds the
lease (``job_save``), and moves the job with a guarded transition; see ``training.services.state``.
A comparison (several candidates, ``training.services.comparison``) runs the same stages; training,
evaluating and starting the test hand their candidate-specific part to that module.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from abtesting import selectors as ab_selectors
from abtesting import services as ab
from abtesting.exceptions import ExperimentBusy
from config import logging as log_context
from training import evaluation, pipeline, trainers
from training.evaluation import EvaluationSettings
from training.events import job_record_event
from training.models import JobEvent, TrainingJob
from training.pipeline.validate import context_limit
from training.services import comparison
from training.services.decide import Evidence, decide
from training.services.deploy import job_wait, stage_deploying, verdict_apply
from training.services.start import dataset_options, policy_ensure
from training.services.state import (
    TESTING_GRACE,
    TRANSITIONS,
    WAIT_RECHECK,
    experiment_stop_quietly,
    job_fail,
    job_save,
    job_transition,
    lease_claim,
    lease_heartbeat,
    lease_release,
    provider_job_cancel,
    timeout_reason,
)

logger = logging.getLogger(__name__)

S = TrainingJob.Status


def job_advance(*, job: TrainingJob) -> TrainingJob:
    """Run the job's current stage and keep going until it waits (provider, A/B, reviewer) or ends.

    Safe to call any number of times from any number of workers: each stage is claimed first and every
    move is a guarded transition.
    """
    with log_context.bind(job_id=job.pk, assistant_id=job.assistant_id), lease_heartbeat(job):
        for _ in range(len(TRANSITIONS)):  # each pass either moves the job forward or returns
            job.refresh_from_db()
            job._lease_token = None  # each stage claims its own lease
            if job.is_terminal:
                return job
            if job.deadline_at is not None and timezone.now() > job.deadline_at:
                job_fail(job=job, error=timeout_reason(job))
                return job
            stage = STAGES.get(job.status)
            if stage is None:
                return job
            try:
                moved = stage(job)
            except Exception as exc:  # a bug or an unexpected provider error must not leave the job hanging
                logger.exception("Stage %s of job %s failed", job.status, job.pk)
                job_fail(job=job, error=f"{job.status} failed: {type(exc).__name__}: {exc}")
                return job
            if not moved:
                return job
    return job


def stage_pending(job: TrainingJob) -> bool:
    return job_transition(job=job, to=S.PREPARING, message="Preparing the training data.")


def stage_preparing(job: TrainingJob) -> bool:
    if not lease_claim(job):
        return False
    policy = policy_ensure(assistant=job.assistant)
    overrides = dict(job.options.get("dataset_options") or {})
    base_model = job.base_model
    if comparison.is_comparison(job):
        # One dataset for every candidate: sized for the provider model with the smallest context, and
        # redacted when any candidate sends it to a provider (as a provider job's would be).
        models = [c.base_model for c in job.candidates.all() if c.backend == "openai"]
        if models:
            base_model = min(models, key=context_limit)
            if policy.redact_for_provider:
                overrides["redact"] = True
    dataset = pipeline.dataset_build(
        assistant=job.assistant,
        format="chat_completion",
        options=dataset_options(policy, overrides, base_model=base_model),
    )
    job_save(job, dataset=dataset, feedback_count=dataset.train_count + dataset.validation_count)
    if not dataset.is_valid:
        problems = "; ".join(str(e) for e in dataset.validation_errors)
        return job_fail(
            job=job, error=f"The training data is not usable: {problems}", data={"dataset": dataset.pk}
        )
    return job_transition(
        job=job,
        to=S.TRAINING,
        message=f"Dataset {dataset.pk}: {dataset.train_count} training and "
        f"{dataset.validation_count} validation examples.",
        data={"dataset": dataset.pk, "stats": dataset.stats},
    )


def stage_training(job: TrainingJob) -> bool:
    if comparison.is_comparison(job):
        return comparison.candidates_train(job)
    if not lease_claim(job):
        return False
    trainer = trainers.get_trainer(job.backend)
    known_provider_job = job.provider_job_id
    first = not job.provider_job_id and job.new_model_version_id is None
    outcome = trainer.start(job) if first else trainer.poll(job)
    job.refresh_from_db()
    if job.status != S.TRAINING:  # cancelled or failed while the trainer worked
        if job.is_terminal and job.provider_job_id and job.provider_job_id != known_provider_job:
            # The stop's clean-up may have run before the trainer created this provider job: cancel it,
            # or it trains (and bills) for a job nobody follows any more.
            provider_job_cancel(job)
        return False
    metrics = {**job.metrics, **(outcome.metrics or {})}
    if outcome.state == "running":
        job_save(job, metrics=metrics)
        lease_release(job, recheck_in=timedelta(seconds=max(1.0, outcome.poll_after)))
        return False
    if outcome.state == "succeeded":
        version = outcome.model_version
        if version is None:
            return job_fail(
                job=job, error=f"The {job.backend} trainer reported success without a model version."
            )
        return job_transition(
            job=job,
            to=S.EVALUATING,
            message=f"Trained {version.name}.",
            data={"metrics": outcome.metrics},
            fields={"new_model_version": version, "metrics": metrics},
        )
    if outcome.state == "cancelled":
        return job_transition(
            job=job,
            to=S.CANCELLED,
            message=outcome.error or "The provider cancelled the training job.",
            fields={"metrics": metrics, "error": outcome.error or "Cancelled by the provider."},
        )
    return job_transition(
        job=job,
        to=S.FAILED,
        message=outcome.error or "Training failed.",
        fields={
            "metrics": metrics,
            "error": outcome.error or "Training failed without a reason from the trainer.",
        },
    )


def stage_evaluating(job: TrainingJob) -> bool:
    if not lease_claim(job):
        return False
    policy = policy_ensure(assistant=job.assistant)
    settings = EvaluationSettings.from_policy(policy)
    if comparison.is_comparison(job):
        report = _comparison_evaluate(job, settings)
        if report is None:
            return False
    else:
        report = evaluation.evaluate_job(job=job, settings=settings)
        metrics = {**job.metrics, **report.summary()}
        if not job_save(job, evaluation=report.as_dict(), metrics=metrics):
            return False  # cancelled or failed while it was being evaluated
    evaluation.evaluation_prompts_replace(job=job, report=report)
    job_record_event(job=job, kind=JobEvent.Kind.METRIC, message=report.describe(), data=report.summary())
    if report.stopped_reason:
        return job_fail(job=job, error=f"Evaluation stopped: {report.stopped_reason}")
    if report.clearly_worse:
        return job_fail(job=job, error=report.worse_reason)
    if not report.enough_prompts and job.options.get("auto_approve"):
        # Whatever decides later (this evaluation or an A/B test), too few prompts never deploy unseen.
        why = (
            f"auto_approve withdrawn: the candidate was evaluated on {report.prompts} prompts, fewer than "
            f"the policy's minimum of {report.min_prompts}; a reviewer decides."
        )
        job_save(job, options={**job.options, "auto_approve": False, "auto_approve_withdrawn": why})
        job_record_event(job=job, kind=JobEvent.Kind.NOTE, message=why)
    live = job.assistant.live_version
    if policy.ab_enabled and not job.options.get("skip_ab_test") and live is not None:
        wait = timedelta(days=policy.ab_max_duration_days) + TESTING_GRACE
        return job_transition(
            job=job,
            to=S.TESTING,
            message="Starting an A/B test against the live version.",
            fields={"deadline_at": timezone.now() + wait},
        )
    if not report.enough_prompts:
        return job_transition(
            job=job,
            to=S.AWAITING_APPROVAL,
            data=report.summary(),
            message=f"Offline evaluation on {report.prompts} prompts is below the policy's minimum of "
            f"{report.min_prompts} graded prompts: no automatic decision, awaiting a reviewer.",
        )
    evidence = Evidence(
        significant=report.significant,
        # The lower end of the improvement's 95 % interval: thresholds must be cleared with confidence.
        improvement=report.decision_improvement,
        worse=False,
        summary=_with_chosen(job, _offline_evidence(report)),
        first_version=live is None,
    )
    return verdict_apply(job, decide(evidence=evidence, policy=policy))


def _comparison_evaluate(job: TrainingJob, settings: EvaluationSettings):
    """Evaluate and rank the candidates; the best becomes the job's version and evaluation. None: the job
    moved on (failed here, or cancelled meanwhile)."""
    result = comparison.candidates_evaluate(job=job, settings=settings)
    ranking = result.ranking
    job_record_event(
        job=job, kind=JobEvent.Kind.METRIC, message=ranking.describe(), data={"ranking": ranking.as_dict()}
    )
    chosen = result.chosen
    if chosen is None:
        reasons = "; ".join(f"{e.label}: {e.excluded}" for e in ranking.entries) or "no candidate"
        job_fail(job=job, error=f"No candidate could be evaluated ({reasons}).")
        return None
    why = comparison.offline_why(ranking, chosen)
    report = result.report
    saved = job_save(
        job,
        new_model_version=chosen.model_version,
        evaluation={**report.as_dict(), "comparison": ranking.as_dict()},
        metrics={**job.metrics, **chosen.metrics, **report.summary(), "progress": 1.0},
        options={
            **job.options,
            "chosen": {"candidate": chosen.pk, "label": chosen.label, "offline": why, "why": why},
        },
    )
    if not saved:
        return None  # cancelled or failed while it was being evaluated
    job_record_event(
        job=job,
        kind=JobEvent.Kind.DECISION,
        message=f"Chosen offline: {why}.",
        data={"candidate": chosen.label, "version": chosen.model_version.name},
    )
    return report


def _with_chosen(job: TrainingJob, summary: str) -> str:
    """A comparison's evidence also names the candidate it is about and why it was chosen."""
    why = comparison.chosen_note(job)
    return f"{summary}; chosen: {why}" if why else summary


def _offline_evidence(report) -> str:
    text = f"offline evaluation on {report.prompts} prompts, {report.grader.get('name', 'grader')}"
    if report.win_rate is not None and len(report.win_rate_ci) == 3:
        text += (
            f", candidate wins {report.win_rate:.0%} of pairwise comparisons "
            f"(95 % CI {report.win_rate_ci[1]:.0%}–{report.win_rate_ci[2]:.0%})"
        )
    if report.decision_improvement is not None:
        text += f", improvement at least {report.decision_improvement:+.1%} (lower end of its 95 % interval)"
    return text


def stage_testing(job: TrainingJob) -> bool:
    if job.experiment_id is None:
        return _test_start(job)
    experiment = job.experiment
    if experiment.status == "running":
        lease_release(job, recheck_in=WAIT_RECHECK)
        return False
    if not lease_claim(job):
        return False
    if comparison.is_comparison(job):
        # A multi-arm experiment's winner may be another candidate than the offline best.
        comparison.winner_adopt(job, experiment)
    results = ab_selectors.experiment_results_for(experiment=experiment, version_id=job.new_model_version_id)
    job_save(job, ab_test_results=results)
    policy = policy_ensure(assistant=job.assistant)
    decision = experiment.decision or ""
    if experiment.status == "stopped":
        # Stopping early is not a result: the timeline must not read like a verdict.
        summary = f"A/B test {experiment.pk} {experiment.outcome} ({experiment.decision_reason})"
    else:
        summary = (
            f"A/B test {experiment.pk} ({experiment.status}, decision {decision or 'none'}"
            + (f": {experiment.decision_reason}" if experiment.decision_reason else "")
            + ")"
        )
    evidence = Evidence(
        significant=decision == "variant_better",
        improvement=results.get("improvement"),
        # Thresholds are met by the lower end of the decision interval: the estimate of a test that
        # stopped early overshoots the truth (issue 11's audit: a +10 % variant auto-deployed on a 15 %
        # threshold in 16.8 % of runs).
        improvement_low=results.get("improvementLow"),
        by_lower_bound=True,
        # A sample-ratio mismatch means the assignment was broken: nothing measured can be trusted.
        worse=decision in ("variant_worse", "invalid_srm"),
        summary=_with_chosen(job, summary),
        first_version=False,
    )
    return verdict_apply(job, decide(evidence=evidence, policy=policy))


def _test_start(job: TrainingJob) -> bool:
    """Start the job's A/B test against the live version (or decide at once when nothing is live)."""
    if not lease_claim(job):
        return False
    policy = policy_ensure(assistant=job.assistant)
    live = job.assistant.live_version
    if live is None:
        evidence = Evidence(
            significant=False,
            improvement=None,
            worse=False,
            summary="no live version to test against",
            first_version=True,
        )
        return verdict_apply(job, decide(evidence=evidence, policy=policy))
    variants = comparison.experiment_variants(job) if comparison.is_comparison(job) else []
    # More than one: the top candidates go to one multi-arm experiment (interface B of issue 18).
    extra = {"extra_variants": variants[1:]} if len(variants) > 1 else {}
    try:
        experiment = ab.experiment_start(
            assistant=job.assistant,
            control=live,
            variant=job.new_model_version,
            traffic_split=policy.ab_traffic_split,
            min_sample_size=policy.ab_min_sample_size,
            max_duration_days=policy.ab_max_duration_days,
            significance_level=policy.ab_significance_level,
            min_improvement=policy.ab_min_improvement,
            look_interval_minutes=policy.ab_look_interval_minutes,
            purpose="ab_test",
            **extra,
        )
    except ExperimentBusy as exc:
        # Another experiment holds the assistant's traffic: wait in `testing` and try again later.
        return job_wait(job, f"Waiting for the running experiment to finish before testing: {exc}")
    deadline = timezone.now() + timedelta(days=policy.ab_max_duration_days) + TESTING_GRACE
    if not job_save(job, experiment=experiment, deadline_at=deadline):
        # Cancelled or failed while the experiment started: its clean-up could not see the experiment,
        # which would otherwise keep sending traffic to a candidate nobody will deploy.
        experiment_stop_quietly(
            experiment.pk, reason=f"Training job {job.pk} ended while its A/B test started."
        )
        return False
    if extra:
        names = ", ".join(v.name for v in variants)
        message = (
            f"Multi-arm experiment {experiment.pk} started: {live.name} vs {names} (the top "
            f"{len(variants)} candidates), traffic split equally."
        )
    else:
        message = (
            f"A/B test {experiment.pk} started: {live.name} vs {job.new_model_version.name}, "
            f"{policy.ab_traffic_split:.0%} of traffic to the candidate."
        )
    job_record_event(job=job, kind=JobEvent.Kind.NOTE, data={"experiment": experiment.pk}, message=message)
    lease_release(job, recheck_in=WAIT_RECHECK)
    return False


# What runs in each status; a status without a stage waits for a person or is terminal.
STAGES = {
    S.PENDING: stage_pending,
    S.PREPARING: stage_preparing,
    S.TRAINING: stage_training,
    S.EVALUATING: stage_evaluating,
    S.TESTING: stage_testing,
    S.DEPLOYING: stage_deploying,
}
