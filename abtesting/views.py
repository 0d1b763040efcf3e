"""Experiments pages: list, detail with the daily history chart, and the stop button."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from abtesting import selectors, services
from abtesting.exceptions import ExperimentNotRunning
from abtesting.forms import ExperimentFilterForm
from abtesting.models import Experiment
from abtesting.panels import analysis_panel
from assistants.selectors import assistant_list
from dashboard.http import refused_status, wants_partial
from dashboard.pagination import paginate
from dashboard.permissions import page_permission_required

VIEW_PERM = "abtesting.view_experiment"
CHANGE_PERM = "abtesting.change_experiment"
PAGE_SIZE = 50


def _experiment_or_404(pk: int) -> Experiment:
    experiment = selectors.experiment_get(experiment_id=pk)
    if experiment is None:
        raise Http404(f"No experiment {pk}.")
    return experiment


@require_GET
@page_permission_required(VIEW_PERM)
def experiment_list(request: HttpRequest) -> HttpResponse:
    assistants = list(assistant_list())
    form = ExperimentFilterForm(request.GET, assistants=assistants)
    page = paginate(
        selectors.experiment_list(**form.selector_kwargs()),
        number=form.values["page"],
        per_page=PAGE_SIZE,
        query=request.GET,
    )
    selectors.extra_variants_fetch(page.rows)
    context = {
        "page": page,
        "filters": form.values,
        "assistants": assistants,
        "statuses": Experiment.Status.values,
    }
    if wants_partial(request):
        return render(request, "abtesting/experiment_list.html#results", context)
    return render(request, "abtesting/experiment_list.html", context)


def _detail_context(request: HttpRequest, experiment: Experiment) -> dict[str, Any]:
    # The history table; its two charts are fetched by the page (abtesting.api_charts).
    history = selectors.experiment_history(experiment=experiment)
    # A running test's live figures, computed on demand (cached for a minute), labelled interim.
    live = services.experiment_interim(experiment=experiment)
    return {
        "experiment": experiment,
        "live": analysis_panel(experiment, analysis=live, interim=True) if live is not None else None,
        "ab": analysis_panel(experiment),
        "history": history,
        "can_stop": request.user.has_perm(CHANGE_PERM) and experiment.status == Experiment.Status.RUNNING,
    }


@require_GET
@page_permission_required(VIEW_PERM)
def experiment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = _experiment_or_404(pk)
    return render(request, "abtesting/experiment_detail.html", _detail_context(request, experiment))


@require_POST
@page_permission_required(VIEW_PERM, CHANGE_PERM)
def experiment_stop(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = _experiment_or_404(pk)
    reason = (
        request.POST.get("reason", "").strip()
        or f"Stopped from the dashboard by {request.user.get_username()}."
    )
    error, status = "", 200
    try:
        services.experiment_stop(experiment=experiment, reason=reason, user=request.user)
    except ExperimentNotRunning as exc:
        error, status = str(exc), refused_status(exc)
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, f"Experiment {experiment.pk} stopped.")
        return redirect("abtesting-experiment-detail", pk=experiment.pk)
    experiment = _experiment_or_404(pk)
    context = {**_detail_context(request, experiment), "stop_error": error}
    return render(request, "abtesting/experiment_detail.html#body", context, status=status)
