"""Graders: how one answer is scored against the reference, in the shapes of OpenAI's evals graders.

Each grader has a ``spec`` — the JSON a team would write for OpenAI's evaluation API (``type``, ``name``,
``input``/``reference`` templates, ``evaluation_metric``, ``operation``, ``labels``/``passing_labels``,
``range``, ``pass_threshold``) — so the job page shows a definition people recognise, and a grade:
a score in [0, 1], pass/fail, and a reason. An answer that is missing (the model abstained or failed)
scores 0 and fails. A grade with ``error`` set could not be obtained (a malformed judge reply after a
retry, a provider error): it is *ungraded*, reported as such, and never counted as a pass or a fail.

* ``string_check`` — ``eq`` (normalised exact match) or ``ilike`` (the reference is contained in the
  answer, case-insensitive); OpenAI's ``like``/``ne`` are accepted too.
* ``text_similarity`` — ``token_f1`` (SQuAD token F1; this project's addition, the metric the local model
  is tuned with), ``rouge_l`` (F-measure of the longest common token subsequence), ``bleu`` (sacrebleu's
  sentence BLEU / 100), ``fuzzy_match`` (rapidfuzz's ratio / 100) and ``cosine`` (of the two texts'
  embeddings; needs an embeddings model on the provider). Pass at ``pass_threshold``.
* ``score_model`` — an LLM judge reads the question, the reference and the answer with a rubric and
  replies ``{"score": <0..1>, "reason": "..."}``; pass at ``pass_threshold``.
* ``label_model`` — the judge replies ``{"label": "correct"|"incorrect", "reason": "..."}``; passing
  labels are ``["correct"]``.

Judge replies are parsed strictly: a JSON object with exactly the expected keys and types, a score inside
the range, a label from the list. Anything else is malformed.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from assistants.backends.quality import CORRECT_AT, answer_quality, squad_tokens
from training.evaluation.judge import Judge, JudgeError

# Pass thresholds when the policy sets none: token F1's is the local model's own CORRECT_AT; the others
# are where the metric, on the demo shop's paraphrased answers, separates right from wrong answers.
DEFAULT_THRESHOLDS = {
    "token_f1": CORRECT_AT,
    "rouge_l": 0.5,
    "bleu": 0.3,
    "fuzzy_match": 0.6,
    "cosine": 0.8,
    "score_model": 0.5,
}
SIMILARITY_METRICS = ("token_f1", "rouge_l", "bleu", "fuzzy_match", "cosine")
LOCAL_GRADERS = ("token_f1", "rouge_l", "bleu", "fuzzy_match", "string_check")
JUDGE_GRADERS = ("score_model", "label_model")
LABELS = ["correct", "incorrect"]
PASSING_LABELS = ["correct"]

DEFAULT_RUBRIC = (
    "You grade a customer-service assistant's answer. Compare it with the reference answer, which is "
    "known to be correct. The answer is correct when it gives the customer the same facts as the "
    "reference (wording may differ; extra politeness is fine) and says nothing that contradicts it. "
    "It is incorrect when it is about something else, misses the key fact, contradicts the reference, "
    "or does not answer (e.g. hands over to a human)."
)


@dataclass(frozen=True)
class Item:
    question: str
    reference: str
    answer: str | None


@dataclass
class Grade:
    score: float | None
    passed: bool | None
    reason: str
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"score": self.score, "passed": self.passed, "reason": self.reason, "error": self.error}


def _missing(item: Item) -> Grade | None:
    if item.answer is None or not item.answer.strip():
        return Grade(0.0, False, "No answer (the model abstained or failed).")
    return None


def _normalise(text: str) -> str:
    return " ".join(squad_tokens(text))


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F-measure over SQuAD-normalised tokens (LCS by rapidfuzz)."""
    from rapidfuzz.distance import LCSseq

    c, r = squad_tokens(candidate), squad_tokens(reference)
    if not c or not r:
        return float(c == r)
    lcs = LCSseq.similarity(c, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(c), lcs / len(r)
    return 2 * p * rec / (p + rec)


def bleu(candidate: str, reference: str) -> float:
    import sacrebleu

    # sacrebleu reports 0–100 and can round a perfect match to 100.00000000000004.
    return min(1.0, sacrebleu.sentence_bleu(candidate, [reference]).score / 100)


def fuzzy(candidate: str, reference: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(_normalise(candidate), _normalise(reference)) / 100


_METRIC_FUNCS = {"token_f1": answer_quality, "rouge_l": rouge_l, "bleu": bleu, "fuzzy_match": fuzzy}


class Grader(ABC):
    name: str
    kind: str  # string_check | text_similarity | score_model | label_model
    needs_judge = False
    needs_embeddings = False

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """The grader's definition in OpenAI's evaluation shape."""

    @abstractmethod
    def grade_many(self, items: Sequence[Item], judge: Judge | None) -> list[Grade]:
        """One grade per item, in order."""


class StringCheck(Grader):
    kind = "string_check"

    def __init__(self, operation: str = "ilike") -> None:
        if operation not in ("eq", "ne", "like", "ilike"):
            raise ValueError(f"string_check operation must be eq, ne, like or ilike, not '{operation}'.")
        self.operation = operation
        self.name = f"string_check ({operation})"

    def spec(self) -> dict[str, Any]:
        return {
            "type": "string_check",
            "name": self.name,
            "input": "{{sample.output_text}}",
            "reference": "{{item.reference_answer}}",
            "operation": self.operation,
        }

    def _one(self, item: Item) -> Grade:
        missing = _missing(item)
        if missing:
            return missing
        answer, reference = item.answer or "", item.reference
        if self.operation in ("eq", "ne"):
            same = _normalise(answer) == _normalise(reference)
            ok = same if self.operation == "eq" else not same
            return Grade(
                float(ok), ok, "Same text as the reference." if same else "Differs from the reference."
            )
        contained = (
            reference.strip() in answer
            if self.operation == "like"
            else reference.strip().lower() in answer.lower()
        )
        return Grade(
            float(contained),
            contained,
            "Contains the reference answer." if contained else "Does not contain the reference answer.",
        )

    def grade_many(self, items: Sequence[Item], judge: Judge | None) -> list[Grade]:
        return [self._one(i) for i in items]


class TextSimilarity(Grader):
    kind = "text_similarity"

    def __init__(self, metric: str, pass_threshold: float | None = None) -> None:
        if metric not in SIMILARITY_METRICS:
            raise ValueError(f"text_similarity metric must be one of {', '.join(SIMILARITY_METRICS)}.")
        self.metric = metric
        self.threshold = DEFAULT_THRESHOLDS[metric] if pass_threshold is None else pass_threshold
        self.name = metric
        self.needs_embeddings = metric == "cosine"

    def spec(self) -> dict[str, Any]:
        return {
            "type": "text_similarity",
            "name": self.name,
            "input": "{{sample.output_text}}",
            "reference": "{{item.reference_answer}}",
            "evaluation_metric": self.metric,
            "pass_threshold": self.threshold,
        }

    def _grade(self, score: float) -> Grade:
        passed = score >= self.threshold
        verb = "≥" if passed else "<"
        return Grade(score, passed, f"{self.metric} {score:.2f} {verb} {self.threshold:g}.")

    def grade_many(self, items: Sequence[Item], judge: Judge | None) -> list[Grade]:
        if self.metric != "cosine":
            func = _METRIC_FUNCS[self.metric]
            return [_missing(i) or self._grade(func(i.answer or "", i.reference)) for i in items]
        if judge is None or not judge.embedding_model:
            raise JudgeError("The cosine metric needs an embeddings model on the provider.")
        todo = [k for k, i in enumerate(items) if _missing(i) is None]
        texts = [t for k in todo for t in (items[k].answer or "", items[k].reference)]
        vectors = judge.embed(texts) if texts else []
        grades: list[Grade] = [_missing(i) or Grade(None, None, "") for i in items]
        for n, k in enumerate(todo):
            a, b = vectors[2 * n], vectors[2 * n + 1]
            norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(x * x for x in b))
            grades[k] = self._grade(sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0)
        return grades


def _template(rubric: str, output: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": f"{rubric}\n\n{output}"},
        {
            "role": "user",
            "content": "Question: {{item.question}}\nReference answer: {{item.reference_answer}}\n"
            "Answer to grade: {{sample.output_text}}",
        },
    ]


def _fill(messages: list[dict[str, Any]], item: Item) -> list[dict[str, Any]]:
    values = {
        "item.question": item.question,
        "item.reference_answer": item.reference,
        "sample.output_text": item.answer or "",
    }

    def sub(text: str) -> str:
        return re.sub(r"\{\{\s*([\w.]+)\s*\}\}", lambda m: values.get(m.group(1), m.group(0)), text)

    return [{"role": m["role"], "content": sub(m["content"])} for m in messages]


def _strict_object(value: Any, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    if set(value) != keys:
        raise ValueError(f"expected exactly the keys {sorted(keys)}, got {sorted(value)}")
    if not isinstance(value["reason"], str) or not value["reason"].strip():
        raise ValueError("'reason' must be a non-empty string")
    return value


SCORE_OUTPUT = (
    'Reply with only a JSON object: {"score": <a number from 0 to 1>, "reason": "<one sentence>"}. '
    "1 means fully correct, 0 means wrong or no answer."
)
LABEL_OUTPUT = (
    'Reply with only a JSON object: {"label": "correct" or "incorrect", "reason": "<one sentence>"}.'
)


def parse_score(value: Any) -> tuple[float, str]:
    obj = _strict_object(value, {"score", "reason"})
    score = obj["score"]
    # bool is an int in Python; a judge answering true/false did not give a score.
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        raise ValueError(f"'score' must be a number in [0, 1], got {score!r}")
    return float(score), obj["reason"].strip()


def parse_label(value: Any) -> tuple[str, str]:
    obj = _strict_object(value, {"label", "reason"})
    if obj["label"] not in LABELS:
        raise ValueError(f"'label' must be one of {LABELS}, got {obj['label']!r}")
    return obj["label"], obj["reason"].strip()


class ModelJudge(Grader):
    needs_judge = True

    def __init__(self, kind: str, *, model: str, rubric: str = "", pass_threshold: float | None = None):
        if kind not in JUDGE_GRADERS:
            raise ValueError(f"judge grader must be score_model or label_model, not '{kind}'.")
        self.kind = kind
        self.name = kind
        self.model = model
        self.rubric = rubric.strip() or DEFAULT_RUBRIC
        self.threshold = DEFAULT_THRESHOLDS["score_model"] if pass_threshold is None else pass_threshold
        self.input = _template(self.rubric, SCORE_OUTPUT if kind == "score_model" else LABEL_OUTPUT)

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "type": self.kind,
            "name": self.name,
            "model": self.model,
            "input": self.input,
        }
        if self.kind == "score_model":
            spec.update({"range": [0, 1], "pass_threshold": self.threshold})
        else:
            spec.update({"labels": LABELS, "passing_labels": PASSING_LABELS})
        return spec

    def _one(self, item: Item, judge: Judge) -> Grade:
        missing = _missing(item)
        if missing:
            return missing
        messages = _fill(self.input, item)
        try:
            if self.kind == "score_model":
                parsed, _, error = judge.complete_json(messages, parse_score)
                if parsed is None:
                    return Grade(None, None, "", error=error)
                score, reason = parsed
                return Grade(score, score >= self.threshold, reason)
            parsed, _, error = judge.complete_json(messages, parse_label)
            if parsed is None:
                return Grade(None, None, "", error=error)
            label, reason = parsed
            return Grade(float(label in PASSING_LABELS), label in PASSING_LABELS, f"{label}: {reason}")
        except JudgeError as exc:
            return Grade(None, None, "", error=str(exc))

    def grade_many(self, items: Sequence[Item], judge: Judge | None) -> list[Grade]:
        if judge is None:
            raise JudgeError(f"The {self.kind} grader needs a provider: set OPENAI_API_KEY.")
        return judge.run_many(lambda item: self._one(item, judge), list(items))


def build(
    name: str,
    *,
    judge_model: str = "",
    rubric: str = "",
    pass_threshold: float | None = None,
) -> Grader:
    """The grader called ``name`` (a GRADER_CHOICES key other than auto)."""
    if name in SIMILARITY_METRICS:
        return TextSimilarity(name, pass_threshold)
    if name == "string_check":
        return StringCheck("ilike")
    if name in JUDGE_GRADERS:
        return ModelJudge(name, model=judge_model, rubric=rubric, pass_threshold=pass_threshold)
    raise ValueError(
        f"Unknown grader '{name}'; use one of {', '.join(LOCAL_GRADERS + JUDGE_GRADERS)}, cosine."
    )


def resolve(choice: str, *, candidate_backend: str, provider: bool) -> str:
    """``auto`` → a judge for provider-trained candidates when a provider is configured, else token F1."""
    if choice != "auto":
        return choice
    return "label_model" if provider and candidate_backend == "openai" else "token_f1"
