"""Calibration: how often does each grader agree with the customers who rated the same answers?

A grader is only worth trusting as far as it says what customers say. The items: interactions the
customers already rated (thumbs or stars; success has its one definition, ``feedback.models.is_success``)
that are **held out from training** (none of their feedback is in the job's training split), newest first,
at most the policy's ``eval_calibration_size``. Each item is the question, the answer the customer rated,
and a reference answer that does not come from that rating:

* the customer's own correction of that answer, when they wrote one; else
* the training split's answer to the same question (SQuAD-normalised text), i.e. what the loop currently
  believes is right for it.

Items with neither are skipped (the count is reported). Every grader grades every item; the report per
grader is the number graded, **accuracy** (share of items where grader and customer agree) and **Cohen's
kappa** (agreement beyond what the two marginal rates give by chance; None when either side has only one
class), plus the two kinds of disagreement. Judge graders are calibrated only when a provider is
configured, within the job's judge budget.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from django.db.models import Max, Q

from assistants.backends.quality import squad_tokens
from assistants.models import Assistant
from feedback.models import Feedback, is_success
from training.evaluation import graders as g
from training.evaluation.judge import BudgetExhausted, Judge, JudgeError
from training.models import DatasetExample, TrainingDataset
from training.trainers.local import read_chat_jsonl

CANDIDATE_FACTOR = 5  # interactions looked at per wanted item (some have no reference)


@dataclass(frozen=True)
class CalibrationItem:
    question: str
    answer: str
    reference: str
    customer_success: bool
    reference_is_correction: bool


def _key(text: str) -> str:
    return " ".join(squad_tokens(text))


def _reference_bank(dataset: TrainingDataset | None) -> dict[str, str]:
    bank: dict[str, str] = {}
    if dataset is not None and dataset.train_file:
        for _, question, reference in read_chat_jsonl(dataset.train_file):
            bank[_key(question)] = reference  # later examples win, as in the local model
    return bank


def calibration_items(
    *, assistant: Assistant, dataset: TrainingDataset | None, limit: int
) -> tuple[list[CalibrationItem], dict[str, int]]:
    """Held-out, customer-rated answers with an independent reference (see the module docstring)."""
    if limit <= 0:
        return [], {"rated": 0, "no_reference": 0}
    rated = Feedback.objects.filter(assistant=assistant, excluded_from_training=False).filter(
        Q(helpful__isnull=False) | Q(rating__isnull=False)
    )
    if dataset is not None:
        train = DatasetExample.objects.filter(dataset=dataset, split=DatasetExample.Split.TRAIN)
        rated = rated.exclude(interaction_id__in=train.values("feedback__interaction_id"))
    ids = list(
        rated.values("interaction_id")
        .annotate(last=Max("created_at"))
        .order_by("-last", "-interaction_id")
        .values_list("interaction_id", flat=True)[: limit * CANDIDATE_FACTOR]
    )
    rows = (
        Feedback.objects.filter(interaction_id__in=ids)
        .order_by("interaction_id", "created_at", "id")
        .values_list(
            "interaction_id",
            "helpful",
            "rating",
            "corrected_answer",
            "interaction__messages",
            "interaction__response",
            "interaction__error",
        )
    )
    combined: dict[int, dict[str, Any]] = {}
    for iid, helpful, rating, corrected, messages, response, error in rows:
        c = combined.setdefault(
            iid,
            {
                "helpful": None,
                "rating": None,
                "corrected": "",
                "messages": messages,
                "response": response,
                "error": error,
            },
        )
        # As the data pipeline combines an interaction's rows: the latest opinion stands.
        if helpful is not None:
            c["helpful"] = helpful
        if rating is not None:
            c["rating"] = rating
        if (corrected or "").strip():
            c["corrected"] = corrected.strip()
    bank = _reference_bank(dataset)
    items: list[CalibrationItem] = []
    skipped = 0
    for iid in ids:
        c = combined.get(iid)
        if c is None or c["error"] or not (c["response"] or "").strip():
            continue
        question = next(
            (
                str(m.get("content") or "")
                for m in reversed(c["messages"] or [])
                if isinstance(m, dict) and m.get("role") == "user"
            ),
            "",
        )
        reference = c["corrected"] or bank.get(_key(question), "")
        if not question or not reference:
            skipped += 1
            continue
        items.append(
            CalibrationItem(
                question=question,
                answer=c["response"],
                reference=reference,
                customer_success=is_success(helpful=c["helpful"], rating=c["rating"]),
                reference_is_correction=bool(c["corrected"]),
            )
        )
        if len(items) >= limit:
            break
    return items, {"rated": len(items) + skipped, "no_reference": skipped}


def agreement(customer: list[bool], grader: list[bool]) -> dict[str, Any]:
    from sklearn.metrics import cohen_kappa_score

    n = len(customer)
    if n == 0:
        return {"n": 0, "accuracy": None, "kappa": None, "false_pass": 0, "false_fail": 0}
    agree = sum(a == b for a, b in zip(customer, grader, strict=True))
    kappa = None
    if len(set(customer)) > 1 and len(set(grader)) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kappa = float(cohen_kappa_score(customer, grader))
    return {
        "n": n,
        "accuracy": agree / n,
        "kappa": kappa,
        # The grader passed an answer the customer did not find helpful, and the other way round.
        "false_pass": sum(b and not a for a, b in zip(customer, grader, strict=True)),
        "false_fail": sum(a and not b for a, b in zip(customer, grader, strict=True)),
    }


def calibration_graders(*, judge: Judge | None, settings: Any) -> list[g.Grader]:
    out: list[g.Grader] = [g.build(name) for name in g.LOCAL_GRADERS]
    if judge is not None:
        if judge.embedding_model:
            out.append(g.build("cosine"))
        for name in g.JUDGE_GRADERS:
            out.append(g.build(name, judge_model=settings.judge_model, rubric=settings.rubric))
    return out


def calibrate(
    items: list[CalibrationItem], graders: list[g.Grader], judge: Judge | None
) -> dict[str, dict[str, Any]]:
    """Agreement of each grader with the customers on ``items`` (see ``agreement``)."""
    customer = [i.customer_success for i in items]
    out: dict[str, dict[str, Any]] = {}
    for grader in graders:
        try:
            grades = grader.grade_many([g.Item(i.question, i.reference, i.answer) for i in items], judge)
        except BudgetExhausted as exc:
            out[grader.name] = {"n": 0, "accuracy": None, "kappa": None, "error": str(exc)}
            continue
        except JudgeError as exc:
            out[grader.name] = {"n": 0, "accuracy": None, "kappa": None, "error": str(exc)}
            continue
        graded = [(c, bool(x.passed)) for c, x in zip(customer, grades, strict=True) if not x.error]
        result = agreement([c for c, _ in graded], [p for _, p in graded])
        result["ungraded"] = len(items) - len(graded)
        out[grader.name] = result
    return out


def grader_calibration(
    *,
    assistant: Assistant,
    dataset: TrainingDataset | None,
    limit: int,
    judge: Judge | None,
    settings: Any,
) -> dict[str, Any]:
    items, counts = calibration_items(assistant=assistant, dataset=dataset, limit=limit)
    graders = calibration_graders(judge=judge, settings=settings)
    return {
        "items": len(items),
        "customer_success_rate": (sum(i.customer_success for i in items) / len(items)) if items else None,
        "references_from_corrections": sum(i.reference_is_correction for i in items),
        "skipped_no_reference": counts["no_reference"],
        "graders": calibrate(items, graders, judge) if items else {},
    }


def calibration_rows(calibration: dict | None) -> list[tuple[str, dict]]:
    """(grader, figures) of a stored calibration, the best-agreeing grader (highest kappa) first."""
    graders = (calibration or {}).get("graders")
    if not isinstance(graders, dict):
        return []

    def kappa(row: dict) -> float:
        value = row.get("kappa")
        return value if isinstance(value, int | float) else -2.0

    return sorted(((n, r) for n, r in graders.items() if isinstance(r, dict)), key=lambda nr: -kappa(nr[1]))
