"""The comparison's pieces fit a laptop's and a phone's screen: the overview's open "Train and compare"
form and a comparison job's page (candidates table with long settings and errors). As test_layout.py."""

from __future__ import annotations

import pytest

from assistants.models import Deployment
from assistants.services import deployment_make_live, model_version_create
from tests.browser.conftest import LIVE_DB, log_in
from tests.browser.test_layout import OVERFLOWS, WIDTHS
from training.models import JobCandidate, TrainingJob

pytestmark = LIVE_DB


@pytest.fixture
def comparison_pages(assistant) -> dict[str, str]:
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    versions = [
        model_version_create(assistant=assistant, name=f"shop-v{n}-20250101-120000-local", base_version=v1)
        for n in (2, 3)
    ]
    job = TrainingJob.objects.create(
        assistant=assistant,
        trigger="manual",
        status="rejected",
        backend="openai",
        base_version=v1,
        new_model_version=versions[0],
        options={"comparison": {"online": "multi_arm", "top_k": 2}, "chosen": {"why": "candidate A …"}},
        evaluation={
            "comparison": {
                "prompts": 120,
                "best": "A",
                "runner_up": "B",
                "difference": [0.031, -0.012, 0.074],
                "distinguishable": False,
            }
        },
    )
    rows = [
        (
            "A",
            "local",
            "",
            {"threshold": "coverage", "target_coverage": 0.9, "features": "word"},
            versions[0],
        ),
        ("B", "local", "", {"threshold": "fixed", "threshold_value": 0.45}, versions[1]),
        ("fine-tune-long-label", "openai", "gpt-4o-mini-2024-07-18", {"n_epochs": 3, "batch_size": 8}, None),
    ]
    for position, (label, backend, base, settings, version) in enumerate(rows, 1):
        JobCandidate.objects.create(
            job=job,
            position=position,
            label=label,
            backend=backend,
            base_model=base,
            settings=settings,
            status="succeeded" if version else "failed",
            model_version=version,
            rank=position if version else None,
            evaluation={"score": 0.81, "score_ci": [0.74, 0.87]} if version else {},
            error=""
            if version
            else "The provider rejected the training file (invalid_training_file): "
            "the file has 3 examples with missing assistant messages. [param: training_file]",
        )
    return {"overview": f"/assistants/{assistant.slug}/", "comparison": f"/jobs/{job.pk}/"}


@pytest.mark.parametrize("width", WIDTHS)
def test_no_element_of_a_comparison_overflows_its_card(
    page, alice, comparison_pages, width, tmp_path_factory
):
    shots = tmp_path_factory.mktemp(f"comparison-layout-{width}")
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, "alice", "alice-password")
    problems: list[str] = []
    for name, url in comparison_pages.items():
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        page.wait_for_load_state("networkidle")
        if name == "overview":
            page.click("#compare summary")  # the form, opened
            assert page.is_visible("#compare-start")
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        problems += [f"{name} at {width} px: {p}" for p in page.evaluate(OVERFLOWS)]
        if page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1"):
            problems.append(f"{name} at {width} px: the page scrolls sideways")
    assert problems == [], "\n".join(problems)
