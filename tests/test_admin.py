"""Every model the product owns is in Django admin, with a changelist that lists, filters and searches."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import User

from assistants.models import ApiKey, Deployment
from assistants.services import api_key_create, deployment_make_live, model_version_create
from feedback.services import feedback_set_excluded, feedback_submit, interaction_log
from training import services

OUR_APPS = {"assistants", "feedback", "abtesting", "training", "notifications"}


def our_model_admins():
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in OUR_APPS
    ]


def test_every_top_level_model_is_registered():
    registered = {model._meta.label for model, _ in our_model_admins()}
    assert {
        "assistants.Assistant", "assistants.ModelVersion", "assistants.Deployment", "assistants.ApiKey",
        "feedback.Interaction", "feedback.Feedback", "feedback.CurationLog",
        "abtesting.Experiment", "training.RetrainPolicy", "training.TrainingJob", "training.TrainingDataset",
    } <= registered  # fmt: skip


def _result_rows(page: str) -> int:
    """Rows of the changelist's result table (the navigation sidebar has tables of its own)."""
    if 'id="result_list"' not in page:
        return 0
    table = page.split('id="result_list"', 1)[1].split("</table>", 1)[0]
    return table.split("<tbody>", 1)[1].count("<tr")


@pytest.fixture
def world(assistant):
    """A row in the models an assistant's first days fill: versions, a deployment, feedback, a key."""
    live = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=live, reason=Deployment.Reason.INITIAL)
    logged = interaction_log(
        assistant=assistant,
        request_id="r1",
        messages=[{"role": "user", "content": "Where is my order?"}],
        response="Open Orders.",
    )
    feedback = feedback_submit(interaction=logged.interaction, data={"rating": 5}).feedback
    feedback_set_excluded(feedback=feedback, excluded=True)
    api_key_create(scope=ApiKey.Scope.READ, name="reporting")
    services.policy_ensure(assistant=assistant)


@pytest.mark.parametrize("label", sorted(m._meta.label for m, _ in our_model_admins()))
def test_the_changelist_renders_with_search(client, world, label):
    model = next(m for m, _ in our_model_admins() if m._meta.label == label)
    model_admin = admin.site._registry[model]
    opts = model._meta
    client.force_login(User.objects.create_superuser("root", password="x"))
    url = f"/admin/{opts.app_label}/{opts.model_name}/"

    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    # Audit rows and rows that change only through services are offered to view, not to change.
    verb = "change" if model_admin.has_change_permission(response.wsgi_request) else "view"
    assert f"<h1>Select {opts.verbose_name} to {verb}</h1>" in body
    count = model._default_manager.count()
    assert f"{count} {opts.verbose_name if count == 1 else opts.verbose_name_plural}" in body
    assert _result_rows(body) == count
    assert model_admin.list_filter, f"{label} has no list filters"

    if model_admin.search_fields:
        searched = client.get(url, {"q": "no-such-thing"})
        assert searched.status_code == 200
        text = searched.content.decode()
        assert 'value="no-such-thing" id="searchbar"' in text
        assert f"0 {opts.verbose_name_plural}" in text and _result_rows(text) == 0


def test_the_rows_show_what_they_are(client, world, assistant):
    client.force_login(User.objects.create_superuser("root", password="x"))
    assistants = client.get("/admin/assistants/assistant/").content.decode()
    assert ">shop</a>" in assistants and "Shop support" in assistants and "shop-v1" in assistants
    feedback = client.get("/admin/feedback/feedback/").content.decode()
    assert "Exclude selected feedback from training" in feedback
    policies = client.get("/admin/training/retrainpolicy/").content.decode()
    assert ">shop</a>" in policies
