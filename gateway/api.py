"""Gateway endpoints: which version should answer this user, and an OpenAI-compatible chat endpoint.

Over 400 lines because plain and streamed answers share routing, the one-record-per-request
interaction, and OpenAI's error shapes, which only make sense read together.

``POST /v1/chat/completions`` lets any OpenAI client library talk to an assistant: ``model`` is the
assistant's slug, the bearer token an ingest key. Every answer is logged as an Interaction whose id comes
back as ``interaction_id`` (and ``id = "chatcmpl-<interaction id>"``) with its ``feedback_token``, so the
client can send feedback on it (a browser widget with a publishable key needs the token). Errors use
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` so the SDKs raise their usual
exceptions (``AuthenticationError``, ``NotFoundError``, ``BadRequestError`` …).

``stream: true`` answers ``text/event-stream`` in OpenAI's chunk format: ``chat.completion.chunk``
objects (the role in the first delta, ``finish_reason`` in the last, a usage chunk when
``stream_options.include_usage`` is set), then ``data: [DONE]``. Every chunk carries the same ``id`` and
``interaction_id`` as the non-streamed answer would, so feedback can name it before the stream ends. A
backend failure mid-stream ends the stream with ``data: {"error": {...}}`` (which OpenAI SDKs raise as
``APIError``) and no ``[DONE]``. Streams are relayed as they arrive; serve with threads (``start`` runs
gunicorn's gthread workers) so a slow stream holds one thread, not a whole worker process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistants.api_errors import api_exception
from assistants.api_parsers import BodyRefused
from assistants.auth import ServerIngestScope, assistant_for_key
from assistants.schema import SLUG_SCHEMA, OpenAIErrorSerializer
from assistants.serializers import JsonInputSerializer
from feedback.models import Interaction
from feedback.tokens import feedback_token
from gateway.services import (
    Completion,
    CompletionStream,
    GatewayError,
    StreamEnd,
    chat_completion_create,
    chat_completion_stream,
)

logger = logging.getLogger(__name__)

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_MESSAGES = 200


class RouteGetApi(APIView):
    """Which model version should answer this user (the live one, or their arm of a running A/B test)."""

    permission_classes = [ServerIngestScope]

    class FilterSerializer(serializers.Serializer):
        assistant = serializers.SlugField(required=False, help_text="Optional when the key is bound to one.")
        user = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    @extend_schema_serializer(component_name="Route")
    class OutputSerializer(serializers.Serializer):
        assistant = serializers.CharField()
        model_version = serializers.CharField()
        backend = serializers.CharField()
        provider_model = serializers.CharField(allow_blank=True)
        experiment = serializers.IntegerField(allow_null=True)
        arm = serializers.CharField(allow_blank=True)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "assistant", SLUG_SCHEMA, description="Assistant slug (optional for keys bound to one)."
            ),
            OpenApiParameter("user", str, description="Opaque, stable user ref: keeps the user in one arm."),
        ],
        responses={200: OutputSerializer},
    )
    def get(self, request: Request) -> Response:
        from abtesting.routing import route  # gateway sits above abtesting

        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        assistant = assistant_for_key(request, params.validated_data.get("assistant"))
        picked = route(assistant=assistant, user_ref=params.validated_data["user"])
        version = picked.model_version
        if version is None:
            raise exceptions.NotFound(
                f"Assistant '{assistant.slug}' has no live model version yet: deploy one first."
            )
        data = {
            "assistant": assistant.slug,
            "model_version": version.name,
            "backend": version.backend,
            "provider_model": version.provider_model,
            "experiment": picked.experiment_id,
            "arm": picked.arm or "",
        }
        return Response(self.OutputSerializer(data).data)


@extend_schema_field(
    {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"type": "string", "enum": list(ROLES)},
            "content": {
                "oneOf": [
                    {"type": "string", "nullable": True},
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "text"],
                            "properties": {
                                "type": {"type": "string", "enum": ["text"]},
                                "text": {"type": "string"},
                            },
                        },
                    },
                ]
            },
        },
    }
)
class ChatMessageField(serializers.DictField):
    """An OpenAI chat message: a role, and content as a string or a list of text parts."""


def _message_text(content: Any) -> str | None:
    """OpenAI message content: a string, a list of text parts, or null (assistant tool calls)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                return None
            texts.append(part["text"])
        return "\n".join(texts)
    return None


def _storable(text: str) -> bool:
    """PostgreSQL text refuses NUL, and UTF-8 cannot encode a lone surrogate (both JSON-escapable)."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def openai_error(
    message: str,
    *,
    status: int,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> Response:  # noqa: A002
    return Response(
        {"error": {"message": message, "type": type, "param": param, "code": code}}, status=status
    )


def _detail_text(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_detail_text(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return " ".join(_detail_text(v) for v in detail)
    return str(detail)


def completion_metadata(interaction: Interaction, version: Any) -> dict[str, Any]:
    """What identifies an answer, in the plain body and in every streamed chunk alike (one place for both).

    ``id`` and ``interaction_id`` name the logged interaction, so feedback can refer to either.
    """
    return {
        "id": f"chatcmpl-{interaction.pk}",
        "created": int(interaction.created_at.timestamp()),
        "model": version.name,
        "system_fingerprint": None,
        "interaction_id": interaction.pk,
        # For the page that shows the answer: feedback with a publishable (browser) key needs it.
        "feedback_token": feedback_token(interaction.pk),
        "request_id": interaction.request_id,
        "experiment": interaction.experiment_id,
        "arm": interaction.arm,
    }


def _identified(response: Any, interaction: Interaction) -> Any:
    response["x-request-id"] = interaction.request_id
    response["x-interaction-id"] = str(interaction.pk)
    return response


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def _sse_events(stream: CompletionStream, *, include_usage: bool) -> Iterator[bytes]:
    """The stream in OpenAI's chunk format; each backend delta goes out as soon as it arrives."""
    meta = {**completion_metadata(stream.interaction, stream.version), "object": "chat.completion.chunk"}
    if include_usage:
        meta["usage"] = None  # OpenAI: null on every chunk but the last one

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**meta, "choices": [choice]})

    events = stream.events
    try:
        yield chunk({"role": "assistant", "content": ""})
        for event in events:
            if isinstance(event, StreamEnd):
                yield chunk({}, event.finish_reason)
                if include_usage:
                    yield _sse({**meta, "choices": [], "usage": event.usage})
                yield _sse("[DONE]")
            else:
                yield chunk({"content": event})
    except GatewayError as exc:
        error = {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
        yield _sse({"error": error})
    except Exception:
        # Headers are sent: the only way left to tell the client is an error event.
        logger.exception("Streaming interaction %s failed", stream.interaction.pk)
        message = "The gateway failed while streaming; the answer is incomplete. Try again."
        yield _sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()  # the customer hung up: record the interaction now, not when it is garbage-collected


class ChatMessageOutputSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["assistant"])
    content = serializers.CharField()
    refusal = serializers.CharField(allow_null=True)


class ChatChoiceSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    message = ChatMessageOutputSerializer()
    logprobs = serializers.JSONField(allow_null=True)
    finish_reason = serializers.CharField()


@extend_schema_serializer(component_name="ChatCompletion")
class ChatCompletionSerializer(serializers.Serializer):
    """OpenAI's chat.completion object, plus the ids to send feedback on this answer with."""

    id = serializers.CharField(help_text="chatcmpl-<interaction id>")
    object = serializers.ChoiceField(choices=["chat.completion"])
    created = serializers.IntegerField()
    model = serializers.CharField(help_text="The model version that answered.")
    choices = ChatChoiceSerializer(many=True)
    usage = serializers.DictField(child=serializers.IntegerField(), help_text="Token counts.")
    system_fingerprint = serializers.CharField(allow_null=True)
    interaction_id = serializers.IntegerField()
    feedback_token = serializers.CharField(
        help_text="Send it with feedback on this answer from a publishable (browser) key."
    )
    request_id = serializers.CharField()
    experiment = serializers.IntegerField(allow_null=True)
    arm = serializers.CharField(allow_blank=True)


class ChatCompletionCreateApi(APIView):
    """OpenAI-compatible chat completions: ``model`` is the assistant slug, the key an ingest key."""

    permission_classes = [ServerIngestScope]
    error_serializer = OpenAIErrorSerializer

    @extend_schema_serializer(component_name="ChatCompletionRequest")
    class InputSerializer(JsonInputSerializer):
        # What the validate_* methods below refuse, stated in the schema.
        openapi_rules = {
            # stream_options only with stream=true (validate() below).
            "anyOf": [
                {"required": ["stream"], "properties": {"stream": {"enum": [True]}}},
                {"properties": {"stream_options": {"enum": [None]}}},
            ],
            "properties": {
                "messages": {"minItems": 1},
                "stream_options": {
                    "properties": {"include_usage": {"type": "boolean"}},
                },
                "metadata": {
                    "properties": {
                        "request_id": {"type": "string", "minLength": 1, "maxLength": 200, "nullable": True}
                    }
                },
            },
        }

        model = serializers.SlugField(help_text="The assistant's slug.")
        messages = serializers.ListField(
            child=ChatMessageField(),
            allow_empty=False,
            max_length=MAX_MESSAGES,
            help_text="At least one message with role 'user'.",
        )
        user = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        metadata = serializers.DictField(required=False, default=dict)
        stream = serializers.BooleanField(required=False, default=False, allow_null=True)
        stream_options = serializers.DictField(required=False, allow_null=True, default=None)

        def validate_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, str]]:
            clean = []
            for i, message in enumerate(messages):
                role = message.get("role")
                if role not in ROLES:
                    raise serializers.ValidationError(
                        f"messages[{i}].role must be one of {', '.join(ROLES)}."
                    )
                text = _message_text(message.get("content"))
                if text is None:
                    raise serializers.ValidationError(
                        f"messages[{i}].content must be a string or a list of text parts."
                    )
                if not _storable(text):
                    raise serializers.ValidationError(
                        f"messages[{i}].content contains a NUL character or an unpaired surrogate "
                        "(\\u0000, \\ud800–\\udfff): remove them."
                    )
                clean.append({"role": role, "content": text})
            if not any(m["role"] == "user" for m in clean):
                raise serializers.ValidationError("Send at least one message with role 'user'.")
            return clean

        def validate_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
            request_id = metadata.get("request_id")
            if request_id is not None and (not isinstance(request_id, str) or not 0 < len(request_id) <= 200):
                raise serializers.ValidationError("metadata.request_id must be a string of 1–200 characters.")
            if request_id is not None and not _storable(request_id):
                raise serializers.ValidationError(
                    "metadata.request_id contains a NUL character or an unpaired surrogate: remove them."
                )
            return metadata

        def validate_stream(self, stream: bool | None) -> bool:
            return bool(stream)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            options = attrs.get("stream_options")
            if options is None:
                return attrs
            if not attrs.get("stream"):
                raise serializers.ValidationError(
                    {"stream_options": "stream_options is only allowed with stream=true."}
                )
            include_usage = options.get("include_usage", False)
            if not isinstance(include_usage, bool):
                raise serializers.ValidationError(
                    {"stream_options": "stream_options.include_usage must be true or false."}
                )
            return attrs

    @extend_schema(
        request=InputSerializer,
        responses={
            (200, "application/json"): ChatCompletionSerializer,
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR,
                description="With stream=true: chat.completion.chunk events, then `data: [DONE]`.",
            ),
        },
    )
    def post(self, request: Request) -> Response | StreamingHttpResponse:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        assistant = assistant_for_key(request, v["model"])
        ask = dict(
            assistant=assistant,
            messages=v["messages"],
            user_ref=v.get("user") or "",
            request_id=v["metadata"].get("request_id") or "",
        )
        if v["stream"]:
            include_usage = bool((v.get("stream_options") or {}).get("include_usage"))
            stream = chat_completion_stream(**ask)
            response = StreamingHttpResponse(
                _sse_events(stream, include_usage=include_usage), content_type="text/event-stream"
            )
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"  # a proxy in front (nginx) must not hold chunks back
            return _identified(response, stream.interaction)
        completion = chat_completion_create(**ask)
        return _identified(Response(self._body(completion)), completion.interaction)

    @staticmethod
    def _body(completion: Completion) -> dict[str, Any]:
        return {
            **completion_metadata(completion.interaction, completion.version),
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": completion.usage,
        }

    def handle_exception(self, exc: Exception) -> Response:
        """Every failure in OpenAI's error shape, so OpenAI SDKs raise their usual exception classes."""
        exc = api_exception(exc)
        if isinstance(exc, GatewayError):
            response = openai_error(
                exc.message, status=exc.status, type=exc.type, code=exc.code, param=exc.param
            )
            if exc.interaction is not None:
                _identified(response, exc.interaction)
            if exc.retry_after is not None:
                response["Retry-After"] = str(exc.retry_after)
            if exc.status >= 500:
                # The backend already retried; OpenAI SDKs honour this header, so one chat request
                # does not turn into three failed calls and three logged interactions.
                response["x-should-retry"] = "false"
            return response
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response = openai_error(_detail_text(exc.detail), status=401, code="invalid_api_key")
            response["WWW-Authenticate"] = "Bearer"
            return response
        if isinstance(exc, exceptions.ValidationError):
            detail = exc.detail if isinstance(exc.detail, dict) else {"messages": exc.detail}
            param, problem = next(iter(detail.items()))
            return openai_error(f"Invalid '{param}': {_detail_text(problem)}", status=400, param=str(param))
        if isinstance(exc, BodyRefused):
            return openai_error(str(exc.detail), status=400)
        if isinstance(exc, exceptions.ParseError):
            return openai_error("We could not parse the JSON body of your request.", status=400)
        if isinstance(exc, exceptions.NotFound):
            return openai_error(_detail_text(exc.detail), status=404, code="model_not_found", param="model")
        if isinstance(exc, exceptions.PermissionDenied):
            return openai_error(_detail_text(exc.detail), status=403, code="permission_denied")
        if isinstance(exc, exceptions.Throttled):
            response = openai_error(
                _detail_text(exc.detail), status=429, type="requests", code="rate_limit_exceeded"
            )
            if exc.wait:
                response["Retry-After"] = str(int(exc.wait))
            return response
        if isinstance(exc, exceptions.APIException):
            return openai_error(_detail_text(exc.detail), status=exc.status_code)
        return super().handle_exception(exc)
