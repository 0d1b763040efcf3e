"""The gateway's one action: route a chat request, answer it, log it (so feedback can refer to it)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from assistants.backends import (
    AnswerStream,
    BackendError,
    answer,
    answer_stream,
    estimated_usage,
    text_chunks,
)
from assistants.models import Assistant, ModelVersion
from feedback.models import Interaction
from feedback.services import IdempotencyConflict, interaction_complete, interaction_log

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


@dataclass(frozen=True)
class StreamEnd:
    """The last event of a streamed completion: why it stopped and the token counts."""

    finish_reason: str
    usage: dict[str, int]


@dataclass(frozen=True)
class CompletionStream:
    """A streamed answer. ``interaction`` exists before the first event, so every chunk can name it.

    ``events`` yields text deltas (str) and then one ``StreamEnd``; if the backend breaks off it raises
    ``GatewayError`` after the interaction has been recorded as errored.
    """

    interaction: Interaction
    version: ModelVersion
    events: Iterator[str | StreamEnd]
    replayed: bool = False


def new_request_id() -> str:
    return f"gw-{uuid.uuid4().hex}"


def _existing(assistant: Assistant, request_id: str) -> Interaction | None:
    """The interaction already logged under the client's request id (a retry), if any."""
    return (
        Interaction.objects.filter(assistant=assistant, request_id=request_id)
        .select_related("model_version")
        .first()
    )


def _routed(
    *, assistant: Assistant, request_id: str, messages: list[dict[str, Any]], user_ref: str
) -> tuple[Any, dict[str, Any]]:
    """The version that answers this user (live, or an A/B arm) and what the interaction log needs."""
    from abtesting.routing import route  # gateway sits above abtesting

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
    return version, log


def _backend_failed(log: dict[str, Any], exc: BackendError) -> GatewayError:
    """A backend that failed before answering: logged as an errored interaction, answered as a 502."""
    message = str(exc)
    logged = _log(**log, response="", latency_ms=None, error=message[:ERROR_MAX_LENGTH])
    return GatewayError(
        f"The model backend failed: {message}",
        status=502,
        type="api_error",
        code="backend_error",
        interaction=logged,
    )


def chat_completion_create(
    *, assistant: Assistant, messages: list[dict[str, Any]], user_ref: str = "", request_id: str = ""
) -> Completion:
    """Answer ``messages`` with the version routing picks for ``user_ref`` and log the interaction.

    A repeated ``request_id`` (a client retry) returns the logged interaction instead of answering
    again, so a retry never produces a second, different answer or a duplicate row.
    """

    if request_id:
        existing = _existing(assistant, request_id)
        if existing is not None:
            return _replay(existing, messages)
    else:
        request_id = new_request_id()

    version, log = _routed(assistant=assistant, request_id=request_id, messages=messages, user_ref=user_ref)
    try:
        result = answer(version=version, messages=messages)
    except BackendError as exc:
        raise _backend_failed(log, exc) from exc
    logged = _log(**log, response=result.text, latency_ms=result.latency_ms, error=None)
    return Completion(logged, version, result.text, result.usage or estimated_usage(messages, result.text))


def chat_completion_stream(
    *, assistant: Assistant, messages: list[dict[str, Any]], user_ref: str = "", request_id: str = ""
) -> CompletionStream:
    """Like ``chat_completion_create``, but the answer is relayed as the backend produces it.

    Everything that can be refused is refused before the stream opens (a plain HTTP error): an unknown
    or conflicting request id, no live version, a backend that will not start (logged as an errored
    interaction, as without streaming). Then the interaction is logged with an empty response, so its id
    can go out in the first chunk, and completed when the stream ends: the text, latency to the first
    token and in total, or the error that broke it off.
    """

    started = time.perf_counter()
    if request_id:
        existing = _existing(assistant, request_id)
        if existing is not None:
            replay = _replay(existing, messages)
            end = StreamEnd("stop", replay.usage)
            return CompletionStream(
                replay.interaction, replay.version, iter([*text_chunks(replay.text), end]), replayed=True
            )
    else:
        request_id = new_request_id()

    version, log = _routed(assistant=assistant, request_id=request_id, messages=messages, user_ref=user_ref)
    try:
        stream = answer_stream(version=version, messages=messages)
    except BackendError as exc:
        raise _backend_failed(log, exc) from exc
    try:
        interaction = _log(**log, response="", latency_ms=None, error=None)
    except GatewayError:
        stream.close()
        raise
    return CompletionStream(interaction, version, _relay(interaction, stream, started))


def _in_progress(interaction: Interaction) -> bool:
    """A streamed interaction whose stream has not ended yet (see ``chat_completion_stream``)."""
    return not interaction.response and interaction.error is None and interaction.latency_ms is None


def _relay(interaction: Interaction, stream: AnswerStream, started: float) -> Iterator[str | StreamEnd]:
    parts: list[str] = []
    first_token_ms: int | None = None
    error: str | None = None
    try:
        for delta in stream:
            if first_token_ms is None:
                first_token_ms = _ms_since(started)
            parts.append(delta)
            yield delta
    except BackendError as exc:
        error = str(exc)
        raise GatewayError(
            f"The model backend failed mid-stream: {error}",
            status=502,
            type="api_error",
            code="backend_error",
            interaction=interaction,
        ) from exc
    except GeneratorExit:
        # The web server closes the response when the customer hangs up; keep what they were sent.
        error = "The client closed the stream before the answer ended."
        stream.close()
        raise
    except Exception as exc:
        error = f"The gateway failed mid-stream: {type(exc).__name__}."
        raise
    finally:
        interaction_complete(
            interaction=interaction,
            response="".join(parts),
            latency_ms=_ms_since(started),
            first_token_ms=first_token_ms,
            error=error[:ERROR_MAX_LENGTH] if error else None,
        )
    yield StreamEnd(stream.finish_reason, stream.usage)


def _ms_since(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))


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
    if _in_progress(existing):
        raise GatewayError(
            f"request_id '{existing.request_id}' is still being answered; retry when that stream has ended.",
            status=409,
            code="request_in_progress",
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
