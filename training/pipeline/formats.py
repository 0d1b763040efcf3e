"""Filters and record shapes of the four dataset formats.

**Quality filter** (chat_completion and rag_documents; the seed's ``minRating``, ``requireHelpful``,
``minConfidence``, ``includeNegative``), applied to the combined feedback of an interaction:

- ``excluded_from_training`` → never enters (any format);
- ``confidence`` below ``min_confidence`` → dropped (feedback without a confidence, e.g. a human's, passes);
- an interaction without a user message, or (without a correction) with an error or an empty response,
  is dropped;
- **a correction makes a poor answer usable**: when a corrected answer exists it becomes the target, and
  the rating/helpful filter is skipped — those judged the *original* response, which is not trained on;
- otherwise, unless ``include_negative``: an explicit thumbs-down drops the example when
  ``require_helpful``; a rating below ``min_rating`` drops it; and it needs positive evidence — a
  thumbs-up, or a rating ≥ ``min_rating`` standing in for the thumbs-up the customer didn't give
  (a rating-only widget would otherwise never produce training data).

**classification** skips the rating/helpful filter (a classifier needs both classes) and labels the
original answer: any negative signal (thumbs-down or rating ≤ 2) → ``negative``; rating ≥ 4 →
``positive``; rating 3 → ``neutral``; a thumbs-up without a rating → ``helpful``; no signal → dropped.
``text`` is ``"Customer: <question>\\nAssistant: <original response>"``.

**preference** (OpenAI DPO) needs a correction of a poor answer: the original was not a success
(``feedback.models.is_success``) and the corrected answer differs from it. ``preferred_output`` is the
correction, ``non_preferred_output`` the original response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from feedback.models import is_success
from training.dataset_options import DatasetOptions
from training.pipeline.sources import Candidate
from training.pipeline.validate import check_chat, check_classification, check_preference, check_rag

CHAT_COMPLETION = "chat_completion"
RAG_DOCUMENTS = "rag_documents"
CLASSIFICATION = "classification"
PREFERENCE = "preference"


def target(c: Candidate) -> str:
    """The assistant answer to train on: the correction when there is one."""
    return c.corrected_answer or c.response


def common_drop_reason(c: Candidate, o: DatasetOptions) -> str | None:
    if c.excluded:
        return "excluded_from_training"
    if c.confidence is not None and c.confidence < o.min_confidence:
        return "confidence_below_min"
    return None


def question_drop_reason(c: Candidate) -> str | None:
    """Checked last: it is the only filter that parses the interaction's messages."""
    return None if c.question.strip() else "no_question"


def quality_drop_reason(c: Candidate, o: DatasetOptions) -> str | None:
    if not c.corrected_answer:
        if c.error:
            return "interaction_error"
        if not c.response.strip():
            return "empty_answer"
    if c.corrected_answer or o.include_negative:
        return None
    if c.helpful is False and o.require_helpful:
        return "not_helpful"
    if c.rating is not None and c.rating < o.min_rating:
        return "rating_below_min"
    if c.helpful is True or (c.rating is not None and c.rating >= o.min_rating):
        return None
    return "not_helpful" if c.helpful is False else "no_positive_signal"


def conversation(c: Candidate, system_prompt: str) -> list[dict[str, Any]]:
    """System prompt, then the interaction's turns (its own system messages give way to ours)."""
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    for m in c.messages:
        if not isinstance(m, dict):
            messages.append({"role": None, "content": m})
            continue
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role == "system" and system_prompt:
            continue
        messages.append({"role": role, "content": m.get("content")})
    return messages


def label(c: Candidate) -> str | None:
    if c.helpful is False or (c.rating is not None and c.rating <= 2):
        return "negative"
    if c.rating is not None and c.rating >= 4:
        return "positive"
    if c.rating == 3:
        return "neutral"
    if c.helpful is True:
        return "helpful"
    return None


@dataclass(frozen=True)
class Format:
    name: str
    drop_reason: Callable[[Candidate, DatasetOptions], str | None]
    record: Callable[[Candidate, str], dict[str, Any]]
    dedup_text: Callable[[Candidate], str]
    check: Callable[[dict[str, Any], int], tuple[str | None, int]]
    # OpenAI needs at least 10 examples to fine-tune; the other formats are useful with one.
    min_examples: int


def _chat_record(c: Candidate, system_prompt: str) -> dict[str, Any]:
    return {"messages": [*conversation(c, system_prompt), {"role": "assistant", "content": target(c)}]}


def _rag_record(c: Candidate, system_prompt: str) -> dict[str, Any]:
    if c.corrected_answer:
        category = "corrected_answer"
    elif is_success(helpful=c.helpful, rating=c.rating):
        category = "positive_feedback"
    else:
        category = "negative_feedback"
    return {
        "id": f"feedback_{c.feedback_id}",
        "content": target(c),
        "metadata": {
            "source": "feedback",
            "feedback_id": c.feedback_id,
            "interaction_id": c.interaction_id,
            "rating": c.rating,
            "helpful": c.helpful,
            "category": category,
            "question": c.question,
        },
    }


def _classification_drop(c: Candidate, o: DatasetOptions) -> str | None:
    if not c.response.strip():
        return "empty_answer"
    return None if label(c) else "no_label"


def _classification_record(c: Candidate, system_prompt: str) -> dict[str, Any]:
    return {"text": f"Customer: {c.question}\nAssistant: {c.response}", "label": label(c)}


def _preference_drop(c: Candidate, o: DatasetOptions) -> str | None:
    if not c.corrected_answer:
        return "no_correction"
    if not c.response.strip():
        return "empty_answer"
    if c.corrected_answer == c.response.strip():
        return "correction_same_as_response"
    if is_success(helpful=c.helpful, rating=c.rating):
        return "original_not_poor"
    return None


def _preference_record(c: Candidate, system_prompt: str) -> dict[str, Any]:
    return {
        "input": {"messages": conversation(c, system_prompt)},
        "preferred_output": [{"role": "assistant", "content": c.corrected_answer}],
        "non_preferred_output": [{"role": "assistant", "content": c.response}],
    }


FORMATS: dict[str, Format] = {
    CHAT_COMPLETION: Format(
        CHAT_COMPLETION,
        quality_drop_reason,
        _chat_record,
        lambda c: f"{c.question}\n{target(c)}",
        check_chat,
        10,
    ),
    RAG_DOCUMENTS: Format(
        RAG_DOCUMENTS, quality_drop_reason, _rag_record, lambda c: f"{c.question}\n{target(c)}", check_rag, 1
    ),
    CLASSIFICATION: Format(
        CLASSIFICATION,
        _classification_drop,
        _classification_record,
        lambda c: f"{c.question}\n{c.response}",
        check_classification,
        1,
    ),
    PREFERENCE: Format(
        PREFERENCE,
        _preference_drop,
        _preference_record,
        lambda c: f"{c.question}\n{c.corrected_answer}\n{c.response}",
        check_preference,
        10,
    ),
}
