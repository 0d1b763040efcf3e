"""Chat completions from an OpenAI-compatible provider (the ``openai`` backend of a ModelVersion).

Any provider that speaks OpenAI's REST API works: set ``OPENAI_BASE_URL`` (empty = api.openai.com) and
``OPENAI_API_KEY``. The SDK retries 408/409/429/5xx and connection errors itself; we keep that small
(``max_retries=2``) because a customer is waiting on the other side of a chat request.

Every HTTP request to the provider (chat here, fine-tuning in ``training.trainers.openai``: both use
``client()``) is one log line on ``trainloop.provider`` with its method, operation, status, latency and
which retry it was, and is counted in ``trainloop_provider_request_duration_seconds`` and, when it fails,
``trainloop_provider_errors_total`` (``config.metrics``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import openai
from django.conf import settings

from assistants.backends.errors import BackendError
from config import metrics

provider_logger = logging.getLogger("trainloop.provider")

DEFAULT_MAX_RETRIES = 2
DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the SDK's, when OPENAI_BASE_URL is empty
DEFAULT_TIMEOUT = 30.0  # seconds per HTTP attempt; chat answers rarely take longer
MISSING_KEY = "Set OPENAI_API_KEY (and OPENAI_BASE_URL for a compatible provider) to use the openai backend."

# Building a client creates an httpx connection pool; reuse one per configuration so requests keep
# their connections alive instead of paying a TLS handshake each time.
_clients: dict[tuple[str, str, int, float], openai.OpenAI] = {}
_clients_lock = threading.Lock()


class ProviderNotConfigured(BackendError):
    """No API key: the openai backend cannot be used until one is set."""


def request_timeout() -> float:
    """Seconds the provider has for each HTTP attempt (``OPENAI_TIMEOUT``): for a stream, each wait for
    its next piece."""
    return float(getattr(settings, "OPENAI_TIMEOUT", DEFAULT_TIMEOUT))


# A path segment that names an object (ftjob-abc123, file-XYZ, a model id) rather than an endpoint.
_ENDPOINT_SEGMENT = re.compile(r"[a-z_]+")


def operation(path: str, base_path: str) -> str:
    """The endpoint a request went to, without object ids: ``fine_tuning/jobs/{id}/events``."""
    if base_path and path.startswith(base_path):
        path = path[len(base_path) :]
    segments = [s for s in path.split("/") if s]
    return "/".join(s if _ENDPOINT_SEGMENT.fullmatch(s) else "{id}" for s in segments) or "/"


class LoggedHttpxClient(openai.DefaultHttpxClient):
    """The SDK's own HTTP client (its defaults: limits, redirects), timing and logging each request it
    sends, each retry included. ``send`` is where every request passes, through any transport or proxy."""

    def __init__(self, *, provider_base_path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._provider_base_path = provider_base_path

    def send(self, request: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            response = super().send(request, **kwargs)
        except Exception as exc:
            self._record(request, time.perf_counter() - started, status=None, error=type(exc).__name__)
            raise
        self._record(request, time.perf_counter() - started, status=response.status_code, error=None)
        return response

    def _record(self, request: Any, seconds: float, *, status: int | None, error: str | None) -> None:
        name = operation(request.url.path, self._provider_base_path)
        failed = error if error is not None else (str(status) if status >= 400 else None)
        metrics.provider_request_duration.labels(
            operation=name, status=str(status) if status is not None else "none"
        ).observe(seconds)
        if failed is not None:
            metrics.provider_errors.labels(operation=name, error=failed).inc()
        retry = int(request.headers.get("x-stainless-retry-count", "0") or 0)
        provider_logger.log(
            logging.WARNING if failed is not None else logging.INFO,
            "Provider %s %s: %s in %.0f ms%s",
            request.method,
            name,
            status if status is not None else error,
            seconds * 1000,
            f" (retry {retry})" if retry else "",
            extra={
                "provider_method": request.method,
                "operation": name,
                "status": status,
                "error": error,
                "latency_ms": round(seconds * 1000, 1),
                "retry": retry,
            },
        )


def client(*, max_retries: int | None = None, timeout: float | None = None) -> openai.OpenAI:
    """An ``openai.OpenAI`` for the configured provider (raises ``ProviderNotConfigured`` without a key)."""
    api_key = getattr(settings, "OPENAI_API_KEY", "") or ""
    if not api_key:
        raise ProviderNotConfigured(MISSING_KEY)
    base_url = getattr(settings, "OPENAI_BASE_URL", "") or ""
    retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
    seconds = request_timeout() if timeout is None else float(timeout)
    config = (base_url, api_key, retries, seconds)
    with _clients_lock:
        cached = _clients.get(config)
        if cached is None:
            cached = openai.OpenAI(
                base_url=base_url or None,
                api_key=api_key,
                max_retries=retries,
                timeout=seconds,
                http_client=LoggedHttpxClient(
                    provider_base_path=urlsplit(base_url or DEFAULT_BASE_URL).path.rstrip("/"),
                    timeout=seconds,
                ),
            )
            _clients[config] = cached
        return cached


def describe_api_error(exc: openai.OpenAIError) -> str:
    """A one-line, actionable description of an SDK error (used in job errors and interaction logs)."""
    if isinstance(exc, openai.AuthenticationError):
        return (
            f"The provider rejected OPENAI_API_KEY (401): {_body_message(exc)}. "
            "Check the key and OPENAI_BASE_URL."
        )
    if isinstance(exc, openai.PermissionDeniedError):
        return f"The provider denied access (403): {_body_message(exc)}."
    if isinstance(exc, openai.NotFoundError):
        return f"The provider does not know this model or object (404): {_body_message(exc)}."
    if isinstance(exc, openai.APITimeoutError):
        return "The provider did not answer in time (timeout)."
    if isinstance(exc, openai.APIConnectionError):
        return (
            f"Could not reach the provider at {getattr(settings, 'OPENAI_BASE_URL', '') or 'api.openai.com'}."
        )
    if isinstance(exc, openai.APIStatusError):
        code = f" {exc.code}" if getattr(exc, "code", None) else ""
        return f"The provider answered {exc.status_code}{code}: {_body_message(exc)}."
    return f"The provider call failed: {exc}."


def _body_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"]).rstrip(". ")
    return str(exc.message).rstrip(". ")


def chat(model: str, messages: list[dict[str, Any]], **params: Any) -> tuple[str, dict[str, int]]:
    """Ask ``model`` for the next assistant message; return ``(text, usage)``.

    Raises ``BackendError`` (with a readable message) for every provider failure, after the SDK's
    own retries, so callers handle one exception type.
    """
    api = client()
    try:
        completion = api.chat.completions.create(model=model, messages=messages, **params)
    except openai.OpenAIError as exc:
        raise BackendError(describe_api_error(exc)) from exc
    if not completion.choices:
        raise BackendError(f"The provider returned no choices for model '{model}'.")
    text = completion.choices[0].message.content or ""
    usage = (
        completion.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"})
        if completion.usage
        else {}
    )
    return text, usage


@dataclass
class StreamEnd:
    """What a provider said when its stream ended (usage is empty when it reported none)."""

    finish_reason: str = "stop"
    usage: dict[str, int] = field(default_factory=dict)


def chat_stream(model: str, messages: list[dict[str, Any]], **params: Any) -> Iterator[str | StreamEnd]:
    """Ask ``model`` with ``stream=True``; yields text deltas as they arrive, then one ``StreamEnd``.

    The request is sent before this returns, so a refusal (unknown model, bad key, a 5xx after the SDK's
    retries) raises ``BackendError`` here, before the caller has sent its customer a single byte; a
    failure in the middle of the stream raises ``BackendError`` from the iterator.
    """
    api = client()
    try:
        # include_usage: the provider's own token counts arrive in a last chunk without choices.
        stream = api.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}, **params
        )
    except openai.OpenAIError as exc:
        raise BackendError(describe_api_error(exc)) from exc
    return _relay(stream)


def _relay(stream: Any) -> Iterator[str | StreamEnd]:
    end = StreamEnd()
    try:
        for chunk in stream:
            if chunk.usage is not None:
                end.usage = chunk.usage.model_dump(
                    include={"prompt_tokens", "completion_tokens", "total_tokens"}
                )
            for choice in chunk.choices[:1]:
                if choice.delta is not None and choice.delta.content:
                    yield choice.delta.content
                if choice.finish_reason:
                    end.finish_reason = choice.finish_reason
    except openai.OpenAIError as exc:
        raise BackendError(describe_api_error(exc)) from exc
    finally:
        stream.close()  # a customer who hangs up must not keep the provider's connection open
    yield end
