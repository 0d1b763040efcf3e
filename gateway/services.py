"""The gateway's one action: route a chat request, answer it, log it (so feedback can refer to it).

Over 400 lines because routing, the one-record-per-request lease and the backend-failure path are
shared by plain and streamed answers and only make sense read together.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from assistants.backends import (
    AnswerStream,
    BackendError,
    answer,
    answer_stream,
    estimated_usage,
    text_chunks,
)
from assistants.backends.openai_chat import request_timeout
from assistants.models import Assistant, ModelVersion
from feedback.models import Interaction
from feedback.services import IdempotencyConflict, interaction_complete, interaction_log

ERROR_MAX_LENGTH = 500  # Interaction.error's column size
# A streamed answer may take this many upstream timeouts in all (the timeout bounds each wait for the next
# piece, not the whole answer). Past it the gateway ends the stream as errored, so that no process still
# writes to an interaction once its lease (``stream_lease``) is over.
STREAM_TIMEOUTS = 10


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
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.interaction = interaction
        self.retry_after = retry_after  # seconds, for a Retry-After header


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
    again, so a retry never produces a second, different answer or a duplicate row. The one exception
    is a stream whose lease is over (``stream_lease``): its process died before the answer ended, so
    the retry answers it, in the same row.
    """

    started = time.perf_counter()
    if request_id:
        retried = _retried(assistant, request_id, messages)
        if isinstance(retried, Completion):
            return retried
        if retried is not None:
            return _answer_again(retried, messages, started)
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
        retried = _retried(assistant, request_id, messages)
        if isinstance(retried, Completion):
            end = StreamEnd("stop", retried.usage)
            return CompletionStream(
                retried.interaction, retried.version, iter([*text_chunks(retried.text), end]), replayed=True
            )
        if retried is not None:
            return _stream_again(retried, messages, started)
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


# -- the lease of a stream in progress -------------------------------------------------------------------
# A streamed interaction is logged when its stream opens and completed when it ends. A process that dies
# in between (killed, out of memory, a lost host) never completes it, so "in progress" needs an end: the
# lease. While it lasts, a retry with the same request id gets a 409 with Retry-After; once it is over, the
# first retry claims the row (a conditional update: of two retries at once, one answers, the other gets
# the 409 of the new lease) and answers it again. The lease runs from the row's created_at, which the
# claim moves to the retry's start; the row keeps its id, version and arm, so it is stored once.


def stream_deadline() -> timedelta:
    """The longest a streamed answer may take before the gateway cuts it off."""
    return timedelta(seconds=STREAM_TIMEOUTS * request_timeout())


def stream_lease() -> timedelta:
    """How long a stream in progress holds its interaction against retries.

    The deadline, plus one upstream wait (the relay checks the deadline between pieces, so a last wait
    may overrun it), plus one more for the final write and clock differences between web servers.
    """
    return stream_deadline() + timedelta(seconds=2 * request_timeout())


def stream_lease_ends(interaction: Interaction) -> datetime:
    return interaction.created_at + stream_lease()


def _lease_over(interaction: Interaction) -> bool:
    return _in_progress(interaction) and timezone.now() >= stream_lease_ends(interaction)


def _claim(interaction: Interaction) -> bool:
    """Take over an abandoned stream's interaction for this request; False if another request did."""
    now = timezone.now()
    claimed = Interaction.objects.filter(
        pk=interaction.pk,
        created_at=interaction.created_at,
        response="",
        error__isnull=True,
        latency_ms__isnull=True,
    ).update(created_at=now)
    if claimed:
        interaction.created_at = now
    return claimed == 1


def _retried(
    assistant: Assistant, request_id: str, messages: list[dict[str, Any]]
) -> Completion | Interaction | None:
    """What a repeated request id gets: None when it is new, the logged answer to replay, or the
    interaction of an abandoned stream, claimed for this request to answer again."""
    existing = _existing(assistant, request_id)
    if existing is None:
        return None
    if existing.messages == messages and existing.model_version is not None and _lease_over(existing):
        if _claim(existing):
            return existing
        existing = _existing(assistant, request_id)  # another retry claimed it first: as it is now
    return _replay(existing, messages)


def _answer_again(interaction: Interaction, messages: list[dict[str, Any]], started: float) -> Completion:
    """Answer a claimed interaction with the version it was routed to, and complete it."""
    version = interaction.model_version
    try:
        result = answer(version=version, messages=messages)
    except BackendError as exc:
        raise _failed_again(interaction, exc, started) from exc
    interaction_complete(
        interaction=interaction, response=result.text, latency_ms=_ms_since(started), error=None
    )
    return Completion(
        interaction, version, result.text, result.usage or estimated_usage(messages, result.text)
    )


def _stream_again(
    interaction: Interaction, messages: list[dict[str, Any]], started: float
) -> CompletionStream:
    version = interaction.model_version
    try:
        stream = answer_stream(version=version, messages=messages)
    except BackendError as exc:
        raise _failed_again(interaction, exc, started) from exc
    return CompletionStream(interaction, version, _relay(interaction, stream, started))


def _failed_again(interaction: Interaction, exc: BackendError, started: float) -> GatewayError:
    message = str(exc)
    interaction_complete(
        interaction=interaction, response="", latency_ms=_ms_since(started), error=message[:ERROR_MAX_LENGTH]
    )
    return GatewayError(
        f"The model backend failed: {message}",
        status=502,
        type="api_error",
        code="backend_error",
        interaction=interaction,
    )


def _relay(interaction: Interaction, stream: AnswerStream, started: float) -> Iterator[str | StreamEnd]:
    parts: list[str] = []
    first_token_ms: int | None = None
    error: str | None = None
    limit = stream_deadline().total_seconds()
    try:
        for delta in stream:
            if time.perf_counter() - started > limit:
                stream.close()
                raise BackendError(
                    f"the answer took longer than {limit:g} s, the most a streamed answer may take "
                    f"({STREAM_TIMEOUTS} × OPENAI_TIMEOUT), and was cut off."
                )
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
    if _in_progress(existing) and (existing.model_version is not None or not _lease_over(existing)):
        began, ends = existing.created_at.astimezone(UTC), stream_lease_ends(existing).astimezone(UTC)
        wait = max(1, math.ceil((ends - timezone.now()).total_seconds()))
        raise GatewayError(
            f"request_id '{existing.request_id}' is still being answered (its stream began at "
            f"{began:%H:%M:%S} UTC). Retry after {ends:%H:%M:%S} UTC, in {wait} s: if that stream was "
            "broken off, the retry answers it then.",
            status=409,
            code="request_in_progress",
            param="metadata.request_id",
            retry_after=wait,
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
