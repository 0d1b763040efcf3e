"""The gateway's one action: route a chat request, answer it, log it (so feedback can refer to it)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from assistants.backends import BackendError, answer, estimated_usage
from assistants.models import Assistant, ModelVersion
from feedback.models import Interaction
from feedback.services import IdempotencyConflict, interaction_log

ERROR_MAX_LENGTH = 500  # Interaction.error's column size


class GatewayError(Exception):
    """A request the gateway refuses or cannot serve, in OpenAI's error vocabulary."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",  # noqa: A002 - OpenAI's field name
        code: str | None = None,
        param: str | None = None,
        interaction: Interaction | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.interaction = interaction


@dataclass(frozen=True)
class Completion:
    interaction: Interaction
    version: ModelVersion
    text: str
    usage: dict[str, int] = field(default_factory=dict)
    replayed: bool = False


def new_request_id() -> str:
    return f"gw-{uuid.uuid4().hex}"


def chat_completion_create(
    *, assistant: Assistant, messages: list[dict[str, Any]], user_ref: str = "", request_id: str = ""
) -> Completion:
    """Answer ``messages`` with the version routing picks for ``user_ref`` and log the interaction.

    A repeated ``request_id`` (a client retry) returns the logged interaction instead of answering
    again, so a retry never produces a second, different answer or a duplicate row.
    """
    from abtesting.routing import route  # gateway sits above abtesting

    if request_id:
        existing = (
            Interaction.objects.filter(assistant=assistant, request_id=request_id)
            .select_related("model_version")
            .first()
        )
        if existing is not None:
            return _replay(existing, messages)
    else:
        request_id = new_request_id()

    picked = route(assistant=assistant, user_ref=user_ref)
    version = picked.model_version
    if version is None:
        raise GatewayError(
            f"Assistant '{assistant.slug}' has no live model version yet: train and deploy one first.",
            status=404,
            code="model_not_found",
            param="model",
        )
    log = dict(
        assistant=assistant,
        request_id=request_id,
        messages=messages,
        user_ref=user_ref,
        model_version=version,
        experiment_id=picked.experiment_id,
        arm=picked.arm or "",
    )
    try:
        result = answer(version=version, messages=messages)
    except BackendError as exc:
        message = str(exc)
        logged = _log(**log, response="", latency_ms=None, error=message[:ERROR_MAX_LENGTH])
        raise GatewayError(
            f"The model backend failed: {message}",
            status=502,
            type="api_error",
            code="backend_error",
            interaction=logged,
        ) from exc
    logged = _log(**log, response=result.text, latency_ms=result.latency_ms, error=None)
    return Completion(logged, version, result.text, result.usage or estimated_usage(messages, result.text))


def _log(**kwargs: Any) -> Interaction:
    try:
        return interaction_log(**kwargs).interaction
    except IdempotencyConflict as exc:  # a concurrent request with the same request_id won the race
        raise GatewayError(
            str(exc), status=400, code="request_id_conflict", param="metadata.request_id"
        ) from None


def _replay(existing: Interaction, messages: list[dict[str, Any]]) -> Completion:
    if existing.messages != messages:
        raise GatewayError(
            f"request_id '{existing.request_id}' was already used for different messages; send a new one.",
            code="request_id_conflict",
            param="metadata.request_id",
        )
    if existing.error:
        raise GatewayError(
            f"The model backend failed: {existing.error}",
            status=502,
            type="api_error",
            code="backend_error",
            interaction=existing,
        )
    if existing.model_version is None:
        raise GatewayError(
            f"request_id '{existing.request_id}' was logged without a model version (it was deleted).",
            status=404,
        )
    return Completion(
        existing,
        existing.model_version,
        existing.response,
        estimated_usage(messages, existing.response),
        replayed=True,
    )
