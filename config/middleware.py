"""Middleware for every surface (pages, REST API, OpenAI-compatible gateway): request ids and input hygiene.

It stays in ``config`` (a project entry point, like ``config/urls.py``) rather than in the dashboard: the
request id serves the API and the pages alike, the input check answers API paths in the API's JSON shapes
and shares the API parser's rule of what text can be stored (``assistants.api_parsers.unstorable``), and
the dashboard's own modules import none of our apps. The dashboard's middleware is in
``dashboard/middleware.py``.
"""

from __future__ import annotations

import logging
import time

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from assistants.api_parsers import body_limit, too_large_message, unstorable
from config import logging as log_context
from config.errors import API_PREFIXES

request_logger = logging.getLogger("trainloop.request")

REQUEST_ID_HEADER = "X-Request-ID"
# Probes and scrapes come every few seconds: their lines are DEBUG, not INFO.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestIdMiddleware:
    """Give every request an id and log one line when it is answered.

    The id is the client's ``X-Request-ID`` when it is acceptable (``config.logging.REQUEST_ID_RE``: at most
    128 letters, digits and ``._:-``), else a new one; it is bound for every line logged while the request
    runs, travels into the django-q2 tasks the request enqueues (``config.queue``) and into the job events
    they write, and comes back in the answer's ``X-Request-ID`` (unless the view chose its own: the chat
    gateway's). First in MIDDLEWARE, so even an answer from another middleware (a redirect, a static file)
    carries it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = log_context.request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        # Bound until Django's request_finished (config.logging.request_ended), not just until this
        # returns: Django logs 4xx/5xx answers after the middleware, and a streamed answer (the chat
        # gateway) is produced while the server sends it.
        log_context.request_started(request_id)
        started = time.perf_counter()
        response = self.get_response(request)
        # The chat gateway answers with its interaction's request id, as OpenAI does (the SDK reads it
        # as the completion's request id, and feedback can name it): that one stays, and the request's
        # line names both.
        answered_id = response.get(REQUEST_ID_HEADER)
        self._log(request, response, time.perf_counter() - started, answered_id)
        if answered_id is None:
            response[REQUEST_ID_HEADER] = request_id
        return response

    @staticmethod
    def _log(request: HttpRequest, response: HttpResponse, seconds: float, answered_id: str | None) -> None:
        match = getattr(request, "resolver_match", None)
        level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
        fields = {
            "method": request.method,
            "path": request.path,
            "view": match.view_name if match is not None else "",
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 1),
        }
        if answered_id is not None:
            fields["answered_request_id"] = answered_id
        request_logger.log(
            level,
            "%s %s %s in %.0f ms",
            request.method,
            request.path,
            response.status_code,
            seconds * 1000,
            extra=fields,
        )


def _bad_fields(data) -> list[str]:
    return sorted(name for name, values in data.lists() if unstorable(name) or any(map(unstorable, values)))


class RefuseNulInInputMiddleware:
    """Answer 400 to a NUL character (or a lone surrogate) in an API query parameter or any form field.

    PostgreSQL text refuses NUL, so using one in a query (``?assistant=%00``) or saving one (a reject
    reason, a corrected answer, a rollback note) fails in the database; SQLite would silently store it.
    Django's form fields refuse NUL themselves, but the API reads ``query_params`` and the dashboard's
    small htmx forms read ``request.POST`` directly: one check here covers every one of them. JSON bodies
    are checked by the API's parser (``assistants.api_parsers``). API paths get the API's JSON error shape.
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
