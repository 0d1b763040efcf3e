"""What one feedback item must be, and the fast check of it that the ingest endpoints run.

``FeedbackItemSerializer`` is the one definition of the rules (its fields, ``check_feedback_item`` across
fields, both stated in the schema). ``validate_feedback_item`` answers exactly as the serializer does,
through a fast path compiled from the serializer's own fields for the common, valid item.
"""

from __future__ import annotations

import math
import re

from rest_framework import serializers

from assistants.serializers import JsonInputSerializer
from feedback.models import CATEGORY_FIELDS, Feedback
from feedback.tokens import MAX_TOKEN_LENGTH

MAX_IDEMPOTENCY_KEY = 200  # Feedback.idempotency_key's max_length
# The largest values the columns hold; a larger number would be a 500 (overflow) on PostgreSQL.
MAX_ID = 2**63 - 1  # bigint primary keys


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
    kind = attrs.get("kind")
    if kind:
        needs = FeedbackItemSerializer.KIND_NEEDS[kind]
        for name in needs:
            if attrs.get(name) not in (None, ""):
                return attrs  # what the kind needs is a signal, so both rules hold (the common item)
    if not any(attrs.get(name) not in (None, "") for name in _SIGNALS):
        raise serializers.ValidationError(
            {"non_field_errors": [f"Feedback carries nothing: send at least one of {', '.join(_SIGNALS)}."]}
        )
    if kind:
        needed = " or ".join(f"`{n}`" for n in needs)
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
