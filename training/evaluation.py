"""Offline evaluation: the candidate and the live version answer every validation prompt.

Metric: each answer is scored against the reference answer with ``answer_quality`` (SQuAD token F1,
0–1); an answer is *correct* when its quality is at least ``CORRECT_AT`` (0.5); an abstention scores 0.
We record, for both versions: validation accuracy (share correct), mean quality and mean latency.

"Clearly worse" (the job fails before any traffic reaches the candidate): the candidate's accuracy is
more than ``WORSE_MARGIN`` (5 points) below the live version's, measured on at least ``MIN_PROMPTS`` (20)
prompts. With fewer prompts the difference is noise and the A/B test or a reviewer decides.

Improvement = relative change of validation accuracy, (candidate − live) / live; None without a live
version or when live scored 0. Provider-backed versions answer at most ``MAX_REMOTE_PROMPTS`` prompts
(each is an API call); local versions answer all of them in one batch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from assistants.backends.local import CORRECT_AT, answer_quality
from assistants.models import ModelVersion
from training.models import TrainingJob
from training.pipeline.erasure import dataset_ready
from training.trainers.local import load_version_model, read_chat_jsonl

WORSE_MARGIN = 0.05
MIN_PROMPTS = 20
MAX_REMOTE_PROMPTS = 200


@dataclass
class VersionScore:
    version: str
    accuracy: float | None
    mean_quality: float | None
    mean_latency_ms: float | None
    prompts: int
    abstentions: int = 0


@dataclass
class EvaluationReport:
    prompts: int
    candidate: VersionScore
    live: VersionScore | None
    improvement: float | None = None
    clearly_worse: bool = False
    worse_reason: str = ""
    metric: str = field(default=f"answer_quality (token F1) >= {CORRECT_AT} counts as correct")

    def summary(self) -> dict[str, Any]:
        """Flat numbers merged into job.metrics (shown on the job page and in the API)."""
        live = self.live
        return {
            "eval_prompts": self.prompts,
            "eval_candidate_accuracy": self.candidate.accuracy,
            "eval_candidate_quality": self.candidate.mean_quality,
            "eval_candidate_latency_ms": self.candidate.mean_latency_ms,
            "eval_live_accuracy": live.accuracy if live else None,
            "eval_live_quality": live.mean_quality if live else None,
            "eval_live_latency_ms": live.mean_latency_ms if live else None,
            "eval_improvement": self.improvement,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.1%}"

        text = f"Evaluation on {self.prompts} prompts: candidate accuracy {pct(self.candidate.accuracy)}"
        if self.live is not None:
            text += f", live {pct(self.live.accuracy)}"
        if self.improvement is not None:
            text += f" (improvement {self.improvement:+.1%})"
        return text + "."


def _score_local(version: ModelVersion, questions: list[str], references: list[str]) -> VersionScore:
    model = load_version_model(version)
    started = time.perf_counter()
    answers = model.answer_many(questions)
    elapsed_ms = (time.perf_counter() - started) * 1000
    qualities = [answer_quality(a.text, ref) for a, ref in zip(answers, references, strict=True)]
    return _summarise(version, qualities, elapsed_ms / len(questions), sum(a.text is None for a in answers))


def _score_remote(version: ModelVersion, prompts: list[list[dict]], references: list[str]) -> VersionScore:
    from assistants.backends import answer_many

    results = answer_many(version=version, conversations=prompts)
    # A failed call (source "error") scores 0, like an abstention: the candidate did not answer.
    texts = [r.text if r.source not in ("error", "handoff") else None for r in results]
    qualities = [answer_quality(t, ref) for t, ref in zip(texts, references, strict=True)]
    latency = sum(r.latency_ms for r in results) / len(results)
    return _summarise(version, qualities, latency, sum(t is None for t in texts))


def _summarise(
    version: ModelVersion, qualities: list[float], latency_ms: float, abstained: int
) -> VersionScore:
    n = len(qualities)
    return VersionScore(
        version=version.name,
        accuracy=sum(q >= CORRECT_AT for q in qualities) / n,
        mean_quality=sum(qualities) / n,
        mean_latency_ms=round(latency_ms, 3),
        prompts=n,
        abstentions=abstained,
    )


def evaluate_versions(
    *, candidate: ModelVersion, live: ModelVersion | None, examples: list[tuple[list[dict], str, str]]
) -> EvaluationReport:
    """Score both versions on ``examples`` = [(prompt messages, question, reference answer)]."""
    if not examples:
        empty = VersionScore(candidate.name, None, None, None, 0)
        return EvaluationReport(prompts=0, candidate=empty, live=None)

    def score(version: ModelVersion) -> VersionScore:
        if version.backend == ModelVersion.Backend.LOCAL:
            return _score_local(version, [q for _, q, _ in examples], [r for _, _, r in examples])
        capped = examples[:MAX_REMOTE_PROMPTS]
        return _score_remote(version, [p for p, _, _ in capped], [r for _, _, r in capped])

    cand = score(candidate)
    live_score = score(live) if live is not None and live.pk != candidate.pk else None
    report = EvaluationReport(prompts=cand.prompts, candidate=cand, live=live_score)
    if live_score is not None and live_score.accuracy:
        report.improvement = (cand.accuracy - live_score.accuracy) / live_score.accuracy
    if (
        live_score is not None
        and min(cand.prompts, live_score.prompts) >= MIN_PROMPTS
        and cand.accuracy < live_score.accuracy - WORSE_MARGIN
    ):
        report.clearly_worse = True
        report.worse_reason = (
            f"The candidate {cand.version} is clearly worse than the live {live_score.version}: validation "
            f"accuracy {cand.accuracy:.1%} vs {live_score.accuracy:.1%} on {cand.prompts} prompts "
            f"(more than {WORSE_MARGIN:.0%} points below)."
        )
    return report


def evaluate_job(*, job: TrainingJob) -> EvaluationReport:
    """Evaluate the job's new version against the assistant's live version on the validation split."""
    dataset = dataset_ready(job.dataset) if job.dataset else None  # rebuilt first after an erasure
    examples = list(read_chat_jsonl(dataset.validation_file)) if dataset else []
    live = job.assistant.live_version
    return evaluate_versions(candidate=job.new_model_version, live=live, examples=examples)
