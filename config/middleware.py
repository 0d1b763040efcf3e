"""Project-wide middleware."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render, resolve_url
from django_htmx.http import HttpResponseClientRedirect

from assistants.api_parsers import body_limit, too_large_message, unstorable
from config.errors import API_PREFIXES


class HtmxLoginRedirectMiddleware:
    """Send the whole page to the login form when an htmx request finds the session gone.

    ``login_required`` answers 302 to the login page; the browser follows it inside the XHR and htmx
    swaps the login form into whatever fragment asked (a progress bar polling every 2 s, a table row).
    An ``HX-Redirect`` makes htmx navigate the page instead, and ``next`` brings the user back to it.
    Must come after django-htmx's middleware, which sets ``request.htmx``.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 302 or not getattr(request, "htmx", False):
            return response
        login = resolve_url(settings.LOGIN_URL)
        if urlsplit(response.get("Location", "")).path != login:
            return response
        back = request.htmx.current_url_abs_path or "/"
        return HttpResponseClientRedirect(f"{login}?{urlencode({'next': back})}")


def _bad_fields(data) -> list[str]:
    return sorted(name for name, values in data.lists() if unstorable(name) or any(map(unstorable, values)))


class RefuseNulInInputMiddleware:
    """Answer 400 to a NUL character (or a lone surrogate) in an API query parameter or any form field.

    PostgreSQL text refuses NUL, so using one in a query (``?assistant=%00``) or saving one (a reject
    reason, a corrected answer, a rollback note) was a 500; SQLite silently stored it. Django's form
    fields refuse NUL themselves, but the API reads ``query_params`` and the dashboard's small htmx forms
    read ``request.POST`` directly: one check here covers every one of them. JSON bodies are checked by
    the API's parser (``assistants.api_parsers``). API paths get the API's JSON error shape.
    """

    FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        api = request.path.startswith(API_PREFIXES)
        # The pages' filters already treat a NUL like any unknown value (they show nothing), so only the
        # API's query parameters are checked.
        bad = _bad_fields(request.GET) if api else []
        where = "query parameter"
        if not bad and request.method == "POST" and request.content_type in self.FORM_TYPES:
            try:
                bad = _bad_fields(request.POST)
            except RequestDataTooBig:
                if not api:
                    raise
                limit = body_limit()
                return _api_error(request, too_large_message(limit), status=413)
            where = "form field"
        if not bad:
            return self.get_response(request)
        message = (
            f"The {where} {', '.join(bad)} contains a NUL character or an unpaired surrogate: "
            "remove it and retry."
        )
        if api:
            return _api_error(request, message, status=400, field=bad[0])
        return render(request, "400.html", {"message": message}, status=400)


def _api_error(request: HttpRequest, message: str, *, status: int, field: str | None = None) -> HttpResponse:
    if request.path.startswith("/v1/"):  # the OpenAI-compatible gateway answers in OpenAI's shape
        body = {"error": {"message": message, "type": "invalid_request_error", "param": field, "code": None}}
    elif field is not None:
        body = {"detail": "Invalid input: see `errors` for what to fix.", "errors": {field: [message]}}
    else:
        body = {"detail": message}
    return JsonResponse(body, status=status)


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on every page and API answer that does not choose its own caching.

    Dashboard pages and API answers carry customers' conversations and feedback: a shared proxy or the
    browser's disk cache must not keep them after the reviewer logs out. Static files are served by
    WhiteNoise before this runs, with their own long-lived caching.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response
