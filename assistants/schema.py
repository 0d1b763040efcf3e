"""Teach drf-spectacular how our API keys authenticate, so /api/docs/ offers an "Authorize" button."""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "assistants.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `manage.py create_api_key` (scopes: ingest, read, manage).",
        }


class AutoSchema(openapi.AutoSchema):
    """Name nested serializers after their API class.

    Each API class nests its own ``InputSerializer``/``OutputSerializer`` (HackSoft style); without this
    every one of them would be called "Input"/"Output" in the schema and collide.
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
