from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from abtesting.models import Experiment, ExperimentSnapshot
from assistants.services import model_version_create

ANALYSIS = {
    "control": {
        "n_assigned": 500,
        "units": 150,
        "n": 200,
        "successes": 140,
        "rate": 0.7,
        "rate_low": 0.633,
        "rate_high": 0.76,
    },
    "variant": {
        "n_assigned": 480,
        "units": 140,
        "n": 190,
        "successes": 150,
        "rate": 0.789,
        "rate_low": 0.726,
        "rate_high": 0.841,
    },
    "alpha": 0.05,
    "relative_lift": 0.127,
    "fixed_lift_low": 0.02,
    "fixed_lift_high": 0.23,
    "fixed_z": 2.03,
    "fixed_p_value": 0.042,
    "sequential": {
        "method": "group_sequential",
        "p_value": 0.09,
        "ci_low": -0.01,
        "ci_high": 0.26,
        "look": 3,
        "planned_looks": 7,
        "information_fraction": 0.3,
        "boundary_z": 3.2,
        "z": 2.03,
    },
    "srm_p_value": 0.0004,
    "srm_ok": False,
    "required_units": 900,
    "progress": 0.32,
    "final_look": False,
    "interim": False,
    "verdict": "invalid_srm",
    "reason": "sample ratio mismatch",
    "ab_test_results": {
        "controlSuccessRate": 0.7,
        "variantSuccessRate": 0.789,
        "improvement": 0.127,
        "improvementLow": -0.01,
        "sampleSize": 290,
        "pValue": None,
        "sequentialPValue": 0.09,
        "ci": [-0.01, 0.26],
        "srmPValue": 0.0004,
    },
}


@pytest.fixture
def experiment(assistant) -> Experiment:
    c = model_version_create(assistant=assistant, name="shop-v1")
    v = model_version_create(assistant=assistant, name="shop-v2")
    experiment = Experiment.objects.create(assistant=assistant, control=c, variant=v, last_analysis=ANALYSIS)
    for i in range(3):
        ExperimentSnapshot.objects.create(
            experiment=experiment, day=dt.date(2026, 11, 20 + i), analysis=ANALYSIS
        )
    return experiment


@pytest.fixture
def url(experiment) -> str:
    return reverse("abtesting-experiment-detail", args=[experiment.pk])


def test_it_shows_the_analysis_and_daily_history(client, bob, experiment, url):
    client.force_login(bob)
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert "invalid_srm" in body and "sample ratio mismatch" in body and "0.0004" in body
    assert "+12.7%" in body and "-1.0% to +26.0%" in body and "0.0900" in body  # decision interval, history
    assert "planned look 3 of 7" in body and "2.03 / 3.20" in body
    assert "0.0420" not in body and "not valid after peeking" in body  # no fixed-horizon p while running
    for canvas, name in (("ab-chart", "arms"), ("rates-chart", "daily-rates"), ("lift-chart", "daily-lift")):
        chart = reverse(f"abtesting-api-chart-{name}", args=[experiment.pk])
        assert f'<canvas data-chart="{canvas}" data-chart-url="{chart}"' in body
    assert body.count('data-chart-url="') == 3  # the interim figures have no chart
    assert "2026-11-22" in body
    assert "290 / 900" in body  # users with feedback vs the plan
    assert body.count("78.9%") >= 2  # the analysis and the daily table
    assert 'id="live-panel"' in body and "Interim" in body  # a running test's live figures


def test_stop_button_shows_only_for_reviewers_while_running(client, alice, bob, experiment, url):
    client.force_login(bob)
    assert b"Stop experiment" not in client.get(url).content
    client.force_login(alice)
    assert b"Stop experiment" in client.get(url).content
    Experiment.objects.filter(pk=experiment.pk).update(status="concluded")
    assert b"Stop experiment" not in client.get(url).content


def test_it_copes_with_no_analysis_yet(client, bob, assistant):
    c = model_version_create(assistant=assistant, name="a")
    v = model_version_create(assistant=assistant, name="b")
    experiment = Experiment.objects.create(assistant=assistant, control=c, variant=v)
    client.force_login(bob)
    response = client.get(reverse("abtesting-experiment-detail", args=[experiment.pk]))
    assert response.status_code == 200 and b"No daily analysis yet" in response.content
    assert b"No look yet" in response.content


def test_it_runs_a_constant_number_of_queries(client, bob, experiment, url, django_assert_max_num_queries):
    for i in range(20):
        ExperimentSnapshot.objects.create(
            experiment=experiment, day=dt.date(2026, 10, 1 + i), analysis=ANALYSIS
        )
    client.force_login(bob)
    # Session, user, experiment, snapshots, and the live figures' counting (cached for a minute).
    with django_assert_max_num_queries(16):
        first = client.get(url)
    with django_assert_max_num_queries(6):
        again = client.get(url)
    for response in (first, again):
        assert response.status_code == 200
        body = response.content.decode()
        # The whole daily history (one row per snapshot) and the last look's panel.
        assert body.count("<tr><td>2026-10-") == 20 and 'id="ab-verdict">invalid_srm' in body


def test_it_forbids_users_without_view_permission(client, django_user_model, url):
    client.force_login(django_user_model.objects.create_user("mallory"))
    assert client.get(url).status_code == 403


def test_it_redirects_anonymous_users(client, url):
    assert client.get(url).status_code == 302


def test_it_rejects_post(client, bob, url):
    client.force_login(bob)
    assert client.post(url).status_code == 405


def test_htmx_get_is_the_full_page(client, bob, url):
    client.force_login(bob)
    assert b'id="experiment-body"' in client.get(url, HTTP_HX_REQUEST="true").content


def test_a_stopped_experiment_reads_stopped_early_no_decision(client, bob, alice, experiment, url):
    winning = {**ANALYSIS, "verdict": "variant_better", "srm_ok": True, "srm_p_value": 0.8}
    Experiment.objects.filter(pk=experiment.pk).update(
        status="stopped", stopped_by=alice, decision_reason="seen enough", last_analysis=winning
    )
    client.force_login(bob)
    body = client.get(url).content.decode()
    assert "Stopped early by alice: no decision" in body
    assert "variant_better" not in body.split('id="ab-panel"')[1].split("Daily history")[0]
    assert "Lift at least" not in body and 'id="live-panel"' not in body


# ---------------------------------------------------------------- a multi-arm test


def test_a_three_arm_experiment_shows_every_arm_and_the_winner(client, bob, three_arm_winner):
    client.force_login(bob)
    response = client.get(reverse("abtesting-experiment-detail", args=[three_arm_winner.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    # The settings: each arm's version, its share, the winner.
    assert "<dt>Variant2</dt><dd>shop-v3</dd>" in body and "25%" not in body and "33% each" in body
    assert '<dd id="experiment-winner">shop-v3</dd>' in body
    # The panel: one row per arm with its version, users, rate and status; the winner named.
    assert body.count('<tr data-arm="') == 3
    for arm, version, rate in (("control", "shop-v1", "50.0%"), ("variant", "shop-v2", "51.7%"),
                               ("variant2", "shop-v3", "85.0%")):  # fmt: skip
        row = body.split(f'<tr data-arm="{arm}">', 1)[1].split("</tr>", 1)[0]
        assert version in row and rate in row and "300" in row
    winner_row = body.split('<tr data-arm="variant2">', 1)[1].split("</tr>", 1)[0]
    assert "better: the winner" in winner_row and "0.0250" in winner_row  # Holm level of the first test
    variant_row = body.split('<tr data-arm="variant">', 1)[1].split("</tr>", 1)[0]
    # Not decided against the control (open, or at a final look no_difference / inconclusive); Holm passed
    # variant2's alpha on to it.
    assert "better" not in variant_row and "worse" not in variant_row and "0.0500" in variant_row
    assert 'id="ab-winner">Winner: <strong>variant2</strong> <span class="muted">shop-v3</span>' in body
    assert 'id="ab-verdict">variant_better' in body and "is significantly better than the control" in body
    # The daily history has a column per arm.
    assert "<th>Best arm</th>" in body and body.count('data-chart-url="') == 3


def test_a_dropped_arm_reads_worse_with_its_look(client, bob, assistant, arm_versions):
    from tests.abtesting.conftest import look, populate, start_multi_arm

    experiment = start_multi_arm(
        assistant, arm_versions, min_sample_size=50, max_duration_days=14, min_improvement=0.15
    )
    for arm, successes in (("control", 140), ("variant", 40), ("variant2", 142), ("variant3", 138)):
        populate(experiment, arm, assigned=200, with_feedback=200, successes=successes)
    look(experiment, 1.2)
    client.force_login(bob)
    body = client.get(reverse("abtesting-experiment-detail", args=[experiment.pk])).content.decode()
    row = body.split('<tr data-arm="variant">', 1)[1].split("</tr>", 1)[0]
    assert "worse (dropped at look 1)" in row and "shop-v2" in row
    assert body.count('<tr data-arm="') >= 4 and "<dt>Variant3</dt><dd>shop-v4</dd>" in body
