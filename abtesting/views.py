"""Experiments pages: list, detail with the daily history chart, and the stop button."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from abtesting import selectors, services
from abtesting.exceptions import ExperimentNotRunning
from abtesting.models import Experiment
from assistants.models import Assistant
from feedback.views import page_number

VIEW_PERM = "abtesting.view_experiment"
CHANGE_PERM = "abtesting.change_experiment"
PAGE_SIZE = 50
FORBIDDEN = "Your account may not do this. Ask an admin to add you to the reviewer group."


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied(FORBIDDEN)


def _get_experiment_for_user(request: HttpRequest, pk: int, perm: str = VIEW_PERM) -> Experiment:
    _require(request, VIEW_PERM)
    if perm != VIEW_PERM:
        _require(request, perm)
    experiment = selectors.experiment_get(experiment_id=pk)
    if experiment is None:
        raise Http404(f"No experiment {pk}.")
    return experiment


def analysis_panel(
    experiment: Experiment | None,
    *,
    results: dict | None = None,
    analysis: dict | None = None,
    interim: bool = False,
) -> dict[str, Any] | None:
    """Every figure of an A/B test in one dict for ``abtesting/snippets/analysis.html``.

    From the experiment's last analysis (``abtesting.services.analysis_record``), or ``analysis`` (the
    live interim one); a job whose experiment is gone still has the seed-style ``ab_test_results``
    (camelCase) to fall back on. What is shown as evidence depends on where the test stands: the
    decision interval at a planned look, the confidence sequence in between (interim), nothing that
    reads as a verdict after an early stop, and the fixed-horizon p-value only at the planned end.
    """
    if analysis is None:
        analysis = (experiment.last_analysis if experiment is not None else None) or {}
    results = results or analysis.get("ab_test_results") or {}
    if experiment is None and not results:
        return None
    alpha = analysis.get("alpha") or (experiment.significance_level if experiment is not None else None)
    level = f"{1 - alpha:.0%}" if alpha else ""
    sequential = analysis.get("sequential") or {}
    arms = []
    for name in ("control", "variant"):
        arm = analysis.get(name) or {}
        version = getattr(experiment, name, None) if experiment is not None else None
        arms.append({
            "name": name,
            "version": version.name if version is not None else "",
            "units": arm.get("units"),
            "n": arm.get("n"),
            "n_assigned": arm.get("n_assigned"),
            "successes": arm.get("successes"),
            "rate": arm.get("rate", results.get(f"{name}SuccessRate")),
            "low": arm.get("rate_low"),
            "high": arm.get("rate_high"),
            "rating_mean": arm.get("rating_mean"),
        })  # fmt: skip
    chart = {
        "type": "bar",
        "labels": [f"{a['name']} {a['version']}".strip() for a in arms],
        "percent": True,
        "yMax": 1,
        "datasets": [
            {"type": "bar", "label": f"{level} interval (per user)", "backgroundColor": "rgba(37,87,214,.25)",
             "data": [[a["low"], a["high"]] if a["low"] is not None else None for a in arms]},
            {"type": "line", "label": "Success rate", "showLine": False, "pointRadius": 7,
             "borderColor": "#17203a", "backgroundColor": "#17203a", "data": [a["rate"] for a in arms]},
        ],
    }  # fmt: skip
    days = analysis.get("elapsed_days")
    if days is None and experiment is not None:
        days = ((experiment.ended_at or timezone.now()) - experiment.started_at).total_seconds() / 86400
    stopped = experiment is not None and experiment.status == Experiment.Status.STOPPED
    stopped = stopped or bool(analysis.get("stopped_early") or results.get("outcome"))
    outcome = (
        experiment.outcome
        if experiment is not None
        else results.get("outcome") or analysis.get("stopped_early") or ""
    )
    method = sequential.get("method", results.get("method", ""))
    planned_end = bool(analysis.get("final_look")) and method == "group_sequential" and not stopped
    min_improvement = analysis.get("min_improvement") or (
        experiment.min_improvement if experiment is not None else None
    )
    detectable = analysis.get("detectable_lift")
    return {
        "experiment": experiment,
        # The analysis stored at a stop was computed as an interim one; once stopped it is neither.
        "interim": (interim or bool(analysis.get("interim"))) and not stopped,
        "stopped": stopped,
        "outcome": outcome,
        "level": level,
        "arms": arms,
        "chart": chart if any(a["rate"] is not None for a in arms) else None,
        "absolute_lift": analysis.get("absolute_lift"),
        "relative_lift": analysis.get("relative_lift", results.get("improvement")),
        # The fixed-horizon p-value is evidence only for one look at a fixed sample: shown at the planned
        # end (labelled), never while running or after an early stop.
        "fixed_p_value": analysis.get("fixed_p_value", results.get("pValue")) if planned_end else None,
        "planned_end": planned_end,
        "seq_method": method,
        "seq_p_value": sequential.get("p_value", results.get("sequentialPValue")),
        "seq_low": sequential.get("ci_low", results.get("improvementLow")),
        "seq_high": sequential.get("ci_high", results.get("improvementHigh")),
        "cs_low": sequential.get("cs_low"),
        "cs_high": sequential.get("cs_high"),
        "seq_look": sequential.get("look", results.get("look")),
        "seq_planned": sequential.get("planned_looks", results.get("plannedLooks")),
        "information": sequential.get("information_fraction"),
        "boundary_z": sequential.get("boundary_z"),
        "z": sequential.get("z"),
        "srm_p_value": analysis.get("srm_p_value", results.get("srmPValue")),
        "srm_ok": analysis.get("srm_ok"),
        "required": analysis.get("required_units"),
        "progress": analysis.get("progress"),
        "detectable": detectable,
        "underpowered": detectable is not None
        and min_improvement is not None
        and detectable > min_improvement,
        "min_improvement": min_improvement,
        "units": sum(a["units"] or 0 for a in arms) if any(a["units"] is not None for a in arms) else None,
        "days_running": days,
        "verdict": "no_decision"
        if stopped
        else analysis.get("verdict") or (experiment.decision if experiment is not None else ""),
        "reason": analysis.get("reason") or (experiment.decision_reason if experiment is not None else ""),
        "alpha": alpha,
    }


def _history_charts(points: list[dict[str, Any]]) -> tuple[dict, dict]:
    """Daily success rates per arm, and the lift with its sequential CI (``selectors.experiment_history``)."""
    labels = [p["day"] for p in points]
    cis = [p.get("ci") or [None, None] for p in points]
    rates = {
        "type": "line",
        "labels": labels,
        "percent": True,
        "beginAtZero": False,
        "datasets": [
            {
                "label": "control",
                "data": [p["control_success_rate"] for p in points],
                "borderColor": "#687085",
            },
            {
                "label": "variant",
                "data": [p["variant_success_rate"] for p in points],
                "borderColor": "#2557d6",
            },
        ],
    }
    lift = {
        "type": "line",
        "labels": labels,
        "percent": True,
        "beginAtZero": False,
        "datasets": [
            {"label": "relative lift", "data": [p["improvement"] for p in points], "borderColor": "#17203a"},
            {"label": "decision interval low", "data": [ci[0] for ci in cis], "borderColor": "#a76200",
             "borderDash": [4, 3], "pointRadius": 0},
            {"label": "decision interval high", "data": [ci[1] for ci in cis], "borderColor": "#a76200",
             "borderDash": [4, 3], "pointRadius": 0},
        ],
    }  # fmt: skip
    return rates, lift


@require_GET
@login_required
def experiment_list(request: HttpRequest) -> HttpResponse:
    _require(request, VIEW_PERM)
    q = request.GET
    filters = {
        "assistant": q.get("assistant", ""),
        "status": q.get("status") if q.get("status") in Experiment.Status.values else "",
    }
    slugs = list(Assistant.objects.order_by("slug").values_list("slug", flat=True))
    qs = selectors.experiment_list(status=filters["status"] or None)
    if filters["assistant"]:
        # Matched against the known slugs first: an unknown one (a NUL byte, say, which PostgreSQL refuses
        # with an error) must show no experiments, not reach the database.
        qs = qs.filter(assistant__slug=filters["assistant"]) if filters["assistant"] in slugs else qs.none()
    page = page_number(q.get("page"))
    rows = list(qs[(page - 1) * PAGE_SIZE : page * PAGE_SIZE + 1])
    for experiment in rows:
        analysis = experiment.last_analysis or {}
        experiment.lift = analysis.get("relative_lift")
        experiment.n_control = (analysis.get("control") or {}).get("units")
        experiment.n_variant = (analysis.get("variant") or {}).get("units")
    query = q.copy()
    query.pop("page", None)
    context = {
        "experiments": rows[:PAGE_SIZE],
        "has_next": len(rows) > PAGE_SIZE,
        "page": page,
        "base_query": query.urlencode(),
        "filters": filters,
        "assistants": slugs,
        "statuses": Experiment.Status.values,
    }
    # A filter change swaps the results; a full page for links, reloads and htmx history restores.
    if request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request:
        return render(request, "abtesting/experiment_list.html#results", context)
    return render(request, "abtesting/experiment_list.html", context)


def _detail_context(request: HttpRequest, experiment: Experiment) -> dict[str, Any]:
    history = selectors.experiment_history(experiment=experiment)
    rates, lift = _history_charts(history)
    # A running test's live figures, computed on demand (cached for a minute), labelled interim.
    live = services.experiment_interim(experiment=experiment)
    return {
        "experiment": experiment,
        "live": analysis_panel(experiment, analysis=live, interim=True) if live is not None else None,
        "ab": analysis_panel(experiment),
        "history": history,
        "rates_chart": rates,
        "lift_chart": lift,
        "can_stop": request.user.has_perm(CHANGE_PERM) and experiment.status == Experiment.Status.RUNNING,
    }


@require_GET
@login_required
def experiment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = _get_experiment_for_user(request, pk)
    return render(request, "abtesting/experiment_detail.html", _detail_context(request, experiment))


@require_POST
@login_required
def experiment_stop(request: HttpRequest, pk: int) -> HttpResponse:
    experiment = _get_experiment_for_user(request, pk, CHANGE_PERM)
    reason = (
        request.POST.get("reason", "").strip()
        or f"Stopped from the dashboard by {request.user.get_username()}."
    )
    error = ""
    try:
        services.experiment_stop(experiment=experiment, reason=reason, user=request.user)
    except ExperimentNotRunning as exc:
        error = str(exc)
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, f"Experiment {experiment.pk} stopped.")
        return redirect("abtesting-experiment-detail", pk=experiment.pk)
    experiment = _get_experiment_for_user(request, pk)
    context = {**_detail_context(request, experiment), "stop_error": error}
    return render(request, "abtesting/experiment_detail.html#body", context, status=422 if error else 200)
