"""A reviewer gets the awaiting-approval email (locmem backend), follows its link, and approves the job."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from playwright.sync_api import expect

from assistants.models import Deployment
from assistants.services import deployment_make_live, model_version_create
from tests.browser.conftest import LIVE_DB, screenshot
from training import services as training
from training.models import TrainingJob

pytestmark = LIVE_DB


@pytest.fixture
def carol(db) -> User:
    user = User.objects.create_user("carol", email="carol@example.com", password="carol-password")
    user.groups.add(Group.objects.get(name="reviewer"))
    return user


@pytest.fixture
def job(assistant) -> TrainingJob:
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    v2 = model_version_create(assistant=assistant, name="shop-v2", base_version=v1)
    return TrainingJob.objects.create(
        assistant=assistant,
        trigger="threshold",
        status="testing",
        base_version=v1,
        new_model_version=v2,
        reasons=["Feedback count (150) >= threshold (100)"],
        ab_test_results={
            "controlSuccessRate": 0.70,
            "variantSuccessRate": 0.761,
            "improvement": 0.087,
            "sampleSize": 810,
            "pValue": 0.016,
            "sequentialPValue": 0.0123,
            "ci": [0.004, 0.17],
            "srmPValue": 0.65,
        },
    )


def test_a_reviewer_opens_the_job_from_the_email_and_approves_it(page, live_server, settings, carol, job):
    settings.SITE_URL = live_server.url
    # The orchestrator decides the job needs a reviewer; the email goes out once that is committed.
    assert training.job_transition(job=job, to="awaiting_approval", message="Awaiting a reviewer's approval.")

    [message] = mail.outbox
    assert message.to == ["carol@example.com"]
    assert f"job {job.pk} awaits approval" in message.body
    assert "improvement +8.7% (+0.4% to +17.0%), p = 0.016" in message.body
    [link] = re.findall(r"Open it: (\S+)", message.body)
    assert link == f"{live_server.url}/jobs/{job.pk}/"

    page.goto(link)  # not logged in yet: the login page, then back to the job
    page.fill("#id_username", "carol")
    page.fill("#id_password", "carol-password")
    page.click("button[type=submit]")
    expect(page).to_have_url(link)
    expect(page.locator("#job-status")).to_have_text("Awaiting Approval")
    screenshot(page, "job-from-email.png")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#approve").click()
    expect(page.locator("#job-status")).to_have_text("Deployed")
    job.refresh_from_db()
    assert job.status == "deployed" and job.decided_by == carol
    deployed = mail.outbox[-1]
    assert deployed.subject == f"[Trainloop] Shop support: job {job.pk} — job deployed"
    assert "deployed shop-v2 (approved by carol)" in deployed.body
