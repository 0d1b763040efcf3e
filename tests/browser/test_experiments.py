"""A reviewer watches a running A/B test's live (interim) figures, stops it, and it reads "no decision"."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from abtesting import services
from abtesting.models import Experiment, ExperimentSnapshot
from abtesting.routing import route
from assistants.models import Deployment
from assistants.services import deployment_make_live, model_version_create
from feedback.models import Feedback, Interaction
from feedback.services import feedback_submit, interaction_log
from tests.browser.conftest import LIVE_DB, expect_chart, log_in, screenshot

pytestmark = LIVE_DB


@pytest.fixture
def experiment(assistant) -> Experiment:
    """A running test with 300 customers' interactions and thumbs, routed and logged as the gateway does."""
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    v2 = model_version_create(assistant=assistant, name="shop-v2", base_version=v1)
    experiment = services.experiment_start(assistant=assistant, control=v1, variant=v2)
    rng = random.Random(7)
    for i in range(300):
        user = f"customer-{rng.randrange(120)}"
        r = route(assistant=assistant, user_ref=user)
        logged = interaction_log(
            assistant=assistant,
            request_id=f"r{i}",
            messages=[{"role": "user", "content": "Where is my parcel?"}],
            response=f"Answer from {r.model_version.name}",
            user_ref=user,
            model_version=r.model_version,
            experiment_id=r.experiment_id,
            arm=r.arm,
        )
        p = 0.8 if r.arm == "variant" else 0.6
        feedback_submit(interaction=logged.interaction, data={"helpful": rng.random() < p})
    # Stored a few minutes ago: the live count leaves out the newest rows (uncommitted ids on PostgreSQL).
    earlier = timezone.now() - timedelta(minutes=5)
    Interaction.objects.filter(experiment_id=experiment.pk).update(created_at=earlier)
    Feedback.objects.filter(assistant=assistant).update(created_at=earlier)
    return experiment


def test_a_running_experiment_shows_interim_figures_and_a_stop_reads_no_decision(page, alice, experiment):
    yesterday = timezone.localdate() - timedelta(days=1)
    results = {"controlSuccessRate": 0.6, "variantSuccessRate": 0.78, "improvement": 0.3, "ci": [-0.05, 0.6]}
    ExperimentSnapshot.objects.create(
        experiment=experiment, day=yesterday, analysis={"ab_test_results": results}
    )
    log_in(page, "alice", "alice-password")
    page.goto(f"/experiments/{experiment.pk}/")
    # The daily history: two charts fetched from their JSON, and the same numbers in a table.
    expect_chart(page, "rates-chart")
    expect_chart(page, "lift-chart")
    page.locator("#history-data summary").click()
    row = page.locator("#history-data tbody tr").first
    expect(row).to_contain_text(yesterday.isoformat())
    expect(row).to_contain_text("78.0%")
    expect(page.locator("canvas[data-chart=ab-chart]")).to_have_count(0)  # no planned look yet: no arms chart
    live = page.locator("#live-panel")
    expect(live).to_contain_text("Live figures (interim)")
    expect(live.get_by_test_id("interim-note")).to_contain_text(
        "valid however often you look; the decision is taken at planned looks"
    )
    # Figures computed now from the logged traffic: users, rates, and the confidence sequence of the lift.
    users = Interaction.objects.filter(experiment_id=experiment.pk).values("user_ref").distinct().count()
    expect(live).to_contain_text(f"{users}")
    expect(live.locator("#live-lift")).to_have_text(
        signed_pct(services.experiment_interim(experiment=experiment)["relative_lift"])
    )
    expect(live.locator("#live-cs")).to_contain_text(" to ")
    expect(live).to_contain_text("not valid after peeking")  # no fixed-horizon p-value while running
    screenshot(page, "experiment-interim.png")

    page.fill("#stop-reason", "seen enough in the demo")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop experiment").click()
    expect(page.locator("#experiment-status")).to_have_text("stopped")
    expect(page.locator("#experiment-outcome")).to_contain_text("Stopped early by alice: no decision")
    expect(page.locator("#ab-verdict")).to_contain_text("Stopped early by alice: no decision")
    expect(page.locator("#live-panel")).to_have_count(0)
    expect(page.locator("#ab-panel")).not_to_contain_text("variant_better")
    # The swapped-in panel's chart is fetched too: the figures when the test was stopped.
    expect_chart(page, "ab-chart")
    screenshot(page, "experiment-stopped.png")

    page.goto("/experiments/")
    expect(page.locator("#results")).to_contain_text("stopped early by alice: no decision")
    experiment.refresh_from_db()
    assert experiment.status == "stopped" and experiment.last_analysis["verdict"] == "no_decision"


def signed_pct(value: float) -> str:
    """The dashboard's signed percentage, e.g. +12.3%."""
    return f"{value * 100:+.1f}%"
