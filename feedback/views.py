"""Feedback explorer: filter feedback with its interaction; reviewers exclude rows or correct answers."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from assistants.selectors import assistant_list, version_names
from dashboard.http import wants_partial
from dashboard.pagination import paginate
from dashboard.permissions import page_permission_required
from feedback.forms import ExplorerFilterForm
from feedback.models import CATEGORY_FIELDS, Feedback
from feedback.selectors import feedback_for_explorer
from feedback.services import feedback_correct, feedback_set_excluded

VIEW_PERM = "feedback.view_feedback"
CURATE_PERM = "feedback.curate_feedback"
# Each row carries question, answer, feedback and curation forms: 25 keep the page fast to render and read.
PAGE_SIZE = 25
MAX_CORRECTION = 20000


@require_GET
@page_permission_required(VIEW_PERM)
def explorer(request: HttpRequest) -> HttpResponse:
    assistants = list(assistant_list())
    form = ExplorerFilterForm(request.GET, assistants=assistants)
    filters = form.values
    page = paginate(
        feedback_for_explorer(**form.selector_kwargs(), join_assistant=False),
        number=filters["page"],
        per_page=PAGE_SIZE,
        query=request.GET,
    )
    # The assistant comes from the list above instead of a join (see feedback_for_explorer).
    by_id = {a.pk: a for a in assistants}
    for row in page.rows:
        row.assistant = by_id[row.assistant_id]
    context = {
        "assistants": assistants,
        "filters": filters,
        "page": page,
        "versions": list(version_names(assistant=filters["assistant"])) if filters["assistant"] else [],
        "kinds": Feedback.Kind.values,
        "categories": CATEGORY_FIELDS,
        "can_curate": request.user.has_perm(CURATE_PERM),
        "return_to": request.get_full_path(),
    }
    if wants_partial(request):
        return render(request, "feedback/explorer.html#results", context)
    return render(request, "feedback/explorer.html", context)


def _feedback_or_404(pk: int) -> Feedback:
    return get_object_or_404(feedback_for_explorer(), pk=pk)


def _after_curation(request: HttpRequest, feedback: Feedback, status: int = 200) -> HttpResponse:
    if request.htmx:
        context = {"f": feedback, "can_curate": True, "return_to": request.POST.get("next", "")}
        return render(request, "feedback/explorer.html#row", context, status=status)
    target = request.POST.get("next", "")
    # Only a path on this site; and redirect() reads anything without a "/" as a URL name to reverse.
    if not target.startswith("/") or not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}
    ):
        target = reverse("feedback-explorer")
    return redirect(target)


@require_POST
@page_permission_required(CURATE_PERM)
def exclude(request: HttpRequest, pk: int) -> HttpResponse:
    feedback = _feedback_or_404(pk)
    excluded = request.POST.get("excluded") == "1"
    feedback_set_excluded(feedback=feedback, excluded=excluded, user=request.user)
    if not request.htmx:
        messages.success(request, f"Feedback {pk} {'excluded from' if excluded else 'included in'} training.")
    return _after_curation(request, feedback)


@require_POST
@page_permission_required(CURATE_PERM)
def correct(request: HttpRequest, pk: int) -> HttpResponse:
    feedback = _feedback_or_404(pk)
    answer = request.POST.get("corrected_answer", "")
    if len(answer) > MAX_CORRECTION:
        feedback.correction_error = (
            f"The corrected answer is too long: keep it under {MAX_CORRECTION} characters."
        )
        if not request.htmx:
            messages.error(request, feedback.correction_error)
        return _after_curation(request, feedback, status=422)
    feedback_correct(feedback=feedback, corrected_answer=answer, user=request.user)
    if not request.htmx:
        messages.success(request, f"Corrected answer saved for feedback {pk}.")
    return _after_curation(request, feedback)
