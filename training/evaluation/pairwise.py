"""Pairwise judging: which of two answers to one prompt is better, candidate or live?

**With a judge**, each prompt is asked twice, the answers swapped: once with the candidate as answer A and
live as B, once the other way round. LLM judges prefer whichever answer comes first (or second) more often
than chance; asking both ways cancels that: a judge that always says "A" ends every prompt in a tie. The
candidate's outcome per order is 1 (win), 0.5 (tie) or 0 (loss), and the prompt's outcome is the mean of
the two orders (so 0.5 also when the verdict flipped with the order). The judge sees the question, the
reference answer and, when the reference is a customer's correction, is told so.

**Without a judge** (the local default), the outcome is read off the grader's scores: the candidate wins
a prompt when its score is higher, ties when equal (within 1e-9). The metric is symmetric, so there is no
position to cancel.

Replies are parsed strictly (``{"winner": "A"|"B"|"tie", "reason": "..."}``); a malformed one is asked
again once and then the prompt counts as unjudged (excluded from the win rate, shown with the reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from training.evaluation.graders import DEFAULT_RUBRIC, _strict_object
from training.evaluation.judge import Judge, JudgeError

WINNERS = ("A", "B", "tie")

PAIRWISE_SYSTEM = (
    DEFAULT_RUBRIC.replace(
        "You grade a customer-service assistant's answer.",
        "You compare two answers of a customer-service assistant to the same question.",
    )
    + "\n\nDecide which answer is better for the customer. Say tie when they are equally good or equally "
    'bad. Reply with only a JSON object: {"winner": "A" or "B" or "tie", "reason": "<one sentence>"}.'
)


@dataclass(frozen=True)
class Pair:
    question: str
    reference: str
    reference_is_correction: bool
    candidate: str | None
    live: str | None


@dataclass
class PairOutcome:
    outcome: float | None  # the candidate's: 1 won, 0.5 tie, 0 lost; None = unjudged
    reason: str
    orders: list[str | None]  # the judge's raw winner per order: [candidate first, live first]
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason": self.reason, "orders": self.orders, "error": self.error}


def parse_winner(value: Any) -> tuple[str, str]:
    obj = _strict_object(value, {"winner", "reason"})
    if obj["winner"] not in WINNERS:
        raise ValueError(f"'winner' must be one of {list(WINNERS)}, got {obj['winner']!r}")
    return obj["winner"], obj["reason"].strip()


def messages_for(pair: Pair, first: str | None, second: str | None) -> list[dict[str, Any]]:
    label = (
        "Reference answer (the customer's own correction)"
        if pair.reference_is_correction
        else ("Reference answer")
    )
    return [
        {"role": "system", "content": PAIRWISE_SYSTEM},
        {
            "role": "user",
            "content": f"Question: {pair.question}\n{label}: {pair.reference}\n\n"
            f"Answer A: {first or '(no answer)'}\n\nAnswer B: {second or '(no answer)'}",
        },
    ]


def _score(winner: str, candidate_is: str) -> float:
    if winner == "tie":
        return 0.5
    return 1.0 if winner == candidate_is else 0.0


def judge_pair(pair: Pair, judge: Judge) -> PairOutcome:
    verdicts: list[str | None] = []
    reasons: list[str] = []
    for first, second, candidate_is in ((pair.candidate, pair.live, "A"), (pair.live, pair.candidate, "B")):
        try:
            parsed, _, error = judge.complete_json(messages_for(pair, first, second), parse_winner)
        except JudgeError as exc:
            parsed, error = None, str(exc)
        if parsed is None:
            return PairOutcome(None, "", verdicts + [None], error=error)
        winner, reason = parsed
        verdicts.append(winner)
        who = {
            "A": "candidate" if candidate_is == "A" else "live",
            "B": "live" if candidate_is == "A" else "candidate",
            "tie": "tie",
        }[winner]
        reasons.append(f"{'candidate first' if candidate_is == 'A' else 'live first'} → {who}: {reason}")
    outcome = (_score(verdicts[0], "A") + _score(verdicts[1], "B")) / 2
    return PairOutcome(outcome, " | ".join(reasons), verdicts)


def judge_pairs(pairs: Sequence[Pair], judge: Judge) -> list[PairOutcome]:
    return judge.run_many(lambda p: judge_pair(p, judge), list(pairs))


def from_scores(candidate: Sequence[float | None], live: Sequence[float | None]) -> list[PairOutcome]:
    out = []
    for c, lv in zip(candidate, live, strict=True):
        if c is None or lv is None:
            out.append(PairOutcome(None, "", [], error="ungraded"))
            continue
        if abs(c - lv) <= 1e-9:
            out.append(PairOutcome(0.5, f"tie on the grader's score ({c:.2f})", []))
        elif c > lv:
            out.append(PairOutcome(1.0, f"candidate scores higher ({c:.2f} vs {lv:.2f})", []))
        else:
            out.append(PairOutcome(0.0, f"live scores higher ({lv:.2f} vs {c:.2f})", []))
    return out
