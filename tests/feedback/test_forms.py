"""feedback.forms: the explorer's query string as feedback_for_explorer's filters."""

from __future__ import annotations

import datetime as dt

import pytest
from django.http import QueryDict
from django.utils import timezone

from feedback.forms import MAX_ID, ExplorerFilterForm

pytestmark = pytest.mark.django_db


def _kwargs(query: str, assistants) -> dict:
    return ExplorerFilterForm(QueryDict(query), assistants=assistants).selector_kwargs()


def test_every_filter_reaches_the_selector(assistant):
    kwargs = _kwargs(
        "assistant=shop&since=2024-05-01&until=2024-05-31&rating=2&helpful=no&kind=rating"
        "&category=tone&category_max=3&model_version=7",
        [assistant],
    )
    assert kwargs == {
        "assistant": assistant,
        "since": timezone.make_aware(dt.datetime(2024, 5, 1)),
        "until": timezone.make_aware(dt.datetime(2024, 6, 1)),  # the whole last day
        "rating": 2,
        "helpful": False,
        "kind": "rating",
        "model_version_id": 7,
        "category": "tone",
        "category_max": 3,
    }


def test_no_filter_is_everything(assistant):
    assert set(_kwargs("", [assistant]).values()) == {None}


@pytest.mark.parametrize(
    "query",
    ["assistant=nobody", "rating=6", "rating=x", "helpful=maybe", "kind=poem", "category=price",
     "category_max=0", f"model_version={MAX_ID + 1}", "since=yesterday"],
)  # fmt: skip
def test_a_bad_value_is_no_filter(assistant, query):
    assert set(_kwargs(query, [assistant]).values()) == {None}


def test_helpful_yes_is_true(assistant):
    assert _kwargs("helpful=yes", [assistant])["helpful"] is True
