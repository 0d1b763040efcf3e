"""How a job's page shows the job: its progress bar, its JSON reports (dataset stats, training metrics,
the evaluation) as table rows, and a comparison's candidates as a table.
"""

from __future__ import annotations

import json
from typing import Any

from training.comparison_spec import CandidateSpec
from training.evaluation.calibration import calibration_rows
from training.models import JobCandidate, TrainingJob

S = TrainingJob.Status

# The steps a job goes through, in order. The bar sits at the share of steps reached, so "Step 6 of 8"
# and the bar say the same thing (6/8 = 75 %).
STEPS = (
    S.PENDING,
    S.PREPARING,
    S.TRAINING,
    S.EVALUATING,
    S.TESTING,
    S.AWAITING_APPROVAL,
    S.DEPLOYING,
    S.DEPLOYED,
)
# A job in these statuses changes only when a person acts (and the action swaps the page), so polling stops.
SETTLED = (*TrainingJob.TERMINAL, S.AWAITING_APPROVAL)


def job_progress_info(job: TrainingJob) -> dict[str, Any]:
    """Where a job is, said once: "Step 6 of 8: awaiting approval" with the bar at 6/8.

    While training, the trainer's own progress moves the bar from the previous step's share to this one's
    (so it never moves back when the first progress report arrives) and the label says "40 % trained".
    A job that ended off the happy path (rejected,
    failed, cancelled) has no step: its bar is full and its label the status.
    """
    status_label = job.get_status_display()
    if job.status not in STEPS:
        return {
            "percent": 100, "step": None, "steps": len(STEPS), "label": status_label,
            "settled": job.status in SETTLED, "terminal": job.is_terminal,
        }  # fmt: skip
    step = STEPS.index(job.status) + 1
    reached = float(step)
    label = f"Step {step} of {len(STEPS)}: {status_label.lower()}"
    if job.status == S.TRAINING:
        fraction = (job.metrics or {}).get("progress")
        known = isinstance(fraction, int | float) and 0 <= fraction <= 1
        reached = step - 1 + (fraction if known else 0)
        if known:
            label += f" ({round(100 * fraction)} % trained)"
    return {
        "percent": round(100 * reached / len(STEPS)),
        "step": step,
        "steps": len(STEPS),
        "label": label,
        "settled": job.status in SETTLED,
        "terminal": job.is_terminal,
    }


# Human labels for the JSON reports' keys; the page shows the key itself in a tooltip, and the API keeps
# the wire names. A key without a label is shown as it is.
LABELS = {
    # A dataset's stats (training/pipeline/build.py).
    "sourceCount": "Feedback rows read",
    "candidateCount": "Candidate examples",
    "filteredCount": "Rows kept by the filters",
    "deduplicatedCount": "Rows kept after deduplication",
    "exampleCount": "Examples written",
    "trainCount": "Training examples",
    "validationCount": "Validation examples",
    "avgRating": "Average rating",
    "avgQuality": "Average answer quality",
    "filterRate": "Share removed by the filters",
    "dedupeRate": "Share removed as duplicates",
    "estimatedTokens": "Estimated tokens",
    "tokenizer": "Tokenizer",
    "contextLimit": "Context limit (tokens)",
    "seconds": "Build time (s)",
    "dedup.similarity": "Duplicates: similarity",
    "dedup.threshold": "Duplicates: similarity threshold",
    "dedup.numPerm": "Duplicates: MinHash permutations",
    "dedup.bands": "Duplicates: LSH bands",
    "dedup.rows": "Duplicates: rows per band",
    "dedup.candidatePairs": "Duplicates: candidate pairs",
    "dedup.verifiedPairs": "Duplicates: verified pairs",
    "dedup.exactDuplicates": "Duplicates: exact",
    "dedup.seconds": "Duplicates: time (s)",
    "dedup.cpuSeconds": "Duplicates: CPU time (s)",
    "redaction.enabled": "Redaction on",
    "redaction.total": "Values redacted",
    "redaction.examples": "Examples with redactions",
    # A local trainer's metrics (training/trainers/local.py).
    "validation_accuracy": "Validation accuracy",
    "coverage": "Coverage (share answered)",
    "answered_accuracy": "Accuracy when answering",
    "threshold": "Answer threshold",
    "threshold_source": "Threshold chosen",
    "train_examples": "Training examples",
    "fallback_examples": "Fallback examples",
    "validation_examples": "Validation examples",
}


def labelled_rows(rows: list[tuple[str, Any]]) -> list[tuple[str, str, Any]]:
    """``scalar_rows`` as (label, key, value): the label for people, the key for a tooltip."""
    return [(_label(key), key, value) for key, value in rows]


def _label(key: str) -> str:
    if key.startswith("filteredByReason."):
        return f"Removed: {key.removeprefix('filteredByReason.').replace('_', ' ')}"
    return LABELS.get(key, key)


def scalar_rows(data: dict | None, skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Flatten one level of a JSON report into (name, value) rows for a table."""
    rows: list[tuple[str, Any]] = []
    for key, value in (data or {}).items():
        if key in skip:
            continue
        if isinstance(value, dict):
            rows.extend((f"{key}.{k}", v) for k, v in value.items() if not isinstance(v, dict | list))
        elif not isinstance(value, list):
            rows.append((key, value))
    return rows


_CI_OF = {"accuracy": "accuracy_ci", "mean_quality": "quality_ci"}
_REPORT_KEYS = (
    "candidate", "live", "baseline", "grader", "improvement_ci", "accuracy_difference_ci", "win_rate_ci",
    "notes", "bootstrap", "judge_usage", "calibration", "stopped_reason", "worse_reason",
    # A comparison's ranking and whose answers the prompts are: its own section shows them.
    "comparison", "prompts_of",
)  # fmt: skip


def _ci(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, int | float) for v in value[1:]):
        return (value[1], value[2])
    return None


def evaluation_report(evaluation: dict) -> dict[str, Any] | None:
    """The evaluation section from ``job.evaluation`` (an EvaluationReport's dict, or an older shape)."""
    if not evaluation:
        return None
    candidate = evaluation.get("candidate") if isinstance(evaluation.get("candidate"), dict) else None
    live = evaluation.get("live") or evaluation.get("baseline")
    live = live if isinstance(live, dict) else None
    calibration = evaluation.get("calibration") if isinstance(evaluation.get("calibration"), dict) else {}
    report = {
        "grader": evaluation.get("grader") if isinstance(evaluation.get("grader"), dict) else None,
        "grader_json": json.dumps(evaluation.get("grader"), indent=2, ensure_ascii=False),
        "win_rate": evaluation.get("win_rate"),
        "win_rate_ci": _ci(evaluation.get("win_rate_ci")),
        "improvement_ci": _ci(evaluation.get("improvement_ci")),
        "difference_ci": _ci(evaluation.get("accuracy_difference_ci")),
        "notes": [n for n in evaluation.get("notes") or [] if isinstance(n, str)],
        "usage": evaluation.get("judge_usage") if isinstance(evaluation.get("judge_usage"), dict) else None,
        "calibration": calibration,
        "calibration_rows": calibration_rows(calibration),
    }
    if candidate is None:
        return {"rows": [], "other": scalar_rows(evaluation, skip=("comparison", "prompts_of")), **report}
    names = [k for k, v in candidate.items() if isinstance(v, int | float | str | None)]
    names += [
        k for k, v in (live or {}).items() if k not in names and isinstance(v, int | float | str | None)
    ]
    rows = []
    for name in names:
        c, lv = candidate.get(name), (live or {}).get(name)
        delta = c - lv if isinstance(c, int | float) and isinstance(lv, int | float) else None
        ci_key = _CI_OF.get(name, "")
        rows.append(
            {
                "name": name,
                "candidate": c,
                "candidate_ci": _ci(candidate.get(ci_key)),
                "live": lv,
                "live_ci": _ci((live or {}).get(ci_key)),
                "delta": delta,
                "delta_ci": report["difference_ci"] if name == "accuracy" else None,
            }
        )
    return {"rows": rows, "other": scalar_rows(evaluation, skip=_REPORT_KEYS), **report}


def comparison_rows(job: TrainingJob, candidates: list[JobCandidate]) -> dict[str, Any] | None:
    """A comparison's table (None for a single job): each candidate's trainer and settings in words, its
    status, score with its 95 % interval, rank and error; the ranking's verdict; the online test; why the
    job's version was chosen."""
    if not candidates:
        return None
    options = (job.options or {}).get("comparison") or {}
    ranking = (job.evaluation or {}).get("comparison") or {}
    rows = []
    for candidate in candidates:
        spec = CandidateSpec(
            candidate.label, candidate.backend, candidate.base_model, candidate.settings or {}
        )
        try:
            settings = spec.settings_text()
        except ValueError:  # settings written by hand in the database
            settings = json.dumps(candidate.settings)
        evaluated = candidate.evaluation or {}
        ci = evaluated.get("score_ci") or []
        rows.append(
            {
                "label": candidate.label,
                "trainer": spec.trainer(),
                "settings": settings,
                "status": candidate.status,
                "version": candidate.model_version.name if candidate.model_version else None,
                "score": evaluated.get("score"),
                "ci": ci if len(ci) == 2 else None,
                "rank": candidate.rank,
                "error": candidate.error or evaluated.get("excluded") or "",
                "chosen": candidate.model_version_id is not None
                and candidate.model_version_id == job.new_model_version_id,
            }
        )
    difference = ranking.get("difference") or []
    return {
        "rows": rows,
        "online": options.get("online") or "best_ab",
        "top_k": options.get("top_k"),
        "ranking": ranking,
        "difference": difference if len(difference) == 3 and difference[1] is not None else None,
        "distinguishable": ranking.get("distinguishable"),
        "chosen": ((job.options or {}).get("chosen") or {}).get("why") or "",
    }
