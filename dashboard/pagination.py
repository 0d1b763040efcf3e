"""One page of a list without counting the list: newest first, "Newer" and "Older" links.

No COUNT(*): at a million rows it costs more than the page itself; fetching one row past the page says
whether there is a next one. Page numbers are capped at MAX_PAGE: a deeper page's OFFSET overflows the
database's bigint, and nobody pages through 100,000 pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.http import QueryDict

MAX_PAGE = 100_000


class PageField(forms.IntegerField):
    """A list page's number (``?page=``): a whole number in 1..MAX_PAGE; anything else is page 1."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=1, max_value=MAX_PAGE, required=False, **kwargs)

    def clean(self, value: Any) -> int:
        return super().clean(value) or 1


@dataclass(frozen=True)
class Page:
    """The rows of one page and what the ``dashboard/_pagination.html`` links need."""

    rows: list
    number: int
    has_next: bool
    # The request's other query parameters (filters), urlencoded, so the links keep them.
    base_query: str = ""
    param: str = "page"

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def next_number(self) -> int | None:
        return self.number + 1 if self.has_next else None

    @property
    def previous_number(self) -> int | None:
        return self.number - 1 if self.has_previous else None


def paginate(
    rows: Sequence, *, number: int, per_page: int, query: QueryDict | None = None, param: str = "page"
) -> Page:
    """Page ``number`` of ``rows`` (a queryset: one query, sliced in the database).

    ``query`` is the request's query string; the links keep every parameter except ``param``.
    """
    number = min(max(number, 1), MAX_PAGE)
    offset = (number - 1) * per_page
    fetched = list(rows[offset : offset + per_page + 1])
    base_query = ""
    if query is not None:
        others = query.copy()
        others.pop(param, None)
        base_query = others.urlencode()
    return Page(
        rows=fetched[:per_page],
        number=number,
        has_next=len(fetched) > per_page,
        base_query=base_query,
        param=param,
    )
