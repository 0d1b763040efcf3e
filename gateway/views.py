"""The feedback widget's demo page: ask the demo assistant through the gateway, rate the answer with the
widget, as a customer on a shop's site would.

Only for signed-in dashboard users and only with the demo assistant: each question is a real interaction
(it lands in the demo's figures and A/B tests), so it must not be open to the world, nor touch an
assistant with real customers. The widget on the page authenticates with a publishable key derived from
SECRET_KEY (``api_key_publishable_derived``): the page can show it on every visit, and like any
publishable key it only sends feedback that carries the interaction's feedback token.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from assistants.models import Assistant
from assistants.services import api_key_publishable_derived
from feedback.models import Interaction
from feedback.tokens import feedback_token
from gateway.services import GatewayError, chat_completion_create, new_request_id
from training.demo import DEMO_SLUG
from training.demo_data import topic_questions

VIEW_PERM = "feedback.view_feedback"
# Interactions asked from this page; only these are shown on it, with their feedback token.
REQUEST_PREFIX = "widget-demo-"
MAX_QUESTION = 1000
# The widget's options on the page: every kind of rating it can ask for.
CATEGORIES = "accuracy,helpfulness,tone"


def _require(request: HttpRequest) -> None:
    if not request.user.has_perm(VIEW_PERM):
        raise PermissionDenied("Your account may not do this. Ask an admin to add you to the viewer group.")


def _demo_interaction(assistant: Assistant | None, raw: str | None) -> Interaction | None:
    if assistant is None or not raw or not raw.isdigit() or len(raw) > 18:
        return None
    return (
        Interaction.objects.select_related("model_version")
        .filter(assistant=assistant, pk=int(raw), request_id__startswith=REQUEST_PREFIX)
        .first()
    )


@require_http_methods(["GET", "POST"])
@login_required
def widget_demo(request: HttpRequest) -> HttpResponse:
    _require(request)
    assistant = Assistant.objects.filter(slug=DEMO_SLUG).first()
    here = reverse("gateway-widget-demo")
    if request.method == "POST":
        question = request.POST.get("question", "").strip()
        if assistant is None:
            messages.error(request, "There is no demo assistant on this database to ask.")
            return redirect(here)
        if not question or len(question) > MAX_QUESTION:  # (a NUL is refused by the middleware)
            messages.error(request, f"Write a question of 1 to {MAX_QUESTION} characters.")
            return redirect(here)
        try:
            completion = chat_completion_create(
                assistant=assistant,
                messages=[{"role": "user", "content": question}],
                user_ref=f"widget-demo:{request.user.pk}",
                request_id=REQUEST_PREFIX + new_request_id(),
            )
        except GatewayError as exc:
            messages.error(request, exc.message)
            return redirect(here)
        return redirect(f"{here}?interaction={completion.interaction.pk}")

    interaction = _demo_interaction(assistant, request.GET.get("interaction"))
    context = {
        "assistant": assistant,
        "interaction": interaction,
        "questions": [pairs[0][0] for pairs in topic_questions().values()],
        "categories": CATEGORIES,
    }
    if interaction is not None:
        endpoint = request.build_absolute_uri("/").rstrip("/")
        key_row, key = api_key_publishable_derived(
            purpose="widget-demo",
            assistant=assistant,
            allowed_origins=[settings.SITE_URL],
            name="Feedback widget demo page",
        )
        context.update(
            endpoint=endpoint,
            key=key if key_row.is_active else None,
            key_row=key_row,
            token=feedback_token(interaction.pk),
        )
    return render(request, "gateway/widget_demo.html", context)
