"""Django admin for retrain policies: saved through the policy service, bound to one assistant."""

from __future__ import annotations

import datetime as dt

import pytest
from django import forms
from django.contrib.auth.models import User
from django_q.models import Schedule

from training import services
from training.models import RetrainPolicy
from training.schedules import schedule_name

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(client):
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


def _form(client, url: str) -> dict:
    """What the admin's form would post unchanged (with its inlines' management forms, no inline rows)."""
    context = client.get(url).context
    form = context["adminform"].form
    data = {}
    for inline in context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field.widget, forms.CheckboxInput):
            if value:
                data[name] = "on"
        else:
            data[name] = "" if value is None else value
    return data


def _change_url(policy: RetrainPolicy) -> str:
    return f"/admin/training/retrainpolicy/{policy.pk}/change/"


def test_the_title_names_the_assistant(root, assistant):
    policy = services.policy_ensure(assistant=assistant)
    body = root.get(_change_url(policy)).content.decode()
    assert "<h2>Retrain policy for Shop support</h2>" in body
    assert "policy for 1" not in body


def test_saving_keeps_the_schedule_in_step(root, assistant):
    policy = services.policy_ensure(assistant=assistant)
    url = _change_url(policy)
    data = {**_form(root, url), "schedule": RetrainPolicy.Schedule.HOURLY, "schedule_time": "04:15"}
    assert root.post(url, data).status_code == 302
    policy.refresh_from_db()
    assert policy.schedule == RetrainPolicy.Schedule.HOURLY and policy.schedule_time == dt.time(4, 15)
    schedule = Schedule.objects.get(name=schedule_name(assistant.pk))
    assert schedule.schedule_type == Schedule.HOURLY and schedule.next_run.minute == 15

    data.pop("enabled")  # unticked
    assert root.post(url, data).status_code == 302
    assert not Schedule.objects.filter(name=schedule_name(assistant.pk)).exists()


def test_adding_a_policy_creates_its_schedule(root, assistant):
    url = "/admin/training/retrainpolicy/add/"
    response = root.post(url, {**_form(root, url), "assistant": assistant.pk})
    assert response.status_code == 302
    policy = RetrainPolicy.objects.get(assistant=assistant)
    assert policy.enabled and Schedule.objects.filter(name=schedule_name(assistant.pk)).exists()


def test_the_assistant_cannot_be_changed_once_saved(root, assistant, other_assistant):
    policy = services.policy_ensure(assistant=assistant)
    url = _change_url(policy)
    data = _form(root, url)
    assert "assistant" not in data
    assert root.post(url, {**data, "assistant": other_assistant.pk}).status_code == 302
    policy.refresh_from_db()
    assert policy.assistant == assistant
    assert Schedule.objects.filter(name=schedule_name(assistant.pk)).exists()
    assert not Schedule.objects.filter(name=schedule_name(other_assistant.pk)).exists()


def test_a_bad_value_is_refused_with_what_to_do(root, assistant):
    policy = services.policy_ensure(assistant=assistant)
    url = _change_url(policy)
    response = root.post(url, {**_form(root, url), "validation_share": "1.0"})
    assert response.status_code == 200
    assert "Use a share in [0, 1), e.g. 0.1." in response.content.decode()
    policy.refresh_from_db()
    assert policy.validation_share == 0.1


def test_the_filters_and_switches_explain_themselves(root, assistant):
    body = root.get(_change_url(services.policy_ensure(assistant=assistant))).content.decode()
    for help_text in (
        "Users with feedback per arm before deciding",
        "test a new version against the live one on live traffic",
        "Deploy a new version in stages",
        "Answers rated below this (1–5) are left out",
        "Leave out answers the customer marked as not helpful",
        "Leave out feedback whose confidence (0–1) is below this",
        "Keep answers whatever their rating or thumbs",
        "Keep one example of each group of near-duplicates",
        "Jaccard similarity of their word 3-shingles",
        "Examples per dataset at most, newest first (0: no limit).",
        "Share of examples held out for offline evaluation",
    ):
        assert help_text in body, help_text


def test_the_comparison_setting_is_checked_in_the_form(root, assistant):
    policy = services.policy_ensure(assistant=assistant)
    url = _change_url(policy)
    candidates = '[{"label": "A"}, {"label": "B", "settings": {"threshold": "coverage"}}]'

    response = root.post(url, {**_form(root, url), "compare_candidates": candidates})

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["compare_candidates"] == [
        'Candidate 2 (B): threshold "coverage" needs target_coverage in (0, 1], e.g. 0.9.'
    ]
    policy.refresh_from_db()
    assert policy.compare_candidates == []


def test_a_valid_comparison_is_saved_in_its_checked_form(root, assistant):
    policy = services.policy_ensure(assistant=assistant)
    url = _change_url(policy)
    candidates = (
        '[{"label": "A"}, {"label": "B", "settings": {"threshold": "coverage", "target_coverage": 0.9}},'
        ' {"label": "P", "backend": "openai", "settings": {"n_epochs": 2}}]'
    )
    data = {**_form(root, url), "compare_candidates": candidates, "compare_online": "multi_arm"}
    data["compare_top_k"] = "3"

    assert root.post(url, data).status_code == 302

    policy.refresh_from_db()
    assert policy.compare_candidates == [
        {"label": "A", "backend": "local", "base_model": "", "settings": {}},
        {
            "label": "B",
            "backend": "local",
            "base_model": "",
            "settings": {"threshold": "coverage", "target_coverage": 0.9},
        },
        {"label": "P", "backend": "openai", "base_model": policy.base_model, "settings": {"n_epochs": 2}},
    ]
    assert (policy.compare_online, policy.compare_top_k) == ("multi_arm", 3)
    assert policy.comparison().top_k == 3
