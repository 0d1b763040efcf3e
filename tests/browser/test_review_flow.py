"""A reviewer takes a job from awaiting approval to deployed, or to rejected, in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from abtesting.models import Experiment
from assistants.models import Deployment
from assistants.services import deployment_make_live, model_version_create
from feedback.services import feedback_submit, interaction_log
from tests.browser.conftest import LIVE_DB, expect_chart, log_in, screenshot
from training.models import JobEvent, TrainingJob

ANALYSIS = {
    "control": {
        "n_assigned": 1010,
        "units": 300,
        "n": 400,
        "successes": 280,
        "rate": 0.70,
        "rate_low": 0.653,
        "rate_high": 0.743,
    },
    "variant": {
        "n_assigned": 990,
        "units": 310,
        "n": 410,
        "successes": 312,
        "rate": 0.761,
        "rate_low": 0.717,
        "rate_high": 0.800,
    },
    "absolute_lift": 0.061,
    "relative_lift": 0.087,
    "fixed_lift_low": 0.01,
    "fixed_lift_high": 0.165,
    "fixed_z": 2.41,
    "fixed_p_value": 0.016,
    "alpha": 0.05,
    "sequential": {
        "method": "group_sequential",
        "look": 5,
        "planned_looks": 7,
        "p_value": 0.0123,
        "ci_low": 0.004,
        "ci_high": 0.17,
        "information_fraction": 0.5,
        "boundary_z": 2.8,
        "z": 3.1,
    },
    "srm_p_value": 0.65,
    "srm_ok": True,
    "required_units": 1200,
    "progress": 0.508,
    "verdict": "variant_better",
    "reason": "Sequential test significant at look 5.",
}

pytestmark = LIVE_DB


@pytest.fixture
def job(assistant) -> TrainingJob:
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    v2 = model_version_create(assistant=assistant, name="shop-v2", base_version=v1)
    for i in range(12):
        logged = interaction_log(
            assistant=assistant,
            request_id=f"r{i}",
            response="answer",
            messages=[{"role": "user", "content": f"question {i}"}],
        )
        feedback_submit(interaction=logged.interaction, data={"helpful": i % 3 != 0, "rating": 4, "tone": 5})
    experiment = Experiment.objects.create(
        assistant=assistant,
        control=v1,
        variant=v2,
        last_analysis=ANALYSIS,
        status="concluded",
        decision="variant_better",
    )
    job = TrainingJob.objects.create(
        assistant=assistant,
        trigger="threshold",
        status="awaiting_approval",
        base_version=v1,
        new_model_version=v2,
        experiment=experiment,
        reasons=["Feedback count (150) >= threshold (100)"],
        metrics={
            "validation_accuracy": 0.82,
            "loss_curve": [{"step": s, "train_loss": 1.5 / s} for s in range(1, 9)],
        },
        evaluation={
            "prompts": 40,
            "candidate": {"accuracy": 0.82, "mean_quality": 0.71},
            "live": {"accuracy": 0.74, "mean_quality": 0.66},
            "improvement": 0.108,
        },
    )
    JobEvent.objects.create(
        job=job,
        kind="transition",
        from_status="testing",
        to_status="awaiting_approval",
        message="Awaiting a reviewer's approval.",
    )
    return job


def test_a_reviewer_approves_a_job_and_sees_it_deployed(page, alice, job, assistant):
    log_in(page, "alice", "alice-password")
    expect(page.locator(".switcher .badge")).to_have_text("1 awaiting approval")
    expect(page.get_by_text("Awaiting your approval")).to_be_visible()
    expect_chart(page, "trend-chart")
    expect_chart(page, "categories-chart")
    expect(page.locator("#category-ratings")).to_contain_text("accuracy")  # the figures, as text too
    page.locator("#trend-data summary").click()  # the trend's numbers, under the chart
    expect(page.locator("#trend-data table")).to_contain_text("66.7%")  # 8 of 12 helpful, today
    expect(page.locator("#trend-data")).to_contain_text("shop-v1 (initial)")
    screenshot(page, "overview.png")

    page.get_by_role("link", name="review it").click()
    expect(page.locator("#job-status")).to_have_text("Awaiting Approval")
    panel = page.locator("#ab-panel")
    expect(panel.locator("#ab-verdict")).to_have_text("variant_better")
    expect(panel.locator("#ab-lift")).to_have_text("+8.7%")
    expect(panel.locator("#ab-lift-low")).to_have_text("+0.4%")  # lift at least, 95 % confidence
    expect(panel).to_contain_text("610 / 1200")  # users with feedback vs the plan
    expect_chart(page, "ab-chart")
    expect_chart(page, "loss-chart")
    page.locator("#loss-data summary").click()
    expect(page.locator("#loss-data table")).to_contain_text("train_loss")
    screenshot(page, "job-detail.png")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#approve").click()
    expect(page.locator("#job-status")).to_have_text("Deployed")
    expect(page.locator("#decision")).to_contain_text("shop-v2 is deployed")
    expect(page.locator("#timeline")).to_contain_text("by alice")
    job.refresh_from_db()
    assistant.refresh_from_db()
    assert job.status == "deployed" and job.decided_by_id == alice.pk
    assert assistant.live_version_id == job.new_model_version_id
    screenshot(page, "job-deployed.png")


def test_a_reviewer_rejects_a_job_with_a_reason(page, alice, job):
    log_in(page, "alice", "alice-password")
    page.goto(f"/jobs/{job.pk}/")
    page.fill("#reject-reason", "Refund answers read too curt.")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#reject").click()
    expect(page.locator("#job-status")).to_have_text("Rejected")
    expect(page.locator("#decision")).to_contain_text("Reason: Refund answers read too curt.")
    job.refresh_from_db()
    assert job.status == "rejected" and job.decision_reason == "Refund answers read too curt."


def test_a_viewer_sees_no_buttons_and_a_forged_post_is_refused(page, bob, job):
    log_in(page, "bob", "bob-password")
    page.goto(f"/jobs/{job.pk}/")
    expect(page.locator("#decision")).to_contain_text("Awaiting a reviewer's approval.")
    expect(page.locator("#approve")).to_have_count(0)
    expect(page.locator("#reject")).to_have_count(0)
    # A hand-made POST with a valid CSRF token: only the permission check can stop it.
    status = page.evaluate(
        """async (url) => {
            const headers = JSON.parse(document.body.getAttribute("hx-headers"));
            const response = await fetch(url, {method: "POST", headers});
            return response.status;
        }""",
        f"/jobs/{job.pk}/approve/",
    )
    assert status == 403
    job.refresh_from_db()
    assert job.status == "awaiting_approval"


def test_a_refused_action_says_why_instead_of_doing_nothing(page, alice, job):
    # htmx swaps no 403: before errors.js the click changed nothing on the page and said nothing.
    from django.contrib.auth.models import Group

    log_in(page, "alice", "alice-password")
    page.goto(f"/jobs/{job.pk}/")
    alice.groups.set([Group.objects.get(name="viewer")])  # an admin demotes alice meanwhile
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#approve").click()
    expect(page.locator("#request-error")).to_be_visible()
    expect(page.locator("#request-error")).to_contain_text("Your account may not do this.")
    job.refresh_from_db()
    assert job.status == "awaiting_approval"
