"""Fixtures for the A/B tests: the shop's live v1 (the control) and a candidate v2 (the variant)."""

from __future__ import annotations

import pytest

from assistants.models import Deployment, ModelVersion
from assistants.services import deployment_make_live, model_version_create


@pytest.fixture
def versions(assistant) -> tuple[ModelVersion, ModelVersion]:
    control = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=control, reason=Deployment.Reason.INITIAL)
    variant = model_version_create(assistant=assistant, name="shop-v2")
    assistant.refresh_from_db()
    return control, variant
