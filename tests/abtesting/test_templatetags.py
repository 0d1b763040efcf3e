"""{% analysis_panel %}: the A/B panel's figures for pages of other apps (a training job's)."""

from __future__ import annotations

import pytest
from django.template import Context, Template

from abtesting.models import Experiment
from assistants.services import model_version_create

PANEL = Template(
    "{% load abtesting %}{% analysis_panel experiment results=results as ab %}"
    "{% if ab %}{% for arm in ab.arms %}{{ arm.name }}={{ arm.rate }} {% endfor %}"
    "lift={{ ab.relative_lift }} verdict={{ ab.verdict }}{% else %}none{% endif %}"
)


def _render(experiment=None, results=None) -> str:
    return PANEL.render(Context({"experiment": experiment, "results": results}))


@pytest.mark.django_db
def test_it_reads_the_experiments_last_analysis(assistant):
    experiment = Experiment.objects.create(
        assistant=assistant,
        control=model_version_create(assistant=assistant, name="shop-v1"),
        variant=model_version_create(assistant=assistant, name="shop-v2"),
        last_analysis={"control": {"rate": 0.5}, "variant": {"rate": 0.6}, "relative_lift": 0.2,
                       "verdict": "variant_better"},
    )  # fmt: skip
    assert _render(experiment) == "control=0.5 variant=0.6 lift=0.2 verdict=variant_better"


def test_a_job_whose_experiment_is_gone_shows_its_stored_results():
    results = {"controlSuccessRate": 0.5, "variantSuccessRate": 0.55, "improvement": 0.1}
    assert _render(None, results) == "control=0.5 variant=0.55 lift=0.1 verdict="


def test_no_experiment_and_no_results_is_no_panel():
    assert _render(None, {}) == "none"
