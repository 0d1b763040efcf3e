"""Every model the product owns is in Django admin, with a changelist that lists, filters and searches."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import User

OUR_APPS = {"assistants", "feedback", "abtesting", "training"}


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


@pytest.mark.parametrize("label", sorted(m._meta.label for m, _ in our_model_admins()))
def test_the_changelist_renders_with_search(client, db, assistant, label):
    model = next(m for m, _ in our_model_admins() if m._meta.label == label)
    model_admin = admin.site._registry[model]
    client.force_login(User.objects.create_superuser("root", password="x"))
    url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    assert client.get(url).status_code == 200
    if model_admin.search_fields:
        assert client.get(url, {"q": "anything"}).status_code == 200
    assert model_admin.list_filter, f"{label} has no list filters"
