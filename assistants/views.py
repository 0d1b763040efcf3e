"""Models page: each assistant's versions, its deployment history, "what was live on date X", rollback."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from assistants.models import Assistant
from assistants.selectors import (
    assistant_list,
    deployment_history,
    live_version_at,
    rollback_target,
    version_list,
)
from assistants.services import RollbackError, deployment_rollback

VIEW_PERM = "assistants.view_modelversion"
ROLLBACK_PERM = "assistants.rollback_deployment"
HISTORY_LIMIT = 100


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied("Your account may not do this. Ask an admin to add you to the reviewer group.")


def _parse_day(raw: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _end_of_day(day: dt.date) -> dt.datetime:
    end = timezone.make_aware(dt.datetime.combine(day, dt.time.max))
    try:
        end.astimezone(dt.UTC)
    except OverflowError:
        # 9999-12-31 in a time zone west of UTC ends after the last moment a datetime can hold (the
        # database's UTC conversion overflowed: a 500); nothing can be deployed later than that moment.
        return dt.datetime.max.replace(tzinfo=dt.UTC)
    return end


def _context(request: HttpRequest, assistant: Assistant | None, assistants: list[Assistant]) -> dict:
    at_day = _parse_day(request.GET.get("at"))
    context: dict = {
        "assistants": assistants,
        "assistant": assistant,
        "at_day": at_day,
        "at_error": bool(request.GET.get("at")) and at_day is None,
        "can_rollback": request.user.has_perm(ROLLBACK_PERM),
    }
    if assistant is None:
        return context
    versions = list(version_list(assistant=assistant))
    for version in versions:
        # Only scalar metrics fit a table cell; curves and nested reports live on the job page.
        version.metric_items = [
            (key, value)
            for key, value in (version.metrics or {}).items()
            if isinstance(value, int | float | str)
        ][:4]
    context.update(
        versions=versions,
        deployments=list(deployment_history(assistant=assistant)[:HISTORY_LIMIT]),
        live_at=live_version_at(assistant=assistant, when=_end_of_day(at_day)) if at_day else None,
        rollback_to=rollback_target(assistant=assistant) if assistant.live_version_id else None,
    )
    return context


@require_GET
@login_required
def models(request: HttpRequest) -> HttpResponse:
    _require(request, VIEW_PERM)
    assistants = list(assistant_list())
    slug = request.GET.get("assistant")
    assistant = next((a for a in assistants if a.slug == slug), assistants[0] if assistants else None)
    context = _context(request, assistant, assistants)
    if request.htmx and request.GET.get("at") is not None:
        return render(request, "assistants/models.html#live-at", context)
    return render(request, "assistants/models.html", context)


@require_POST
@login_required
def rollback(request: HttpRequest, slug: str) -> HttpResponse:
    _require(request, ROLLBACK_PERM)
    assistant = get_object_or_404(Assistant, slug=slug)
    error = ""
    # The form names the live version the user saw, so a double click cannot roll forward again.
    seen = request.POST.get("from_version", "")
    note = request.POST.get("note", "").strip()
    try:
        if not seen:
            raise RollbackError("The form did not say which version you saw live: reload the page and retry.")
        deployment_rollback(assistant=assistant, expected_live=seen, user=request.user, note=note)
    except RollbackError as exc:
        error = str(exc)
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, f"Rolled back {assistant.slug}.")
        return redirect(f"{reverse('assistants-models')}?assistant={assistant.slug}")
    assistant.refresh_from_db()
    context = _context(request, assistant, list(assistant_list()))
    context["rollback_error"] = error
    return render(request, "assistants/models.html#registry", context, status=422 if error else 200)
