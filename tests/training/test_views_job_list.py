from __future__ import annotations

import pytest
from django.urls import reverse

from training.models import TrainingJob

URL = reverse("training-job-list")


@pytest.fixture
def jobs(assistant, other_assistant, alice):
    TrainingJob.objects.create(assistant=assistant, trigger="manual", status="deployed", decided_by=alice)
    TrainingJob.objects.create(assistant=assistant, trigger="threshold", status="rejected")
    TrainingJob.objects.create(assistant=other_assistant, trigger="scheduled", status="awaiting_approval")


def test_it_lists_jobs(client, bob, jobs):
    client.force_login(bob)
    response = client.get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('class="badge deployed"') == 1 and "awaiting_approval" in body and "rejected" in body


def test_it_filters_by_status_trigger_and_assistant(client, bob, jobs):
    client.force_login(bob)
    body = client.get(URL, {"status": "awaiting_approval"}).content.decode()
    assert "Awaiting Approval" in body and "Rejected</span>" not in body
    body = client.get(URL, {"trigger": "threshold"}).content.decode()
    assert "Rejected</span>" in body and "Deployed</span>" not in body
    body = client.get(URL, {"assistant": "bank"}).content.decode()
    assert "Awaiting Approval</span>" in body and "Deployed</span>" not in body


def test_it_ignores_unknown_filter_values(client, bob, jobs):
    client.force_login(bob)
    response = client.get(URL, {"status": "bogus", "page": "x"})
    assert response.status_code == 200 and b"Deployed</span>" in response.content


def test_htmx_gets_only_the_results(client, bob, jobs):
    client.force_login(bob)
    body = client.get(URL, {"status": "deployed"}, HTTP_HX_REQUEST="true").content.decode()
    assert body.lstrip().startswith('<section class="card" id="results">') and "<html" not in body


def test_it_pages_without_counting(client, bob, assistant):
    TrainingJob.objects.bulk_create(
        [TrainingJob(assistant=assistant, trigger="manual", status="failed") for _ in range(55)]
    )
    client.force_login(bob)
    assert b"Older" in client.get(URL).content
    assert b"Older" not in client.get(URL, {"page": "2"}).content


def test_it_runs_a_constant_number_of_queries(client, bob, assistant, alice, django_assert_max_num_queries):
    TrainingJob.objects.bulk_create(
        [
            TrainingJob(assistant=assistant, trigger="manual", status="failed", decided_by=alice)
            for _ in range(40)
        ]
    )
    client.force_login(bob)
    with django_assert_max_num_queries(6):
        response = client.get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    # A full page of 40 rows, each with its assistant and decider (no query per row).
    assert body.count('<span class="badge failed">') == 40 and body.count("<td>alice</td>") == 40
    assert body.count("<td>shop</td>") == 40


def test_it_forbids_users_without_view_permission(client, django_user_model, db):
    client.force_login(django_user_model.objects.create_user("mallory"))
    assert client.get(URL).status_code == 403


def test_it_redirects_anonymous_users(client, db):
    assert client.get(URL).status_code == 302


def test_it_rejects_post(client, bob):
    client.force_login(bob)
    assert client.post(URL).status_code == 405


def test_htmx_history_restore_gets_the_full_page(client, bob, jobs):
    client.force_login(bob)
    response = client.get(URL, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert b"<html" in response.content


@pytest.mark.parametrize("page", ["9" * 25, str(2**63)])
def test_a_page_beyond_what_the_database_can_count_is_page_one(client, bob, jobs, page):
    # Such an OFFSET would overflow the database's bigint (SQLite and PostgreSQL alike).
    client.force_login(bob)
    response = client.get(URL, {"page": page})
    assert response.status_code == 200 and b"Deployed</span>" in response.content


def test_an_unknown_assistant_shows_no_jobs_even_with_a_nul_byte(client, bob, jobs):
    # PostgreSQL refuses NUL in a query parameter (a 500); an unknown slug matches nothing anyway.
    client.force_login(bob)
    for slug in ("nobody", "shop\x00"):
        response = client.get(URL, {"assistant": slug})
        assert response.status_code == 200 and b"No jobs match these filters." in response.content
