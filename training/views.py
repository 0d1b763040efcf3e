"""The reviewer dashboard's training pages: overview per assistant, jobs, job detail and its actions, the
training track record.

Over 400 lines because the job page's actions (approve, reject, cancel) and its progress poll share
one answer for htmx and for plain forms; the report rows and progress are ``training.reports``.

Reads go through selectors, writes through ``training.services``; every page runs a constant number of
queries whatever the data size.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling, trigger_client_event

from assistants.exceptions import DomainError
from assistants.models import Assistant
from assistants.selectors import assistant_get, assistant_list
from dashboard.charts import chart_table, loss_chart, version_rates_chart
from dashboard.http import bad_request, refused_status, wants_partial
from dashboard.pagination import paginate
from dashboard.permissions import page_permission_required
from training import selectors, services
from training.forms import ComparisonForm, DatasetSplitForm, EvalPromptsForm, JobFilterForm, TrackRecordForm
from training.models import RetrainPolicy, TrainingJob
from training.pipeline.erasure import dataset_ready
from training.policy import should_retrain_metrics
from training.reports import (
    SETTLED,
    comparison_rows,
    evaluation_report,
    job_progress_info,
    labelled_rows,
    scalar_rows,
)
from training.selectors import track_record as record_selectors

VIEW_PERM = "training.view_trainingjob"
APPROVE_PERM = "training.approve_trainingjob"
TRIGGER_PERM = "training.trigger_trainingjob"
DATASET_PERM = "training.view_trainingdataset"
STATS_DAYS = selectors.OVERVIEW_DAYS
PAGE_SIZE = 50
WEEK_CHOICES = (4, 12, 26, 52)  # the track record's links; ?weeks= takes any count up to two years
S = TrainingJob.Status


# -- access ---------------------------------------------------------------------------------------------


def _job_or_404(job_id: int) -> TrainingJob:
    job = selectors.job_detail_get(job_id=job_id)
    if job is None:
        raise Http404(f"No training job {job_id}.")
    return job


def _perms(request: HttpRequest) -> dict[str, bool]:
    user = request.user
    return {
        "can_approve": user.has_perm(APPROVE_PERM),
        "can_trigger": user.has_perm(TRIGGER_PERM),
        "can_download": user.has_perm(DATASET_PERM),
    }


# -- overview -------------------------------------------------------------------------------------------


@require_GET
@page_permission_required(VIEW_PERM)
def home(request: HttpRequest) -> HttpResponse:
    first = assistant_list().values_list("slug", flat=True).first()
    if first is not None:
        return redirect("training-overview", slug=first)
    return render(request, "training/overview.html", {"assistants": [], "assistant": None})


@require_GET
@page_permission_required(VIEW_PERM)
def overview(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "training/overview.html", _overview_context(request, slug))


def _overview_context(
    request: HttpRequest, slug: str, *, compare_form: ComparisonForm | None = None
) -> dict[str, Any]:
    assistants = selectors.assistants_with_awaiting()
    assistant = next((a for a in assistants if a.slug == slug), None)
    if assistant is None:
        raise Http404(f"No assistant '{slug}'.")
    figures = selectors.overview_figures(assistant=assistant)
    stats = figures["stats"]
    active = selectors.job_active_get(assistant=assistant)
    # The seed's health block (trainingLoop), without training_loop_health's two extra feedback scans.
    health = selectors.job_counts(assistant=assistant)
    decision = _retrain_decision(assistant, active, figures["retrain_metrics"])
    health["ready"] = assistant.live_version_id is not None and decision["policy"] is not None
    # The charts are fetched by the page (training.api_charts); their numbers are shown as tables here.
    context = {
        "assistants": assistants,
        "assistant": assistant,
        "stats": stats,
        "stats_days": STATS_DAYS,
        "categories": sorted(stats["category_ratings"].items()),
        "series": figures["series"],
        "versions": figures["versions"],
        "deployments": selectors.overview_deployments(assistant=assistant),
        "decision": decision,
        "health": health,
        "figures_at": figures["computed_at"],
        "job": active,
        "progress": job_progress_info(active) if active else None,
        "recent_jobs": list(selectors.job_list(assistant=assistant)[:5]),
        "compare_form": compare_form or ComparisonForm(policy=decision["policy"]),
        **_perms(request),
    }
    return context


def _retrain_decision(
    assistant: Assistant, active: TrainingJob | None, metrics: dict[str, Any]
) -> dict[str, Any]:
    """``training.policy.should_retrain`` without its side effect: a page view must not create a policy.

    Adds what the page says: ``blocked_by`` ("job 1 is testing") when conditions are met but a job is
    already running, and ``not_met`` (why not, against each threshold) when no condition is met.
    """
    policy = selectors.policy_get(assistant=assistant)
    effective = policy or RetrainPolicy(assistant=assistant)
    decision = should_retrain_metrics(effective, metrics)
    if active is not None:
        decision.should_retrain = False
        decision.blocked_by = f"job {active.pk} is {active.get_status_display().lower()}"
    not_met = [] if decision.reasons else _retrain_not_met(effective, metrics)
    return {**decision.as_dict(), "policy": policy, "not_met": not_met}


def _retrain_not_met(policy: RetrainPolicy, metrics: dict[str, Any]) -> list[str]:
    """Why no retrain condition holds, one line per threshold the metrics can be compared with."""
    since = "since the deployment" if metrics.get("since") else "so far"
    lines: list[str] = []
    count = metrics.get("feedback_count")
    if count is not None:
        lines.append(f"{count} new feedback {since}, {policy.min_feedback_count} needed")
    enough = policy.min_quality_evidence
    rate = metrics.get("success_rate")
    if rate is not None:
        if (metrics.get("signal_count") or 0) < enough:
            lines.append(
                f"too few signals to judge the success rate ({metrics.get('signal_count') or 0} of {enough})"
            )
        else:
            lines.append(f"success rate {rate:.1%}, retrains below {policy.min_success_rate:.1%}")
    rating = metrics.get("avg_rating")
    if rating is not None and (metrics.get("rated_count") or 0) >= enough:
        lines.append(f"average rating {rating:.1f}, retrains below {policy.min_avg_rating:.1f}")
    errors = metrics.get("error_rate")
    if errors is not None and (metrics.get("total_interactions") or 0) >= enough:
        lines.append(f"error rate {errors:.1%}, retrains above {policy.max_error_rate:.1%}")
    days = metrics.get("days_since_retrain")
    if days is not None:
        lines.append(f"{days} days since the deployment, retrains after {policy.max_days_since_retrain}")
    return lines


@require_POST
@page_permission_required(TRIGGER_PERM)
def train_now(request: HttpRequest, slug: str) -> HttpResponse:
    assistant = assistant_get(slug=slug)
    if assistant is None:
        raise Http404(f"No assistant '{slug}'.")
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


@require_POST
@page_permission_required(TRIGGER_PERM)
def compare(request: HttpRequest, slug: str) -> HttpResponse:
    """ "Train and compare": a comparison of the form's candidates (training.services.comparison)."""
    assistant = assistant_get(slug=slug)
    if assistant is None:
        raise Http404(f"No assistant '{slug}'.")
    form = ComparisonForm(request.POST, policy=selectors.policy_get(assistant=assistant))
    if form.is_valid():
        try:
            job = services.trigger_training(
                assistant=assistant, trigger=TrainingJob.Trigger.MANUAL, user=request.user,
                comparison=form.spec,
                reasons=[f"Comparison started from the dashboard by {request.user.get_username()}."],
            )  # fmt: skip
        except services.JobActive as exc:
            messages.error(request, str(exc))
            where = ("training-job-detail", exc.job.pk) if exc.job else ("training-overview", slug)
            target = reverse(where[0], args=[where[1]])
            return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
        except ValueError as exc:  # e.g. a dataset option the policy refuses
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Comparison job {job.pk} started.")
            target = reverse("training-job-detail", args=[job.pk])
            return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
    # The form again with what to fix, in place (htmx) or on the page.
    if request.htmx:
        context = {"assistant": assistant, "compare_form": form}
        return render(request, "training/snippets/compare_form.html", context, status=422)
    context = _overview_context(request, slug, compare_form=form)
    return render(request, "training/overview.html", context, status=422)


# -- the training track record --------------------------------------------------------------------------


@require_GET
@page_permission_required(VIEW_PERM)
def track_record_all(request: HttpRequest) -> HttpResponse:
    """One row per assistant: jobs by outcome, deployed shares, average lift, median durations."""
    rows = record_selectors.training_report_all()
    for row in rows:
        live = row["assistant"].live_version
        row["live"] = live.name.removeprefix(f"{row['assistant'].slug}-") if live else None
    context = {"rows": rows, "assistants": [row["assistant"] for row in rows], "assistant": None}
    return render(request, "training/track_record.html", context)


@require_GET
@page_permission_required(VIEW_PERM)
def track_record(request: HttpRequest, slug: str) -> HttpResponse:
    """One assistant's record: the seed's report, jobs by week and outcome, each deployed version's lift,
    the versions' success rates on one chart, median durations and why jobs were rejected."""
    assistants = list(assistant_list().order_by("name", "slug"))
    assistant = next((a for a in assistants if a.slug == slug), None)
    if assistant is None:
        raise Http404(f"No assistant '{slug}'.")
    weeks = TrackRecordForm(request.GET).weeks_or_default()
    report = record_selectors.training_report(assistant=assistant, weeks=weeks)
    series = report["success_rate"]
    chart = version_rates_chart(series, prefix=f"{assistant.slug}-")  # the JSON view draws the same
    marked = {m["label"]: m["text"] for m in chart.options["markers"]}
    context = {
        "assistants": assistants,
        "assistant": assistant,
        "report": report,
        "chart": chart,
        # The chart's numbers beside it: per week, each version's rate with the feedback behind it, and
        # the deployments of that week.
        "chart_rows": [
            (week, [(d["data"][i], d["feedback"][i]) for d in series["datasets"]], marked.get(week, ""))
            for i, week in enumerate(series["labels"])
        ],
        "week_choices": WEEK_CHOICES,
    }
    return render(request, "training/track_record.html", context)


# -- jobs -----------------------------------------------------------------------------------------------


@require_GET
@page_permission_required(VIEW_PERM)
def job_list(request: HttpRequest) -> HttpResponse:
    assistants = list(assistant_list())
    form = JobFilterForm(request.GET, assistants=assistants)
    page = paginate(
        selectors.job_list(**form.selector_kwargs()),
        number=form.values["page"],
        per_page=PAGE_SIZE,
        query=request.GET,
    )
    context = {
        "page": page,
        "filters": form.values,
        "assistants": assistants,
        "statuses": S.values,
        "triggers": TrainingJob.Trigger.values,
    }
    if wants_partial(request):
        return render(request, "training/job_list.html#results", context)
    return render(request, "training/job_list.html", context)


# -- job detail -----------------------------------------------------------------------------------------


EVAL_PROMPTS_PER_PAGE = 50


def _evaluation_prompts(job: TrainingJob, form: EvalPromptsForm) -> dict[str, Any]:
    """One page of the per-prompt table (``?prompts=all|differs&prompts_page=N``)."""
    shown = form.values["prompts"]
    page = paginate(
        selectors.evaluation_prompts(job=job, only_differing=shown == "differs"),
        number=form.values["prompts_page"],
        per_page=EVAL_PROMPTS_PER_PAGE,
    )
    return {
        "eval_prompts": page.rows,
        "eval_prompts_filter": shown,
        "eval_prompts_page": page.number,
        "eval_prompts_next": page.next_number,
        "eval_prompts_previous": page.previous_number,
    }


def _job_context(
    request: HttpRequest, job: TrainingJob, *, prompts: dict[str, Any] | None = None
) -> dict[str, Any]:
    metrics = job.metrics or {}
    if prompts is None:
        # A decision re-renders the job's body: the per-prompt table starts over at its first page.
        prompts = _evaluation_prompts(job, EvalPromptsForm())
    return {
        "job": job,
        "progress": job_progress_info(job),
        "events": list(selectors.job_events(job=job)),
        "dataset_stats": labelled_rows(scalar_rows(job.dataset.stats if job.dataset else None)),
        # eval_* numbers are the evaluation table's; showing them twice would only invite comparison.
        "metric_rows": labelled_rows(
            [(k, v) for k, v in scalar_rows(metrics, skip=("loss_curve",)) if not k.startswith("eval_")]
        ),
        # The loss chart's numbers; the chart itself is fetched by the page (training.api_charts).
        "loss_table": chart_table(loss_chart(metrics.get("loss_curve"))),
        "evaluation": evaluation_report(job.evaluation or {}),
        "comparison": comparison_rows(job, selectors.job_candidates(job=job)),
        **prompts,
        "can_decide": job.status == S.AWAITING_APPROVAL,
        "can_cancel": job.status in services.CANCELLABLE,
        **_perms(request),
    }


@require_GET
@page_permission_required(VIEW_PERM)
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _job_or_404(job_id)
    form = EvalPromptsForm(request.GET)
    if (problem := form.problem()) is not None:
        return bad_request(request, problem)
    prompts = _evaluation_prompts(job, form)
    if request.htmx and request.htmx.target == "eval-prompts":
        # The per-prompt table's filter and pages swap only the table.
        return render(request, "training/snippets/eval_prompts.html", {"job": job, **prompts})
    return render(request, "training/job_detail.html", _job_context(request, job, prompts=prompts))


@require_GET
@login_required
def job_progress(request: HttpRequest, job_id: int) -> HttpResponse:
    """The progress bar alone, for htmx polling; polling stops once the job waits on a person or ended.

    Its access is checked here rather than by ``page_permission_required``: a refused poll must stop.
    """
    allowed = request.user.has_perm(VIEW_PERM)
    job = selectors.job_detail_get(job_id=job_id) if allowed else None
    if job is None:
        if request.htmx:
            # htmx swaps no 4xx answer, so the bar would poll every 2 s for as long as the tab stays open
            # (a job deleted in the admin, a user who lost the view permission): say so and stop polling.
            return HttpResponseStopPolling(
                f'<p class="muted" id="job-progress-{job_id}">Job {job_id} is not available any more.</p>'
            )
        if not allowed:
            raise PermissionDenied
        raise Http404(f"No training job {job_id}.")
    context = {"job": job, "progress": job_progress_info(job)}
    response = render(request, "training/snippets/progress.html", context)
    if job.status in SETTLED and request.htmx:
        stop = HttpResponseStopPolling(response.content)
        # Other parts of the page (decision buttons, timeline) refresh on this event.
        return trigger_client_event(stop, "job-settled")
    return response


def _decision_response(
    request: HttpRequest, job: TrainingJob, *, error: str = "", notice: str = "", status: int = 422
) -> HttpResponse:
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        return redirect("training-job-detail", job_id=job.pk)
    job = _job_or_404(job.pk)
    context = {**_job_context(request, job), "decision_error": error, "decision_notice": notice}
    return render(request, "training/job_detail.html#job-body", context, status=status if error else 200)


def _act(request: HttpRequest, job: TrainingJob, action, notice: str, **kwargs: Any) -> HttpResponse:
    try:
        action(job=job, user=request.user, **kwargs)
    except (DomainError, ValueError) as exc:  # a refused permission stays Django's 403
        return _decision_response(request, job, error=str(exc), status=refused_status(exc))
    return _decision_response(request, job, notice=notice)


@require_POST
@page_permission_required(VIEW_PERM, APPROVE_PERM)
def job_approve(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _job_or_404(job_id)
    # The checkbox the page shows when the A/B test reached no significant result.
    confirm = request.POST.get("confirm_no_decision") == "on"
    return _act(request, job, services.job_approve, f"Job {job.pk} approved.", confirm_no_decision=confirm)


@require_POST
@page_permission_required(VIEW_PERM, APPROVE_PERM)
def job_reject(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _job_or_404(job_id)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        return _decision_response(request, job, error="Say why you reject this job: the reason is required.")
    return _act(request, job, services.job_reject, f"Job {job.pk} rejected.", reason=reason)


@require_POST
@page_permission_required(VIEW_PERM, TRIGGER_PERM)
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _job_or_404(job_id)
    return _act(request, job, services.job_cancel, f"Job {job.pk} cancelled.")


# -- datasets -------------------------------------------------------------------------------------------


@require_GET
@page_permission_required(DATASET_PERM)
def dataset_download(request: HttpRequest, dataset_id: int) -> FileResponse:
    """Stream a dataset split to a signed-in user (the API's download needs an API key instead)."""
    dataset = selectors.dataset_get(dataset_id=dataset_id)
    if dataset is None:
        raise Http404(f"No dataset {dataset_id}.")
    dataset = dataset_ready(dataset)  # erased customers out first
    if dataset.retention_expired_at is not None:
        raise Http404(
            f"The files of dataset {dataset.pk} were deleted on {dataset.retention_expired_at:%Y-%m-%d} "
            "by the retention policy."
        )
    form = DatasetSplitForm(request.GET)
    if form.dropped("split"):
        raise Http404("Use split=train or split=validation.")
    split = form.values["split"]
    path = dataset.train_file if split == "train" else dataset.validation_file
    if not path or not default_storage.exists(path):
        raise Http404(f"Dataset {dataset.pk} has no {split} file.")
    return FileResponse(
        default_storage.open(path, "rb"),
        as_attachment=True,
        filename=f"dataset-{dataset.pk}-{split}.jsonl",
        content_type="application/jsonl",
    )
