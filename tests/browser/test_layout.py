"""No element overflows its card, at a laptop's 1366 px and a phone's 390 px, on the pages a reviewer
reads most: overview, job, models, experiments. Checked by element boxes; screenshots go to a tmp dir."""

from __future__ import annotations

import pytest

from abtesting.models import Experiment
from assistants.models import Deployment
from assistants.services import deployment_make_live, model_version_create
from tests.browser.conftest import LIVE_DB, log_in
from training.models import TrainingDataset, TrainingJob

pytestmark = LIVE_DB

WIDTHS = (1366, 390)

# For each element inside a .card: its right edge past the card's content edge, unless an ancestor
# between them is a deliberate scroll container (overflow-x auto or scroll) that holds it.
OVERFLOWS = """() => {
  const found = [];
  for (const card of document.querySelectorAll(".card")) {
    const box = card.getBoundingClientRect();
    const right = box.right - parseFloat(getComputedStyle(card).borderRightWidth) + 0.5;
    for (const el of card.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.right <= right) continue;
      let scrolled = false;
      for (let up = el.parentElement; up && up !== card; up = up.parentElement) {
        if (["auto", "scroll"].includes(getComputedStyle(up).overflowX)) { scrolled = true; break; }
      }
      if (!scrolled) {
        const cls = typeof el.className === "string" && el.className.trim();
        const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (cls ? "." + cls : "");
        const where = card.id || card.querySelector("h1, h2")?.textContent.trim();
        found.push(`${name} in card ${where}: ${Math.round(r.right - right)} px past`);
      }
    }
  }
  return found;
}"""


@pytest.fixture
def reviewer_pages(assistant) -> dict[str, str]:
    """The demo's shapes with long values: a local job's metrics, a dataset's stats, versions' metrics."""
    v1 = model_version_create(
        assistant=assistant,
        name="shop-v1",
        metrics={"validation_accuracy": 0.71, "coverage": 0.93, "threshold": 0.42, "answered_accuracy": 0.76},
    )
    deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    metrics = {
        "validation_accuracy": 0.8123,
        "coverage": 0.9412,
        "answered_accuracy": 0.8630,
        "threshold": 0.41,
        "threshold_source": "kept from the base (fewer than 20 validation examples)",
        "train_examples": 96,
        "fallback_examples": 12,
        "validation_examples": 11,
    }
    v2 = model_version_create(
        assistant=assistant, name="shop-v2-20250101-120000-local", base_version=v1, metrics=metrics
    )
    dataset = TrainingDataset.objects.create(
        assistant=assistant,
        format="openai_chat",
        train_count=96,
        validation_count=11,
        stats={
            "sourceCount": 120,
            "candidateCount": 110,
            "filteredCount": 96,
            "tokenizer": "o200k_base",
            "filteredByReason": {"low_rating": 10},
            "dedup": {"similarity": "Jaccard over word 3-shingles of question + answer", "numPerm": 128},
        },
    )
    job = TrainingJob.objects.create(
        assistant=assistant,
        trigger="threshold",
        status="awaiting_approval",
        backend="local",
        base_version=v1,
        new_model_version=v2,
        dataset=dataset,
        reasons=["Feedback count (150) >= threshold (100)"],
        metrics=metrics,
    )
    experiment = Experiment.objects.create(assistant=assistant, control=v1, variant=v2, status="running")
    return {
        "overview": f"/assistants/{assistant.slug}/",
        "job": f"/jobs/{job.pk}/",
        "models": f"/models/?assistant={assistant.slug}",
        "experiments": "/experiments/",
        "experiment": f"/experiments/{experiment.pk}/",
    }


@pytest.mark.parametrize("width", WIDTHS)
def test_no_element_overflows_its_card(page, alice, reviewer_pages, width, tmp_path_factory):
    shots = tmp_path_factory.mktemp(f"layout-{width}")
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, "alice", "alice-password")
    problems: list[str] = []
    for name, url in reviewer_pages.items():
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        problems += [f"{name} at {width} px: {p}" for p in page.evaluate(OVERFLOWS)]
        # The page itself does not scroll sideways either.
        if page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1"):
            problems.append(f"{name} at {width} px: the page scrolls sideways")
    assert problems == [], "\n".join(problems)
