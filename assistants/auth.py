"""API key authentication, scope permissions and per-key throttling for the REST API."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from assistants.models import ApiKey, Assistant

# Writing last_used_at on every request would double the writes of the ingest path; a minute is
# precise enough to tell a reviewer whether a key is still in use.
LAST_USED_PRECISION = timedelta(minutes=1)


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0] != self.keyword:
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Bearer <key>'.")
        key = ApiKey.objects.select_related("user").filter(hashed_key=ApiKey.hash(parts[1])).first()
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown API key. Create one with `manage.py create_api_key`.")
        if not key.is_active:
            raise exceptions.AuthenticationFailed("This API key was revoked.")
        if key.user is not None and not key.user.is_active:
            raise exceptions.AuthenticationFailed("The user this key acts for is inactive.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_PRECISION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        # The CORS middleware answers only for the origins of the key that authenticated the request.
        request._request._cors_api_key = key
        return (key.user or AnonymousUser(), key)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def request_key(request: Request) -> ApiKey:
    key = request.auth
    if not isinstance(key, ApiKey):
        raise exceptions.NotAuthenticated("Send an API key: 'Authorization: Bearer <key>'.")
    return key


class HasApiKey(BasePermission):
    """Any valid key; a browser request must come from one of the key's allowed origins."""

    def has_permission(self, request: Request, view) -> bool:
        key = request_key(request)
        origin = request.META.get("HTTP_ORIGIN")
        if origin and origin not in key.allowed_origins:
            raise exceptions.PermissionDenied(
                f"This key may not be used from the browser origin {origin}; add it to the key's allowed origins."
            )
        return True


class _ScopePermission(HasApiKey):
    scope: str = ""

    def has_permission(self, request: Request, view) -> bool:
        super().has_permission(request, view)
        key = request_key(request)
        if not key.allows_scope(self.scope):
            raise exceptions.PermissionDenied(
                f"This key has scope '{key.scope}'; this endpoint needs '{self.scope}' (or 'manage')."
            )
        return True


class IngestScope(_ScopePermission):
    scope = ApiKey.Scope.INGEST


class ReadScope(_ScopePermission):
    scope = ApiKey.Scope.READ


class ManageScope(_ScopePermission):
    scope = ApiKey.Scope.MANAGE


def assistant_for_key(request: Request, slug: str | None) -> Assistant:
    """The assistant named by ``slug``, if this key may act on it (404 unknown, 403 not bound)."""
    key = request_key(request)
    if not slug:
        if key.assistant_id is not None:
            return key.assistant
        raise exceptions.ValidationError({"assistant": ["This field is required."]})
    assistant = Assistant.objects.filter(slug=slug).first()
    if assistant is None:
        raise exceptions.NotFound(f"No assistant with slug '{slug}'.")
    if not key.allows_assistant(assistant):
        raise exceptions.PermissionDenied(f"This key is bound to another assistant, not '{slug}'.")
    return assistant


def require_user_permission(request: Request, perm: str) -> None:
    """Actions that a person must be accountable for need a key made for a user who holds ``perm``."""
    user = request.user
    if not getattr(user, "is_authenticated", False):
        raise exceptions.PermissionDenied(
            f"This action needs a key made for a user with the '{perm}' permission "
            "(`create_api_key --user USERNAME`)."
        )
    if not user.has_perm(perm):
        raise exceptions.PermissionDenied(f"User '{user.get_username()}' lacks the '{perm}' permission.")


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request: Request, view) -> str | None:
        key = request.auth
        if not isinstance(key, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": key.pk}
