from __future__ import annotations

import pytest
from django.urls import reverse

from abtesting.models import Experiment
from assistants.services import model_version_create

URL = reverse("abtesting-experiment-list")


@pytest.fixture
def experiments(assistant, other_assistant):
    made = []
    for a in (assistant, other_assistant):
        c = model_version_create(assistant=a, name=f"{a.slug}-v1")
        v = model_version_create(assistant=a, name=f"{a.slug}-v2")
        made.append(Experiment.objects.create(
            assistant=a, control=c, variant=v, status="concluded" if a == assistant else "running",
            decision="variant_better" if a == assistant else "",
            last_analysis={"relative_lift": 0.123, "control": {"units": 120}, "variant": {"units": 118}},
        ))  # fmt: skip
    return made


def test_it_lists_experiments_with_their_headline_numbers(client, bob, experiments):
    client.force_login(bob)
    response = client.get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    assert "shop-v1 → shop-v2" in body and "bank-v1 → bank-v2" in body
    assert "+12.3%" in body and "120 / 118" in body and "variant_better" in body


def test_a_stopped_experiment_is_listed_as_no_decision(client, bob, alice, experiments):
    Experiment.objects.filter(pk=experiments[1].pk).update(status="stopped", stopped_by=alice)
    client.force_login(bob)
    body = client.get(URL).content.decode()
    assert "stopped early by alice: no decision" in body


def test_it_filters_by_assistant_and_status(client, bob, experiments):
    client.force_login(bob)
    body = client.get(URL, {"status": "running"}).content.decode()
    assert "bank-v1" in body and "shop-v1" not in body
    body = client.get(URL, {"assistant": "shop"}).content.decode()
    assert "shop-v1" in body and "bank-v1" not in body


def test_htmx_gets_only_the_results(client, bob, experiments):
    client.force_login(bob)
    body = client.get(URL, HTTP_HX_REQUEST="true").content.decode()
    assert body.lstrip().startswith('<section class="card" id="results">') and "<html" not in body


def test_it_runs_a_constant_number_of_queries(
    client, bob, experiments, assistant, django_assert_max_num_queries
):
    c = model_version_create(assistant=assistant, name="x1")
    v = model_version_create(assistant=assistant, name="x2")
    Experiment.objects.bulk_create(
        [
            Experiment(assistant=assistant, control=c, variant=v, status="stopped", salt=str(i))
            for i in range(30)
        ]
    )
    client.force_login(bob)
    with django_assert_max_num_queries(6):
        response = client.get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    # Every experiment with its assistant and versions (no query per row).
    assert body.count("<td>x1 → x2</td>") == 30
    assert "shop-v1 → shop-v2" in body and "bank-v1 → bank-v2" in body


def test_it_forbids_users_without_view_permission(client, django_user_model, db):
    client.force_login(django_user_model.objects.create_user("mallory"))
    assert client.get(URL).status_code == 403


def test_it_redirects_anonymous_users(client, db):
    assert client.get(URL).status_code == 302


def test_it_rejects_post(client, bob):
    client.force_login(bob)
    assert client.post(URL).status_code == 405


@pytest.mark.parametrize("page", ["9" * 25, str(2**63)])
def test_a_page_beyond_what_the_database_can_count_is_page_one(client, bob, experiments, page):
    # Such an OFFSET would overflow the database's bigint (SQLite and PostgreSQL alike).
    client.force_login(bob)
    response = client.get(URL, {"page": page})
    assert response.status_code == 200 and b"shop-v1" in response.content


def test_an_unknown_assistant_shows_no_experiments_even_with_a_nul_byte(client, bob, experiments):
    # PostgreSQL refuses NUL in a query parameter (a 500); an unknown slug matches nothing anyway.
    client.force_login(bob)
    for slug in ("nobody", "shop\x00"):
        response = client.get(URL, {"assistant": slug})
        assert response.status_code == 200 and b"No experiments match these filters." in response.content


def test_a_multi_arm_experiment_lists_every_version_and_the_winner(client, bob, three_arm_winner):
    client.force_login(bob)
    body = client.get(URL).content.decode()
    assert '<td>shop-v1 → shop-v2, <strong title="winner">shop-v3</strong></td>' in body
    assert "300 / 300 / 300" in body and "+70.0%" in body  # every arm's users; the winner's lift


def test_multi_arm_rows_cost_one_query_for_all_their_variants(
    client, bob, assistant, arm_versions, django_assert_max_num_queries
):
    from abtesting.services import experiment_start

    for _ in range(5):
        experiment = experiment_start(
            assistant=assistant,
            control=arm_versions[0],
            variant=arm_versions[1],
            extra_variants=arm_versions[2:],
        )
        Experiment.objects.filter(pk=experiment.pk).update(status="stopped")
    client.force_login(bob)
    with django_assert_max_num_queries(7):
        body = client.get(URL).content.decode()
    assert body.count("<td>shop-v1 → shop-v2, shop-v3, shop-v4</td>") == 5
