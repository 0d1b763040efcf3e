"""Feedback explorer: filter feedback with its interaction; reviewers exclude rows or correct answers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from assistants.models import ModelVersion
from assistants.selectors import assistant_list
from feedback.models import CATEGORY_FIELDS, Feedback
from feedback.selectors import feedback_for_explorer
from feedback.services import feedback_correct, feedback_set_excluded

VIEW_PERM = "feedback.view_feedback"
CURATE_PERM = "feedback.curate_feedback"
# Each row carries question, answer, feedback and curation forms: 25 keep the page fast to render and read.
PAGE_SIZE = 25
MAX_CORRECTION = 20000
# Bounds that keep filters inside what the database can compare: larger ids overflow a bigint and a
# deep page's OFFSET overflows too; nobody pages through 100,000 pages of 25 rows.
MAX_ID = 2**63 - 1
MAX_PAGE = 100_000


def _require(request: HttpRequest, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied("Your account may not do this. Ask an admin to add you to the reviewer group.")


def _day(raw: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _int(raw: str | None, low: int | None = None, high: int | None = None) -> int | None:
    try:
        value = int(raw) if raw not in (None, "") else None
    except ValueError:
        return None
    if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
        return None
    return value


def _midnight(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _day_start(day: dt.date | None) -> dt.datetime | None:
    """The inclusive lower bound for "since ``day``"; none when it predates what a datetime can hold.

    In a time zone east of UTC, midnight of 0001-01-01 is in year 0 once the database converts it to UTC:
    an OverflowError (a 500) for a bound that excludes nothing anyway.
    """
    if day is None:
        return None
    start = _midnight(day)
    try:
        start.astimezone(dt.UTC)
    except OverflowError:
        return None
    return start


def _filters(request: HttpRequest, assistants: list) -> dict[str, Any]:
    """Parse the query string leniently: a malformed filter is ignored (and shown empty), never a 500."""
    q = request.GET
    since, until = _day(q.get("since")), _day(q.get("until"))
    helpful = {"yes": True, "no": False}.get(q.get("helpful", ""))
    return {
        "assistant": next((a for a in assistants if a.slug == q.get("assistant")), None),
        "since": since,
        "until": until,
        "rating": _int(q.get("rating"), 1, 5),
        "helpful": helpful,
        "helpful_raw": q.get("helpful", "") if helpful is not None else "",
        "kind": q.get("kind") if q.get("kind") in Feedback.Kind.values else "",
        "category": q.get("category") if q.get("category") in CATEGORY_FIELDS else "",
        "category_max": _int(q.get("category_max"), 1, 5),
        "model_version": _int(q.get("model_version"), 1, MAX_ID),
    }


def _day_after(day: dt.date | None) -> dt.datetime | None:
    """The exclusive upper bound for "until ``day``"; the last representable day means no bound."""
    if day is None or day >= dt.date.max - dt.timedelta(days=1):
        return None
    return _midnight(day + dt.timedelta(days=1))


def page_number(raw: str | None) -> int:
    """A list page's ``?page=``: 1 unless it is a whole number in 1..MAX_PAGE (the dashboard's lists use
    this too: a larger one overflows the database's OFFSET, a 500)."""
    return _int(raw, 1, MAX_PAGE) or 1


@require_GET
@login_required
def explorer(request: HttpRequest) -> HttpResponse:
    _require(request, VIEW_PERM)
    assistants = list(assistant_list())
    f = _filters(request, assistants)
    qs = feedback_for_explorer(
        assistant=f["assistant"],
        since=_day_start(f["since"]),
        until=_day_after(f["until"]),
        rating=f["rating"],
        helpful=f["helpful"],
        kind=f["kind"] or None,
        model_version_id=f["model_version"],
        category=f["category"] or None,
        category_max=f["category_max"],
    )
    # The assistant comes from the list above instead of a join: joined, SQLite's planner scans assistants
    # first, then sorts all of the assistant's feedback instead of walking the (assistant, created_at) index.
    qs = qs.select_related(None).select_related("interaction", "interaction__model_version")
    page = page_number(request.GET.get("page"))
    # No COUNT(*): at a million rows it costs more than the page itself; one extra row says "there is more".
    rows = list(qs[(page - 1) * PAGE_SIZE : page * PAGE_SIZE + 1])
    by_id = {a.pk: a for a in assistants}
    for row in rows:
        row.assistant = by_id[row.assistant_id]
    has_next = len(rows) > PAGE_SIZE
    versions = (
        ModelVersion.objects.filter(assistant=f["assistant"]).only("id", "name") if f["assistant"] else []
    )
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "assistants": assistants,
        "filters": f,
        "rows": rows[:PAGE_SIZE],
        "page": page,
        "has_next": has_next,
        "base_query": query.urlencode(),
        "versions": list(versions),
        "kinds": Feedback.Kind.values,
        "categories": CATEGORY_FIELDS,
        "can_curate": request.user.has_perm(CURATE_PERM),
        "return_to": request.get_full_path(),
    }
    # A filter change swaps the results; a full page for links, reloads and htmx history restores.
    if request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request:
        return render(request, "feedback/explorer.html#results", context)
    return render(request, "feedback/explorer.html", context)


def _get_feedback_for_curator(request: HttpRequest, pk: int) -> Feedback:
    _require(request, CURATE_PERM)
    return get_object_or_404(feedback_for_explorer(), pk=pk)


def _after_curation(request: HttpRequest, feedback: Feedback, status: int = 200) -> HttpResponse:
    if request.htmx:
        context = {"f": feedback, "can_curate": True, "return_to": request.POST.get("next", "")}
        return render(request, "feedback/explorer.html#row", context, status=status)
    target = request.POST.get("next", "")
    # Only a path on this site: redirect() reads anything without a "/" as a URL name to reverse, so
    # next=x was a NoReverseMatch (a 500) instead of the way back to the explorer.
    if not target.startswith("/") or not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}
    ):
        target = reverse("feedback-explorer")
    return redirect(target)


@require_POST
@login_required
def exclude(request: HttpRequest, pk: int) -> HttpResponse:
    feedback = _get_feedback_for_curator(request, pk)
    excluded = request.POST.get("excluded") == "1"
    feedback_set_excluded(feedback=feedback, excluded=excluded, user=request.user)
    if not request.htmx:
        messages.success(request, f"Feedback {pk} {'excluded from' if excluded else 'included in'} training.")
    return _after_curation(request, feedback)


@require_POST
@login_required
def correct(request: HttpRequest, pk: int) -> HttpResponse:
    feedback = _get_feedback_for_curator(request, pk)
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
