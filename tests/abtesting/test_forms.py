"""abtesting.forms: the experiments list's filters as experiment_list's arguments."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from abtesting.forms import ExperimentFilterForm

pytestmark = pytest.mark.django_db


def test_the_filters_become_the_selectors_arguments(assistant, other_assistant):
    form = ExperimentFilterForm(
        QueryDict("assistant=shop&status=running"), assistants=[assistant, other_assistant]
    )
    assert form.selector_kwargs() == {"assistant": assistant, "assistant_ids": None, "status": "running"}


@pytest.mark.parametrize("slug", ["nobody", "shop\x00"])
def test_an_unknown_assistant_selects_none(assistant, slug):
    form = ExperimentFilterForm({"assistant": slug}, assistants=[assistant])
    assert form.selector_kwargs() == {"assistant": None, "assistant_ids": [], "status": None}


def test_an_unknown_status_is_no_filter(assistant):
    assert ExperimentFilterForm(QueryDict("status=paused"), assistants=[assistant]).selector_kwargs() == {
        "assistant": None,
        "assistant_ids": None,
        "status": None,
    }
