"""The training pages' query-string parameters: the jobs list's filters, the per-prompt table's filter
and page, a dataset download's split, the track record's weeks; and the overview's "Train and compare"
form."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from assistants.forms import AssistantFilterForm
from dashboard.forms import FilterForm
from dashboard.pagination import PageField
from training.comparison_spec import (
    BACKENDS,
    MAX_CANDIDATES,
    MAX_TOP_K,
    MIN_TOP_K,
    ONLINE_BEST_AB,
    ONLINE_MULTI_ARM,
    ComparisonInvalid,
    ComparisonSpec,
    comparison_clean,
)
from training.models import RetrainPolicy, TrainingJob
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


# What "Train and compare" offers when the policy names no candidates: three local trainers that answer
# differently (thresholds tuned for accuracy, words only, a fixed 90 % answer rate).
DEFAULT_CANDIDATES = (
    {"label": "A", "backend": "local", "base_model": "", "settings": {}},
    {"label": "B", "backend": "local", "base_model": "", "settings": {"features": "word"}},
    {
        "label": "C",
        "backend": "local",
        "base_model": "",
        "settings": {"threshold": "coverage", "target_coverage": 0.9},
    },
)


class ComparisonForm(forms.Form):
    """The overview's "Train and compare": up to six candidate rows (a row without a label is left out),
    the online test and k. Prefilled with the policy's comparison candidates (or ``DEFAULT_CANDIDATES``);
    checked by ``training.comparison_spec``, as the API and the policy are."""

    online = forms.ChoiceField(
        choices=[(ONLINE_BEST_AB, "A/B test of the best"), (ONLINE_MULTI_ARM, "multi-arm test of the top k")],
        initial=ONLINE_BEST_AB,
        label="Online test",
    )
    top_k = forms.IntegerField(min_value=MIN_TOP_K, max_value=MAX_TOP_K, initial=MIN_TOP_K, label="Top k")

    def __init__(self, *args: Any, policy: RetrainPolicy | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy
        self.spec: ComparisonSpec | None = None
        rows = list((policy.compare_candidates if policy else None) or DEFAULT_CANDIDATES)
        if policy is not None and policy.compare_candidates:
            self.fields["online"].initial = policy.compare_online
            self.fields["top_k"].initial = policy.compare_top_k
        for i in range(1, MAX_CANDIDATES + 1):
            row = rows[i - 1] if i <= len(rows) else {}
            self.fields[f"candidate_{i}_label"] = forms.CharField(
                required=False, max_length=40, initial=row.get("label", ""), label=f"Candidate {i} label"
            )
            self.fields[f"candidate_{i}_backend"] = forms.ChoiceField(
                choices=[(b, b) for b in BACKENDS],
                required=False,  # a row without a label is left out, whatever it says
                initial=row.get("backend", "local"),
                label="Trainer",
            )
            self.fields[f"candidate_{i}_base_model"] = forms.CharField(
                required=False, max_length=200, initial=row.get("base_model", ""), label="Base model"
            )
            self.fields[f"candidate_{i}_settings"] = forms.CharField(
                required=False,
                max_length=1000,
                initial=json.dumps(row.get("settings") or {}),
                label="Settings (JSON)",
            )

    def rows(self) -> list[dict[str, Any]]:
        """The candidate rows' bound fields, for the template's table."""
        rows = []
        for i in range(1, MAX_CANDIDATES + 1):
            fields = {
                name: self[f"candidate_{i}_{name}"] for name in ("label", "backend", "base_model", "settings")
            }
            errors = [error for field in fields.values() for error in field.errors]
            rows.append({**fields, "number": i, "errors": errors})
        return rows

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        candidates = []
        for i in range(1, MAX_CANDIDATES + 1):
            label = (data.get(f"candidate_{i}_label") or "").strip()
            if not label:
                continue
            raw = data.get(f"candidate_{i}_settings") or "{}"
            try:
                settings = json.loads(raw)
            except ValueError:
                self.add_error(
                    f"candidate_{i}_settings", 'Write the settings as JSON, e.g. {"features": "word"}.'
                )
                continue
            candidates.append(
                {
                    "label": label,
                    "backend": data.get(f"candidate_{i}_backend") or "local",
                    "base_model": data.get(f"candidate_{i}_base_model") or "",
                    "settings": settings,
                }
            )
        if self.errors:
            return data
        try:
            self.spec = comparison_clean(
                candidates,
                data.get("online") or ONLINE_BEST_AB,
                data.get("top_k") or MIN_TOP_K,
                default_base_model=self.policy.base_model if self.policy else RetrainPolicy().base_model,
            )
        except ComparisonInvalid as exc:
            self.add_error("top_k" if exc.field == "top_k" else None, str(exc))
        return data
