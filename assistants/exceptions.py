"""The base of every domain error: what a service raises when it refuses, whatever app it lives in.

It sits in the lowest app so every layer can raise and catch the same classes. Each error carries the
HTTP status the API answers with (``status_code``); the API turns any of them into that answer in one
place (``assistants.api_errors.exception_handler``) with the message as ``detail``. Pages show the
message next to the form that was sent, with the same 409 for a conflict (422 otherwise; htmx swaps both
in place: ``dashboard.http.refused_status``).

A refused permission is Django's own ``PermissionDenied``: Django's pages and DRF both already answer it
with 403 and its message, so services raise it directly.

Each app keeps its own errors in its ``exceptions.py`` (``training.exceptions``, ``abtesting.exceptions``,
``feedback.exceptions``), subclassing these.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied

__all__ = ["Conflict", "DomainError", "PermissionDenied", "RollbackError"]


class DomainError(Exception):
    """A service refused a request; the message says what was wrong and what to do."""

    status_code = 400


class Conflict(DomainError):
    """The request is fine but the current state does not allow it (a job already running, an experiment
    that already ended, a key used with another body): 409."""

    status_code = 409


class RollbackError(Conflict):
    """Nothing to roll back to, or the live version is no longer the one the caller saw."""
