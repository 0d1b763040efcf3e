"""Comparisons: one job trains several candidates on its one dataset, ranks them offline, keeps the best.

A comparison is a ``TrainingJob`` with ``JobCandidate`` rows (``options["comparison"]`` holds the online
choice and k). Its stages are the job's usual ones; only these steps differ:

* **training** (``candidates_train``): every candidate trains on the job's dataset and split. Local
  candidates finish at once; provider candidates start up to the provider's concurrency limit
  (``training.trainers.slots``) and are polled, each at its own pace, while the stage returns and rechecks
  like a single provider job. A candidate that fails is marked failed with its error; the comparison
  fails only when every candidate failed.
* **evaluating** (``candidates_evaluate``): every succeeded candidate and the live version answer the
  same validation prompts, graded by one grader with one judge budget; the candidates are ranked with
  bootstrap intervals (``training.evaluation.ranking``). The job's ``new_model_version`` and evaluation
  become the best candidate's, so the rest of the loop (clearly worse → fail, the A/B test, the decision,
  approval, deployment) is the single job's.
* **testing** (``experiment_variants``, ``winner_adopt``): "best_ab" A/B tests the best candidate as
  usual; "multi_arm" puts the top k into one multi-arm experiment, whose winner (when it is not the
  offline best) becomes the job's version, with the reason on the timeline.

What the job deploys is always named with why it was chosen (``chosen_why``): its offline rank and
the experiment's result; the decision's reason and the deployment's note carry it.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

from django.utils import timezone

from assistants.models import ModelVersion
from training.comparison_spec import ONLINE_MULTI_ARM, CandidateSpec
from training.evaluation import (
    MAX_REMOTE_PROMPTS,
    EvaluationReport,
    EvaluationSettings,
    evaluate_prompts,
    validation_prompts,
)
from training.evaluation import graders as g
from training.evaluation.ranking import Ranking, rank_reports
from training.events import job_record_event
from training.models import JobCandidate, JobEvent, TrainingJob
from training.services.state import (
    candidate_provider_cancel,
    job_fail,
    job_save,
    job_transition,
    lease_claim,
    lease_release,
)
from training.trainers import TrainingOutcome, as_subject, get_trainer

logger = logging.getLogger(__name__)

S = TrainingJob.Status
C = JobCandidate.Status
MIN_RECHECK = timedelta(seconds=1)


def is_comparison(job: TrainingJob) -> bool:
    return bool((job.options or {}).get("comparison"))


def candidate_describe(candidate: JobCandidate) -> str:
    """The trainer and its settings in words ("local: threshold tuned on validation, word features")."""
    spec = CandidateSpec(candidate.label, candidate.backend, candidate.base_model, candidate.settings or {})
    try:
        return spec.describe()
    except ValueError:  # settings written by hand in the database
        return f"{candidate.backend}: {candidate.settings}"


# -- training -------------------------------------------------------------------------------------------


def _candidate_save(job: TrainingJob, candidate: JobCandidate, **values: Any) -> bool:
    """Write a candidate's results only while this worker still holds the job's stage (as ``job_save``)."""
    values["updated_at"] = timezone.now()
    rows = JobCandidate.objects.filter(pk=candidate.pk, job_id=job.pk, job__status=job.status)
    token = getattr(job, "_lease_token", None)
    if token:
        rows = rows.filter(job__lease_owner=token)
    saved = rows.update(**values) == 1
    for name, value in values.items():
        setattr(candidate, name, value)
    return saved


def candidates_train(job: TrainingJob) -> bool:
    """The training stage of a comparison: start or poll each unfinished candidate whose time has come."""
    if not lease_claim(job):
        return False
    candidates = list(job.candidates.select_related("model_version").order_by("position"))
    for candidate in candidates:
        candidate.job = job  # the trainers write through this job (its lease, its options)
    for candidate in candidates:
        if candidate.is_terminal or (candidate.next_poll_at and candidate.next_poll_at > timezone.now()):
            continue
        known_provider_job = candidate.provider_job_id
        outcome = _train_one(candidate)
        job.refresh_from_db(fields=("status",))
        if job.status != S.TRAINING:  # cancelled or failed while the trainer worked
            if candidate.provider_job_id and candidate.provider_job_id != known_provider_job:
                # The stop's clean-up may have run before this provider job existed: cancel it now.
                candidate_provider_cancel(candidate)
            return False
        _apply(job, candidate, outcome)
    return _training_settle(job, candidates)


def _train_one(candidate: JobCandidate) -> TrainingOutcome:
    trainer = get_trainer(candidate.backend)
    first = candidate.status == C.PENDING and not candidate.provider_job_id
    try:
        return trainer.start(candidate) if first else trainer.poll(candidate)
    except Exception as exc:  # one candidate's unexpected error fails that candidate, not the comparison
        logger.exception("Candidate %s of job %s failed", candidate.label, candidate.job_id)
        return TrainingOutcome(TrainingOutcome.FAILED, error=f"{type(exc).__name__}: {exc}")


def _apply(job: TrainingJob, candidate: JobCandidate, outcome: TrainingOutcome) -> None:
    now = timezone.now()
    subject = as_subject(candidate)
    values: dict[str, Any] = {"metrics": {**(candidate.metrics or {}), **(outcome.metrics or {})}}
    if outcome.state == TrainingOutcome.RUNNING:
        if not outcome.waiting:
            values["status"] = C.TRAINING
            values["started_at"] = candidate.started_at or now
        values["next_poll_at"] = now + timedelta(seconds=max(0.0, outcome.poll_after))
        _candidate_save(job, candidate, **values)
        return
    values.update(next_poll_at=None, finished_at=now, started_at=candidate.started_at or now)
    version = outcome.model_version
    if outcome.state == TrainingOutcome.SUCCEEDED and version is not None:
        if _candidate_save(job, candidate, status=C.SUCCEEDED, model_version=version, **values):
            subject.record(
                kind=JobEvent.Kind.METRIC,
                message=f"Trained {version.name} ({candidate_describe(candidate)}).",
                data={"version": version.name, "metrics": outcome.metrics},
            )
        return
    if outcome.state == TrainingOutcome.SUCCEEDED:
        error = f"The {candidate.backend} trainer reported success without a model version."
    elif outcome.state == TrainingOutcome.CANCELLED:
        error = outcome.error or "The provider cancelled the training job."
    else:
        error = outcome.error or "Training failed without a reason from the trainer."
    if _candidate_save(job, candidate, status=C.FAILED, error=error, **values):
        subject.note(f"Failed: {error} The comparison goes on without it.")


def _training_settle(job: TrainingJob, candidates: list[JobCandidate]) -> bool:
    """Move on once every candidate finished; else come back when the next one is due."""
    done = [c for c in candidates if c.is_terminal]
    job_save(job, metrics={**(job.metrics or {}), "progress": len(done) / len(candidates)})
    if len(done) < len(candidates):
        now = timezone.now()
        due = [c.next_poll_at for c in candidates if not c.is_terminal and c.next_poll_at]
        wait = max(MIN_RECHECK, min(due) - now) if due else MIN_RECHECK
        lease_release(job, recheck_in=wait)
        return False
    succeeded = [c for c in candidates if c.status == C.SUCCEEDED]
    if not succeeded:
        reasons = "; ".join(f"{c.label}: {c.error}" for c in candidates)
        return job_fail(job=job, error=f"Every candidate failed. {reasons}")
    failed = [c.label for c in candidates if c.status == C.FAILED]
    trained = ", ".join(f"{c.label} ({c.model_version.name})" for c in succeeded)
    return job_transition(
        job=job,
        to=S.EVALUATING,
        message=f"Trained {len(succeeded)} of {len(candidates)} candidates: {trained}"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + ".",
        data={"succeeded": [c.label for c in succeeded], "failed": failed},
    )


# -- evaluating -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class ComparisonResult:
    """The offline comparison's outcome: the chosen candidate (None: none could be evaluated)."""

    report: EvaluationReport  # the chosen candidate's (or the first stopped one's)
    ranking: Ranking
    chosen: JobCandidate | None


def candidates_evaluate(*, job: TrainingJob, settings: EvaluationSettings) -> ComparisonResult:
    """Evaluate every succeeded candidate against live on the same prompts with one grader, and rank."""
    from training.evaluation.calibration import grader_calibration
    from training.evaluation.judge import provider_configured

    candidates = list(
        job.candidates.filter(status=C.SUCCEEDED, model_version__isnull=False)
        .select_related("model_version")
        .order_by("position")
    )
    live = job.assistant.live_version
    provider = provider_configured()
    remote = any(c.model_version.backend != ModelVersion.Backend.LOCAL for c in candidates) or (
        live is not None and live.backend != ModelVersion.Backend.LOCAL
    )
    prompts = validation_prompts(job.dataset)
    if remote:
        # Provider answers are paid calls: the same capped prompts for every candidate.
        prompts = prompts[:MAX_REMOTE_PROMPTS]
    # One grader for all: "auto" would grade provider-trained candidates by a judge and local ones by
    # token F1, and scores from different graders cannot be ranked against each other.
    backend = "openai" if any(c.model_version.backend == "openai" for c in candidates) else "local"
    settings = dataclasses.replace(
        settings, grader=g.resolve(settings.grader, candidate_backend=backend, provider=provider)
    )
    judge = settings.judge() if provider else None  # one budget for the whole job, as for a single one
    reports: list[tuple[int, str, EvaluationReport]] = []
    for candidate in candidates:
        report = evaluate_prompts(
            candidate=candidate.model_version, live=live, prompts=prompts, settings=settings, judge=judge
        )
        reports.append((candidate.pk, candidate.label, report))
    ranking = rank_reports(reports)
    by_key = {key: report for key, _, report in reports}
    entries = {e.key: e for e in ranking.entries}
    for candidate in candidates:
        report, entry = by_key[candidate.pk], entries[candidate.pk]
        summary = report.summary()
        _candidate_save(
            job,
            candidate,
            rank=entry.rank,
            # The whole report (no per-prompt rows): the job's evaluation if the experiment picks this one.
            evaluation={**entry.as_dict(), "summary": summary, "report": report.as_dict()},
            metrics={**(candidate.metrics or {}), **summary},
        )
    chosen = _chosen(candidates, ranking, by_key)
    report = by_key[chosen.pk] if chosen else (reports[0][2] if reports else EvaluationReport(0, None, None))
    if chosen is not None and not report.stopped_reason and settings.calibration_size:
        report.calibration = grader_calibration(
            assistant=job.assistant,
            dataset=job.dataset,
            limit=settings.calibration_size,
            judge=judge,
            settings=settings,
        )
    if judge is not None:
        report.judge_usage = judge.usage.as_dict()
    return ComparisonResult(report=report, ranking=ranking, chosen=chosen)


def _chosen(
    candidates: list[JobCandidate], ranking: Ranking, reports: dict[int, EvaluationReport]
) -> JobCandidate | None:
    """The best ranked; with nothing ranked (no validation prompts), the first that was evaluated."""
    by_pk = {c.pk: c for c in candidates}
    if ranking.best is not None:
        return by_pk[ranking.best.key]
    return next((c for c in candidates if not reports[c.pk].stopped_reason), None)


def offline_why(ranking: Ranking, chosen: JobCandidate) -> str:
    """Why the offline comparison chose ``chosen``, for the timeline and the decision's reason."""
    ranked = ranking.ranked
    if not ranked:
        return f"candidate {chosen.label} ({candidate_describe(chosen)}), unranked: no validation prompts"
    entry = next(e for e in ranked if e.key == chosen.pk)
    text = (
        f"candidate {chosen.label} ({candidate_describe(chosen)}), offline rank {entry.rank} of "
        f"{len(ranked)} with accuracy {entry.score.estimate:.1%}"
    )
    if entry.score.low is not None:
        text += f" (95 % CI {entry.score.low:.1%}–{entry.score.high:.1%})"
    if entry.rank == 1 and ranking.distinguishable is not None:
        runner = ranking.runner_up
        text += (
            f", distinguishable from the runner-up {runner.label}"
            if ranking.distinguishable
            else f", not distinguishable from the runner-up {runner.label}"
        )
    return text


# -- testing --------------------------------------------------------------------------------------------


def experiment_variants(job: TrainingJob) -> list[ModelVersion]:
    """The versions the online test compares with live, best first: the job's version alone ("best_ab"),
    or the top k ranked candidates ("multi_arm"; fewer when fewer were ranked). A candidate its own
    offline evaluation found clearly worse than live goes to no customer, as a single job's would not."""
    options = (job.options or {}).get("comparison") or {}
    if options.get("online") != ONLINE_MULTI_ARM:
        return [job.new_model_version]
    ranked = [
        c
        for c in job.candidates.filter(rank__isnull=False, model_version__isnull=False)
        .select_related("model_version")
        .order_by("rank")
        if not ((c.evaluation or {}).get("report") or {}).get("clearly_worse")
    ][: int(options.get("top_k") or 2)]
    versions = [c.model_version for c in ranked]
    if job.new_model_version_id not in [v.pk for v in versions]:  # defensive: the chosen one goes first
        versions = [job.new_model_version, *versions[:-1]]
    return versions


def chosen_note(job: TrainingJob) -> str:
    """The stored reason the job's version was chosen (empty for a single job)."""
    return str(((job.options or {}).get("chosen") or {}).get("why") or "")


def winner_adopt(job: TrainingJob, experiment: Any) -> bool:
    """After a multi-arm experiment: its winner becomes the job's version when it is another candidate.

    Returns True when the job's version changed. The timeline says why; ``options["chosen"]`` keeps the
    reason for the decision and the deployment.
    """
    winner_id = getattr(experiment, "winner_id", None)  # interface B: Experiment.winner
    chosen = dict((job.options or {}).get("chosen") or {})
    if winner_id is None:
        if chosen and experiment.decision:
            chosen["why"] = (
                f"{chosen.get('offline', '')}; A/B test {experiment.pk}: {experiment.outcome}"
            ).lstrip("; ")
            job_save(job, options={**job.options, "chosen": chosen})
        return False
    candidate = job.candidates.filter(model_version_id=winner_id).first()
    winner = candidate.model_version if candidate else ModelVersion.objects.get(pk=winner_id)
    result = f"experiment {experiment.pk} declared {winner.name} the winner ({experiment.decision_reason})"
    if winner_id == job.new_model_version_id:
        # Also the path of a retry after the winner was adopted (the worker lost its lease before the
        # verdict): the reason already names the result, and rebuilding it from the offline note would
        # describe the offline best instead of the winner.
        if chosen and result not in str(chosen.get("why") or ""):
            chosen["why"] = f"{chosen.get('offline', '')}; {result}".lstrip("; ")
            job_save(job, options={**job.options, "chosen": chosen})
        return False
    previous = job.new_model_version
    label = candidate.label if candidate else winner.name
    why = (
        f"candidate {label} ({candidate_describe(candidate) if candidate else 'not a candidate'}), "
        f"offline rank {candidate.rank if candidate and candidate.rank else '–'}; {result}, over the "
        f"offline best {previous.name if previous else '–'}"
    )
    chosen.update({"candidate": candidate.pk if candidate else None, "label": label, "why": why})
    values: dict[str, Any] = {"new_model_version": winner, "options": {**job.options, "chosen": chosen}}
    report = ((candidate.evaluation or {}).get("report") if candidate else None) or {}
    if report:
        # The job's evaluation and metrics become the winner's; the per-prompt rows stay those of the
        # offline best (``prompts_of`` says so on the page).
        kept = {k: (job.evaluation or {}).get(k) for k in ("comparison", "calibration", "judge_usage")}
        prompts_of = (job.evaluation or {}).get("prompts_of") or (previous.name if previous else "")
        values["evaluation"] = {**report, **kept, "prompts_of": prompts_of}
        values["metrics"] = {**(candidate.metrics or {}), "progress": 1.0}
    if not job_save(job, **values):
        return False
    job_record_event(
        job=job,
        kind=JobEvent.Kind.DECISION,
        message=f"The multi-arm experiment chose another candidate than the offline best: {why}.",
        data={"previous": previous.name if previous else None, "new_model_version": winner.name},
    )
    return True
