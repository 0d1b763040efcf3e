"""assistants.selectors: the reads the pages add (an assistant by slug, a version filter, deployments)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from assistants import selectors
from assistants.models import Deployment
from assistants.selectors import assistant_get, deployments_since, version_names
from assistants.services import deployment_make_live, model_version_create

pytestmark = pytest.mark.django_db


def test_an_assistant_by_slug_with_its_live_version(assistant, django_assert_num_queries):
    deployment_make_live(version=model_version_create(assistant=assistant, name="shop-v1"), reason="initial")
    with django_assert_num_queries(1):
        found = assistant_get(slug="shop")
        assert found == assistant and found.live_version.name == "shop-v1"
    assert assistant_get(slug="nobody") is None


def test_a_version_filter_lists_the_assistants_versions_only(assistant, other_assistant):
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    model_version_create(assistant=other_assistant, name="bank-v1")
    assert [(v.pk, v.name) for v in version_names(assistant=assistant)] == [(v1.pk, "shop-v1")]


def test_deployments_since_a_moment_oldest_first(assistant):
    first = model_version_create(assistant=assistant, name="shop-v1")
    second = model_version_create(assistant=assistant, name="shop-v2")
    deployment_make_live(version=first, reason=Deployment.Reason.INITIAL)
    Deployment.objects.update(created_at=timezone.now() - dt.timedelta(days=40))
    deployment_make_live(version=second, reason=Deployment.Reason.MANUAL)
    since = timezone.now() - dt.timedelta(days=30)
    assert [d.version.name for d in deployments_since(assistant=assistant, since=since)] == ["shop-v2"]
    old = timezone.now() - dt.timedelta(days=50)
    assert [d.version.name for d in deployments_since(assistant=assistant, since=old)] == [
        "shop-v1",
        "shop-v2",
    ]


def test_a_version_is_found_by_name_within_its_assistant(assistant, other_assistant):
    version = model_version_create(assistant=assistant, name="shop-v1")
    model_version_create(assistant=other_assistant, name="bank-v1")
    assert selectors.version_get(assistant=assistant, name="shop-v1") == version
    assert selectors.version_get(assistant=assistant, name="bank-v1") is None


def test_an_assistants_slug_is_read_by_id(assistant):
    assert selectors.assistant_slug_get(assistant_id=assistant.pk) == "shop"
    assert selectors.assistant_slug_get(assistant_id=assistant.pk + 100) is None
