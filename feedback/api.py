"""REST endpoints for apps and widgets: log interactions, send feedback, read stats (thin: services act)."""

from __future__ import annotations

from datetime import datetime

from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import make_aware
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistants.auth import IngestScope, ReadScope, assistant_for_key
from assistants.models import Assistant, ModelVersion
from feedback import selectors, services
from feedback.models import CATEGORY_FIELDS, Feedback, Interaction, is_success

MAX_BATCH = 1000


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant", "tool", "developer"])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class InteractionLogApi(APIView):
    permission_classes = [IngestScope]

    class InputSerializer(serializers.Serializer):
        assistant = serializers.SlugField(required=False, help_text="Optional when the key is bound to one.")
        request_id = serializers.CharField(max_length=200)
        user = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        messages = MessageSerializer(many=True, allow_empty=False)
        response = serializers.CharField(allow_blank=True, trim_whitespace=False)
        model_version = serializers.CharField(max_length=200, required=False, allow_null=True)
        latency_ms = serializers.IntegerField(min_value=0, required=False, allow_null=True)
        error = serializers.CharField(max_length=500, required=False, allow_null=True, allow_blank=True)
        experiment = serializers.IntegerField(required=False, allow_null=True, help_text="From /api/v1/route.")
        arm = serializers.ChoiceField(choices=["control", "variant"], required=False, allow_null=True)

        def validate(self, attrs):
            if bool(attrs.get("experiment")) != bool(attrs.get("arm")):
                raise serializers.ValidationError("Send `experiment` and `arm` together, as /api/v1/route gave them.")
            return attrs

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        assistant = serializers.CharField(source="assistant.slug")
        request_id = serializers.CharField()
        model_version = serializers.CharField(source="model_version.name", default=None)
        experiment = serializers.IntegerField(source="experiment_id", allow_null=True)
        arm = serializers.CharField()
        created_at = serializers.DateTimeField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer, 200: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        assistant = assistant_for_key(request, v.get("assistant"))
        version = None
        if v.get("model_version"):
            version = ModelVersion.objects.filter(assistant=assistant, name=v["model_version"]).first()
            if version is None:
                raise exceptions.ValidationError(
                    {"model_version": [f"'{assistant.slug}' has no model version named '{v['model_version']}'."]}
                )
        try:
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
        except services.IdempotencyConflict as exc:
            raise Conflict(str(exc)) from None
        return Response(
            self.OutputSerializer(logged.interaction).data,
            status=status.HTTP_201_CREATED if logged.created else status.HTTP_200_OK,
        )


class FeedbackItemSerializer(serializers.Serializer):
    """One feedback item. Refer to the interaction by ``interaction_id`` or by your ``request_id``."""

    assistant = serializers.SlugField(required=False, help_text="Optional when the key is bound to one.")
    interaction_id = serializers.IntegerField(required=False, min_value=1)
    request_id = serializers.CharField(required=False, max_length=200)
    kind = serializers.ChoiceField(choices=Feedback.Kind.choices, required=False)
    helpful = serializers.BooleanField(required=False, allow_null=True, default=None)
    rating = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=5)
    accuracy = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=5)
    helpfulness = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=5)
    tone = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=5)
    relevance = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=5)
    completeness = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=5)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    suggestion = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    corrected_answer = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    confidence = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    idempotency_key = serializers.CharField(required=False, max_length=200)

    # Which field each explicit kind must carry.
    KIND_NEEDS = {
        Feedback.Kind.THUMBS: ("helpful",),
        Feedback.Kind.RATING: ("rating",),
        Feedback.Kind.CATEGORY: CATEGORY_FIELDS,
        Feedback.Kind.TEXT: ("comment",),
        Feedback.Kind.IMPROVEMENT: ("suggestion",),
        Feedback.Kind.CORRECTION: ("corrected_answer",),
    }

    def validate(self, attrs):
        if ("interaction_id" in attrs) == ("request_id" in attrs):
            raise serializers.ValidationError(
                {"interaction_id": ["Send exactly one of `interaction_id` or `request_id`."]}
            )
        signals = ("helpful", "rating", *CATEGORY_FIELDS, "comment", "suggestion", "corrected_answer")
        if not any(attrs.get(name) not in (None, "") for name in signals):
            raise serializers.ValidationError(
                {"non_field_errors": [f"Feedback carries nothing: send at least one of {', '.join(signals)}."]}
            )
        kind = attrs.get("kind")
        if kind and not any(attrs.get(name) not in (None, "") for name in self.KIND_NEEDS[kind]):
            needed = " or ".join(f"`{n}`" for n in self.KIND_NEEDS[kind])
            raise serializers.ValidationError({"kind": [f"Feedback of kind '{kind}' needs {needed}."]})
        return attrs


class FeedbackOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    interaction_id = serializers.IntegerField()
    kind = serializers.CharField()
    helpful = serializers.BooleanField(allow_null=True)
    rating = serializers.IntegerField(allow_null=True)
    success = serializers.SerializerMethodField()
    idempotency_key = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_success(self, obj: Feedback) -> bool:
        return is_success(helpful=obj.helpful, rating=obj.rating)


def _resolve_assistants(request: Request, slugs: set[str | None]) -> dict[str | None, Assistant]:
    return {slug: assistant_for_key(request, slug) for slug in slugs}


class FeedbackSubmitApi(APIView):
    permission_classes = [IngestScope]

    @extend_schema(
        request=FeedbackItemSerializer,
        responses={201: FeedbackOutputSerializer, 200: FeedbackOutputSerializer},
        parameters=[OpenApiParameter("Idempotency-Key", location=OpenApiParameter.HEADER, required=False)],
    )
    def post(self, request: Request) -> Response:
        item = FeedbackItemSerializer(data=request.data)
        item.is_valid(raise_exception=True)
        v = item.validated_data
        key = request.headers.get("Idempotency-Key") or v.get("idempotency_key")
        assistant = assistant_for_key(request, v.get("assistant"))
        interaction = selectors.interaction_get(
            assistant=assistant, interaction_id=v.get("interaction_id"), request_id=v.get("request_id")
        )
        if interaction is None:
            ref = v.get("interaction_id") or v.get("request_id")
            raise exceptions.NotFound(
                f"No interaction '{ref}' for assistant '{assistant.slug}': log it with POST /api/v1/interactions first."
            )
        try:
            submitted = services.feedback_submit(interaction=interaction, data=v, idempotency_key=key)
        except services.IdempotencyConflict as exc:
            raise Conflict(str(exc)) from None
        return Response(
            FeedbackOutputSerializer(submitted.feedback).data,
            status=status.HTTP_201_CREATED if submitted.created else status.HTTP_200_OK,
        )


class FeedbackBatchApi(APIView):
    permission_classes = [IngestScope]

    class InputSerializer(serializers.Serializer):
        items = FeedbackItemSerializer(many=True, allow_empty=False, max_length=MAX_BATCH)

    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        replayed = serializers.IntegerField()
        ids = serializers.ListField(child=serializers.IntegerField())

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        payload = self.InputSerializer(data=request.data)
        if not payload.is_valid():
            raise exceptions.ValidationError(_index_errors(payload.errors))
        items = payload.validated_data["items"]
        assistants = _resolve_assistants(request, {item.get("assistant") for item in items})
        interactions = _resolve_interactions(items, assistants)
        missing = {
            str(index): {"interaction": [f"No interaction '{item.get('interaction_id') or item.get('request_id')}'."]}
            for index, item in enumerate(items)
            if interactions[index] is None
        }
        if missing:
            raise exceptions.ValidationError({"items": missing})
        try:
            results = services.feedback_submit_batch(
                items=[(interactions[i], item, item.get("idempotency_key")) for i, item in enumerate(items)]
            )
        except services.IdempotencyConflict as exc:
            raise Conflict(str(exc)) from None
        created = sum(1 for r in results if r.created)
        return Response(
            {"created": created, "replayed": len(results) - created, "ids": [r.feedback.pk for r in results]},
            status=status.HTTP_201_CREATED,
        )


def _index_errors(errors) -> dict:
    """DRF lists an error dict per item (empty for good items); keep only the bad ones, by index."""
    items = errors.get("items")
    if isinstance(items, list):
        return {"items": {str(i): e for i, e in enumerate(items) if e}}
    if isinstance(items, dict):
        return {"items": {str(k): v for k, v in items.items()}}
    return errors


def _resolve_interactions(items: list[dict], assistants: dict[str | None, Assistant]) -> list[Interaction | None]:
    """Look up every referenced interaction in two queries per assistant, not one per item."""
    by_id: dict[tuple[int, int], Interaction] = {}
    by_request: dict[tuple[int, str], Interaction] = {}
    for assistant in {a.pk: a for a in assistants.values()}.values():
        ids = [it["interaction_id"] for it in items if "interaction_id" in it and assistants[it.get("assistant")] == assistant]
        refs = [it["request_id"] for it in items if "request_id" in it and assistants[it.get("assistant")] == assistant]
        if ids:
            for row in Interaction.objects.filter(assistant=assistant, pk__in=ids).only("id", "assistant_id"):
                by_id[(assistant.pk, row.pk)] = row
        if refs:
            for row in Interaction.objects.filter(assistant=assistant, request_id__in=refs).only(
                "id", "assistant_id", "request_id"
            ):
                by_request[(assistant.pk, row.request_id)] = row
    resolved: list[Interaction | None] = []
    for item in items:
        assistant = assistants[item.get("assistant")]
        if "interaction_id" in item:
            resolved.append(by_id.get((assistant.pk, item["interaction_id"])))
        else:
            resolved.append(by_request.get((assistant.pk, item["request_id"])))
    return resolved


def _parse_when(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is not None:
            parsed = datetime(day.year, day.month, day.day)
    if parsed is None:
        raise exceptions.ValidationError({field: [f"'{value}' is not a date or ISO 8601 datetime."]})
    return parsed if parsed.tzinfo else make_aware(parsed)


class AssistantStatsApi(APIView):
    permission_classes = [ReadScope]

    @extend_schema(
        parameters=[
            OpenApiParameter("since", str, description="ISO date or datetime, inclusive"),
            OpenApiParameter("until", str, description="ISO date or datetime, exclusive"),
        ],
        responses={200: dict},
    )
    def get(self, request: Request, slug: str) -> Response:
        assistant = assistant_for_key(request, slug)
        since = _parse_when(request.query_params.get("since"), "since")
        until = _parse_when(request.query_params.get("until"), "until")
        stats = selectors.feedback_stats(assistant=assistant, since=since, until=until)
        return Response({"assistant": assistant.slug, **stats})


class FeedbackPromptApi(APIView):
    permission_classes = [IngestScope]

    @extend_schema(
        parameters=[
            OpenApiParameter("assistant", str),
            OpenApiParameter("kind", str, description="thumbs (default), rating, category, text, improvement, correction"),
            OpenApiParameter("interaction_id", int),
            OpenApiParameter("request_id", str),
        ],
        responses={200: dict},
    )
    def get(self, request: Request) -> Response:
        assistant = assistant_for_key(request, request.query_params.get("assistant"))
        kind = request.query_params.get("kind") or Feedback.Kind.THUMBS
        try:
            prompt = services.feedback_prompt(kind)
        except ValueError as exc:
            raise exceptions.ValidationError({"kind": [str(exc)]}) from None
        interaction_id = request.query_params.get("interaction_id")
        request_id = request.query_params.get("request_id")
        if not interaction_id and not request_id:
            # Without an interaction we can only say what to ask, not whether to ask.
            return Response({"assistant": assistant.slug, "ask": None, "prompt": prompt})
        if interaction_id and not interaction_id.isdigit():
            raise exceptions.ValidationError({"interaction_id": ["Must be an integer."]})
        interaction = selectors.interaction_get(
            assistant=assistant,
            interaction_id=int(interaction_id) if interaction_id else None,
            request_id=request_id,
        )
        if interaction is None:
            raise exceptions.NotFound(f"No interaction '{interaction_id or request_id}' for '{assistant.slug}'.")
        interaction.assistant = assistant
        ask = services.should_ask_for_feedback(interaction=interaction)
        return Response({"assistant": assistant.slug, "ask": ask, "prompt": prompt if ask else None})
