"""The reviewer dashboard's training pages: overview per assistant, jobs, job detail and its actions.

Reads go through selectors (or the page-specific private queries below, each one query), writes through
``training.services``; every page runs a constant number of queries whatever the data size.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db.models import Count, Max, Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling, trigger_client_event

from abtesting.views import analysis_panel
from assistants.exceptions import DomainError
from assistants.models import Assistant, Deployment
from feedback.views import page_number
from training import selectors, services
from training.evaluation.calibration import calibration_rows
from training.models import JobEvent, RetrainPolicy, TrainingDataset, TrainingJob
from training.pipeline.erasure import dataset_ready
from training.policy import should_retrain_metrics

VIEW_PERM = "training.view_trainingjob"
APPROVE_PERM = "training.approve_trainingjob"
TRIGGER_PERM = "training.trigger_trainingjob"
DATASET_PERM = "training.view_trainingdataset"
STATS_DAYS = selectors.OVERVIEW_DAYS
PAGE_SIZE = 50
S = TrainingJob.Status

# Where each status sits on the progress bar. Statuses that wait on people or traffic (testing, awaiting
# approval) sit high: the machine's work is done, what is left is evidence and a decision.
PROGRESS = {
    S.PENDING: 5, S.PREPARING: 15, S.TRAINING: 30, S.EVALUATING: 65, S.TESTING: 75,
    S.AWAITING_APPROVAL: 90, S.DEPLOYING: 95,
    S.DEPLOYED: 100, S.REJECTED: 100, S.FAILED: 100, S.CANCELLED: 100,
}  # fmt: skip
STEPS = (
    S.PENDING,
    S.PREPARING,
    S.TRAINING,
    S.EVALUATING,
    S.TESTING,
    S.AWAITING_APPROVAL,
    S.DEPLOYING,
    S.DEPLOYED,
)
# A job in these statuses changes only when a person acts (and the action swaps the page), so polling stops.
SETTLED = (*TrainingJob.TERMINAL, S.AWAITING_APPROVAL)
FORBIDDEN = "Your account may not do this. Ask an admin to add you to the reviewer group."


# -- access ---------------------------------------------------------------------------------------------


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied(FORBIDDEN)


def _job_queryset():
    return TrainingJob.objects.select_related(
        "assistant", "assistant__live_version", "dataset", "new_model_version", "base_version",
        "experiment", "experiment__control", "experiment__variant", "decided_by",
    )  # fmt: skip


def _get_job_for_user(request: HttpRequest, job_id: int, perm: str = VIEW_PERM) -> TrainingJob:
    """The job, if the user may ``perm`` it (403 otherwise; 404 when there is no such job)."""
    _require(request, VIEW_PERM)
    if perm != VIEW_PERM:
        _require(request, perm)
    return get_object_or_404(_job_queryset(), pk=job_id)


def _perms(request: HttpRequest) -> dict[str, bool]:
    user = request.user
    return {
        "can_approve": user.has_perm(APPROVE_PERM),
        "can_trigger": user.has_perm(TRIGGER_PERM),
        "can_download": user.has_perm(DATASET_PERM),
    }


# -- progress -------------------------------------------------------------------------------------------


def job_progress_info(job: TrainingJob) -> dict[str, Any]:
    """Percent done and a label for the progress bar (training progress refines the 'training' step)."""
    percent = PROGRESS.get(job.status, 0)
    fraction = (job.metrics or {}).get("progress")
    if job.status == S.TRAINING and isinstance(fraction, int | float) and 0 <= fraction <= 1:
        percent = 20 + round(45 * fraction)
    step = STEPS.index(job.status) + 1 if job.status in STEPS else None
    return {
        "percent": percent,
        "step": step,
        "steps": len(STEPS),
        "label": job.get_status_display(),
        "settled": job.status in SETTLED,
        "terminal": job.is_terminal,
    }


# -- overview -------------------------------------------------------------------------------------------


def _assistants_with_badges() -> list[Assistant]:
    """All assistants with how many of their jobs await approval (one query)."""
    return list(
        Assistant.objects.select_related("live_version")
        .annotate(awaiting=Count("training_jobs", filter=Q(training_jobs__status=S.AWAITING_APPROVAL)))
        .order_by("slug")
    )


def _trend_chart(series: list[dict], deployments: list[Deployment]) -> dict[str, Any]:
    labels = [row["day"] for row in series]
    markers = []
    for d in deployments:
        day = timezone.localdate(d.created_at).isoformat()
        if day not in labels:
            labels.append(day)
        markers.append({"label": day, "text": f"{d.version.name} ({d.reason})"})
    labels.sort()
    by_day = {row["day"]: row for row in series}
    return {
        "type": "line",
        "labels": labels,
        "percent": True,
        "yMax": 1,
        "markers": markers,
        "datasets": [
            {
                "label": "Success rate",
                "data": [by_day[day]["success_rate"] if day in by_day else None for day in labels],
                "borderColor": "#2557d6",
                "backgroundColor": "#2557d6",
                "tension": 0.2,
            },
            {
                "label": "Helpful rate",
                "data": [by_day[day]["helpful_rate"] if day in by_day else None for day in labels],
                "borderColor": "#1f7a3e",
                "backgroundColor": "#1f7a3e",
                "borderDash": [4, 3],
                "tension": 0.2,
            },
        ],
    }


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    _require(request, VIEW_PERM)
    first = Assistant.objects.order_by("slug").values_list("slug", flat=True).first()
    if first is not None:
        return redirect("training-overview", slug=first)
    return render(request, "training/overview.html", {"assistants": [], "assistant": None})


@require_GET
@login_required
def overview(request: HttpRequest, slug: str) -> HttpResponse:
    _require(request, VIEW_PERM)
    assistants = _assistants_with_badges()
    assistant = next((a for a in assistants if a.slug == slug), None)
    if assistant is None:
        raise Http404(f"No assistant '{slug}'.")
    figures = selectors.overview_figures(assistant=assistant)
    stats, series = figures["stats"], figures["series"]
    since = timezone.now() - dt.timedelta(days=STATS_DAYS)
    deployments = list(
        Deployment.objects.filter(assistant=assistant, created_at__gte=since)
        .select_related("version")
        .order_by("created_at", "id")
    )
    jobs = list(selectors.job_list(assistant=assistant)[:5])
    active = selectors.job_active_get(assistant=assistant)
    # The seed's health block (trainingLoop), without training_loop_health's two extra feedback scans.
    health = TrainingJob.objects.filter(assistant=assistant).aggregate(
        total=Count("id"),
        awaiting=Count("id", filter=Q(status=S.AWAITING_APPROVAL)),
        last_retrained=Max("finished_at", filter=Q(status=S.DEPLOYED)),
    )
    decision = _retrain_decision(assistant, active, figures["retrain_metrics"])
    health["ready"] = assistant.live_version_id is not None and decision["policy"] is not None
    context = {
        "assistants": assistants,
        "assistant": assistant,
        "stats": stats,
        "stats_days": STATS_DAYS,
        "categories": sorted(stats["category_ratings"].items()),
        "trend_chart": _trend_chart(series, deployments),
        "series": series,
        "deployments": deployments,
        "decision": decision,
        "health": health,
        "figures_at": figures["computed_at"],
        "job": active,
        "progress": job_progress_info(active) if active else None,
        "recent_jobs": jobs,
        **_perms(request),
    }
    return render(request, "training/overview.html", context)


def _retrain_decision(
    assistant: Assistant, active: TrainingJob | None, metrics: dict[str, Any]
) -> dict[str, Any]:
    """``training.policy.should_retrain`` without its side effect: a page view must not create a policy."""
    policy = RetrainPolicy.objects.filter(assistant=assistant).first()
    decision = should_retrain_metrics(policy or RetrainPolicy(assistant=assistant), metrics)
    if active is not None:
        decision.should_retrain = False
        decision.blocked_by = f"Job {active.pk} is already {active.get_status_display().lower()}."
    return {**decision.as_dict(), "policy": policy}


@require_POST
@login_required
def train_now(request: HttpRequest, slug: str) -> HttpResponse:
    _require(request, TRIGGER_PERM)
    assistant = get_object_or_404(Assistant, slug=slug)
    try:
        job = services.trigger_training(
            assistant=assistant, trigger=TrainingJob.Trigger.MANUAL, user=request.user,
            reasons=[f"Started from the dashboard by {request.user.get_username()}."],
        )  # fmt: skip
    except services.JobActive as exc:
        messages.error(request, str(exc))
        target = (
            reverse("training-job-detail", args=[exc.job.pk])
            if exc.job
            else reverse("training-overview", args=[slug])
        )
    else:
        messages.success(request, f"Training job {job.pk} started.")
        target = reverse("training-job-detail", args=[job.pk])
    if request.htmx:
        return HttpResponseClientRedirect(target)
    return redirect(target)


# -- jobs -----------------------------------------------------------------------------------------------


def _job_list(*, assistant: str, status: str, trigger: str, slugs: list[str]) -> Any:
    """``selectors.job_list`` plus the page's filters by assistant slug and trigger."""
    qs = selectors.job_list(status=status or None)
    if assistant:
        # Matched against the known slugs first: an unknown one (a NUL byte, say, which PostgreSQL refuses
        # with an error) must show no jobs, not reach the database.
        qs = qs.filter(assistant__slug=assistant) if assistant in slugs else qs.none()
    if trigger:
        qs = qs.filter(trigger=trigger)
    return qs


@require_GET
@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    _require(request, VIEW_PERM)
    q = request.GET
    filters = {
        "assistant": q.get("assistant", ""),
        "status": q.get("status") if q.get("status") in S.values else "",
        "trigger": q.get("trigger") if q.get("trigger") in TrainingJob.Trigger.values else "",
    }
    page = page_number(q.get("page"))
    slugs = list(Assistant.objects.order_by("slug").values_list("slug", flat=True))
    rows = list(_job_list(**filters, slugs=slugs)[(page - 1) * PAGE_SIZE : page * PAGE_SIZE + 1])
    query = q.copy()
    query.pop("page", None)
    context = {
        "jobs": rows[:PAGE_SIZE],
        "has_next": len(rows) > PAGE_SIZE,
        "page": page,
        "base_query": query.urlencode(),
        "filters": filters,
        "assistants": slugs,
        "statuses": S.values,
        "triggers": TrainingJob.Trigger.values,
    }
    # A filter change swaps the results; a full page for links, reloads and htmx history restores.
    if request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request:
        return render(request, "training/job_list.html#results", context)
    return render(request, "training/job_list.html", context)


# -- job detail -----------------------------------------------------------------------------------------


def _scalars(data: dict | None, skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Flatten one level of a JSON report into (name, value) rows for a table."""
    rows: list[tuple[str, Any]] = []
    for key, value in (data or {}).items():
        if key in skip:
            continue
        if isinstance(value, dict):
            rows.extend((f"{key}.{k}", v) for k, v in value.items() if not isinstance(v, dict | list))
        elif not isinstance(value, list):
            rows.append((key, value))
    return rows


def _loss_chart(metrics: dict) -> dict[str, Any] | None:
    """Chart spec for ``metrics["loss_curve"]``: a list of numbers or of {step, train_loss, valid_loss, …}."""
    curve = metrics.get("loss_curve")
    if not isinstance(curve, list) or not curve:
        return None
    colours = ["#2557d6", "#a76200", "#1f7a3e", "#b42318"]
    if all(isinstance(point, int | float) for point in curve):
        return {"type": "line", "labels": list(range(1, len(curve) + 1)), "beginAtZero": False,
                "datasets": [{"label": "loss", "data": curve, "borderColor": colours[0],
                              "pointRadius": 0}]}  # fmt: skip
    points = [p for p in curve if isinstance(p, dict)]
    names = sorted({k for p in points for k, v in p.items() if k != "step" and isinstance(v, int | float)})
    return {
        "type": "line",
        "labels": [p.get("step", i + 1) for i, p in enumerate(points)],
        "beginAtZero": False,
        "datasets": [
            {"label": name, "data": [p.get(name) for p in points], "pointRadius": 0,
             "borderColor": colours[i % len(colours)], "backgroundColor": colours[i % len(colours)]}
            for i, name in enumerate(names)
        ],
    }  # fmt: skip


def _chart_table(chart: dict[str, Any] | None) -> dict[str, Any] | None:
    """A chart's numbers as table rows: the canvas needs JavaScript, the page must read without it."""
    if not chart:
        return None
    datasets = chart["datasets"]
    return {
        "columns": [d["label"] for d in datasets],
        "rows": [
            (label, [d["data"][i] if i < len(d["data"]) else None for d in datasets])
            for i, label in enumerate(chart["labels"])
        ],
    }


_CI_OF = {"accuracy": "accuracy_ci", "mean_quality": "quality_ci"}
_REPORT_KEYS = (
    "candidate", "live", "baseline", "grader", "improvement_ci", "accuracy_difference_ci", "win_rate_ci",
    "notes", "bootstrap", "judge_usage", "calibration", "stopped_reason", "worse_reason",
)  # fmt: skip


def _ci(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, int | float) for v in value[1:]):
        return (value[1], value[2])
    return None


def _evaluation(evaluation: dict) -> dict[str, Any] | None:
    """The evaluation section from ``job.evaluation`` (an EvaluationReport's dict, or an older shape)."""
    if not evaluation:
        return None
    candidate = evaluation.get("candidate") if isinstance(evaluation.get("candidate"), dict) else None
    live = evaluation.get("live") or evaluation.get("baseline")
    live = live if isinstance(live, dict) else None
    calibration = evaluation.get("calibration") if isinstance(evaluation.get("calibration"), dict) else {}
    report = {
        "grader": evaluation.get("grader") if isinstance(evaluation.get("grader"), dict) else None,
        "grader_json": json.dumps(evaluation.get("grader"), indent=2, ensure_ascii=False),
        "win_rate": evaluation.get("win_rate"),
        "win_rate_ci": _ci(evaluation.get("win_rate_ci")),
        "improvement_ci": _ci(evaluation.get("improvement_ci")),
        "difference_ci": _ci(evaluation.get("accuracy_difference_ci")),
        "notes": [n for n in evaluation.get("notes") or [] if isinstance(n, str)],
        "usage": evaluation.get("judge_usage") if isinstance(evaluation.get("judge_usage"), dict) else None,
        "calibration": calibration,
        "calibration_rows": calibration_rows(calibration),
    }
    if candidate is None:
        return {"rows": [], "other": _scalars(evaluation), **report}
    names = [k for k, v in candidate.items() if isinstance(v, int | float | str | None)]
    names += [
        k for k, v in (live or {}).items() if k not in names and isinstance(v, int | float | str | None)
    ]
    rows = []
    for name in names:
        c, lv = candidate.get(name), (live or {}).get(name)
        delta = c - lv if isinstance(c, int | float) and isinstance(lv, int | float) else None
        ci_key = _CI_OF.get(name, "")
        rows.append(
            {
                "name": name,
                "candidate": c,
                "candidate_ci": _ci(candidate.get(ci_key)),
                "live": lv,
                "live_ci": _ci((live or {}).get(ci_key)),
                "delta": delta,
                "delta_ci": report["difference_ci"] if name == "accuracy" else None,
            }
        )
    return {"rows": rows, "other": _scalars(evaluation, skip=_REPORT_KEYS), **report}


EVAL_PROMPTS_PER_PAGE = 50
EVAL_PROMPT_FILTERS = ("all", "differs")


def _evaluation_prompts(request: HttpRequest, job: TrainingJob) -> dict[str, Any]:
    """One page of the per-prompt table (``?prompts=all|differs&prompts_page=N``)."""
    shown = request.GET.get("prompts") or "all"
    if shown not in EVAL_PROMPT_FILTERS:
        raise ValueError(
            f"The prompts filter must be one of {', '.join(EVAL_PROMPT_FILTERS)}, not '{shown}'."
        )
    page = page_number(request.GET.get("prompts_page"))
    offset = (page - 1) * EVAL_PROMPTS_PER_PAGE
    # One query: a row past the page says whether there is a next page, without a COUNT.
    rows = list(
        selectors.evaluation_prompts(job=job, only_differing=shown == "differs")[
            offset : offset + EVAL_PROMPTS_PER_PAGE + 1
        ]
    )
    return {
        "eval_prompts": rows[:EVAL_PROMPTS_PER_PAGE],
        "eval_prompts_filter": shown,
        "eval_prompts_page": page,
        "eval_prompts_next": page + 1 if len(rows) > EVAL_PROMPTS_PER_PAGE else None,
        "eval_prompts_previous": page - 1 if page > 1 else None,
    }


def _job_context(
    request: HttpRequest, job: TrainingJob, *, prompts: dict[str, Any] | None = None
) -> dict[str, Any]:
    metrics = job.metrics or {}
    loss_chart = _loss_chart(metrics)
    return {
        "job": job,
        "progress": job_progress_info(job),
        "events": list(JobEvent.objects.filter(job=job).select_related("user").order_by("created_at", "id")),
        "dataset_stats": _scalars(job.dataset.stats if job.dataset else None),
        # eval_* numbers are the evaluation table's; showing them twice would only invite comparison.
        "metric_rows": [
            (k, v) for k, v in _scalars(metrics, skip=("loss_curve",)) if not k.startswith("eval_")
        ],
        "loss_chart": loss_chart,
        "loss_table": _chart_table(loss_chart),
        "evaluation": _evaluation(job.evaluation or {}),
        **(prompts if prompts is not None else _evaluation_prompts(request, job)),
        "ab": analysis_panel(job.experiment, results=job.ab_test_results),
        "can_decide": job.status == S.AWAITING_APPROVAL,
        "can_cancel": job.status in services.CANCELLABLE,
        **_perms(request),
    }


@require_GET
@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    try:
        prompts = _evaluation_prompts(request, job)
    except ValueError as exc:
        return render(request, "400.html", {"message": str(exc)}, status=400)
    if request.htmx and request.htmx.target == "eval-prompts":
        # The per-prompt table's filter and pages swap only the table.
        return render(request, "training/snippets/eval_prompts.html", {"job": job, **prompts})
    return render(request, "training/job_detail.html", _job_context(request, job, prompts=prompts))


@require_GET
@login_required
def job_progress(request: HttpRequest, job_id: int) -> HttpResponse:
    """The progress bar alone, for htmx polling; polling stops once the job waits on a person or ended."""
    try:
        job = _get_job_for_user(request, job_id)
    except (Http404, PermissionDenied):
        if not request.htmx:
            raise
        # htmx swaps no 4xx answer, so the bar would poll every 2 s for as long as the tab stays open
        # (a job deleted in the admin, a user who lost the view permission): say so and stop polling.
        return HttpResponseStopPolling(
            f'<p class="muted" id="job-progress-{job_id}">Job {job_id} is not available any more.</p>'
        )
    context = {"job": job, "progress": job_progress_info(job)}
    response = render(request, "training/snippets/progress.html", context)
    if job.status in SETTLED and request.htmx:
        stop = HttpResponseStopPolling(response.content)
        # Other parts of the page (decision buttons, timeline) refresh on this event.
        return trigger_client_event(stop, "job-settled")
    return response


def _decision_response(
    request: HttpRequest, job: TrainingJob, *, error: str = "", notice: str = ""
) -> HttpResponse:
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        return redirect("training-job-detail", job_id=job.pk)
    job = get_object_or_404(_job_queryset(), pk=job.pk)
    context = {**_job_context(request, job), "decision_error": error, "decision_notice": notice}
    return render(request, "training/job_detail.html#job-body", context, status=422 if error else 200)


def _act(request: HttpRequest, job: TrainingJob, action, notice: str, **kwargs: Any) -> HttpResponse:
    try:
        action(job=job, user=request.user, **kwargs)
    except (DomainError, ValueError) as exc:  # a refused permission stays Django's 403
        return _decision_response(request, job, error=str(exc))
    return _decision_response(request, job, notice=notice)


@require_POST
@login_required
def job_approve(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id, APPROVE_PERM)
    # The checkbox the page shows when the A/B test reached no significant result.
    confirm = request.POST.get("confirm_no_decision") == "on"
    return _act(request, job, services.job_approve, f"Job {job.pk} approved.", confirm_no_decision=confirm)


@require_POST
@login_required
def job_reject(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id, APPROVE_PERM)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        return _decision_response(request, job, error="Say why you reject this job: the reason is required.")
    return _act(request, job, services.job_reject, f"Job {job.pk} rejected.", reason=reason)


@require_POST
@login_required
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id, TRIGGER_PERM)
    return _act(request, job, services.job_cancel, f"Job {job.pk} cancelled.")


# -- datasets -------------------------------------------------------------------------------------------


@require_GET
@login_required
def dataset_download(request: HttpRequest, dataset_id: int) -> FileResponse:
    """Stream a dataset split to a signed-in user (the API's download needs an API key instead)."""
    _require(request, DATASET_PERM)
    dataset = dataset_ready(get_object_or_404(TrainingDataset, pk=dataset_id))  # erased customers out first
    if dataset.retention_expired_at is not None:
        raise Http404(
            f"The files of dataset {dataset.pk} were deleted on {dataset.retention_expired_at:%Y-%m-%d} "
            "by the retention policy."
        )
    split = request.GET.get("split", "train")
    path = {"train": dataset.train_file, "validation": dataset.validation_file}.get(split)
    if path is None:
        raise Http404("Use split=train or split=validation.")
    if not path or not default_storage.exists(path):
        raise Http404(f"Dataset {dataset.pk} has no {split} file.")
    return FileResponse(
        default_storage.open(path, "rb"),
        as_attachment=True,
        filename=f"dataset-{dataset.pk}-{split}.jsonl",
        content_type="application/jsonl",
    )
