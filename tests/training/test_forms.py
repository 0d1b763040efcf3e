"""training.forms: the jobs list's filters, the per-prompt table's parameters, a download's split."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from training.forms import DatasetSplitForm, EvalPromptsForm, JobFilterForm

pytestmark = pytest.mark.django_db


def test_the_job_filters_become_the_selectors_arguments(assistant, other_assistant):
    form = JobFilterForm(
        QueryDict("assistant=bank&status=failed&trigger=manual"), assistants=[other_assistant, assistant]
    )
    assert form.selector_kwargs() == {
        "assistant": other_assistant,
        "assistants": None,
        "status": "failed",
        "trigger": "manual",
    }


@pytest.mark.parametrize("slug", ["nobody", "shop\x00"])
def test_an_unknown_assistant_selects_no_assistant_at_all(assistant, slug):
    form = JobFilterForm({"assistant": slug}, assistants=[assistant])
    assert form.selector_kwargs()["assistants"] == [] and form.values["assistant"] is None


def test_unknown_statuses_and_triggers_are_no_filter(assistant):
    form = JobFilterForm(QueryDict("status=bogus&trigger=x&page=0"), assistants=[assistant])
    kwargs = form.selector_kwargs()
    assert (kwargs["status"], kwargs["trigger"], kwargs["assistants"]) == (None, None, None)
    assert form.values["page"] == 1


def test_the_prompts_filter_is_all_unless_it_says_differs():
    assert EvalPromptsForm(QueryDict("")).values["prompts"] == "all"
    form = EvalPromptsForm(QueryDict("prompts=differs&prompts_page=3"))
    assert form.values == {"prompts": "differs", "prompts_page": 3} and form.problem() is None


def test_a_bad_prompts_filter_says_what_to_give():
    form = EvalPromptsForm(QueryDict("prompts=nope&prompts_page=x"))
    assert form.problem() == "The prompts filter must be one of all, differs, not 'nope'."


def test_a_download_is_the_train_split_unless_it_says_validation():
    assert DatasetSplitForm(QueryDict("")).values["split"] == "train"
    assert DatasetSplitForm(QueryDict("split=validation")).values["split"] == "validation"
    assert DatasetSplitForm(QueryDict("split=test")).dropped("split")
