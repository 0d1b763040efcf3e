"""The dashboard's middleware: htmx requests that lost their session, and no caching of answers."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
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
