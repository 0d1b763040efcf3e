"""Reads for assistants and the model registry."""

from __future__ import annotations

from assistants import selectors
from assistants.services import model_version_create


def test_a_version_is_found_by_name_within_its_assistant(assistant, other_assistant):
    version = model_version_create(assistant=assistant, name="shop-v1")
    model_version_create(assistant=other_assistant, name="bank-v1")
    assert selectors.version_get(assistant=assistant, name="shop-v1") == version
    assert selectors.version_get(assistant=assistant, name="bank-v1") is None


def test_an_assistants_slug_is_read_by_id(assistant):
    assert selectors.assistant_slug_get(assistant_id=assistant.pk) == "shop"
    assert selectors.assistant_slug_get(assistant_id=assistant.pk + 100) is None
