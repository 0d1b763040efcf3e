"""API key authentication, scope permissions and per-key throttling for the REST API."""

from __future__ import annotations

import copy
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import DisallowedHost
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from assistants import throttling
from assistants.models import ApiKey, Assistant
from config import metrics

# feedback sits above assistants, so its Feedback.Kind.CORRECTION value is repeated here.
CORRECTION_KIND = "correction"

# Writing last_used_at on every request would double the writes of the ingest path; a minute is
# precise enough to tell a reviewer whether a key is still in use.
LAST_USED_PRECISION = timedelta(minutes=1)

# Each worker process keeps the keys it authenticated for a few seconds, so a busy ingest client costs
# no key query per request. The price: revoking a key (or deactivating its user, or changing its scope)
# takes effect within API_KEY_CACHE_SECONDS, not instantly. Only the key and its user are kept; the
# assistant is loaded per request, so a deployment is never seen late. Set the setting to 0 to disable.
DEFAULT_KEY_CACHE_SECONDS = 5.0
_key_cache: dict[str, tuple[float, ApiKey]] = {}
_key_cache_lock = threading.Lock()
_KEY_CACHE_MAX = 10_000


def _lookup_key(hashed: str) -> ApiKey | None:
    ttl = float(getattr(settings, "API_KEY_CACHE_SECONDS", DEFAULT_KEY_CACHE_SECONDS))
    now = time.monotonic()
    cached = _key_cache.get(hashed) if ttl > 0 else None
    if cached is not None and cached[0] > now:
        # A copy per request: callers set attributes on the key (last_used_at, the lazily loaded
        # assistant), and those must not leak into other requests or threads.
        key = copy.copy(cached[1])
        if key.user is not None:
            key.user = copy.copy(key.user)
        return key
    key = ApiKey.objects.select_related("user").filter(hashed_key=hashed).first()
    if ttl > 0 and key is not None and key.is_active and (key.user is None or key.user.is_active):
        with _key_cache_lock:
            if len(_key_cache) >= _KEY_CACHE_MAX:
                _key_cache.clear()
            _key_cache[hashed] = (now + ttl, copy.copy(key))
    return key


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0] != self.keyword:
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Bearer <key>'.")
        hashed = ApiKey.hash(parts[1])
        key = _lookup_key(hashed)
        if key is None:
            raise exceptions.AuthenticationFailed(
                "Unknown API key. Create one with `manage.py create_api_key`."
            )
        if not key.is_active:
            raise exceptions.AuthenticationFailed("This API key was revoked.")
        if key.user is not None and not key.user.is_active:
            raise exceptions.AuthenticationFailed("The user this key acts for is inactive.")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_PRECISION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
            cached = _key_cache.get(hashed)
            if cached is not None:
                cached[1].last_used_at = now  # or every request until the entry expires would write
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
    """Any valid key; a browser request must come from one of the key's allowed origins.

    A request whose Origin is this site itself (the /api/docs "Try it out" button) is not a foreign
    page using the key, so it needs no allowed origin.
    """

    def has_permission(self, request: Request, view) -> bool:
        key = request_key(request)
        origin = request.META.get("HTTP_ORIGIN")
        if origin and origin not in key.allowed_origins and not _is_same_origin(request, origin):
            raise exceptions.PermissionDenied(
                f"This key may not be used from the browser origin {origin}; "
                "add it to the key's allowed origins."
            )
        return True


def _is_same_origin(request: Request, origin: str) -> bool:
    try:
        own = f"{request.scheme}://{request.get_host()}"
    except DisallowedHost:
        return False
    return origin.lower() == own.lower()


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
    """Ingest keys, publishable ones included: only for the endpoints the browser widget calls.

    A publishable key (an ingest key with allowed origins) sits in web page source, so anyone can copy
    it and call the API from curl: the origin check only binds browsers. Such a key may therefore only
    POST /api/v1/feedback, POST /api/v1/feedback/batch and GET /api/v1/feedback-prompt, and even there
    may not send corrections (``corrected_answer`` is trusted as a training target; see
    ``refuse_publishable_correction``). Every other ingest endpoint uses ``ServerIngestScope``.
    """

    scope = ApiKey.Scope.INGEST


class ServerIngestScope(IngestScope):
    """Ingest endpoints for servers only: they log interactions or spend the provider key.

    Refuses publishable keys (see ``IngestScope``), which anyone can copy from a web page.
    """

    def has_permission(self, request: Request, view) -> bool:
        super().has_permission(request, view)
        if request_key(request).is_publishable:
            raise exceptions.PermissionDenied(
                "This is a publishable key (it has allowed browser origins), so it may only send "
                "feedback. Call this endpoint from your server with an ingest key without origins."
            )
        return True


def refuse_publishable_correction(request: Request, item: dict) -> None:
    """Corrections become training targets, so they may not come from a key anyone can copy."""
    if not request_key(request).is_publishable:
        return
    if item.get("corrected_answer") or item.get("kind") == CORRECTION_KIND:
        raise exceptions.PermissionDenied(
            "A publishable (browser) key may not send corrections (`corrected_answer` or "
            "kind 'correction'): they are used as training targets, so send them from your server "
            "with an ingest key without origins, or have a reviewer correct the answer in the dashboard."
        )


class ReadScope(_ScopePermission):
    scope = ApiKey.Scope.READ


class ManageScope(_ScopePermission):
    scope = ApiKey.Scope.MANAGE


class ReadScopeOrPagePermission(BasePermission):
    """Reads that dashboard pages fetch too (charts): a key as ``ReadScope`` allows it, or a signed-in
    dashboard user (``SessionAuthentication``) holding the view's ``page_permission``."""

    def has_permission(self, request: Request, view) -> bool:
        if isinstance(request.auth, ApiKey):
            return ReadScope().has_permission(request, view)
        user = request.user
        if user is None or not user.is_authenticated:
            raise exceptions.NotAuthenticated(
                "Send an API key ('Authorization: Bearer <key>'), or sign in to the dashboard."
            )
        if not user.has_perm(view.page_permission):
            raise exceptions.PermissionDenied(
                f"User '{user.get_username()}' lacks the '{view.page_permission}' permission: "
                "ask an admin to add you to the viewer or reviewer group."
            )
        return True


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


def assistant_id_for_key(request: Request, slug: str | None) -> int:
    """Like ``assistant_for_key`` but only the id: a key bound to one assistant then costs no query."""
    key = request_key(request)
    if not slug and key.assistant_id is not None:
        return key.assistant_id
    return assistant_for_key(request, slug).pk


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
    """At most ``rate`` requests per key, counted in a window that opens with the key's first request.

    The count is one atomic counter shared by every web process (``assistants.throttling``): Redis
    ``add`` + ``incr``, or a locked counter file on the embedded default. DRF's SimpleRateThrottle reads a
    list of timestamps, appends and writes it back, which loses concurrent increments and, with a
    per-process cache, counts each process alone.
    """

    scope = "api_key"

    def get_cache_key(self, request: Request, view) -> str | None:
        key = request.auth
        if not isinstance(key, ApiKey):
            return None
        # The hashed key, not the id: test databases (and restored backups) reuse ids.
        return f"throttle:{self.scope}:{key.hashed_key[:24]}"

    def allow_request(self, request: Request, view) -> bool:
        if self.rate is None:
            return True
        name = self.get_cache_key(request, view)
        if name is None:
            return True
        self.now = time.time()
        count, self.window_start = throttling.hit(name, throttling.Rate(self.num_requests, self.duration))
        if count > self.num_requests:
            metrics.request_throttled("API_THROTTLE_RATE")
            return False
        return True

    def wait(self) -> float | None:
        return max(0.0, self.window_start + self.duration - self.now)
