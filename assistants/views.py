"""Models page: each assistant's versions, its deployment history, "what was live on date X", rollback."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from assistants.forms import ModelsPageForm
from assistants.models import Assistant
from assistants.selectors import (
    assistant_get,
    assistant_list,
    deployment_history,
    live_version_at,
    rollback_target,
    version_list,
)
from assistants.services import RollbackError, deployment_rollback
from dashboard.forms import end_of_day
from dashboard.http import refused_status
from dashboard.permissions import page_permission_required

VIEW_PERM = "assistants.view_modelversion"
ROLLBACK_PERM = "assistants.rollback_deployment"
HISTORY_LIMIT = 100


def _context(
    request: HttpRequest,
    assistant: Assistant | None,
    assistants: list[Assistant],
    *,
    at_day: dt.date | None = None,
    at_error: bool = False,
) -> dict:
    context: dict = {
        "assistants": assistants,
        "assistant": assistant,
        "at_day": at_day,
        "at_error": at_error,
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
        live_at=live_version_at(assistant=assistant, when=end_of_day(at_day)) if at_day else None,
        rollback_to=rollback_target(assistant=assistant) if assistant.live_version_id else None,
    )
    return context


@require_GET
@page_permission_required(VIEW_PERM)
def models(request: HttpRequest) -> HttpResponse:
    assistants = list(assistant_list())
    form = ModelsPageForm(request.GET, assistants=assistants)
    # No assistant named (or an unknown one): the first.
    assistant = form.values["assistant"] or (assistants[0] if assistants else None)
    context = _context(request, assistant, assistants, at_day=form.values["at"], at_error=form.dropped("at"))
    if request.htmx and request.GET.get("at") is not None:
        return render(request, "assistants/models.html#live-at", context)
    return render(request, "assistants/models.html", context)


@require_POST
@page_permission_required(ROLLBACK_PERM)
def rollback(request: HttpRequest, slug: str) -> HttpResponse:
    assistant = assistant_get(slug=slug)
    if assistant is None:
        raise Http404(f"No assistant '{slug}'.")
    error, status = "", 200
    # The form names the live version the user saw, so a double click cannot roll forward again.
    seen = request.POST.get("from_version", "")
    note = request.POST.get("note", "").strip()
    try:
        if not seen:
            raise RollbackError("The form did not say which version you saw live: reload the page and retry.")
        deployment_rollback(assistant=assistant, expected_live=seen, user=request.user, note=note)
    except RollbackError as exc:
        error, status = str(exc), refused_status(exc)
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, f"Rolled back {assistant.slug}.")
        return redirect(f"{reverse('assistants-models')}?assistant={assistant.slug}")
    assistant.refresh_from_db()
    context = _context(request, assistant, list(assistant_list()))
    context["rollback_error"] = error
    return render(request, "assistants/models.html#registry", context, status=status)
