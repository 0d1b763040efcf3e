"""``{% analysis_panel experiment results=... as ab %}``: the A/B panel's figures on any page.

Pages of apps above A/B testing (a training job's) show the panel without building it in their views:
their template loads this library and includes ``abtesting/snippets/analysis.html``.
"""

from __future__ import annotations

from typing import Any

from django import template

from abtesting import panels
from abtesting.models import Experiment

register = template.Library()


@register.simple_tag
def analysis_panel(experiment: Experiment | None, results: dict | None = None) -> dict[str, Any] | None:
    """The panel of ``experiment``, or of the seed-style ``results`` when the experiment is gone."""
    return panels.analysis_panel(experiment or None, results=results or None)
