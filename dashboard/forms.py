"""Page filters read from the query string with a Django Form, and the dates they bound.

Filters arrive from links, bookmarks and hand-edited URLs. A value that does not validate is dropped:
the page lists as if that filter were not given and shows it empty, never an error page or a 500 (a
stale bookmark still opens). Fields named in ``strict`` are the exception: a bad value there is the
user's to fix, and ``problem()`` says how (the page answers 400 with it).
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import QueryDict
from django.utils import timezone


class FilterForm(forms.Form):
    """A page's filter set; ``values`` holds every field's usable value (its empty value if dropped)."""

    strict: tuple[str, ...] = ()

    def __init__(self, data: QueryDict | dict | None = None, **kwargs: Any) -> None:
        super().__init__(data if data is not None else {}, **kwargs)
        for field in self.fields.values():
            field.required = False

    @cached_property
    def values(self) -> dict[str, Any]:
        self.is_valid()
        return {
            name: self.cleaned_data[name] if name in self.cleaned_data else field.clean(None)
            for name, field in self.fields.items()
        }

    def dropped(self, name: str) -> bool:
        """Whether ``name`` was given a value the page cannot use."""
        return name in self.errors

    def problem(self) -> str | None:
        """What is wrong with a strict field's value, in words for the user; None when nothing is."""
        for name in self.strict:
            if self.dropped(name):
                return self.errors[name][0]
        return None


class IsoDateField(forms.Field):
    """A day as ISO 8601 (``2024-05-31``, what ``<input type="date">`` sends)."""

    default_error_messages = {"invalid": "Give the date as YYYY-MM-DD."}

    def to_python(self, value: Any) -> dt.date | None:
        if value in self.empty_values:
            return None
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


def _fits_in_utc(moment: dt.datetime) -> bool:
    # The database stores UTC: a local moment within hours of datetime's limits may not convert.
    try:
        moment.astimezone(dt.UTC)
    except OverflowError:
        return False
    return True


def day_start(day: dt.date | None) -> dt.datetime | None:
    """The inclusive lower bound for "since ``day``"; none when it predates what a datetime can hold.

    In a time zone east of UTC, midnight of 0001-01-01 is in year 0 in UTC: a bound that excludes
    nothing anyway.
    """
    if day is None:
        return None
    start = timezone.make_aware(dt.datetime.combine(day, dt.time.min))
    return start if _fits_in_utc(start) else None


def day_after(day: dt.date | None) -> dt.datetime | None:
    """The exclusive upper bound for "until ``day``"; the last representable day means no bound."""
    if day is None or day >= dt.date.max - dt.timedelta(days=1):
        return None
    return timezone.make_aware(dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min))


def end_of_day(day: dt.date) -> dt.datetime:
    """The last moment of ``day``, local time (for "as of that day").

    9999-12-31 in a time zone west of UTC ends after the last moment a datetime can hold in UTC; nothing
    can happen later than that moment, so it stands in.
    """
    end = timezone.make_aware(dt.datetime.combine(day, dt.time.max))
    return end if _fits_in_utc(end) else dt.datetime.max.replace(tzinfo=dt.UTC)
