"""The failed-login throttle (django-axes): who is asking, and what the login pages say about it."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT proxies the address they saw.

    Each proxy appends the address it received the request from to X-Forwarded-For, so with N trusted
    proxies the N-th entry from the right is the client; entries further left are whatever the client
    sent and must not be trusted (or anyone could pick a fresh address for every guess).
    """
    count = settings.TRUSTED_PROXY_COUNT
    if count > 0:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(hops) >= count:
            return hops[-count]
    return request.META.get("REMOTE_ADDR", "")


def login_limits() -> dict[str, int]:
    """The failed-login throttle's numbers, as the login and lockout pages state them."""
    return {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
    }


class LoginView(auth_views.LoginView):
    """Django's login view, telling people how many failures lock a username or address, and for how long."""

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), **login_limits()}


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a locked-out login: our page, with the numbers, as 429 Too Many Requests."""
    return render(request, "registration/locked_out.html", login_limits(), status=429)
