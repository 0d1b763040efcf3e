"""Django's own error answers (no URL matched, a server error) in the API's JSON shape on API paths.

DRF answers errors raised inside an API view; a path that matches no URL (``/api/v1/jobs/abc``) or a
crash outside DRF was Django's HTML page, which an API client cannot read and the schema does not list.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

API_PREFIXES = ("/api/", "/v1/")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def _json(request: HttpRequest, message: str, status: int) -> JsonResponse:
    if request.path.startswith("/v1/"):  # the OpenAI-compatible gateway answers in OpenAI's shape
        error_type = "server_error" if status >= 500 else "invalid_request_error"
        body = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
        return JsonResponse(body, status=status)
    return JsonResponse({"detail": message}, status=status)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return _json(request, f"No API endpoint at {request.path}: see /api/docs/.", 404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return _json(request, "Internal server error: the failure was logged.", 500)
    return defaults.server_error(request)
