"""Writes for interactions and feedback: each accepted write is stored exactly once, even on retries."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from assistants.models import Assistant, ModelVersion
from feedback.models import CATEGORY_FIELDS, CurationLog, Feedback, Interaction

FEEDBACK_FIELDS = (
    "kind",
    "helpful",
    "rating",
    *CATEGORY_FIELDS,
    "comment",
    "suggestion",
    "corrected_answer",
    "confidence",
)


class IdempotencyConflict(Exception):
    """The same idempotency key (or request id) was sent earlier with a different body."""


def body_hash(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def infer_kind(data: dict[str, Any]) -> str:
    """The most specific kind the item carries, when the client didn't say."""
    if data.get("corrected_answer"):
        return Feedback.Kind.CORRECTION
    if data.get("suggestion"):
        return Feedback.Kind.IMPROVEMENT
    if any(data.get(name) is not None for name in CATEGORY_FIELDS):
        return Feedback.Kind.CATEGORY
    if data.get("rating") is not None:
        return Feedback.Kind.RATING
    if data.get("helpful") is not None:
        return Feedback.Kind.THUMBS
    return Feedback.Kind.TEXT


@dataclass(frozen=True)
class Logged:
    interaction: Interaction
    created: bool


def interaction_log(
    *,
    assistant: Assistant,
    request_id: str,
    messages: list[dict],
    response: str,
    user_ref: str = "",
    model_version: ModelVersion | None = None,
    latency_ms: int | None = None,
    error: str | None = None,
    experiment_id: int | None = None,
    arm: str = "",
) -> Logged:
    """Store one interaction. The client's request id makes it idempotent: a retry returns the stored row."""
    fields = dict(
        user_ref=user_ref,
        messages=messages,
        response=response,
        model_version=model_version if model_version is not None else assistant.live_version,
        latency_ms=latency_ms,
        error=error or None,
        experiment_id=experiment_id,
        arm=arm,
    )
    try:
        with transaction.atomic():
            interaction = Interaction.objects.create(assistant=assistant, request_id=request_id, **fields)
        return Logged(interaction, True)
    except IntegrityError:
        existing = Interaction.objects.get(assistant=assistant, request_id=request_id)
        if existing.messages != messages or existing.response != response:
            raise IdempotencyConflict(
                f"request_id '{request_id}' was already logged with different messages or response."
            ) from None
        return Logged(existing, False)


@dataclass(frozen=True)
class Submitted:
    feedback: Feedback
    created: bool


def _new_feedback(*, interaction: Interaction, data: dict[str, Any], key: str | None, digest: str) -> Feedback:
    values = {name: data.get(name) for name in FEEDBACK_FIELDS}
    for text in ("comment", "suggestion", "corrected_answer"):
        values[text] = values[text] or ""
    values["kind"] = values["kind"] or infer_kind(data)
    return Feedback(
        interaction=interaction,
        assistant_id=interaction.assistant_id,
        idempotency_key=key or None,
        request_hash=digest,
        **values,
    )


def _replay(existing: Feedback, digest: str) -> Submitted:
    if existing.request_hash != digest:
        raise IdempotencyConflict(
            f"Idempotency key '{existing.idempotency_key}' was already used with a different body."
        )
    return Submitted(existing, False)


def feedback_submit(
    *, interaction: Interaction, data: dict[str, Any], idempotency_key: str | None = None
) -> Submitted:
    """Store one feedback item; a retry with the same idempotency key returns the stored row."""
    digest = body_hash({"interaction": interaction.pk, **{k: data.get(k) for k in FEEDBACK_FIELDS}})
    if idempotency_key:
        existing = Feedback.objects.filter(
            assistant_id=interaction.assistant_id, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            return _replay(existing, digest)
    feedback = _new_feedback(interaction=interaction, data=data, key=idempotency_key, digest=digest)
    try:
        with transaction.atomic():
            feedback.save(force_insert=True)
    except IntegrityError:
        # A concurrent request with the same key won the race: answer like a retry.
        existing = Feedback.objects.get(assistant_id=interaction.assistant_id, idempotency_key=idempotency_key)
        return _replay(existing, digest)
    return Submitted(feedback, True)


def feedback_submit_batch(*, items: list[tuple[Interaction, dict[str, Any], str | None]]) -> list[Submitted]:
    """Store many items at once, all or nothing. Items whose key was seen before are returned, not stored.

    Raises IdempotencyConflict listing the items whose key was used with another body.
    """
    digests = [
        body_hash({"interaction": interaction.pk, **{k: data.get(k) for k in FEEDBACK_FIELDS}})
        for interaction, data, _ in items
    ]
    for attempt in range(2):
        keyed = [(it.assistant_id, key) for it, _, key in items if key]
        existing: dict[tuple[int, str], Feedback] = {}
        if keyed:
            by_assistant: dict[int, list[str]] = {}
            for assistant_id, key in keyed:
                by_assistant.setdefault(assistant_id, []).append(key)
            for assistant_id, keys in by_assistant.items():
                for row in Feedback.objects.filter(assistant_id=assistant_id, idempotency_key__in=keys):
                    existing[(assistant_id, row.idempotency_key)] = row
        results: list[Submitted | None] = []
        to_create: list[Feedback] = []
        conflicts: list[str] = []
        seen_in_batch: dict[tuple[int, str], int] = {}
        for index, ((interaction, data, key), digest) in enumerate(zip(items, digests, strict=True)):
            if key:
                found = existing.get((interaction.assistant_id, key))
                if found is not None:
                    if found.request_hash != digest:
                        conflicts.append(f"item {index}: idempotency key '{key}' was used with a different body")
                    results.append(Submitted(found, False))
                    continue
                first = seen_in_batch.setdefault((interaction.assistant_id, key), index)
                if first != index:
                    conflicts.append(f"item {index}: idempotency key '{key}' repeats item {first}")
                    results.append(None)
                    continue
            row = _new_feedback(interaction=interaction, data=data, key=key, digest=digest)
            to_create.append(row)
            results.append(Submitted(row, True))
        if conflicts:
            raise IdempotencyConflict("; ".join(conflicts))
        try:
            with transaction.atomic():
                Feedback.objects.bulk_create(to_create)
        except IntegrityError:
            if attempt == 0:
                continue  # a concurrent batch stored some of our keys: look again and replay them
            raise
        return [r for r in results if r is not None]
    raise AssertionError("unreachable")


def should_ask_for_feedback(*, interaction: Interaction) -> bool:
    """Sample the assistant's feedback rate, and never ask twice about one interaction.

    The sample is a hash of the request id, so the same interaction always gets the same answer; the
    conditional update makes "ask" happen at most once even when two widgets ask concurrently.
    """
    rate = interaction.assistant.feedback_sample_rate
    digest = hashlib.sha256(f"{interaction.assistant_id}:{interaction.request_id}".encode()).digest()
    sampled = int.from_bytes(digest[:8], "big") / 2**64 < rate
    if not sampled:
        return False
    claimed = Interaction.objects.filter(pk=interaction.pk, feedback_requested_at__isnull=True).update(
        feedback_requested_at=timezone.now()
    )
    return claimed == 1


FEEDBACK_PROMPTS: dict[str, dict[str, Any]] = {
    Feedback.Kind.THUMBS: {"question": "Was this response helpful?", "options": ["👍", "👎"]},
    Feedback.Kind.RATING: {"question": "How would you rate this response?", "scale": [1, 5]},
    Feedback.Kind.CATEGORY: {
        "question": "How would you rate this response on each of these?",
        "categories": list(CATEGORY_FIELDS),
        "scale": [1, 5],
    },
    Feedback.Kind.TEXT: {"question": "Any other comments about this response?"},
    Feedback.Kind.IMPROVEMENT: {"question": "How could this response be improved?"},
    Feedback.Kind.CORRECTION: {"question": "What would the correct answer have been?"},
}


def feedback_prompt(kind: str) -> dict[str, Any]:
    if kind not in FEEDBACK_PROMPTS:
        raise ValueError(f"Unknown feedback kind '{kind}': use one of {', '.join(FEEDBACK_PROMPTS)}.")
    return {"kind": kind, **FEEDBACK_PROMPTS[kind]}


@transaction.atomic
def feedback_set_excluded(*, feedback: Feedback, excluded: bool, user=None) -> Feedback:
    Feedback.objects.filter(pk=feedback.pk).update(excluded_from_training=excluded)
    feedback.excluded_from_training = excluded
    CurationLog.objects.create(
        feedback=feedback, user=user, action="exclude" if excluded else "include", detail={}
    )
    return feedback


@transaction.atomic
def feedback_correct(*, feedback: Feedback, corrected_answer: str, user=None) -> Feedback:
    """A reviewer writes the answer the assistant should have given; the pipeline trains on it."""
    previous = feedback.corrected_answer
    feedback.corrected_answer = corrected_answer.strip()
    feedback.save(update_fields=("corrected_answer",))
    CurationLog.objects.create(
        feedback=feedback,
        user=user,
        action="correct",
        detail={"before": previous, "after": feedback.corrected_answer},
    )
    return feedback
