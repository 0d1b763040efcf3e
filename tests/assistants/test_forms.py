"""assistants.forms: choosing an assistant by slug from the ones a page loaded, and the models page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.http import QueryDict

from assistants.forms import ModelsPageForm

pytestmark = pytest.mark.django_db


def test_the_assistant_is_the_loaded_object_without_a_query(
    assistant, other_assistant, django_assert_num_queries
):
    with django_assert_num_queries(0):
        form = ModelsPageForm(
            QueryDict("assistant=bank&at=2024-05-31"), assistants=[assistant, other_assistant]
        )
        assert form.values == {"assistant": other_assistant, "at": dt.date(2024, 5, 31)}
    assert form.values["assistant"] is other_assistant


def test_an_unknown_assistant_or_a_bad_day_is_dropped(assistant):
    form = ModelsPageForm(QueryDict("assistant=nobody&at=31/05/2024"), assistants=[assistant])
    assert form.values == {"assistant": None, "at": None}
    assert form.dropped("assistant") and form.dropped("at")


def test_no_day_is_not_an_error(assistant):
    form = ModelsPageForm(QueryDict("at="), assistants=[assistant])
    assert form.values["at"] is None and not form.dropped("at")
