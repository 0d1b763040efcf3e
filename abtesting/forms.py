"""The experiments page's filters (query string)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms

from abtesting.models import Experiment
from assistants.forms import AssistantChoiceField
from assistants.models import Assistant
from dashboard.forms import FilterForm
from dashboard.pagination import PageField


class ExperimentFilterForm(FilterForm):
    assistant = AssistantChoiceField()
    status = forms.ChoiceField(choices=Experiment.Status.choices)
    page = PageField()

    def __init__(self, data: Any, *, assistants: Sequence[Assistant]) -> None:
        super().__init__(data)
        self.fields["assistant"].assistants = assistants

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
