"""dashboard.forms: page filters read leniently (strict fields answer what to fix), and date bounds."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django import forms
from django.http import QueryDict
from django.utils import timezone

from dashboard.forms import FilterForm, IsoDateField, day_after, day_start, end_of_day


class _Filters(FilterForm):
    strict = ("view",)
    status = forms.ChoiceField(choices=[("open", "open"), ("closed", "closed")])
    rating = forms.IntegerField(min_value=1, max_value=5)
    since = IsoDateField()
    view = forms.ChoiceField(
        choices=[("all", "all"), ("mine", "mine")],
        error_messages={"invalid_choice": "Show all or mine, not '%(value)s'."},
    )


def test_good_values_are_used():
    form = _Filters(QueryDict("status=open&rating=4&since=2024-05-31&view=mine"))
    assert form.values == {"status": "open", "rating": 4, "since": dt.date(2024, 5, 31), "view": "mine"}
    assert form.problem() is None


def test_no_value_is_an_empty_filter():
    assert _Filters(QueryDict("")).values == {"status": "", "rating": None, "since": None, "view": ""}
    assert _Filters(None).values["rating"] is None


def test_a_bad_value_is_dropped_and_the_others_still_apply():
    form = _Filters(QueryDict("status=bogus&rating=9&since=yesterday&view=all"))
    assert form.values == {"status": "", "rating": None, "since": None, "view": "all"}
    assert form.dropped("status") and form.dropped("rating") and form.dropped("since")
    assert not form.dropped("view") and form.problem() is None


def test_a_nul_byte_is_just_a_bad_value():
    form = _Filters(QueryDict("status=open%00&rating=4"))
    assert form.values["status"] == "" and form.dropped("status") and form.values["rating"] == 4


def test_a_bad_strict_value_says_what_to_give():
    form = _Filters(QueryDict("view=theirs"))
    assert form.problem() == "Show all or mine, not 'theirs'."


@pytest.mark.parametrize(
    ("raw", "day"),
    [("2024-02-29", dt.date(2024, 2, 29)), ("0001-01-01", dt.date.min), ("20240105", dt.date(2024, 1, 5))],
)
def test_a_day_is_iso_8601(raw, day):
    assert IsoDateField(required=False).clean(raw) == day


@pytest.mark.parametrize("raw", ["2024-02-30", "31/12/2024", "today", "2024-1-5"])
def test_anything_else_is_not_a_day(raw):
    with pytest.raises(forms.ValidationError, match="Give the date as YYYY-MM-DD."):
        IsoDateField(required=False).clean(raw)


def test_a_day_is_bounded_by_local_midnights():
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    with timezone.override(paris):
        assert day_start(dt.date(2024, 5, 31)) == dt.datetime(2024, 5, 31, tzinfo=paris)
        assert day_after(dt.date(2024, 5, 31)) == dt.datetime(2024, 6, 1, tzinfo=paris)
        assert end_of_day(dt.date(2024, 5, 31)) == dt.datetime(2024, 5, 31, 23, 59, 59, 999999, tzinfo=paris)
    assert day_start(None) is None and day_after(None) is None


def test_the_first_day_east_of_utc_is_no_lower_bound():
    with timezone.override(zoneinfo.ZoneInfo("Asia/Tokyo")):
        assert day_start(dt.date.min) is None  # its midnight is in year 0 in UTC
        assert day_start(dt.date(1, 1, 2)) is not None


def test_the_last_days_are_no_upper_bound():
    assert day_after(dt.date.max) is None and day_after(dt.date.max - dt.timedelta(days=1)) is None
    assert day_after(dt.date.max - dt.timedelta(days=2)) is not None


def test_the_last_day_west_of_utc_ends_at_the_last_moment_a_datetime_holds():
    with timezone.override(zoneinfo.ZoneInfo("America/New_York")):
        assert end_of_day(dt.date.max) == dt.datetime.max.replace(tzinfo=dt.UTC)
