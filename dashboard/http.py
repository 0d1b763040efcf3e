"""What a dashboard view answers: a whole page or the part htmx swaps, and the 400 page."""

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
