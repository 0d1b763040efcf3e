from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from abtesting.models import Experiment
from assistants.services import model_version_create
from training.models import JobEvent, TrainingDataset, TrainingJob

ANALYSIS = {
    "control": {
        "n_assigned": 1010,
        "units": 300,
        "n": 400,
        "successes": 280,
        "rate": 0.70,
        "rate_low": 0.653,
        "rate_high": 0.743,
        "rating_n": 0,
        "rating_mean": None,
    },
    "variant": {
        "n_assigned": 990,
        "units": 310,
        "n": 410,
        "successes": 312,
        "rate": 0.761,
        "rate_low": 0.717,
        "rate_high": 0.800,
        "rating_n": 0,
        "rating_mean": None,
    },
    "alpha": 0.05,
    "min_improvement": 0.05,
    "absolute_lift": 0.061,
    "relative_lift": 0.087,
    "fixed_lift_low": 0.01,
    "fixed_lift_high": 0.165,
    "fixed_z": 1.96,
    "fixed_p_value": 0.0499,
    "sequential": {
        "method": "group_sequential",
        "look": 5,
        "planned_looks": 7,
        "information_fraction": 0.5,
        "boundary_z": 2.8,
        "z": 3.1,
        "p_value": 0.0123,
        "ci_low": 0.004,
        "ci_high": 0.17,
        "significant": True,
    },
    "srm_p_value": 0.65,
    "srm_ok": True,
    "required_units": 1200,
    "progress": 0.508,
    "detectable_lift": 0.12,
    "final_look": False,
    "interim": False,
    "verdict": "variant_better",
    "reason": "",
}


@pytest.fixture
def job(assistant) -> TrainingJob:
    live = model_version_create(assistant=assistant, name="shop-v1")
    candidate = model_version_create(assistant=assistant, name="shop-v2")
    experiment = Experiment.objects.create(
        assistant=assistant,
        control=live,
        variant=candidate,
        last_analysis=ANALYSIS,
        status="concluded",
        decision="variant_better",
    )
    default_storage.save("datasets/t.jsonl", ContentFile(b'{"messages": []}\n'))
    dataset = TrainingDataset.objects.create(
        assistant=assistant,
        format="chat_completion",
        train_file="datasets/t.jsonl",
        train_count=90,
        validation_count=10,
        stats={"examples": 100, "dropped": {"dupes": 3}, "filteredCount": 96},
    )
    job = TrainingJob.objects.create(
        assistant=assistant,
        trigger="threshold",
        status="awaiting_approval",
        base_version=live,
        new_model_version=candidate,
        dataset=dataset,
        experiment=experiment,
        reasons=["Feedback count (150) >= threshold (100)"],
        metrics={
            "validation_accuracy": 0.81,
            "eval_prompts": 10,
            "loss_curve": [{"step": 1, "train_loss": 1.2, "valid_loss": 1.3}, {"step": 2, "train_loss": 0.9}],
        },
        evaluation={
            "prompts": 10,
            "candidate": {"version": "shop-v2", "accuracy": 0.8, "mean_quality": 0.7},
            "live": {"version": "shop-v1", "accuracy": 0.6, "mean_quality": 0.5},
            "improvement": 0.33,
        },
    )
    for i in range(3):
        JobEvent.objects.create(
            job=job, kind="transition", from_status="a", to_status="b", message=f"step {i}"
        )
    JobEvent.objects.create(job=job, kind="note", message="<script>alert('event')</script>")
    return job


def test_it_shows_every_figure_a_reviewer_needs(client, alice, job):
    client.force_login(alice)
    response = client.get(reverse("training-job-detail", args=[job.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Feedback count (150) &gt;= threshold (100)" in body
    assert (
        "variant_better" in body and "+8.7%" in body and "+0.4% to +17.0%" in body
    )  # lift, decision interval
    assert "Lift at least (with 95% confidence)" in body and ">+0.4%<" in body  # what deploy rules compare
    assert "3.10 / 2.80" in body  # z and the boundary at this look
    # Before the planned end the fixed-horizon p-value is not evidence: not shown.
    assert "0.0499" not in body and "not valid after peeking" in body
    assert "0.6500" in body and "sample ratio mismatch" not in body  # SRM
    assert "610 / 1200" in body  # users with feedback vs the plan
    assert "+12.0%" in body and 'data-testid="underpowered"' in body  # detectable lift above 5 %
    ab_chart = reverse("training-api-chart-ab-test", args=[job.pk])
    loss_chart = reverse("training-api-chart-loss", args=[job.pk])
    assert f'<canvas data-chart="ab-chart" data-chart-url="{ab_chart}"' in body
    assert f'<canvas data-chart="loss-chart" data-chart-url="{loss_chart}"' in body
    assert "mean_quality" in body and "0.700" in body and "0.500" in body  # candidate vs live
    assert "dropped.dupes" in body
    # Dataset and metrics keys read as labels, with the wire name in a tooltip.
    assert '<th title="filteredCount">Rows kept by the filters</th><td class="num">96</td>' in body
    assert '<th title="validation_accuracy">Validation accuracy</th>' in body
    assert reverse("training-dataset-download", args=[job.dataset.pk]) + "?split=train" in body
    assert "step 2" in body  # the timeline
    assert "Step 6 of 8: awaiting approval" in body  # the progress bar


def test_it_escapes_event_text(client, alice, job):
    client.force_login(alice)
    body = client.get(reverse("training-job-detail", args=[job.pk])).content.decode()
    assert "<script>alert('event')</script>" not in body
    assert "&lt;script&gt;alert(&#x27;event&#x27;)&lt;/script&gt;" in body


def test_it_shows_decision_buttons_to_reviewers(client, alice, job):
    client.force_login(alice)
    body = client.get(reverse("training-job-detail", args=[job.pk])).content.decode()
    assert reverse("training-job-approve", args=[job.pk]) in body
    assert reverse("training-job-reject", args=[job.pk]) in body
    assert "hx-confirm" in body


def test_it_hides_buttons_from_viewers(client, bob, job):
    client.force_login(bob)
    body = client.get(reverse("training-job-detail", args=[job.pk])).content.decode()
    assert reverse("training-job-approve", args=[job.pk]) not in body
    assert reverse("training-job-cancel", args=[job.pk]) not in body
    assert "Awaiting a reviewer" in body


def test_it_redirects_anonymous_users(client, job):
    response = client.get(reverse("training-job-detail", args=[job.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_it_forbids_users_without_view_permission(client, django_user_model, job):
    client.force_login(django_user_model.objects.create_user("mallory"))
    assert client.get(reverse("training-job-detail", args=[job.pk])).status_code == 403


def test_it_404s_for_a_missing_job(client, alice, db):
    client.force_login(alice)
    assert client.get(reverse("training-job-detail", args=[999])).status_code == 404


def test_it_rejects_post(client, alice, job):
    client.force_login(alice)
    assert client.post(reverse("training-job-detail", args=[job.pk])).status_code == 405


def test_it_renders_a_job_without_any_results_yet(client, alice, assistant):
    job = TrainingJob.objects.create(assistant=assistant, trigger="manual", status="pending")
    client.force_login(alice)
    body = client.get(reverse("training-job-detail", args=[job.pk])).content.decode()
    assert "No A/B test (yet)" in body and "Not evaluated yet" in body and "No dataset yet" in body


def test_it_runs_a_constant_number_of_queries(client, alice, job, django_assert_max_num_queries):
    for i in range(30):
        JobEvent.objects.create(job=job, kind="note", message=f"more {i}", user=alice)
    client.force_login(alice)
    with django_assert_max_num_queries(8):
        response = client.get(reverse("training-job-detail", args=[job.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    # The whole timeline with who did what, the A/B panel and the candidate (no query per event).
    assert body.count('<span class="muted">by alice</span>') == 30 and "more 29" in body
    assert 'id="ab-lift">+8.7%' in body and "<dt>Candidate</dt><dd>shop-v2</dd>" in body


def test_htmx_get_is_the_full_page_for_hx_select(client, alice, job):
    client.force_login(alice)
    response = client.get(reverse("training-job-detail", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert b'id="job-body"' in response.content


def test_the_loss_curve_reads_without_javascript(client, alice, job):
    # The canvas needs JavaScript; its numbers are in a table next to it.
    client.force_login(alice)
    body = client.get(reverse("training-job-detail", args=[job.pk])).content.decode()
    table = body.split('id="loss-data"', 1)[1].split("</details>", 1)[0]
    assert '<th class="num">train_loss</th>' in table and '<th class="num">valid_loss</th>' in table
    assert '<td>1</td><td class="num">1.2000</td><td class="num">1.3000</td>' in table
    assert '<td>2</td><td class="num">0.9000</td><td class="num">–</td>' in table


def test_a_local_job_shows_the_live_version_it_trained_on_not_a_provider_model(
    client, alice, assistant, live_v1
):
    job = TrainingJob.objects.create(
        assistant=assistant,
        trigger="manual",
        backend="local",
        base_model="gpt-4o-mini-2024-07-18",
        base_version=live_v1,
    )
    client.force_login(alice)
    response = client.get(reverse("training-job-detail", args=[job.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert f'<dt>Based on</dt><dd id="job-base">{live_v1.name}</dd>' in body
    assert "gpt-4o-mini" not in body


def test_a_provider_job_shows_its_base_model(client, alice, assistant):
    job = TrainingJob.objects.create(
        assistant=assistant, trigger="manual", backend="openai", base_model="gpt-4o-mini-2024-07-18"
    )
    client.force_login(alice)
    body = client.get(reverse("training-job-detail", args=[job.pk])).content.decode()
    assert 'id="job-base">nothing (first version)</dd>' in body
    assert "<dt>Provider base model</dt><dd>gpt-4o-mini-2024-07-18</dd>" in body
