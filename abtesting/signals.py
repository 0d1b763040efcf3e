"""Signals other apps listen to (abtesting never imports them: training sits above it)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent once, after the commit, when an experiment leaves ``running`` (concluded by a decision or stopped
# by a person), with ``experiment=<Experiment>``. Listeners read ``experiment.status``,
# ``experiment.decision`` and ``experiment.last_analysis["ab_test_results"]``.
experiment_concluded = Signal()
