"""Project-wide middleware."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django_htmx.http import HttpResponseClientRedirect


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


class RefuseNulInFormsMiddleware:
    """Answer 400 to a submitted form with a NUL character in any field, before a view sees it.

    PostgreSQL text columns refuse NUL, so saving one (a reject reason, a corrected answer, a rollback
    note) was a 500; SQLite silently stored it. Django's form fields refuse NUL themselves, but the
    dashboard's small htmx forms read ``request.POST`` directly: one check here covers every one of them.
    JSON API requests are not forms; their serializers refuse NUL with field errors.
    """

    FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.content_type in self.FORM_TYPES:
            bad = sorted(name for name, values in request.POST.lists() if any("\x00" in v for v in values))
            if bad:
                message = f"The form field {', '.join(bad)} contains a NUL character: remove it and retry."
                return render(request, "400.html", {"message": message}, status=400)
        return self.get_response(request)
