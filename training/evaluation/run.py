"""Offline evaluation of a job's candidate against the live version on the validation prompts.

(Just over 400 lines: the report's figures and the verdicts derived from them are one dataclass.)

Both versions answer every validation prompt (provider-backed versions at most ``MAX_REMOTE_PROMPTS``,
each is a paid call). The policy's grader scores each answer against the reference answer (pass/fail, a
score and a reason); pairwise judging compares the two answers per prompt. Figures, all with 95 %
intervals (``intervals``): accuracy (share of passes) and mean quality (mean score) per version, the
candidate-minus-live accuracy difference, the relative improvement, and the candidate's pairwise win rate,
the headline.

How the figures may be used (``EvaluationReport``):

* **enough evidence** = at least the policy's ``eval_min_prompts`` graded prompts (default 50), fewer than
  ``MAX_UNGRADED_SHARE`` of them ungraded, and the evaluation ran to the end (no budget stop). Without it
  the offline figures decide nothing automatically: a reviewer (or the A/B test) decides.
* **clearly worse** (the job fails before any customer sees the candidate): enough evidence, and the
  *upper* end of the candidate-minus-live accuracy interval is below −``WORSE_MARGIN`` — even the most
  favourable reading leaves the candidate more than 5 points behind.
* **significant** (the decision rule's word, used when no A/B test runs): enough evidence, and the lower
  end of the win rate's interval is above one half (the candidate wins more prompts than it loses, beyond
  chance) — or, without pairwise judging, the lower end of the accuracy difference is above zero.
* **improvement** handed to the decision rule: the *lower* end of the relative improvement's interval, so
  "improvement ≥ 15 %" means "at least 15 % with 95 % confidence", never a lucky point estimate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from assistants.backends import answer_many
from assistants.backends.errors import BackendError
from assistants.models import ModelVersion
from training.evaluation import graders as g
from training.evaluation import intervals
from training.evaluation.judge import BudgetExhausted, Judge, JudgeError, provider_configured
from training.evaluation.pairwise import Pair, PairOutcome, from_scores, judge_pairs

logger = logging.getLogger(__name__)

WORSE_MARGIN = 0.05
MAX_REMOTE_PROMPTS = 200
MAX_UNGRADED_SHARE = 0.1
DEFAULT_MIN_PROMPTS = 50


@dataclass(frozen=True)
class Prompt:
    messages: list[dict]
    question: str
    reference: str
    reference_is_correction: bool = False
    customer: str = ""


@dataclass
class VersionScore:
    version: str
    accuracy: float | None
    mean_quality: float | None
    mean_latency_ms: float | None
    prompts: int
    abstentions: int = 0
    ungraded: int = 0
    accuracy_ci: list[float | None] = field(default_factory=list)
    quality_ci: list[float | None] = field(default_factory=list)


@dataclass
class EvaluationSettings:
    grader: str = "token_f1"
    pass_threshold: float | None = None
    pairwise: bool = True
    min_prompts: int = DEFAULT_MIN_PROMPTS
    judge_model: str = "gpt-4o-mini"
    rubric: str = ""
    embedding_model: str = ""
    budget_usd: float = 1.0
    input_price: float = 0.15
    output_price: float = 0.60
    calibration_size: int = 200

    @classmethod
    def from_policy(cls, policy: Any) -> EvaluationSettings:
        return cls(
            grader=policy.eval_grader,
            pass_threshold=policy.eval_pass_threshold,
            pairwise=policy.eval_pairwise,
            min_prompts=policy.eval_min_prompts,
            judge_model=policy.eval_judge_model,
            rubric=policy.eval_judge_rubric,
            embedding_model=policy.eval_embedding_model,
            budget_usd=policy.eval_judge_budget_usd,
            input_price=policy.eval_judge_input_price,
            output_price=policy.eval_judge_output_price,
            calibration_size=policy.eval_calibration_size,
        )

    def judge(self) -> Judge:
        return Judge(
            model=self.judge_model,
            budget_usd=self.budget_usd,
            input_price=self.input_price,
            output_price=self.output_price,
            embedding_model=self.embedding_model,
        )


@dataclass
class PromptRow:
    question: str
    reference: str
    reference_is_correction: bool
    customer: str
    candidate_answer: str
    live_answer: str
    candidate: g.Grade
    live: g.Grade | None
    pairwise: PairOutcome | None

    @property
    def differs(self) -> bool:
        if self.live is not None and self.candidate.passed != self.live.passed:
            return True
        return self.pairwise is not None and self.pairwise.outcome not in (None, 0.5)


@dataclass
class EvaluationReport:
    prompts: int
    candidate: VersionScore
    live: VersionScore | None
    grader: dict[str, Any] = field(default_factory=dict)
    min_prompts: int = DEFAULT_MIN_PROMPTS
    enough_prompts: bool = False
    improvement: float | None = None
    improvement_ci: list[float | None] = field(default_factory=list)
    accuracy_difference_ci: list[float | None] = field(default_factory=list)
    win_rate: float | None = None
    win_rate_ci: list[float | None] = field(default_factory=list)
    win_rate_method: str = ""
    pairwise_judged: int = 0
    pairwise_by: str = ""
    significant: bool = False
    clearly_worse: bool = False
    worse_reason: str = ""
    stopped_reason: str = ""
    notes: list[str] = field(default_factory=list)
    clustered: bool = False
    bootstrap: dict[str, Any] = field(default_factory=dict)
    judge_usage: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    rows: list[PromptRow] = field(default_factory=list, repr=False)

    @property
    def decision_improvement(self) -> float | None:
        """What the decision rule compares with its thresholds: the interval's lower end."""
        return self.improvement_ci[1] if len(self.improvement_ci) == 3 else None

    def summary(self) -> dict[str, Any]:
        """Flat numbers merged into job.metrics (shown in the API; the job page shows the full report)."""
        live = self.live
        return {
            "eval_prompts": self.prompts,
            "eval_grader": self.grader.get("name", ""),
            "eval_candidate_accuracy": self.candidate.accuracy,
            "eval_candidate_quality": self.candidate.mean_quality,
            "eval_candidate_latency_ms": self.candidate.mean_latency_ms,
            "eval_live_accuracy": live.accuracy if live else None,
            "eval_live_quality": live.mean_quality if live else None,
            "eval_live_latency_ms": live.mean_latency_ms if live else None,
            "eval_improvement": self.improvement,
            "eval_improvement_low": self.decision_improvement,
            "eval_win_rate": self.win_rate,
            "eval_win_rate_low": self.win_rate_ci[1] if len(self.win_rate_ci) == 3 else None,
            "eval_win_rate_high": self.win_rate_ci[2] if len(self.win_rate_ci) == 3 else None,
            "eval_enough_prompts": self.enough_prompts,
            "eval_judge_cost_usd": self.judge_usage.get("cost_usd"),
            "eval_judge_tokens": (self.judge_usage.get("prompt_tokens", 0) or 0)
            + (self.judge_usage.get("completion_tokens", 0) or 0)
            if self.judge_usage
            else None,
        }

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("rows")
        return data

    def describe(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.1%}"

        text = (
            f"Evaluation on {self.prompts} prompts ({self.grader.get('name', '?')}): candidate accuracy "
            f"{pct(self.candidate.accuracy)}"
        )
        if self.live is not None:
            text += f", live {pct(self.live.accuracy)}"
        if self.win_rate is not None and len(self.win_rate_ci) == 3:
            text += (
                f"; candidate wins {pct(self.win_rate)} of pairwise comparisons "
                f"(95 % CI {pct(self.win_rate_ci[1])}–{pct(self.win_rate_ci[2])})"
            )
        if self.improvement is not None:
            text += f"; improvement {self.improvement:+.1%}"
            if self.decision_improvement is not None:
                text += f" (at least {self.decision_improvement:+.1%})"
        if self.stopped_reason:
            text += f". Stopped: {self.stopped_reason}"
        elif not self.enough_prompts:
            text += f". Fewer than {self.min_prompts} graded prompts: no automatic decision"
        return text + "."


def _answers(version: ModelVersion, prompts: Sequence[Prompt]) -> tuple[list[str | None], float, int]:
    """Each prompt's answer (None: abstained or failed), mean latency (ms), abstentions."""
    started = time.perf_counter()
    results = answer_many(version=version, conversations=[p.messages for p in prompts])
    texts = [r.text if r.source not in ("error", "handoff") else None for r in results]
    if version.backend == ModelVersion.Backend.LOCAL:
        latency = (time.perf_counter() - started) * 1000 / len(prompts)
    else:
        latency = sum(r.latency_ms for r in results) / len(results)
    return texts, round(latency, 3), sum(t is None for t in texts)


def _score(name: str, grades: list[g.Grade], latency: float, abstained: int) -> VersionScore:
    graded = [x for x in grades if x.error == "" and x.passed is not None]
    n = len(graded)
    return VersionScore(
        version=name,
        accuracy=sum(x.passed for x in graded) / n if n else None,
        mean_quality=sum(x.score for x in graded) / n if n else None,
        mean_latency_ms=latency,
        prompts=len(grades),
        abstentions=abstained,
        ungraded=len(grades) - n,
    )


def _choose_grader(
    settings: EvaluationSettings, candidate: ModelVersion
) -> tuple[g.Grader, Judge | None, list]:
    notes: list[str] = []
    provider = provider_configured()
    name = g.resolve(settings.grader, candidate_backend=candidate.backend, provider=provider)
    if name in g.JUDGE_GRADERS and not provider:
        notes.append(f"The {name} grader needs a provider (OPENAI_API_KEY); graded with token F1 instead.")
        name = "token_f1"
    if name == "cosine" and not (provider and settings.embedding_model):
        notes.append(
            "The cosine grader needs a provider and an embeddings model; graded with token F1 instead."
        )
        name = "token_f1"
    grader = g.build(
        name, judge_model=settings.judge_model, rubric=settings.rubric, pass_threshold=settings.pass_threshold
    )
    judge = settings.judge() if provider and (grader.needs_judge or grader.needs_embeddings) else None
    return grader, judge, notes


def evaluate_prompts(
    *,
    candidate: ModelVersion,
    live: ModelVersion | None,
    prompts: Sequence[Prompt],
    settings: EvaluationSettings | None = None,
    judge: Judge | None = None,
) -> EvaluationReport:
    """Answer, grade and compare; the figures and their intervals (see the module docstring)."""
    settings = settings or EvaluationSettings()
    if live is not None and live.pk == candidate.pk:
        live = None
    backends = {candidate.backend} | ({live.backend} if live else set())
    remote = backends != {ModelVersion.Backend.LOCAL}
    prompts = list(prompts[:MAX_REMOTE_PROMPTS] if remote else prompts)
    grader, chosen_judge, notes = _choose_grader(settings, candidate)
    judge = judge or chosen_judge
    empty = VersionScore(candidate.name, None, None, None, 0)
    report = EvaluationReport(
        prompts=len(prompts),
        candidate=empty,
        live=None,
        grader=grader.spec(),
        min_prompts=settings.min_prompts,
    )
    report.notes = notes
    if not prompts:
        report.notes.append("No validation prompts: nothing to evaluate.")
        return report

    items = [g.Item(p.question, p.reference, None) for p in prompts]
    try:
        cand_texts, cand_latency, cand_abst = _answers(candidate, prompts)
        live_texts, live_latency, live_abst = _answers(live, prompts) if live else ([], 0.0, 0)
    except BackendError as exc:
        report.stopped_reason = f"A version could not answer: {exc}"
        return report

    pairs_out: list[PairOutcome] | None = None
    try:
        cand_grades = grader.grade_many(
            [g.Item(i.question, i.reference, t) for i, t in zip(items, cand_texts, strict=True)], judge
        )
        live_grades = (
            grader.grade_many(
                [g.Item(i.question, i.reference, t) for i, t in zip(items, live_texts, strict=True)], judge
            )
            if live
            else None
        )
        if live and settings.pairwise:
            if grader.needs_judge and judge is not None:
                pairs = [
                    Pair(p.question, p.reference, p.reference_is_correction, c, lv)
                    for p, c, lv in zip(prompts, cand_texts, live_texts, strict=True)
                ]
                pairs_out = judge_pairs(pairs, judge)
                report.pairwise_by = f"judge {judge.model}, both orders"
            else:
                pairs_out = from_scores([x.score for x in cand_grades], [x.score for x in live_grades or []])
                report.pairwise_by = f"{grader.name} scores"
    except BudgetExhausted as exc:
        report.stopped_reason = str(exc)
        report.judge_usage = judge.usage.as_dict() if judge else {}
        return report
    except JudgeError as exc:
        report.stopped_reason = f"The judge could not be used: {exc}"
        report.judge_usage = judge.usage.as_dict() if judge else {}
        return report

    report.candidate = _score(candidate.name, cand_grades, cand_latency, cand_abst)
    if live is not None and live_grades is not None:
        report.live = _score(live.name, live_grades, live_latency, live_abst)
    report.rows = [
        PromptRow(
            question=p.question,
            reference=p.reference,
            reference_is_correction=p.reference_is_correction,
            customer=p.customer,
            candidate_answer=cand_texts[k] or "",
            live_answer=(live_texts[k] or "") if live else "",
            candidate=cand_grades[k],
            live=live_grades[k] if live_grades is not None else None,
            pairwise=pairs_out[k] if pairs_out is not None else None,
        )
        for k, p in enumerate(prompts)
    ]
    _figures(report, settings)
    report.judge_usage = judge.usage.as_dict() if judge else {}
    return report


def _figures(report: EvaluationReport, settings: EvaluationSettings) -> None:
    """Intervals and the verdicts the decision rule may use."""
    # Prompts both versions could be graded on: the paired figures need the same prompts on both sides.
    rows = [
        r
        for r in report.rows
        if not r.candidate.error and r.candidate.passed is not None and (r.live is None or not r.live.error)
    ]
    has_live = report.live is not None
    clusters = [r.customer for r in rows] if rows and all(r.customer for r in rows) else None
    ci = intervals.paired_bootstrap(
        candidate_passed=[float(r.candidate.passed) for r in rows],
        candidate_quality=[r.candidate.score or 0.0 for r in rows],
        live_passed=[float(bool(r.live.passed)) for r in rows] if has_live else None,
        live_quality=[r.live.score or 0.0 for r in rows] if has_live else None,
        clusters=clusters,
    )
    report.clustered = ci.clustered
    report.bootstrap = {"resamples": ci.resamples, "seed": ci.seed, "confidence": intervals.CONFIDENCE}
    report.candidate.accuracy_ci = ci.candidate_accuracy.as_list()
    report.candidate.quality_ci = ci.candidate_quality.as_list()
    ungraded = len(report.rows) - len(rows)
    report.enough_prompts = len(rows) >= settings.min_prompts and ungraded <= MAX_UNGRADED_SHARE * len(
        report.rows
    )
    if ungraded:
        report.notes.append(f"{ungraded} prompt(s) could not be graded (see their reasons below).")
    if not has_live:
        return
    report.live.accuracy_ci = ci.live_accuracy.as_list()
    report.live.quality_ci = ci.live_quality.as_list()
    report.accuracy_difference_ci = ci.accuracy_difference.as_list()
    report.improvement = ci.improvement.estimate
    report.improvement_ci = ci.improvement.as_list() if ci.improvement.estimate is not None else []
    judged = [
        (r.pairwise.outcome, r.customer) for r in report.rows if r.pairwise and r.pairwise.outcome is not None
    ]
    if judged:
        outcomes = [o for o, _ in judged]
        win_clusters = [c for _, c in judged] if all(c for _, c in judged) else None
        win, method = intervals.win_rate_interval(outcomes, clusters=win_clusters)
        report.win_rate, report.win_rate_ci, report.win_rate_method = win.estimate, win.as_list(), method
        report.pairwise_judged = len(judged)
    diff = ci.accuracy_difference
    if not report.enough_prompts:
        return
    if diff.high is not None and diff.high < -WORSE_MARGIN:
        report.clearly_worse = True
        report.worse_reason = (
            f"The candidate {report.candidate.version} is clearly worse than the live {report.live.version}: "
            f"validation accuracy {report.candidate.accuracy:.1%} vs {report.live.accuracy:.1%} on "
            f"{len(rows)} prompts; even the upper end of the 95 % interval of the difference "
            f"({diff.high * 100:+.1f} points) is more than {WORSE_MARGIN * 100:.0f} points below live."
        )
    if report.win_rate_ci:
        report.significant = report.win_rate_ci[1] is not None and report.win_rate_ci[1] > 0.5
    else:
        report.significant = diff.low is not None and diff.low > 0
