"""Offline evaluation you can trust: graders, pairwise judging, intervals, calibration.

* ``graders`` — string_check, text_similarity (token F1, ROUGE-L, BLEU, fuzzy, cosine), score_model and
  label_model judges, in the shapes of OpenAI's evals graders;
* ``pairwise`` — candidate vs live per prompt, both orders with a judge;
* ``intervals`` — paired (cluster) bootstrap and Wilson intervals;
* ``calibration`` — each grader's agreement with the customers on held-out rated answers;
* ``judge`` — the provider calls: bounded concurrency, retries, token usage, cost, budget;
* ``run`` — the evaluation itself and the verdicts the decision rule may use.

``evaluate_job`` is what the job's evaluating stage calls; ``evaluation_prompts_replace`` stores the
per-prompt rows the job page lists.
"""

from __future__ import annotations

from django.db import transaction

from assistants.models import ModelVersion
from training.evaluation.run import (
    DEFAULT_MIN_PROMPTS,
    MAX_REMOTE_PROMPTS,
    WORSE_MARGIN,
    EvaluationReport,
    EvaluationSettings,
    Prompt,
    VersionScore,
    evaluate_prompts,
)
from training.models import DatasetExample, EvaluationPrompt, TrainingDataset, TrainingJob
from training.trainers.local import read_chat_jsonl

__all__ = [
    "DEFAULT_MIN_PROMPTS",
    "MAX_REMOTE_PROMPTS",
    "WORSE_MARGIN",
    "EvaluationReport",
    "EvaluationSettings",
    "Prompt",
    "VersionScore",
    "evaluate_job",
    "evaluate_prompts",
    "evaluate_versions",
    "evaluation_prompts_replace",
    "validation_prompts",
]


def validation_prompts(dataset: TrainingDataset | None) -> list[Prompt]:
    """The dataset's validation examples, with who asked and whether the reference is a correction.

    The validation file holds the examples in interaction order (the pipeline reads feedback ordered by
    interaction), so the dataset's validation provenance, grouped by interaction and sorted, lines up with
    it. When it does not (a dataset made by hand, feedback deleted since), prompts carry no customer and
    intervals treat them as independent.
    """
    if dataset is None:
        return []
    from training.pipeline.erasure import dataset_ready

    dataset = dataset_ready(dataset)  # rebuilt first when an erasure marked it
    examples = list(read_chat_jsonl(dataset.validation_file))
    rows = (
        DatasetExample.objects.filter(dataset=dataset, split=DatasetExample.Split.VALIDATION)
        .order_by("feedback__interaction_id", "feedback__created_at", "feedback_id")
        .values_list(
            "feedback__interaction_id", "feedback__interaction__user_ref", "feedback__corrected_answer"
        )
    )
    context: dict[int, list] = {}
    for iid, user_ref, corrected in rows:
        entry = context.setdefault(iid, [user_ref or "", False])
        entry[1] = entry[1] or bool((corrected or "").strip())
    ordered = [context[i] for i in sorted(context)]
    if len(ordered) != len(examples):
        ordered = [["", False]] * len(examples)
    return [
        Prompt(messages=m, question=q, reference=r, reference_is_correction=corr, customer=user)
        for (m, q, r), (user, corr) in zip(examples, ordered, strict=True)
    ]


def evaluate_versions(
    *,
    candidate: ModelVersion,
    live: ModelVersion | None,
    examples: list[tuple[list[dict], str, str]],
    settings: EvaluationSettings | None = None,
) -> EvaluationReport:
    """Score both versions on ``examples`` = [(prompt messages, question, reference answer)]."""
    prompts = [Prompt(messages=m, question=q, reference=r) for m, q, r in examples]
    return evaluate_prompts(candidate=candidate, live=live, prompts=prompts, settings=settings)


def evaluate_job(*, job: TrainingJob, settings: EvaluationSettings) -> EvaluationReport:
    """Evaluate the job's new version against the assistant's live version on the validation split, then
    calibrate the graders on held-out customer ratings (within the same judge budget).

    ``settings``: ``EvaluationSettings.from_policy(policy)`` for the job's assistant (the caller has it).
    """
    from training.evaluation.calibration import grader_calibration
    from training.evaluation.judge import provider_configured

    live = job.assistant.live_version
    judge = settings.judge() if provider_configured() else None
    report = evaluate_prompts(
        candidate=job.new_model_version,
        live=live,
        prompts=validation_prompts(job.dataset),
        settings=settings,
        judge=judge,
    )
    if not report.stopped_reason and settings.calibration_size:
        report.calibration = grader_calibration(
            assistant=job.assistant,
            dataset=job.dataset,
            limit=settings.calibration_size,
            judge=judge,
            settings=settings,
        )
        if judge is not None:
            report.judge_usage = judge.usage.as_dict()
    return report


@transaction.atomic
def evaluation_prompts_replace(*, job: TrainingJob, report: EvaluationReport) -> int:
    """Store the report's per-prompt rows for the job (a re-run evaluation replaces the earlier rows)."""
    EvaluationPrompt.objects.filter(job=job).delete()
    objs = [
        EvaluationPrompt(
            job=job,
            position=k,
            question=r.question,
            reference=r.reference,
            reference_is_correction=r.reference_is_correction,
            customer=r.customer[:200],
            candidate_answer=r.candidate_answer,
            live_answer=r.live_answer,
            candidate_score=r.candidate.score,
            candidate_passed=r.candidate.passed,
            candidate_reason=r.candidate.error or r.candidate.reason,
            live_score=r.live.score if r.live else None,
            live_passed=r.live.passed if r.live else None,
            live_reason=(r.live.error or r.live.reason) if r.live else "",
            pairwise=r.pairwise.outcome if r.pairwise else None,
            pairwise_reason=(r.pairwise.error or r.pairwise.reason) if r.pairwise else "",
            differs=r.differs,
        )
        for k, r in enumerate(report.rows)
    ]
    EvaluationPrompt.objects.bulk_create(objs, batch_size=500)
    return len(objs)
