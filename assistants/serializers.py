"""The bases of the serializers that read a JSON request body, and of those that read query parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.request import Request


def json_type_error(field: serializers.Field, value: Any) -> str | None:
    """Why ``value`` is not of the JSON type the schema documents for ``field`` (None: it is)."""
    if value is None:
        return None  # the field's allow_null decides
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false (a JSON boolean)."
    if isinstance(field, serializers.IntegerField):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "Must be a whole number (a JSON number without a fraction)."
    if isinstance(field, serializers.FloatField):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "Must be a number."
    if isinstance(field, serializers.CharField | serializers.ChoiceField | serializers.DateTimeField):
        return None if isinstance(value, str) else "Must be a string."
    return None


class JsonInputSerializer(serializers.Serializer):
    """Takes each value only in the JSON type the schema documents for it.

    DRF coerces on input: 5 becomes "5" for a text field, "5" becomes 5 for a number, "yes" becomes
    true. The schema says "string", "integer", "boolean", so a client sending something else has a bug
    that the API should name, not guess around (and the contract test holds the API to its schema).
    """

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            errors = {
                name: [message]
                for name, field in self.fields.items()
                if not field.read_only
                and name in data
                and (message := json_type_error(field, data[name])) is not None
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class QuerySerializer(serializers.Serializer):
    """The base of an API's ``FilterSerializer``: its fields are the query parameters of one endpoint.

    A repeated parameter counts with its last value, and an empty one (``?limit=``) is a value that the
    field accepts or refuses: DRF would read the query like an HTML form, where an empty field means
    "not sent", and a client that sends ``?kind=`` has a bug to hear about. Document the parameters
    with ``extend_schema(parameters=[FilterSerializer])``.
    """

    @classmethod
    def parse(cls, request: Request) -> dict[str, Any]:
        """The request's query parameters, validated; a 400 that names each bad one otherwise."""
        filters = cls(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        return filters.validated_data


class QueryTextField(serializers.CharField):
    """An optional text query parameter, taken as sent (blank allowed, whitespace kept)."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class QueryChoiceField(serializers.Field):
    """An optional query parameter that takes one of ``choices`` as sent ("" only when it is listed).

    Documented as a plain enum (``assistants.schema``): DRF's ChoiceField would add a list of its labels
    to the parameter's description and a ``minLength`` that the enum already implies.
    """

    default_error_messages = {"invalid_choice": '"{input}" is not a valid choice.'}

    def __init__(self, *, choices: list[str], **kwargs) -> None:
        self.choices = list(choices)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if data not in self.choices:
            self.fail("invalid_choice", input=data)
        return data

    def to_representation(self, value: str) -> str:
        return value
