"""REST endpoints for apps and widgets: log interactions, send feedback, read stats (thin: services act)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from django.db import connections, router
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import make_aware
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistants.auth import (
    IngestScope,
    ReadScope,
    ServerIngestScope,
    assistant_for_key,
    assistant_id_for_key,
    refuse_publishable_correction,
    request_key,
)
from assistants.models import ApiKey, Assistant, ModelVersion
from assistants.schema import ErrorSerializer
from assistants.serializers import JsonInputSerializer
from assistants.throttling import publishable_origin_charge, publishable_user_charge
from feedback import selectors, services
from feedback.models import CATEGORY_FIELDS, Feedback, Interaction, is_success
from feedback.tokens import MAX_TOKEN_LENGTH, feedback_token, feedback_token_valid

MAX_BATCH = 1000
MAX_IDEMPOTENCY_KEY = 200  # Feedback.idempotency_key's max_length
# The largest values the columns hold; a larger number would be a 500 (overflow) on PostgreSQL.
MAX_ID = 2**63 - 1  # bigint primary keys
MAX_INT = 2**31 - 1  # integer columns


CONFLICT_REQUEST_ID = OpenApiResponse(
    ErrorSerializer, description="This request_id was already logged with other messages or response."
)
CONFLICT_IDEMPOTENCY = OpenApiResponse(
    ErrorSerializer, description="This idempotency key was already used with another body."
)


class MessageSerializer(JsonInputSerializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant", "tool", "developer"])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class InteractionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    assistant = serializers.CharField(source="assistant.slug")
    request_id = serializers.CharField()
    model_version = serializers.CharField(source="model_version.name", default=None)
    experiment = serializers.IntegerField(source="experiment_id", allow_null=True)
    arm = serializers.CharField()
    created_at = serializers.DateTimeField()
    feedback_token = serializers.SerializerMethodField(
        help_text="Give it to the page that shows the answer: feedback sent with a publishable (browser) "
        "key must carry it (the widget's data-feedback-token)."
    )

    def get_feedback_token(self, obj: Interaction) -> str:
        return feedback_token(obj.pk)


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
        arm = serializers.ChoiceField(choices=["control", "variant"], required=False, allow_null=True)

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
            version = ModelVersion.objects.filter(assistant=assistant, name=v["model_version"]).first()
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
        interaction = (
            Interaction.objects.select_related("assistant", "model_version").filter(pk=pk).first()
            if pk <= MAX_ID
            else None
        )
        if interaction is None or not key.allows_assistant(interaction.assistant):
            # The same answer for another assistant's interaction: a key learns nothing beyond its own.
            raise exceptions.NotFound(f"No interaction {pk} for this key.")
        return Response(InteractionOutputSerializer(interaction).data)


def _signal(name: str) -> dict:
    """JSON Schema for "``name`` carries a signal": present, not null, and (text) not blank."""
    kind = (
        {"type": "string", "pattern": r"\S"}
        if name in _TEXT_SIGNALS
        else {"type": _SIGNAL_TYPES.get(name, "integer")}
    )
    return {"required": [name], "properties": {name: kind}}


_TEXT_SIGNALS = ("comment", "suggestion", "corrected_answer")
_SIGNAL_TYPES = {"helpful": "boolean"}


class FeedbackItemSerializer(JsonInputSerializer):
    """One feedback item. Refer to the interaction by ``interaction_id`` or by your ``request_id``.

    Send exactly one of ``interaction_id`` and ``request_id``, at least one signal (``helpful``,
    ``rating``, a category rating, or a non-blank ``comment``, ``suggestion`` or ``corrected_answer``),
    and with an explicit ``kind`` the field that kind carries.
    """

    assistant = serializers.SlugField(required=False, help_text="Optional when the key is bound to one.")
    interaction_id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
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
    idempotency_key = serializers.CharField(required=False, max_length=MAX_IDEMPOTENCY_KEY)
    feedback_token = serializers.CharField(
        required=False,
        max_length=MAX_TOKEN_LENGTH,
        help_text="The interaction's feedback token (from the interactions API or the chat gateway); "
        "required with a publishable (browser) key.",
    )

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
        return check_feedback_item(attrs)


# check_feedback_item's rules, stated in the schema so clients (and the contract test) know them.
FeedbackItemSerializer.openapi_body_required = True
FeedbackItemSerializer.openapi_rules = {
    "oneOf": [{"required": ["interaction_id"]}, {"required": ["request_id"]}],
    "allOf": [
        {"anyOf": [_signal(name) for name in ("helpful", "rating", *CATEGORY_FIELDS, *_TEXT_SIGNALS)]},
        *(
            {
                "anyOf": [
                    {"properties": {"kind": {"enum": [k for k in Feedback.Kind.values if k != kind]}}},
                    *(_signal(name) for name in needs),
                ]
            }
            for kind, needs in FeedbackItemSerializer.KIND_NEEDS.items()
        ),
    ],
}


def check_feedback_item(attrs: dict) -> dict:
    """The rules across fields of one feedback item (the per-field rules are the serializer's fields)."""
    if ("interaction_id" in attrs) == ("request_id" in attrs):
        raise serializers.ValidationError(
            {"interaction_id": ["Send exactly one of `interaction_id` or `request_id`."]}
        )
    if not any(attrs.get(name) not in (None, "") for name in _SIGNALS):
        raise serializers.ValidationError(
            {"non_field_errors": [f"Feedback carries nothing: send at least one of {', '.join(_SIGNALS)}."]}
        )
    kind = attrs.get("kind")
    if kind and not any(
        attrs.get(name) not in (None, "") for name in FeedbackItemSerializer.KIND_NEEDS[kind]
    ):
        needed = " or ".join(f"`{n}`" for n in FeedbackItemSerializer.KIND_NEEDS[kind])
        raise serializers.ValidationError({"kind": [f"Feedback of kind '{kind}' needs {needed}."]})
    return attrs


_SIGNALS = ("helpful", "rating", *CATEGORY_FIELDS, "comment", "suggestion", "corrected_answer")

# --- Fast validation of feedback items -------------------------------------------------------------
# Instantiating a DRF serializer deep-copies its fields, and running 17 fields' validators costs more
# than storing the row: for a batch of 100 items it was most of the request. The fast path below is
# compiled from FeedbackItemSerializer's own field declarations, so the serializer stays THE definition
# of the rules: it only accepts values that the field would certainly accept unchanged (plain JSON types,
# in range), and hands anything else -- every error included -- to the serializer, so messages and
# coercions ("5" -> 5, "true" -> True) are exactly DRF's.

_SLOW = object()  # "not sure: ask the serializer"
_EMPTY = serializers.empty


def _null_or_slow(field: serializers.Field):
    return None if field.allow_null else _SLOW


def _compile_field(field: serializers.Field):
    if isinstance(field, serializers.BooleanField):

        def check(v):
            if v is True or v is False:
                return v
            return _null_or_slow(field) if v is None else _SLOW

    elif isinstance(field, serializers.IntegerField):
        low, high = field.min_value, field.max_value

        def check(v):
            if type(v) is int and (low is None or v >= low) and (high is None or v <= high):
                return v
            return _null_or_slow(field) if v is None else _SLOW

    elif isinstance(field, serializers.FloatField):
        low, high = field.min_value, field.max_value

        def check(v):
            if type(v) is float or type(v) is int:
                try:
                    f = float(v)
                except OverflowError:
                    return _SLOW
                if math.isfinite(f) and (low is None or f >= low) and (high is None or f <= high):
                    return f
                return _SLOW
            return _null_or_slow(field) if v is None else _SLOW

    elif isinstance(field, serializers.ChoiceField):
        choices = field.choice_strings_to_values

        def check(v):
            if type(v) is str and v in choices:
                return choices[v]
            return _null_or_slow(field) if v is None else _SLOW

    elif type(field) in (serializers.CharField, serializers.SlugField):
        slug = isinstance(field, serializers.SlugField)
        trim, blank, longest, shortest = (
            field.trim_whitespace,
            field.allow_blank,
            field.max_length,
            field.min_length,
        )

        def check(v):
            if type(v) is not str:
                return _null_or_slow(field) if v is None else _SLOW
            if "\x00" in v:
                return _SLOW
            try:
                v.encode()  # lone surrogates (from JSON escapes) are refused by the field
            except UnicodeEncodeError:
                return _SLOW
            s = v.strip() if trim else v
            if s == "" or v == "":
                return "" if blank else _SLOW
            if (longest is not None and len(s) > longest) or (shortest is not None and len(s) < shortest):
                return _SLOW
            if slug and not _SLUG_RE.match(s):
                return _SLOW
            return s

    else:
        return None  # a field kind the fast path doesn't know: always ask the serializer
    return check


_SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]+\Z")


def _compile(serializer_class: type[serializers.Serializer]):
    fields = serializer_class().fields
    checks = {name: _compile_field(field) for name, field in fields.items() if not field.read_only}
    defaults = {name: f.default for name, f in fields.items() if f.default is not _EMPTY}
    # A field kind the fast path doesn't know, or a computed default: always ask the serializer.
    unknown = any(check is None for check in checks.values()) or any(map(callable, defaults.values()))
    required = [name for name, f in fields.items() if f.required]

    def fast(data) -> dict | None:
        if unknown or type(data) is not dict:
            return None
        attrs = dict(defaults)
        for name, raw in data.items():
            check = checks.get(name)
            if check is None:
                continue  # not an input field: the serializer ignores it too
            value = check(raw)
            if value is _SLOW:
                return None
            attrs[name] = value
        for name in required:
            if name not in attrs:
                return None
        try:
            return check_feedback_item(attrs)
        except serializers.ValidationError:
            return None

    return fast


def validate_feedback_item(data) -> tuple[dict | None, dict | None]:
    """``(validated item, None)`` or ``(None, errors)``, exactly as FeedbackItemSerializer would answer."""
    attrs = _fast_feedback_item(data)
    if attrs is not None:
        return attrs, None
    item = FeedbackItemSerializer(data=data)
    if item.is_valid():
        return item.validated_data, None
    return None, item.errors


_fast_feedback_item = _compile(FeedbackItemSerializer)


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


def _token_matches(ref: services.InteractionRef | None, token: str | None) -> bool:
    return ref is not None and feedback_token_valid(ref.pk, token)


def _charge_customers(key: ApiKey, refs: list[services.InteractionRef]) -> None:
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
        interaction = _resolve_interactions([v], {slug: assistant_id})[0]
        if publishable is not None:
            if not _token_matches(interaction, v.get("feedback_token")):
                raise exceptions.NotFound(NO_MATCH)
            _charge_customers(publishable, [interaction])
        if interaction is None:
            ref = v.get("interaction_id") or v.get("request_id")
            name = slug or Assistant.objects.filter(pk=assistant_id).values_list("slug", flat=True).first()
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
        for item in items:
            refuse_publishable_correction(request, item)
        publishable = _publishable_key(request)
        if publishable is not None:
            tokenless = {
                str(i): {"feedback_token": [TOKEN_REQUIRED]}
                for i, item in enumerate(items)
                if not item.get("feedback_token")
            }
            if tokenless:
                raise exceptions.ValidationError({"items": tokenless})
            publishable_origin_charge(request, publishable, cost=len(items))
        assistant_ids = _resolve_assistant_ids(request, {item.get("assistant") for item in items})
        interactions = _resolve_interactions(items, assistant_ids)
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


def _resolve_interactions(
    items: list[dict], assistant_ids: dict[str | None, int]
) -> list[services.InteractionRef | None]:
    """Look up every referenced interaction in two queries per assistant, not one per item."""
    by_id: dict[tuple[int, int], services.InteractionRef] = {}
    by_request: dict[tuple[int, str], services.InteractionRef] = {}
    for assistant_id in set(assistant_ids.values()):
        mine = [it for it in items if assistant_ids[it.get("assistant")] == assistant_id]
        ids = {it["interaction_id"] for it in mine if "interaction_id" in it}
        refs = {it["request_id"] for it in mine if "request_id" in it}
        for pk, _ in _interaction_ids(assistant_id, "id", ids):
            by_id[(assistant_id, pk)] = services.InteractionRef(pk, assistant_id)
        for request_id, pk in _interaction_ids(assistant_id, "request_id", refs):
            by_request[(assistant_id, request_id)] = services.InteractionRef(pk, assistant_id)
    resolved: list[services.InteractionRef | None] = []
    for item in items:
        assistant_id = assistant_ids[item.get("assistant")]
        if "interaction_id" in item:
            resolved.append(by_id.get((assistant_id, item["interaction_id"])))
        else:
            resolved.append(by_request.get((assistant_id, item["request_id"])))
    return resolved


def _interaction_ids(assistant_id: int, column: str, values: set) -> list[tuple]:
    """``(value, id)`` of the assistant's interactions whose ``column`` is one of ``values``.

    Plain SQL because building this one-line query with the ORM cost more CPU than everything else
    the single-feedback endpoint does (it was a third of the request); ``column`` is ours, not input.
    """
    if not values:
        return []
    connection = connections[router.db_for_read(Interaction)]
    qn = connection.ops.quote_name
    sql = (
        f"SELECT {qn(column)}, {qn('id')} FROM {qn(Interaction._meta.db_table)} "
        f"WHERE {qn('assistant_id')} = %s AND {qn(column)} IN ({', '.join(['%s'] * len(values))})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [assistant_id, *values])
        return cursor.fetchall()


def _parse_when(value: str | None, field: str) -> datetime | None:
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
        raise exceptions.ValidationError({field: [f"'{value}' is not a date or ISO 8601 datetime."]})
    parsed = parsed if parsed.tzinfo else make_aware(parsed)
    try:
        # SQLite stores UTC: 0001-01-01T00:00+14:00 is before year 1 there (an OverflowError, a 500).
        parsed.astimezone(UTC)
    except OverflowError:
        raise exceptions.ValidationError(
            {field: [f"'{value}' is out of range: use a datetime between years 1 and 9999 in UTC."]}
        ) from None
    return parsed


CategoryRatingsSerializer = type(
    "CategoryRatingsSerializer",
    (serializers.Serializer,),
    {name: serializers.FloatField(allow_null=True) for name in CATEGORY_FIELDS},
)


class FeedbackStatsSerializer(serializers.Serializer):
    """``feedback.selectors.feedback_stats``: rates are null, not 0, when there is nothing to divide by."""

    total_feedback = serializers.IntegerField()
    helpful_rate = serializers.FloatField(allow_null=True)
    avg_rating = serializers.FloatField(allow_null=True)
    rated_count = serializers.IntegerField()
    category_ratings = CategoryRatingsSerializer()
    success_count = serializers.IntegerField()
    signal_count = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)
    total_interactions = serializers.IntegerField()
    error_count = serializers.IntegerField()
    error_rate = serializers.FloatField(allow_null=True)
    excluded_count = serializers.IntegerField()
    correction_count = serializers.IntegerField()
    counts_by_kind = serializers.DictField(child=serializers.IntegerField())
    since = serializers.CharField(allow_null=True)
    until = serializers.CharField(allow_null=True)


class AssistantStatsApi(APIView):
    permission_classes = [ReadScope]

    class OutputSerializer(FeedbackStatsSerializer):
        assistant = serializers.CharField()

    @extend_schema(
        parameters=[
            OpenApiParameter("since", str, description="ISO date or datetime, inclusive"),
            OpenApiParameter("until", str, description="ISO date or datetime, exclusive"),
        ],
        responses={200: OutputSerializer},
    )
    def get(self, request: Request, slug: str) -> Response:
        assistant = assistant_for_key(request, slug)
        since = _parse_when(request.query_params.get("since"), "since")
        until = _parse_when(request.query_params.get("until"), "until")
        stats = selectors.feedback_stats(assistant=assistant, since=since, until=until)
        return Response(self.OutputSerializer({"assistant": assistant.slug, **stats}).data)


_DIGITS_RE = re.compile(r"^[0-9]{1,19}\Z")


class FeedbackPromptSerializer(serializers.Serializer):
    """What to ask (``feedback.services.FEEDBACK_PROMPTS``)."""

    kind = serializers.ChoiceField(choices=Feedback.Kind.choices)
    question = serializers.CharField()
    options = serializers.ListField(child=serializers.CharField(), required=False)
    scale = serializers.ListField(child=serializers.IntegerField(), required=False)
    categories = serializers.ListField(child=serializers.CharField(), required=False)


class FeedbackPromptApi(APIView):
    permission_classes = [IngestScope]

    class OutputSerializer(serializers.Serializer):
        assistant = serializers.CharField()
        ask = serializers.BooleanField(
            allow_null=True, help_text="null without an interaction: only what to ask, not whether."
        )
        prompt = FeedbackPromptSerializer(allow_null=True, help_text="The question; null when not to ask.")

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "assistant", str, description="Assistant slug (optional for keys bound to one)."
            ),
            OpenApiParameter("kind", str, enum=Feedback.Kind.values, description="Default: thumbs."),
            OpenApiParameter(
                "interaction_id",
                {"type": "integer", "minimum": 0, "maximum": MAX_ID},
                description="Or request_id.",
            ),
            OpenApiParameter("request_id", str),
            OpenApiParameter(
                "feedback_token",
                str,
                description="The interaction's feedback token; required with a publishable (browser) key "
                "when asking about an interaction.",
            ),
        ],
        responses={200: OutputSerializer},
    )
    def get(self, request: Request) -> Response:
        assistant = assistant_for_key(request, request.query_params.get("assistant"))
        kind = request.query_params.get("kind", Feedback.Kind.THUMBS)
        try:
            prompt = services.feedback_prompt(kind)
        except ValueError as exc:
            raise exceptions.ValidationError({"kind": [str(exc)]}) from None
        interaction_id = request.query_params.get("interaction_id")
        request_id = request.query_params.get("request_id")
        if interaction_id is None and not request_id:
            # Without an interaction we can only say what to ask, not whether to ask.
            return Response(
                self.OutputSerializer({"assistant": assistant.slug, "ask": None, "prompt": prompt}).data
            )
        # Not str.isdigit(): it accepts "²" and other digits int() refuses.
        if interaction_id is not None and not (
            _DIGITS_RE.match(interaction_id) and int(interaction_id) <= MAX_ID
        ):
            raise exceptions.ValidationError(
                {"interaction_id": [f"Must be a whole number from 0 to {MAX_ID}."]}
            )
        # Asking claims the interaction (never asked twice), so a copied publishable key must not be able
        # to claim interactions it has not seen: it needs the token, as for sending feedback.
        publishable = _publishable_key(request)
        token = request.query_params.get("feedback_token")
        if publishable is not None:
            if not token:
                raise exceptions.ValidationError({"feedback_token": [TOKEN_REQUIRED]})
            publishable_origin_charge(request, publishable, cost=1)
        interaction = selectors.interaction_get(
            assistant=assistant,
            interaction_id=int(interaction_id) if interaction_id is not None else None,
            request_id=request_id,
        )
        if publishable is not None:
            if interaction is None or not feedback_token_valid(interaction.pk, token):
                raise exceptions.NotFound(NO_MATCH)
            _charge_customers(publishable, [services.InteractionRef(interaction.pk, assistant.pk)])
        if interaction is None:
            raise exceptions.NotFound(
                f"No interaction '{interaction_id or request_id}' for '{assistant.slug}'."
            )
        interaction.assistant = assistant
        ask = services.should_ask_for_feedback(interaction=interaction)
        body = {"assistant": assistant.slug, "ask": ask, "prompt": prompt if ask else None}
        return Response(self.OutputSerializer(body).data)
