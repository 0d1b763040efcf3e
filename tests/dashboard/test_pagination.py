"""dashboard.pagination and dashboard/_pagination.html: a page of a list, without counting the list."""

from __future__ import annotations

import pytest
from django.http import QueryDict
from django.template.loader import render_to_string

from assistants.models import Assistant
from assistants.services import assistant_create
from dashboard.forms import FilterForm
from dashboard.pagination import MAX_PAGE, PageField, paginate


class _PageForm(FilterForm):
    page = PageField()


@pytest.fixture
def seven(db) -> None:
    for i in range(7):
        assistant_create(slug=f"a{i}", name=f"A{i}")


def _slugs(page) -> list[str]:
    return [a.slug for a in page.rows]


def test_it_fetches_one_page_in_one_query_without_counting(seven, django_assert_num_queries):
    with django_assert_num_queries(1) as captured:
        page = paginate(Assistant.objects.order_by("slug"), number=2, per_page=3)
    assert "COUNT" not in captured.captured_queries[0]["sql"].upper()
    assert _slugs(page) == ["a3", "a4", "a5"] and page.number == 2
    assert page.has_next and page.has_previous and (page.previous_number, page.next_number) == (1, 3)


def test_the_last_page_has_no_next(seven):
    page = paginate(Assistant.objects.order_by("slug"), number=3, per_page=3)
    assert _slugs(page) == ["a6"] and not page.has_next and page.next_number is None


def test_a_full_last_page_has_no_next_either(seven):
    page = paginate(Assistant.objects.order_by("slug"), number=1, per_page=7)
    assert len(page.rows) == 7 and not page.has_next


def test_the_links_keep_the_other_query_parameters():
    page = paginate([], number=4, per_page=10, query=QueryDict("status=failed&page=4&assistant=shop"))
    assert page.base_query == "status=failed&assistant=shop"
    assert page.number == 4 and not page.rows and page.has_previous


@pytest.mark.parametrize(
    ("raw", "number"),
    [(None, 1), ("", 1), ("3", 3), ("0", 1), ("-2", 1), ("x", 1), (str(MAX_PAGE), MAX_PAGE),
     (str(MAX_PAGE + 1), 1), ("9" * 25, 1), ("9" * 5000, 1)],
)  # fmt: skip
def test_a_page_number_is_a_whole_number_within_bounds_or_page_one(raw, number):
    form = _PageForm({"page": raw} if raw is not None else {})
    assert form.values["page"] == number


def test_the_partial_links_newer_and_older_pages():
    page = paginate(list(range(30)), number=2, per_page=10, query=QueryDict("kind=text&page=2"))
    html = render_to_string("dashboard/_pagination.html", {"page": page})
    assert '<a href="?kind=text&amp;page=1">← Newer</a>' in html
    assert '<a href="?kind=text&amp;page=3">Older →</a>' in html
    assert '<span class="muted">Page 2</span>' in html


def test_the_first_page_alone_has_no_links():
    html = render_to_string("dashboard/_pagination.html", {"page": paginate([1], number=1, per_page=10)})
    assert "Newer" not in html and "Older" not in html and "Page 1" in html


def test_another_parameter_name_pages_another_list_on_the_same_page():
    page = paginate(list(range(30)), number=1, per_page=10, query=QueryDict("page=3"), param="p2")
    html = render_to_string("dashboard/_pagination.html", {"page": page})
    assert '<a href="?page=3&amp;p2=2">Older →</a>' in html
