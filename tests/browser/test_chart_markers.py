"""Deployment markers on the overview's trend chart: deployments on the same day share one caption, and
captions of nearby days are put on separate rows instead of running into each other (static/js/charts.js).
Captions are read from the canvas calls the page makes, with the width the browser measured for each."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from assistants.models import Deployment
from assistants.services import deployment_make_live, model_version_create
from feedback.models import Feedback, Interaction
from feedback.rollups import rollups_refresh
from tests.browser.conftest import LIVE_DB, expect_chart, log_in

pytestmark = LIVE_DB

# Every fillText on a canvas, with the box it covers (Chart.js draws ticks and legends the same way).
RECORD_CAPTIONS = """
window.__captions = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
  window.__captions.push({ text: String(text), x, y, width: this.measureText(String(text)).width });
  return fillText.call(this, text, x, y, ...rest);
};
"""


def _deploy(assistant, name: str, when: dt.datetime) -> None:
    version = model_version_create(assistant=assistant, name=name)
    deployment_make_live(version=version, reason=Deployment.Reason.APPROVAL)
    Deployment.objects.filter(version=version).update(created_at=when)
    Interaction.objects.create(assistant=assistant, model_version=version, request_id=name, response="ok",
                               created_at=when)  # fmt: skip
    Feedback.objects.create(interaction=Interaction.objects.get(request_id=name), assistant=assistant,
                            kind="rating", rating=5, helpful=True, created_at=when)  # fmt: skip


def test_same_day_deployments_share_a_caption_and_nearby_captions_do_not_overlap(page, alice, assistant):
    today = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)
    _deploy(assistant, "shop-v1", today - dt.timedelta(days=2))
    _deploy(assistant, "shop-v2", today - dt.timedelta(days=1))
    _deploy(assistant, "shop-v3", today - dt.timedelta(hours=2))
    _deploy(assistant, "shop-v4", today - dt.timedelta(hours=1))
    rollups_refresh()
    page.add_init_script(RECORD_CAPTIONS)
    log_in(page, "alice", "alice-password")
    page.goto(f"/assistants/{assistant.slug}/")
    expect_chart(page, "trend-chart")
    captions = [c for c in page.evaluate("window.__captions") if "shop-v" in c["text"]]
    texts = sorted(c["text"] for c in captions)
    assert texts == ["shop-v1 (approval)", "shop-v2 (approval)", "shop-v3 (approval), shop-v4 (approval)"]
    for i, a in enumerate(captions):
        for b in captions[i + 1 :]:
            same_row = abs(a["y"] - b["y"]) < 11  # 11 px font
            apart = a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
            assert not same_row or apart, f"{a['text']!r} runs into {b['text']!r}"
