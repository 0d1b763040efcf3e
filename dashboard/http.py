"""What a dashboard view answers: a whole page or the part htmx swaps, a refused action, the 400 page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def wants_partial(request: HttpRequest) -> bool:
    """Whether htmx asks for the part of the page it swaps (a filter change swaps the results).

    Links, reloads, boosted navigation and htmx history restores get the full page.
    """
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def bad_request(request: HttpRequest, message: str) -> HttpResponse:
    """The 400 page: what was wrong with the input and what to do."""
    return render(request, "400.html", {"message": message}, status=400)


def refused_status(exc: Exception) -> int:
    """The status of the fragment that shows why an action was refused, next to its form.

    The same rule as the API: a request the current state does not allow (a job that moved on, an
    experiment that already ended, a version no longer live) is a 409, whatever asked; anything else
    wrong with the input is a 422. base.html tells htmx to swap both in place.
    """
    return 409 if getattr(exc, "status_code", None) == 409 else 422
