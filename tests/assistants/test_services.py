from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from assistants.models import Deployment, ModelVersion
from assistants.selectors import live_version_at
from assistants.services import (
    RollbackError,
    deployment_make_live,
    deployment_rollback,
    model_version_create,
    next_version_name,
)


def test_making_a_version_live_retires_the_old_one(assistant, alice):
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    v2 = model_version_create(assistant=assistant, name="shop-v2", base_version=v1)
    deployment_make_live(version=v1, reason="initial")
    row = deployment_make_live(version=v2, reason="approval", user=alice, note="better")
    assistant.refresh_from_db()
    v1.refresh_from_db()
    assert assistant.live_version == v2
    assert (v1.status, ModelVersion.objects.get(pk=v2.pk).status) == ("retired", "live")
    assert (row.previous_version, row.user, row.reason) == (v1, alice, "approval")


def test_rollback_returns_to_the_previous_version(assistant, alice):
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    v2 = model_version_create(assistant=assistant, name="shop-v2")
    deployment_make_live(version=v1, reason="initial")
    deployment_make_live(version=v2, reason="approval")
    row = deployment_rollback(assistant=assistant, user=alice)
    assistant.refresh_from_db()
    assert assistant.live_version == v1
    assert row.reason == Deployment.Reason.ROLLBACK and row.user == alice


def test_rollback_without_history_says_why(assistant):
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=v1, reason="initial")
    with pytest.raises(RollbackError, match="no earlier version"):
        deployment_rollback(assistant=assistant)


def test_what_was_live_on_a_date(assistant):
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    v2 = model_version_create(assistant=assistant, name="shop-v2")
    d1 = deployment_make_live(version=v1, reason="initial")
    d2 = deployment_make_live(version=v2, reason="approval")
    now = timezone.now()
    Deployment.objects.filter(pk=d1.pk).update(created_at=now - timedelta(days=10))
    Deployment.objects.filter(pk=d2.pk).update(created_at=now - timedelta(days=2))
    assert live_version_at(assistant=assistant, when=now - timedelta(days=5)) == v1
    assert live_version_at(assistant=assistant, when=now) == v2
    assert live_version_at(assistant=assistant, when=now - timedelta(days=20)) is None


def test_version_names_count_up(assistant):
    assert next_version_name(assistant) == "shop-v1"
    model_version_create(assistant=assistant, name="shop-v1")
    assert next_version_name(assistant) == "shop-v2"
