"""The progress bar follows a running job by htmx polling, and the page updates when the job settles."""

from __future__ import annotations

from playwright.sync_api import expect

from assistants.services import model_version_create
from tests.browser.conftest import LIVE_DB, log_in
from training.models import TrainingJob

pytestmark = LIVE_DB


def test_the_progress_bar_advances_while_a_job_runs(page, alice, assistant):
    job = TrainingJob.objects.create(assistant=assistant, trigger="manual", status="preparing")
    log_in(page, "alice", "alice-password")
    page.goto(f"/jobs/{job.pk}/")
    bar = page.locator(f"#job-progress-{job.pk} progress")
    expect(bar).to_have_attribute("value", "25")

    TrainingJob.objects.filter(pk=job.pk).update(status="training", metrics={"progress": 0.5})
    expect(bar).to_have_attribute("value", "31")
    TrainingJob.objects.filter(pk=job.pk).update(status="evaluating")
    expect(bar).to_have_attribute("value", "50")

    # Awaiting approval: polling stops and the page refreshes itself to show the decision buttons.
    candidate = model_version_create(assistant=assistant, name="shop-v2")
    TrainingJob.objects.filter(pk=job.pk).update(status="awaiting_approval", new_model_version=candidate)
    expect(page.locator("#approve")).to_be_visible()
    expect(page.locator("#job-status")).to_have_text("Awaiting Approval")

    # ...and stays stopped: no progress request in the next two polling intervals.
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "/progress/" in request.url else None)
    page.wait_for_timeout(4500)
    assert polls == []
