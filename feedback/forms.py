"""The feedback explorer's filters (query string)."""

from __future__ import annotations

from typing import Any

from django import forms

from assistants.forms import AssistantFilterForm
from dashboard.forms import IsoDateField, day_after, day_start
from dashboard.pagination import PageField
from feedback.models import CATEGORY_FIELDS, Feedback

# Larger ids overflow a bigint: the database could not compare them.
MAX_ID = 2**63 - 1


class ExplorerFilterForm(AssistantFilterForm):
    since = IsoDateField()
    until = IsoDateField()
    rating = forms.IntegerField(min_value=1, max_value=5)
    helpful = forms.TypedChoiceField(
        choices=[("yes", "Yes"), ("no", "No")], coerce=lambda value: value == "yes", empty_value=None
    )
    kind = forms.ChoiceField(choices=Feedback.Kind.choices)
    category = forms.ChoiceField(choices=[(name, name) for name in CATEGORY_FIELDS])
    category_max = forms.IntegerField(min_value=1, max_value=5)
    model_version = forms.IntegerField(min_value=1, max_value=MAX_ID)
    page = PageField()

    def selector_kwargs(self) -> dict[str, Any]:
        """``feedback.selectors.feedback_for_explorer``'s filters."""
        values = self.values
        return {
            "assistant": values["assistant"],
            "since": day_start(values["since"]),
            "until": day_after(values["until"]),
            "rating": values["rating"],
            "helpful": values["helpful"],
            "kind": values["kind"] or None,
            "model_version_id": values["model_version"],
            "category": values["category"] or None,
            "category_max": values["category_max"],
        }
