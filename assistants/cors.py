"""CORS for publishable (browser) keys: only the origins a key lists get an Access-Control header.

django-cors-headers configures origins globally; ours belong to each key, so this small middleware reads
them from the key that authenticated the request (and, for preflights, from any active key).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from assistants.models import ApiKey

API_PREFIX = "/api/v1/"
ALLOW_HEADERS = "authorization, content-type, idempotency-key"


def _origin_is_registered(origin: str) -> bool:
    # JSON containment is not portable to SQLite; the number of publishable keys is small.
    keys = (
        ApiKey.objects.filter(revoked_at__isnull=True)
        .exclude(allowed_origins=[])
        .values_list("allowed_origins", flat=True)
    )
    return any(origin in origins for origins in keys)


class ApiKeyCorsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        origin = request.META.get("HTTP_ORIGIN")
        if not origin or not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        if request.method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in request.META:
            response = HttpResponse(status=204 if _origin_is_registered(origin) else 403)
            if response.status_code == 204:
                response["Access-Control-Allow-Origin"] = origin
                response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
                response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
                response["Access-Control-Max-Age"] = "600"
                response["Vary"] = "Origin"
            return response
        response = self.get_response(request)
        key = getattr(request, "_cors_api_key", None)
        if key is not None and origin in key.allowed_origins:
            response["Access-Control-Allow-Origin"] = origin
            response["Vary"] = "Origin"
        return response
