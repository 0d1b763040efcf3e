"""The experiments page's filters (query string)."""

from __future__ import annotations

from typing import Any

from django import forms

from abtesting.models import Experiment
from assistants.forms import AssistantFilterForm
from dashboard.pagination import PageField


class ExperimentFilterForm(AssistantFilterForm):
    status = forms.ChoiceField(choices=Experiment.Status.choices)
    page = PageField()

    def selector_kwargs(self) -> dict[str, Any]:
        """``abtesting.selectors.experiment_list``'s arguments."""
        values = self.values
        return {
            "assistant": values["assistant"],
            # An assistant nobody has (a typo, a NUL byte PostgreSQL would refuse) lists no experiment,
            # without reaching the database.
            "assistant_ids": [] if self.dropped("assistant") else None,
            "status": values["status"] or None,
        }
