"""The dashboard template filters ({% load dashboard %}): a missing number or duration shows "–", never 0."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from django.template import Context, Template


def _render(expression: str, value) -> str:
    return Template("{% load dashboard %}" + expression).render(Context({"value": value}))


@pytest.mark.parametrize(
    ("expression", "value", "shown"),
    [
        ("{{ value|pct }}", 0.1234, "12.3%"),
        ("{{ value|pct:0 }}", 0.5, "50%"),
        ("{{ value|pct }}", None, "–"),
        ("{{ value|pct }}", math.nan, "–"),
        ("{{ value|signed_pct }}", 0.05, "+5.0%"),
        ("{{ value|signed_pct }}", -0.125, "-12.5%"),
        ("{{ value|signed_pct }}", "", "–"),
        ("{{ value|num }}", 3, "3"),
        ("{{ value|num }}", 2.5, "2.50"),
        ("{{ value|num:1 }}", "4.26", "4.3"),
        ("{{ value|num }}", True, "yes"),
        ("{{ value|num }}", "local", "local"),
        ("{{ value|num }}", None, "–"),
        ("{{ value|pvalue }}", 0.00001, "&lt; 0.0001"),
        ("{{ value|pvalue }}", 0.04767, "0.0477"),
        ("{{ value|pvalue }}", None, "–"),
        ("{{ value|duration }}", dt.timedelta(seconds=40.4), "40 s"),
        ("{{ value|duration }}", dt.timedelta(minutes=12, seconds=20), "12 min"),
        ("{{ value|duration }}", dt.timedelta(hours=5), "5 h"),
        ("{{ value|duration }}", dt.timedelta(hours=5, minutes=20), "5 h 20 min"),
        ("{{ value|duration }}", dt.timedelta(days=3, hours=4, minutes=59), "3 d 4 h"),
        ("{{ value|duration }}", dt.timedelta(days=2), "2 d"),
        ("{{ value|duration }}", None, "–"),
    ],
)
def test_numbers_show_as_people_read_them(expression, value, shown):
    assert _render(expression, value) == shown
