"""The track-record pages: one assistant's record, and all assistants side by side."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from assistants.services import model_version_create
from training.selectors.track_record import track_record_week_start

from .track_record_history import (
    H,
    S,
    concluded_experiment,
    decided,
    deployed_after,
    feedback_at,
    history,
    job,
)
from .track_record_history import two_versions as make_versions


def recently(days_ago: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(days=days_ago)


@pytest.fixture
def versions(assistant):
    return make_versions(assistant)


@pytest.fixture
def record(assistant, versions, alice):
    """This week's and last week's jobs, so they fall inside the page's default twelve weeks."""
    v1, v2 = versions
    ab = concluded_experiment(assistant, 0.12, 0.03, 0.21)
    job(assistant, S.DEPLOYED, recently(8), deployed_after(6), experiment=ab, new_model_version=v2)
    offline = {"improvement_ci": [0.04, -0.01, 0.09]}
    job(assistant, S.DEPLOYED, recently(7), deployed_after(2), evaluation=offline, new_model_version=v1)
    job(assistant, S.REJECTED, recently(3), decided(S.REJECTED, 4 * H), decision_reason="Tone got worse",
        decided_by=alice)  # fmt: skip
    job(assistant, S.FAILED, recently(2))
    job(assistant, S.TESTING, recently(1))
    feedback_at(assistant, v2, recently(1), good=3, bad=1)


def test_an_assistants_page_shows_the_seeds_report_and_more(client, bob, assistant, record):
    client.force_login(bob)
    response = client.get(reverse("training-track-record", args=[assistant.slug]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Track record · Shop support" in body
    summary = body[body.index('id="summary"') : body.index('id="jobs-by-week"')]
    assert "<dd>5</dd>" in summary and "<dd>2</dd>" in summary  # jobs, deployed
    assert "40.0%" in summary  # share deployed: 2 of 5
    assert "50.0%" in summary  # of the 4 finished
    assert "+8.0%" in summary  # average improvement: (12 % + 4 %) / 2
    assert "4 h" in summary  # median trigger to deployment: of 2 h and 6 h
    # Twelve weeks, this one last; the jobs sit in the last two.
    weeks = body[body.index('id="jobs-by-week"') : body.index('id="success-rate"')]
    this_week = track_record_week_start(timezone.localdate()).isoformat()
    assert (
        weeks.count('<tr><td class="nowrap">') == 12 and f'<tr><td class="nowrap">{this_week}</td>' in weeks
    )
    lifts = body[body.index('id="deployed-versions"') : body.index('id="rejections"')]
    assert "A/B test" in lifts and "final analysis (95% decision interval)" in lifts
    assert "+12.0%" in lifts and "+3.0% to +21.0%" in lifts
    assert "offline evaluation (95% bootstrap interval)" in lifts and "-1.0% to +9.0%" in lifts
    rejections = body[body.index('id="rejections"') :]
    assert "Tone got worse" in rejections and "reviewers" in rejections


def test_the_chart_is_fetched_from_its_json_view_with_a_table_beside_it(client, bob, assistant, record):
    client.force_login(bob)
    body = client.get(reverse("training-track-record", args=[assistant.slug]) + "?weeks=12").content.decode()
    url = re.search(r'data-chart="version-rate-chart" data-chart-url="([^"]+)"', body).group(1)
    assert url == reverse("training-api-chart-version-rates", args=[assistant.slug]) + "?weeks=12"
    response = client.get(url)
    assert response.status_code == 200
    spec = response.json()
    assert spec["type"] == "line" and spec["percent"] is True and len(spec["labels"]) == 12
    assert [d["label"] for d in spec["datasets"]] == ["v2"]  # the page names the assistant
    assert spec["datasets"][0]["data"][-1] == 0.75  # 3 of 4
    table = body[body.index('id="success-rate-data"') :]
    assert '<td class="num" title="of 4 answers with feedback">75.0%</td>' in table
    assert client.get(url.replace("weeks=12", "weeks=0")).status_code == 400  # the API says what to fix


def test_weeks_follow_the_query_and_a_bad_value_is_the_default(client, bob, assistant, record):
    client.force_login(bob)
    url = reverse("training-track-record", args=[assistant.slug])
    for query, rows in (("?weeks=4", 4), ("?weeks=nonsense", 12), ("?weeks=0", 12), ("?weeks=105", 12)):
        body = client.get(url + query).content.decode()
        weeks = body[body.index('id="jobs-by-week"') : body.index('id="success-rate"')]
        assert weeks.count('<tr><td class="nowrap">') == rows, query


def test_an_empty_record_says_so(client, bob, assistant):
    client.force_login(bob)
    response = client.get(reverse("training-track-record", args=[assistant.slug]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "No job has deployed a version yet." in body
    assert "No job was rejected." in body
    assert "No feedback on any version in these weeks." in body


def test_all_assistants_one_row_each(client, bob, assistant, other_assistant, record):
    client.force_login(bob)
    response = client.get(reverse("training-track-record-all"))
    assert response.status_code == 200
    body = response.content.decode()
    shop = body[body.index('id="track-shop"') :]
    shop = shop[: shop.index("</tr>")]
    cells = re.findall(r'<td class="num">([^<]*)', shop)
    assert cells[:7] == ["5", "2", "1", "1", "0", "1", "40.0%"]
    assert "live: v2" in shop and reverse("training-track-record", args=["shop"]) in shop
    bank = body[body.index('id="track-bank"') :]
    assert re.findall(r'<td class="num">([^<]*)', bank[: bank.index("</tr>")])[:7] == ["0"] * 6 + ["–"]
    assert body.index('id="track-bank"') < body.index('id="track-shop"')  # by name


def test_the_navigation_links_the_track_record(client, bob, assistant):
    client.force_login(bob)
    body = client.get(reverse("training-job-list")).content.decode()
    assert f'href="{reverse("training-track-record-all")}">Track record</a>' in body


def test_an_unknown_assistant_is_a_404(client, bob, assistant):
    client.force_login(bob)
    assert client.get(reverse("training-track-record", args=["nope"])).status_code == 404


def test_it_needs_a_dashboard_user(client, assistant):
    url = reverse("training-track-record", args=[assistant.slug])
    assert client.get(url).status_code == 302
    client.force_login(User.objects.create_user("stranger"))
    response = client.get(url)
    assert response.status_code == 403
    assert b"reviewer group" in response.content


def _queries(client, url: str, expect: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    assert expect in response.content.decode()
    return len(queries)


def test_both_pages_run_the_same_queries_whatever_the_history(
    client, bob, assistant, other_assistant, versions
):
    client.force_login(bob)
    one = reverse("training-track-record", args=[assistant.slug])
    every = reverse("training-track-record-all")
    history(assistant, versions, 1, bob)
    small = (_queries(client, one, "reason 0"), _queries(client, every, 'id="track-shop"'))
    history(assistant, versions, 9, bob)
    bank = [model_version_create(assistant=other_assistant, name=f"bank-v{n}") for n in (1, 2)]
    history(other_assistant, bank, 5, bob)
    assert (_queries(client, one, "reason 2"), _queries(client, every, 'id="track-bank"')) == small
