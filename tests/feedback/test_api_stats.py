from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import Feedback
from feedback.services import interaction_log

URL = "/api/v1/assistants/shop/stats"


@pytest.fixture
def feedback_rows(assistant):
    def log(i: int, **fields):
        interaction = interaction_log(
            assistant=assistant,
            request_id=f"r{i}",
            messages=[{"role": "user", "content": "q"}],
            response="a",
            error=fields.pop("error", None),
        ).interaction
        return Feedback.objects.create(interaction=interaction, assistant=assistant, kind="rating", **fields)

    log(1, helpful=True, rating=5, accuracy=4)
    log(2, helpful=False, rating=2, accuracy=2, error="timeout")
    log(3, rating=4)
    return log


def test_it_reports_the_seed_stats(reader, feedback_rows):
    stats = reader.get(URL).json()
    assert stats["total_feedback"] == 3
    assert stats["helpful_rate"] == pytest.approx(0.5)
    assert stats["avg_rating"] == pytest.approx(11 / 3)
    assert stats["success_rate"] == pytest.approx(2 / 3)
    assert stats["error_rate"] == pytest.approx(1 / 3)
    assert stats["category_ratings"]["accuracy"] == pytest.approx(3)
    assert stats["category_ratings"]["tone"] is None
    assert stats["counts_by_kind"]["rating"] == 3


def test_it_filters_by_date(reader, feedback_rows, assistant):
    Feedback.objects.filter(interaction__request_id="r1").update(
        created_at=timezone.now() - timedelta(days=10)
    )
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert reader.get(URL, {"since": since}).json()["total_feedback"] == 2


def test_a_bad_date_is_400(reader, assistant):
    response = reader.get(URL, {"since": "yesterday"})
    assert response.status_code == 400
    assert "since" in response.json()["errors"]


def test_no_data_gives_none_not_zero(reader, assistant):
    stats = reader.get(URL).json()
    assert stats["total_feedback"] == 0
    assert stats["success_rate"] is None and stats["avg_rating"] is None


def test_an_ingest_key_cannot_read_stats(ingest, assistant):
    assert ingest.get(URL).status_code == 403


def test_an_unknown_assistant_is_404(reader, assistant):
    assert reader.get("/api/v1/assistants/nobody/stats").status_code == 404


@pytest.mark.parametrize("value", ["2024-02-30", "2024-01-01T25:00", "2024-13-01T00:00"])
def test_an_impossible_date_is_400(reader, assistant, value):
    response = reader.get(URL, {"since": value})
    assert response.status_code == 400
    assert "is not a date" in response.json()["errors"]["since"][0]


@pytest.mark.parametrize("query", ["since=0001-01-01T00:00:00%2B14:00", "until=9999-12-31T23:59:59-14:00"])
def test_a_datetime_outside_the_utc_range_is_a_400(reader, assistant, query):
    # SQLite stores UTC, and these lie outside what a UTC datetime can hold.
    response = reader.get(f"{URL}?{query}")
    assert response.status_code == 400
    assert "out of range" in str(response.json()["errors"])


def test_blank_bounds_are_no_bounds(reader, feedback_rows):
    stats = reader.get(URL, {"since": "", "until": ""}).json()
    assert (stats["total_feedback"], stats["since"], stats["until"]) == (3, None, None)


def test_each_bad_bound_is_named(reader, assistant):
    response = reader.get(URL, {"since": "yesterday", "until": "2024-02-30"})
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "since": ["'yesterday' is not a date or ISO 8601 datetime."],
        "until": ["'2024-02-30' is not a date or ISO 8601 datetime."],
    }
