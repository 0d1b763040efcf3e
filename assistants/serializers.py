"""The base of every serializer that reads a JSON request body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


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
