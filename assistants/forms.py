"""Form fields for pages that filter by assistant, and the models page's query string."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms

from assistants.models import Assistant
from dashboard.forms import FilterForm, IsoDateField


class AssistantChoiceField(forms.ChoiceField):
    """An assistant by slug, from the assistants the page has already loaded (no query of its own).

    Cleans to the ``Assistant``, or None when none is given; an unknown slug is invalid.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)
        self._by_slug: dict[str, Assistant] = {}

    @property
    def assistants(self) -> list[Assistant]:
        return list(self._by_slug.values())

    @assistants.setter
    def assistants(self, assistants: Sequence[Assistant]) -> None:
        self._by_slug = {a.slug: a for a in assistants}
        self.choices = [(a.slug, a.name) for a in assistants]

    def clean(self, value: Any) -> Assistant | None:
        return self._by_slug.get(super().clean(value))


class AssistantFilterForm(FilterForm):
    """A page's filters that include an assistant, chosen among the assistants the page has loaded."""

    assistant = AssistantChoiceField()

    def __init__(self, data: Any, *, assistants: Sequence[Assistant]) -> None:
        super().__init__(data)
        self.fields["assistant"].assistants = assistants


class ModelsPageForm(FilterForm):
    """The models page: which assistant, and a day for "what was live on that day" (a bad day is shown as
    an error next to the date box)."""

    assistant = AssistantChoiceField()
    at = IsoDateField()

    def __init__(self, data: Any, *, assistants: Sequence[Assistant]) -> None:
        super().__init__(data)
        self.fields["assistant"].assistants = assistants
