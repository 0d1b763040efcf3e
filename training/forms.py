"""The training pages' query-string parameters: the jobs list's filters, the per-prompt table's filter
and page, a dataset download's split, the track record's weeks."""

from __future__ import annotations

from typing import Any

from django import forms

from assistants.forms import AssistantFilterForm
from dashboard.forms import FilterForm
from dashboard.pagination import PageField
from training.models import TrainingJob
from training.selectors.track_record import TRACK_RECORD_MAX_WEEKS, TRACK_RECORD_WEEKS


class JobFilterForm(AssistantFilterForm):
    status = forms.ChoiceField(choices=TrainingJob.Status.choices)
    trigger = forms.ChoiceField(choices=TrainingJob.Trigger.choices)
    page = PageField()

    def selector_kwargs(self) -> dict[str, Any]:
        """``training.selectors.job_list``'s arguments."""
        values = self.values
        return {
            "assistant": values["assistant"],
            # An assistant nobody has (a typo, a NUL byte PostgreSQL would refuse) lists no job, without
            # reaching the database.
            "assistants": [] if self.dropped("assistant") else None,
            "status": values["status"] or None,
            "trigger": values["trigger"] or None,
        }


EVAL_PROMPT_FILTERS = ("all", "differs")


class EvalPromptsForm(FilterForm):
    """``?prompts=all|differs&prompts_page=N`` on a job's page: a bad filter is a 400 that says what to
    give (the links only make good ones); a bad page number is page 1, as on every list."""

    strict = ("prompts",)
    prompts = forms.ChoiceField(
        choices=[(name, name) for name in EVAL_PROMPT_FILTERS],
        error_messages={
            "invalid_choice": (
                f"The prompts filter must be one of {', '.join(EVAL_PROMPT_FILTERS)}, not '%(value)s'."
            )
        },
    )
    prompts_page = PageField()

    def clean_prompts(self) -> str:
        return self.cleaned_data["prompts"] or "all"


class DatasetSplitForm(FilterForm):
    """``?split=train|validation`` on a dataset download (train when not given)."""

    split = forms.ChoiceField(choices=[("train", "train"), ("validation", "validation")])

    def clean_split(self) -> str:
        return self.cleaned_data["split"] or "train"


class TrackRecordForm(FilterForm):
    """How many local weeks the track record's weekly table and chart cover (a bad value: the default)."""

    weeks = forms.IntegerField(min_value=1, max_value=TRACK_RECORD_MAX_WEEKS)

    def weeks_or_default(self) -> int:
        return self.values["weeks"] or TRACK_RECORD_WEEKS
