"""The API's lists come in cursor pages: GET /api/v1/jobs, /api/v1/datasets and /api/v1/experiments."""

from __future__ import annotations

import itertools
from base64 import b64encode
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.utils import timezone

from abtesting.models import Experiment
from assistants.services import model_version_create
from training.models import TrainingDataset, TrainingJob

from ..training.conftest import make_job

pytestmark = pytest.mark.django_db

_names = itertools.count()
CURSOR_HELP = (
    "Not a cursor this API gave out: follow the `next` or `previous` link of a page as it is, or leave "
    "`cursor` out for the first page."
)


def _job(assistant):
    return make_job(assistant, TrainingJob.Status.FAILED)


def _dataset(assistant):
    return TrainingDataset.objects.create(assistant=assistant, format=TrainingDataset.Format.CHAT_COMPLETION)


def _experiment(assistant):
    control = model_version_create(assistant=assistant, name=f"control-{next(_names)}")
    variant = model_version_create(assistant=assistant, name=f"variant-{next(_names)}")
    return Experiment.objects.create(
        assistant=assistant, control=control, variant=variant, status=Experiment.Status.CONCLUDED
    )


# path, a row of the list, the model and the timestamp the list is ordered by (newest first)
LISTS = {
    "jobs": ("/api/v1/jobs", _job, TrainingJob, "created_at"),
    "datasets": ("/api/v1/datasets", _dataset, TrainingDataset, "created_at"),
    "experiments": ("/api/v1/experiments", _experiment, Experiment, "started_at"),
}


@pytest.fixture(params=list(LISTS))
def a_list(request):
    return LISTS[request.param]


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_a_page_has_results_and_links(reader, assistant, a_list):
    path, make, _, _ = a_list
    rows = [make(assistant) for _ in range(3)]
    first = reader.get(path, {"limit": 2})
    assert ids(first) == [rows[2].pk, rows[1].pk]
    assert first.json()["previous"] is None
    second = reader.get(first.json()["next"])
    assert ids(second) == [rows[0].pk]
    assert second.json()["next"] is None
    assert ids(reader.get(second.json()["previous"])) == [rows[2].pk, rows[1].pk]
    only = reader.get(path).json()
    assert (only["next"], only["previous"]) == (None, None) and len(only["results"]) == 3


def test_walking_next_visits_every_row_once_while_rows_are_added(reader, assistant, a_list):
    path, make, model, timestamp = a_list
    rows = [make(assistant) for _ in range(7)]
    # Newest first; the third and fourth share a timestamp, across the boundary of pages of 3.
    t = timezone.now() - timedelta(minutes=1)
    for row, seconds in zip(rows, [-3, -2, -1, 0, 0, 1, 2], strict=True):
        model.objects.filter(pk=row.pk).update(**{timestamp: t + timedelta(seconds=seconds)})
    expected = ids(reader.get(path))
    assert expected == [r.pk for r in rows[::-1]]

    seen, url, pages = [], path + "?limit=3", 0
    while url:
        page = reader.get(url)
        seen += ids(page)
        url, pages = page.json()["next"], pages + 1
        make(assistant)  # newer than every page: it is not in the pages still to come
    assert seen == expected and pages == 3


def test_next_links_keep_the_filters_and_the_page_size(reader, assistant, other_assistant, a_list):
    path, make, _, _ = a_list
    mine = [make(assistant) for _ in range(3)]
    make(other_assistant)
    first = reader.get(path, {"assistant": "shop", "limit": 2})
    query = parse_qs(urlsplit(first.json()["next"]).query)
    assert query["assistant"] == ["shop"] and query["limit"] == ["2"] and query["cursor"]
    assert ids(reader.get(first.json()["next"])) == [mine[0].pk]


def test_the_page_size_is_brought_into_range(reader, assistant):
    now = timezone.now()
    TrainingJob.objects.bulk_create(
        TrainingJob(
            assistant=assistant,
            trigger=TrainingJob.Trigger.MANUAL,
            status=TrainingJob.Status.FAILED,
            created_at=now - timedelta(seconds=n),
            updated_at=now,
        )
        for n in range(201)
    )
    newest = list(TrainingJob.objects.order_by("-created_at", "-id").values_list("id", flat=True))
    assert ids(reader.get("/api/v1/jobs")) == newest[:50]  # the default
    assert ids(reader.get("/api/v1/jobs", {"limit": 0})) == newest[:1]
    assert ids(reader.get("/api/v1/jobs", {"limit": -5})) == newest[:1]
    top = reader.get("/api/v1/jobs", {"limit": 1000})
    assert ids(top) == newest[:200] and top.json()["next"] is not None
    assert ids(reader.get(top.json()["next"])) == newest[200:]


@pytest.mark.parametrize("limit", ["", "many", "2.5", "9" * 2000])
def test_a_limit_that_is_not_a_number_is_400(reader, assistant, a_list, limit):
    response = reader.get(a_list[0], {"limit": limit})
    assert response.status_code == 400
    assert response.json()["errors"] == {"limit": ["Use a number from 1 to 200."]}


def _cursor(**tokens: str) -> str:
    """A cursor made by hand in DRF's format: base64 of o=offset&r=reverse&p=position."""
    return b64encode(urlencode(tokens).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64!",
        "é",
        _cursor(o="-1"),  # a negative offset
        _cursor(r="maybe"),
        _cursor(p="yesterday"),  # a position that is no timestamp
        _cursor(p="2026-01-01 10:00:00"),  # in no time zone
        _cursor(p="0001-01-01 00:00:00+01:00"),  # before year 1 in UTC
        _cursor(p="9999-12-31 23:59:59-01:00"),  # after year 9999 in UTC
    ],
)
def test_a_cursor_the_api_did_not_give_out_is_400(reader, assistant, a_list, cursor):
    path, make, _, _ = a_list
    make(assistant)
    response = reader.get(path, {"cursor": cursor})
    assert response.status_code == 400, response.content
    assert response.json() == {
        "detail": "Invalid input: see `errors` for what to fix.",
        "errors": {"cursor": [CURSOR_HELP]},
    }
