"""REST endpoints for apps and widgets: log interactions, send feedback, read stats (thin: services act).

Six endpoints of one ingest surface with the request checks they share (a publishable key's feedback
token and per-customer charge, a batch's errors by index), kept in one module because those checks are
the API's own. What a feedback item must be is ``feedback.validation``; reads are ``feedback.selectors``;
the answers' shapes ``feedback.serializers``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import make_aware
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistants import selectors as assistants_selectors
from assistants.auth import (
    IngestScope,
    ReadScope,
    ServerIngestScope,
    assistant_for_key,
    assistant_id_for_key,
    refuse_publishable_correction,
    request_key,
)
from assistants.models import ApiKey
from assistants.schema import ErrorSerializer
from assistants.serializers import JsonInputSerializer, QueryChoiceField, QuerySerializer, QueryTextField
from assistants.throttling import publishable_origin_charge, publishable_user_charge
from feedback import selectors, services
from feedback.models import Feedback, Interaction
from feedback.serializers import (
    FeedbackOutputSerializer,
    FeedbackPromptSerializer,
    FeedbackStatsSerializer,
    InteractionOutputSerializer,
)
from feedback.tokens import feedback_token_valid
from feedback.validation import MAX_ID, MAX_IDEMPOTENCY_KEY, FeedbackItemSerializer, validate_feedback_item

MAX_BATCH = 1000
MAX_INT = 2**31 - 1  # integer columns: a larger number would overflow on PostgreSQL


CONFLICT_REQUEST_ID = OpenApiResponse(
    ErrorSerializer, description="This request_id was already logged with other messages or response."
)
CONFLICT_IDEMPOTENCY = OpenApiResponse(
    ErrorSerializer, description="This idempotency key was already used with another body."
)


class MessageSerializer(JsonInputSerializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant", "tool", "developer"])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class InteractionLogApi(APIView):
    permission_classes = [ServerIngestScope]

    class InputSerializer(JsonInputSerializer):
        # The rules of validate() and of the fields' list options, stated in the schema.
        openapi_rules = {
            "properties": {"messages": {"minItems": 1}},
            "anyOf": [
                {
                    "required": ["experiment", "arm"],
                    "properties": {"experiment": {"type": "integer"}, "arm": {"type": "string"}},
                },
                {"properties": {"experiment": {"enum": [None]}, "arm": {"enum": [None]}}},
            ],
        }

        assistant = serializers.SlugField(required=False, help_text="Optional when the key is bound to one.")
        request_id = serializers.CharField(max_length=200)
        user = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        messages = MessageSerializer(many=True, allow_empty=False)
        response = serializers.CharField(allow_blank=True, trim_whitespace=False)
        model_version = serializers.CharField(max_length=200, required=False, allow_null=True)
        latency_ms = serializers.IntegerField(min_value=0, max_value=MAX_INT, required=False, allow_null=True)
        error = serializers.CharField(max_length=500, required=False, allow_null=True, allow_blank=True)
        experiment = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=MAX_ID, help_text="From /api/v1/route."
        )
        arm = serializers.ChoiceField(
            choices=[arm for arm in Interaction.Arm.values if arm], required=False, allow_null=True
        )

        def validate(self, attrs):
            if bool(attrs.get("experiment")) != bool(attrs.get("arm")):
                raise serializers.ValidationError(
                    "Send `experiment` and `arm` together, as /api/v1/route gave them."
                )
            return attrs

    OutputSerializer = InteractionOutputSerializer

    @extend_schema(
        request=InputSerializer,
        responses={201: OutputSerializer, 200: OutputSerializer, 409: CONFLICT_REQUEST_ID},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        assistant = assistant_for_key(request, v.get("assistant"))
        version = None
        if v.get("model_version"):
            version = assistants_selectors.version_get(assistant=assistant, name=v["model_version"])
            if version is None:
                # Like an unknown interaction in feedback: the body names something that is not there.
                raise exceptions.NotFound(
                    f"'{assistant.slug}' has no model version named '{v['model_version']}'."
                )
        logged = services.interaction_log(
            assistant=assistant,
            request_id=v["request_id"],
            messages=[dict(m) for m in v["messages"]],
            response=v["response"],
            user_ref=v.get("user") or "",
            model_version=version,
            latency_ms=v.get("latency_ms"),
            error=v.get("error"),
            experiment_id=v.get("experiment"),
            arm=v.get("arm") or "",
        )
        return Response(
            self.OutputSerializer(logged.interaction).data,
            status=status.HTTP_201_CREATED if logged.created else status.HTTP_200_OK,
        )


class InteractionGetApi(APIView):
    """One logged interaction, with its feedback token (for a server that renders the answer later)."""

    permission_classes = [ServerIngestScope]

    @extend_schema(responses={200: InteractionOutputSerializer})
    def get(self, request: Request, pk: int) -> Response:
        key = request_key(request)
        interaction = selectors.interaction_with_assistant_get(interaction_id=pk) if pk <= MAX_ID else None
        if interaction is None or not key.allows_assistant(interaction.assistant):
            # The same answer for another assistant's interaction: a key learns nothing beyond its own.
            raise exceptions.NotFound(f"No interaction {pk} for this key.")
        return Response(InteractionOutputSerializer(interaction).data)


# Bound once and reused: instantiating a serializer deep-copies its fields, which costs more than the
# representation itself on the ingest path. Serializing is read-only on the instance, so sharing is safe.
_feedback_output = FeedbackOutputSerializer()


def _resolve_assistant_ids(request: Request, slugs: set[str | None]) -> dict[str | None, int]:
    return {slug: assistant_id_for_key(request, slug) for slug in slugs}


# --- Feedback from publishable (browser) keys ---------------------------------------------------------
# Anyone can copy a publishable key from a page, so its feedback must carry the interaction's feedback
# token (feedback/tokens.py): only whoever saw the answer has it. A missing interaction, another
# assistant's interaction and a wrong token get one and the same answer, so ids cannot be enumerated.

TOKEN_REQUIRED = (
    "Required with a publishable (browser) key: send the interaction's feedback token, which the "
    "interactions API and the chat gateway return (the widget reads it from data-feedback-token)."
)
NO_MATCH = "No interaction matches this reference and feedback token."


def _publishable_key(request: Request) -> ApiKey | None:
    key = request_key(request)
    return key if key.is_publishable else None


def _token_matches(ref: selectors.InteractionRef | None, token: str | None) -> bool:
    return ref is not None and feedback_token_valid(ref.pk, token)


def _charge_customers(key: ApiKey, refs: list[selectors.InteractionRef]) -> None:
    """The per-customer limit: the interaction's user ref, or the interaction itself when it has none."""
    users = selectors.interaction_user_refs(ids={r.pk for r in refs})
    customers: dict[str, int] = {}
    for ref in refs:
        user = users.get(ref.pk)
        name = f"user:{ref.assistant_id}:{user}" if user else f"interaction:{ref.pk}"
        customers[name] = customers.get(name, 0) + 1
    publishable_user_charge(key, customers)


class FeedbackSubmitApi(APIView):
    permission_classes = [IngestScope]

    @extend_schema(
        request=FeedbackItemSerializer,
        responses={201: FeedbackOutputSerializer, 200: FeedbackOutputSerializer, 409: CONFLICT_IDEMPOTENCY},
        parameters=[OpenApiParameter("Idempotency-Key", location=OpenApiParameter.HEADER, required=False)],
    )
    def post(self, request: Request) -> Response:
        v, errors = validate_feedback_item(request.data)
        if errors is not None:
            raise exceptions.ValidationError(errors)
        refuse_publishable_correction(request, v)
        publishable = _publishable_key(request)
        if publishable is not None:
            if not v.get("feedback_token"):
                raise exceptions.ValidationError({"feedback_token": [TOKEN_REQUIRED]})
            publishable_origin_charge(request, publishable, cost=1)
        key = _idempotency_header(request) or v.get("idempotency_key")
        slug = v.get("assistant")
        assistant_id = assistant_id_for_key(request, slug)
        interaction = selectors.interaction_refs(items=[v], assistant_ids={slug: assistant_id})[0]
        if publishable is not None:
            if not _token_matches(interaction, v.get("feedback_token")):
                raise exceptions.NotFound(NO_MATCH)
            _charge_customers(publishable, [interaction])
        if interaction is None:
            ref = v.get("interaction_id") or v.get("request_id")
            name = slug or assistants_selectors.assistant_slug_get(assistant_id=assistant_id)
            raise exceptions.NotFound(
                f"No interaction '{ref}' for assistant '{name}': log it with POST /api/v1/interactions first."
            )
        submitted = services.feedback_submit(interaction=interaction, data=v, idempotency_key=key)
        return Response(
            _feedback_output.to_representation(submitted.feedback),
            status=status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK,
        )


class FeedbackBatchApi(APIView):
    permission_classes = [IngestScope]

    class InputSerializer(JsonInputSerializer):
        items = FeedbackItemSerializer(many=True, allow_empty=False, max_length=MAX_BATCH)

    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        replayed = serializers.IntegerField()
        ids = serializers.ListField(child=serializers.IntegerField())

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer, 409: CONFLICT_IDEMPOTENCY})
    def post(self, request: Request) -> Response:
        items = _validate_batch(request.data)
        publishable = _publishable_key(request)
        if publishable is not None:
            for item in items:
                refuse_publishable_correction(request, item)
            tokenless = {
                str(i): {"feedback_token": [TOKEN_REQUIRED]}
                for i, item in enumerate(items)
                if not item.get("feedback_token")
            }
            if tokenless:
                raise exceptions.ValidationError({"items": tokenless})
            publishable_origin_charge(request, publishable, cost=len(items))
        assistant_ids = _resolve_assistant_ids(request, {item.get("assistant") for item in items})
        interactions = selectors.interaction_refs(items=items, assistant_ids=assistant_ids)
        if publishable is not None:
            # Named by index only as "no match": an unknown id and a known one with a wrong token read
            # the same, so the batch's answer tells nothing about which ids exist.
            unmatched = {
                str(i): {"feedback_token": [NO_MATCH]}
                for i, item in enumerate(items)
                if not _token_matches(interactions[i], item.get("feedback_token"))
            }
            if unmatched:
                raise exceptions.ValidationError({"items": unmatched})
            _charge_customers(publishable, interactions)
        missing = {
            str(index): {
                "interaction": [f"No interaction '{item.get('interaction_id') or item.get('request_id')}'."]
            }
            for index, item in enumerate(items)
            if interactions[index] is None
        }
        if missing:
            raise exceptions.ValidationError({"items": missing})
        stored = services.feedback_submit_batch(
            items=[(interactions[i], item, item.get("idempotency_key")) for i, item in enumerate(items)]
        )
        return Response(
            {"created": stored.created, "replayed": len(stored.ids) - stored.created, "ids": stored.ids},
            status=status.HTTP_201_CREATED,
        )


def _idempotency_header(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key and len(key) > MAX_IDEMPOTENCY_KEY:
        # The column is varchar(200): PostgreSQL would refuse a longer one with a 500.
        raise exceptions.ValidationError(
            {"Idempotency-Key": [f"Send at most {MAX_IDEMPOTENCY_KEY} characters (this one has {len(key)})."]}
        )
    return key


def _validate_batch(data) -> list[dict]:
    """The batch's items, validated one by one; any bad item fails the whole batch, naming each by index."""
    raw = data.get("items") if type(data) is dict else None
    if type(raw) is not list or not 0 < len(raw) <= MAX_BATCH:
        # Missing, empty, too long or not a list: let the serializer say so in its words.
        payload = FeedbackBatchApi.InputSerializer(data=data)
        if not payload.is_valid():
            raise exceptions.ValidationError(_index_errors(payload.errors))
        return payload.validated_data["items"]
    items: list[dict] = []
    bad: dict[str, dict] = {}
    for index, item in enumerate(raw):
        attrs, errors = validate_feedback_item(item)
        if errors is not None:
            bad[str(index)] = errors
        else:
            items.append(attrs)
    if bad:
        raise exceptions.ValidationError({"items": bad})
    return items


def _index_errors(errors) -> dict:
    """DRF lists an error dict per item (empty for good items); keep only the bad ones, by index."""
    items = errors.get("items")
    if isinstance(items, list):
        return {"items": {str(i): e for i, e in enumerate(items) if e}}
    if isinstance(items, dict):
        return {"items": {str(k): v for k, v in items.items()}}
    return errors


def _parse_when(value: str) -> datetime | None:
    """A date (midnight) or an ISO 8601 datetime, aware in the current time zone; blank: no bound."""
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
        if parsed is None:
            day = parse_date(value)
            if day is not None:
                parsed = datetime(day.year, day.month, day.day)
        # Well-formed but impossible values (2024-02-30, 25:00) raise instead of returning None.
    except ValueError:
        parsed = None
    if parsed is None:
        raise serializers.ValidationError(f"'{value}' is not a date or ISO 8601 datetime.")
    parsed = parsed if parsed.tzinfo else make_aware(parsed)
    try:
        # SQLite stores UTC: 0001-01-01T00:00+14:00 is before year 1 there (an OverflowError).
        parsed.astimezone(UTC)
    except OverflowError:
        raise serializers.ValidationError(
            f"'{value}' is out of range: use a datetime between years 1 and 9999 in UTC."
        ) from None
    return parsed


class AssistantStatsApi(APIView):
    permission_classes = [ReadScope]

    class FilterSerializer(QuerySerializer):
        since = QueryTextField(help_text="ISO date or datetime, inclusive")
        until = QueryTextField(help_text="ISO date or datetime, exclusive")

        def validate_since(self, value: str) -> datetime | None:
            return _parse_when(value)

        def validate_until(self, value: str) -> datetime | None:
            return _parse_when(value)

    class OutputSerializer(FeedbackStatsSerializer):
        assistant = serializers.CharField()

    @extend_schema(parameters=[FilterSerializer], responses={200: OutputSerializer})
    def get(self, request: Request, slug: str) -> Response:
        assistant = assistant_for_key(request, slug)
        f = self.FilterSerializer.parse(request)
        stats = selectors.feedback_stats(assistant=assistant, since=f.get("since"), until=f.get("until"))
        return Response(self.OutputSerializer({"assistant": assistant.slug, **stats}).data)


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": MAX_ID})
class InteractionIdField(serializers.IntegerField):
    """An interaction id as a query parameter: ASCII digits only, up to the largest id."""

    default_error_messages = {"invalid": f"Must be a whole number from 0 to {MAX_ID}."}
    # Not int() alone, which also takes " 7", "+7" and "7_0", nor str.isdigit(), which takes "²".
    DIGITS = re.compile(r"^[0-9]{1,19}\Z")

    def to_internal_value(self, data) -> int:
        if not (isinstance(data, str) and self.DIGITS.match(data) and int(data) <= MAX_ID):
            self.fail("invalid")
        return int(data)


class FeedbackPromptApi(APIView):
    permission_classes = [IngestScope]

    class OutputSerializer(serializers.Serializer):
        assistant = serializers.CharField()
        ask = serializers.BooleanField(
            allow_null=True, help_text="null without an interaction: only what to ask, not whether."
        )
        prompt = FeedbackPromptSerializer(allow_null=True, help_text="The question; null when not to ask.")

    class FilterSerializer(QuerySerializer):
        assistant = QueryTextField(help_text="Assistant slug (optional for keys bound to one).")
        kind = QueryChoiceField(
            choices=sorted(map(str, services.FEEDBACK_PROMPTS)),
            help_text="Default: thumbs.",
            error_messages={
                "invalid_choice": "Unknown feedback kind '{input}': use one of "
                f"{', '.join(services.FEEDBACK_PROMPTS)}."
            },
        )
        interaction_id = InteractionIdField(required=False, help_text="Or request_id.")
        request_id = QueryTextField()
        feedback_token = QueryTextField(
            help_text="The interaction's feedback token; required with a publishable (browser) key "
            "when asking about an interaction."
        )

    @extend_schema(parameters=[FilterSerializer], responses={200: OutputSerializer})
    def get(self, request: Request) -> Response:
        f = self.FilterSerializer.parse(request)
        assistant = assistant_for_key(request, f.get("assistant"))
        prompt = services.feedback_prompt(f.get("kind", Feedback.Kind.THUMBS))
        interaction_id = f.get("interaction_id")
        request_id = f.get("request_id")
        if interaction_id is None and not request_id:
            # Without an interaction we can only say what to ask, not whether to ask.
            return Response(
                self.OutputSerializer({"assistant": assistant.slug, "ask": None, "prompt": prompt}).data
            )
        # Asking claims the interaction (never asked twice), so a copied publishable key must not be able
        # to claim interactions it has not seen: it needs the token, as for sending feedback.
        publishable = _publishable_key(request)
        token = f.get("feedback_token")
        if publishable is not None:
            if not token:
                raise exceptions.ValidationError({"feedback_token": [TOKEN_REQUIRED]})
            publishable_origin_charge(request, publishable, cost=1)
        interaction = selectors.interaction_get(
            assistant=assistant, interaction_id=interaction_id, request_id=request_id
        )
        if publishable is not None:
            if interaction is None or not feedback_token_valid(interaction.pk, token):
                raise exceptions.NotFound(NO_MATCH)
            _charge_customers(publishable, [selectors.InteractionRef(interaction.pk, assistant.pk)])
        if interaction is None:
            raise exceptions.NotFound(
                f"No interaction '{request_id if interaction_id is None else interaction_id}' "
                f"for '{assistant.slug}'."
            )
        interaction.assistant = assistant
        ask = services.should_ask_for_feedback(interaction=interaction)
        body = {"assistant": assistant.slug, "ask": ask, "prompt": prompt if ask else None}
        return Response(self.OutputSerializer(body).data)
