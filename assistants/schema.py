"""How the OpenAPI schema describes our API: key authentication, component names, and every error answer."""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "assistants.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `manage.py create_api_key` (scopes: ingest, read, manage).",
        }


class QueryChoiceFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "assistants.serializers.QueryChoiceField"

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "enum": self.target.choices}


# A query parameter validated by a SlugField (DRF's pattern).
SLUG_SCHEMA = {"type": "string", "pattern": r"^[-a-zA-Z0-9_]*$", "description": "Empty: the key's assistant."}


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """Every error of the REST API (``assistants.api_errors``): what went wrong, and per field what to fix."""

    detail = serializers.CharField(help_text="What went wrong and what to do.")
    errors = serializers.DictField(
        required=False,
        help_text="400 only: for each field (for a batch, each item by index) the messages to fix it.",
    )


class OpenAIErrorBodySerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)


@extend_schema_serializer(component_name="OpenAIError")
class OpenAIErrorSerializer(serializers.Serializer):
    """Errors of the OpenAI-compatible gateway, in OpenAI's shape so the SDKs raise their usual exceptions."""

    error = OpenAIErrorBodySerializer()


# The answers any operation may give besides its own: the JSON parser and the query-parameter check
# (400), authentication (401), scope, assistant binding or browser origin (403), an unknown assistant or
# object (404), the per-key throttle (429). Operations with a body may also get 413 and 415.
ERROR_RESPONSES = {
    400: "Invalid input: `errors` names each field to fix.",
    401: "No API key, or an unknown or revoked one.",
    403: "The key's scope, assistant, origin or user does not allow this.",
    404: "No such assistant or object (or not one this key may see).",
    429: "Too many requests for this key: wait `Retry-After` seconds.",
}
BODY_ERROR_RESPONSES = {
    413: "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE (the message names the limit).",
    415: "The body is not JSON: send `Content-Type: application/json`.",
}


RULES_KEY = "x-serializer-rules"


def apply_serializer_rules(result, generator, request, public):
    """Postprocessing hook: merge each request component's ``openapi_rules`` into it (see AutoSchema)."""
    schemas = result.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        rules = schema.pop(RULES_KEY, None)
        if rules:
            schemas[name] = _merged(schema, rules)
    return result


def _merged(schema: dict, rules: dict) -> dict:
    """``schema`` plus ``rules``; nested objects (``properties``, a property) are merged, not replaced."""
    out = dict(schema)
    for key, value in rules.items():
        out[key] = (
            _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


class AutoSchema(openapi.AutoSchema):
    """Name nested serializers after their API class, and document every error answer.

    Each API class nests its own ``InputSerializer``/``OutputSerializer`` (HackSoft style); without this
    every one of them would be called "Input"/"Output" in the schema and collide. A view answers its
    errors in the shape of ``error_serializer`` (the gateway: OpenAI's).
    """

    def _get_serializer_name(self, serializer, direction, bypass_extensions=False) -> str:
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        cls = serializer if isinstance(serializer, type) else type(serializer)
        outer, _, inner = cls.__qualname__.rpartition(".")
        if outer and not getattr(getattr(cls, "Meta", None), "ref_name", None):
            name = name.replace(
                inner.removesuffix("Serializer"),
                outer.removesuffix("Api") + inner.removesuffix("Serializer"),
                1,
            )
        return name

    def _map_serializer(self, serializer, direction, bypass_extensions=False):
        # Rules of a serializer's ``validate()`` that JSON Schema can state (``openapi_rules``, e.g.
        # "unknown fields are refused") belong in its request component.
        schema = super()._map_serializer(serializer, direction, bypass_extensions)
        rules = getattr(serializer, "openapi_rules", None)
        if rules and direction == "request":
            # Merged by ``apply_serializer_rules`` after drf-spectacular's enum hook, which would
            # otherwise turn each enum inside the rules into a component of its own.
            schema = {**schema, RULES_KEY: rules}
        return schema

    def _get_request_body(self, direction="request"):
        # A serializer whose rules need a field although no single field is required (``oneOf``) says
        # so with ``openapi_body_required``: an empty body is refused.
        body = super()._get_request_body(direction)
        if body is not None and getattr(self.get_request_serializer(), "openapi_body_required", False):
            body["required"] = True
        return body

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response" or not self.path.startswith(("/api/v1/", "/v1/")):
            return responses
        error = getattr(self.view, "error_serializer", ErrorSerializer)
        errors = dict(ERROR_RESPONSES)
        if self.method in ("POST", "PUT", "PATCH"):
            errors.update(BODY_ERROR_RESPONSES)
        for code, description in errors.items():
            if str(code) not in responses:
                response = OpenApiResponse(response=error, description=description)
                responses[str(code)] = self._get_response_for_code(response, str(code), direction=direction)
        return responses
