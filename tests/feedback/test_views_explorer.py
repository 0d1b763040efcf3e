from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from assistants.services import model_version_create
from feedback.models import Feedback
from feedback.services import feedback_submit, interaction_log

URL = reverse("feedback-explorer")


def _row(assistant, i: int, version=None, **data) -> Feedback:
    logged = interaction_log(
        assistant=assistant,
        request_id=f"req-{assistant.slug}-{i}",
        model_version=version,
        messages=[{"role": "user", "content": data.pop("question", f"question {i}")}],
        response=f"answer {i}",
    )
    return feedback_submit(interaction=logged.interaction, data=data).feedback


@pytest.fixture
def rows(assistant, other_assistant):
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    _row(assistant, 1, v1, helpful=True, rating=5, comment="great")
    _row(assistant, 2, v1, helpful=False, rating=1, accuracy=1, comment="wrong answer")
    _row(other_assistant, 3, helpful=True, kind="thumbs")
    return v1


def test_it_shows_feedback_with_its_interaction(client, bob, rows):
    client.force_login(bob)
    response = client.get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    assert "question 1" in body and "answer 2" in body and "wrong answer" in body and "shop-v1" in body


def test_it_escapes_feedback_text(client, bob, assistant):
    _row(assistant, 9, comment="<script>alert('x')</script>", question="<img src=x onerror=alert(1)>")
    client.force_login(bob)
    body = client.get(URL).content.decode()
    assert "<script>alert('x')</script>" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body


@pytest.mark.parametrize(
    ("query", "present", "absent"),
    [
        ({"assistant": "bank"}, "question 3", "question 1"),
        ({"rating": "1"}, "question 2", "question 1"),
        ({"helpful": "yes"}, "question 1", "question 2"),
        ({"helpful": "no"}, "question 2", "question 1"),
        ({"kind": "thumbs"}, "question 3", "question 2"),
        ({"category": "accuracy", "category_max": "2"}, "question 2", "question 1"),
    ],
)
def test_it_filters(client, bob, rows, query, present, absent):
    client.force_login(bob)
    body = client.get(URL, query).content.decode()
    assert present in body and absent not in body


def test_it_filters_by_model_version_and_dates(client, bob, rows, assistant):
    _row(assistant, 4, comment="no version")
    client.force_login(bob)
    body = client.get(URL, {"assistant": "shop", "model_version": rows.pk}).content.decode()
    assert "question 1" in body and "question 4" not in body
    tomorrow = (timezone.localdate() + dt.timedelta(days=1)).isoformat()
    assert "question 1" not in client.get(URL, {"since": tomorrow}).content.decode()
    assert "question 1" in client.get(URL, {"until": timezone.localdate().isoformat()}).content.decode()


def test_bad_filter_values_are_ignored(client, bob, rows):
    client.force_login(bob)
    response = client.get(URL, {"rating": "9", "since": "yesterday", "model_version": "x", "page": "-1"})
    assert response.status_code == 200 and b"question 1" in response.content


def test_htmx_gets_only_the_results(client, bob, rows):
    client.force_login(bob)
    body = client.get(URL, {"rating": "5"}, HTTP_HX_REQUEST="true").content.decode()
    assert body.lstrip().startswith('<section class="card" id="results">') and "<html" not in body


def test_curation_controls_show_only_for_reviewers(client, alice, bob, rows):
    client.force_login(bob)
    assert b"Save corrected answer" not in client.get(URL).content
    client.force_login(alice)
    assert b"Save corrected answer" in client.get(URL).content


def test_it_runs_a_constant_number_of_queries(client, alice, assistant, django_assert_max_num_queries):
    for i in range(40):
        _row(assistant, 100 + i, model_version_create(assistant=assistant, name=f"v{i}"), rating=3)
    client.force_login(alice)
    # session, user, 2× permissions, assistants, the page of feedback, the version filter's options
    with django_assert_max_num_queries(7):
        response = client.get(URL, {"assistant": "shop"})
    assert response.status_code == 200
    body = response.content.decode()
    # A full page of rows with their interactions and versions, and the version filter's options.
    assert body.count('<tbody id="feedback-') == 25 and "question 139" in body and "Older →" in body
    assert ">v0</option>" in body and ">v39</option>" in body
    assert '<br><span class="muted">v39</span>' in body


def test_it_pages(client, bob, assistant):
    for i in range(26):
        _row(assistant, i, rating=4)
    client.force_login(bob)
    assert b"Older" in client.get(URL).content
    page2 = client.get(URL, {"page": "2"}).content.decode()
    assert "Older" not in page2 and "Newer" in page2


def test_it_forbids_users_without_view_permission(client, django_user_model, db):
    client.force_login(django_user_model.objects.create_user("mallory"))
    assert client.get(URL).status_code == 403


def test_it_redirects_anonymous_users(client, db):
    assert client.get(URL).status_code == 302


def test_it_rejects_post(client, bob):
    client.force_login(bob)
    assert client.post(URL).status_code == 405


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        # The last days and the first day bound nothing: every row shows, the filter as given.
        ("until=9999-12-31", 'name="until" value="9999-12-31"'),
        ("until=9999-12-30", 'name="until" value="9999-12-30"'),
        ("since=0001-01-01", 'name="since" value="0001-01-01"'),
        # Beyond what the database can count or compare: page 1, and no version filter.
        ("page=" + "9" * 25, '<span class="muted">Page 1</span>'),
        ("model_version=" + "9" * 25, '<option value="">Any</option>'),
    ],
)
def test_extreme_filter_values_are_never_a_500(client, bob, rows, query, shown):
    client.force_login(bob)
    response = client.get(f"{URL}?assistant=shop&{query}")
    assert response.status_code == 200
    body = response.content.decode()
    assert "question 1" in body and "question 2" in body and "question 3" not in body  # the shop's rows
    assert shown in body and " selected>shop-v1</option>" not in body


def test_since_the_first_day_east_of_utc_is_not_a_500(client, bob, rows, settings):
    # Midnight of 0001-01-01 in Tokyo is in year 0 in UTC: the database conversion would overflow.
    settings.TIME_ZONE = "Asia/Tokyo"
    client.force_login(bob)
    response = client.get(URL, {"assistant": "shop", "since": "0001-01-01"})
    assert response.status_code == 200 and b"No feedback matches" not in response.content
