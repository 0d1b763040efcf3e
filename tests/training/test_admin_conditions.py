"""Custom retrain conditions in the admin: edited inline on the policy, validated, previewed with their
current values; and, end to end, a condition set there starts a retrain with its reason."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from django import forms
from django.contrib.auth.models import User
from django.utils import timezone

from assistants.models import Deployment
from feedback.models import Interaction
from training import tasks
from training.models import JobEvent, RetrainCondition, RetrainPolicy, TrainingJob
from training.services import policy_ensure

pytestmark = pytest.mark.django_db

CRITICAL = {"metric": "errors", "comparison": ">", "threshold": "5", "label": "Critical errors"}


@pytest.fixture
def root(client):
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


@pytest.fixture
def policy(assistant) -> RetrainPolicy:
    return policy_ensure(assistant=assistant)


def _url(policy: RetrainPolicy) -> str:
    return f"/admin/training/retrainpolicy/{policy.pk}/change/"


def _post(client, policy: RetrainPolicy, conditions: list[dict], **policy_fields):
    """Post the change form as the admin shows it, with ``conditions`` as new inline rows."""
    url = _url(policy)
    form = client.get(url).context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field.widget, forms.CheckboxInput):
            if value:
                data[name] = "on"
        else:
            data[name] = "" if value is None else value
    data.update(policy_fields)
    existing = list(policy.conditions.order_by("id"))
    data.update(
        {
            "conditions-TOTAL_FORMS": str(len(existing) + len(conditions)),
            "conditions-INITIAL_FORMS": str(len(existing)),
            "conditions-MIN_NUM_FORMS": "0",
            "conditions-MAX_NUM_FORMS": "1000",
        }
    )
    for i, condition in enumerate(existing):
        data[f"conditions-{i}-id"] = str(condition.pk)
        data[f"conditions-{i}-policy"] = str(policy.pk)
        for name in (
            "metric",
            "comparison",
            "threshold",
            "label",
            "words",
            "kind",
            "rating_field",
            "window_unit",
        ):
            data[f"conditions-{i}-{name}"] = str(getattr(condition, name))
        data[f"conditions-{i}-window_length"] = str(condition.window_length or "")
        if condition.enabled:
            data[f"conditions-{i}-enabled"] = "on"
    for i, condition in enumerate(conditions, start=len(existing)):
        row = {"enabled": "on", "window_unit": "hours", "comparison": ">", **condition}
        data.update({f"conditions-{i}-{name}": value for name, value in row.items()})
    return client.post(url, data)


def _errors(response) -> str:
    assert response.status_code == 200, "expected the form again, with errors"
    return html.unescape(response.content.decode())


def _errored_interactions(assistant, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        Interaction.objects.create(
            assistant=assistant, request_id=f"err-{i}", messages=[], response="", error="upstream timeout"
        )


def test_the_admin_adds_a_condition_on_the_policy(root, policy):
    response = _post(root, policy, [{**CRITICAL, "words": "left over from another metric"}])
    assert response.status_code == 302
    (condition,) = policy.conditions.all()
    assert (condition.metric, condition.comparison, condition.threshold) == ("errors", ">", 5.0)
    assert (condition.label, condition.enabled, condition.window_length) == ("Critical errors", True, None)
    assert condition.words == ""  # what the metric does not use is not kept


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"metric": "rated_at_most", "threshold": "3"}, "Required for 'feedback rated at most n (count)'."),
        ({"metric": "comment_words", "threshold": "3"}, "Required for 'comments mentioning words (count)'."),
        ({"metric": "kind_share", "threshold": "0.5"}, "Required for 'share of a feedback kind (0–1)'."),
        ({"metric": "rating_average", "threshold": "3"}, "Required for 'average rating (1–5)'."),
        ({"metric": "errors", "threshold": "2.5"}, "A count's threshold is a whole number, 0 or more."),
        ({"metric": "errors", "threshold": "-1"}, "A count's threshold is a whole number, 0 or more."),
        (
            {"metric": "kind_share", "kind": "thumbs", "threshold": "25"},
            "A share's threshold is between 0 and 1, e.g. 0.25 for 25 %.",
        ),
        (
            {"metric": "rating_average", "rating_field": "tone", "threshold": "0"},
            "An average rating's threshold is between 1 and 5.",
        ),
        (
            {"metric": "errors", "comparison": ">=", "threshold": "0"},
            "A count is always at least 0: it would start a retrain on every check.",
        ),
        (
            {"metric": "rating_average", "rating_field": "tone", "comparison": "<", "threshold": "1"},
            "An average rating is never less than 1: the condition could never be met.",
        ),
        (
            {"metric": "rated_at_most", "rating_field": "rating", "at_most": "6", "threshold": "1"},
            "Ensure this value is less than or equal to 5.",
        ),
        (
            {"metric": "comment_words", "words": "refund, c++", "threshold": "1"},
            "'c++': use letters, digits, spaces, hyphens and apostrophes, starting and ending with a letter "
            "or digit (at most 100 characters).",
        ),
        (
            {"metric": "comment_words", "words": ",".join(f"w{i}" for i in range(51)), "threshold": "1"},
            "At most 50 words or phrases; 51 given.",
        ),
        (
            {"metric": "errors", "threshold": "1", "window_length": "367", "window_unit": "days"},
            "At most 366 days.",
        ),
        (
            # Past what timedelta can hold: a message, not a 500.
            {"metric": "errors", "threshold": "1", "window_length": "1000000000", "window_unit": "days"},
            "Ensure this value is less than or equal to 8784.",
        ),
        (
            {"metric": "errors", "threshold": "1", "window_length": "0"},
            "Ensure this value is greater than or equal to 1.",
        ),
    ],
)
def test_a_condition_the_check_could_not_honour_is_refused_with_what_to_do(root, policy, row, message):
    body = _errors(_post(root, policy, [row]))
    assert message in body
    assert not policy.conditions.exists()


def test_a_window_longer_than_the_retention_is_refused(root, policy):
    row = {**CRITICAL, "window_length": "8", "window_unit": "days"}
    body = _errors(_post(root, policy, [row], retention_days="7"))
    assert (
        "At most the policy's retention (7 days): older feedback is deleted, so a longer window would "
        in body
    )
    assert _post(root, policy, [{**row, "window_length": "7"}], retention_days="7").status_code == 302
    assert policy.conditions.get().window_length == 7

    # Shortening the retention below a saved condition's window is refused on that condition.
    body = _errors(_post(root, policy, [], retention_days="5"))
    assert "At most the policy's retention (5 days)" in body
    policy.refresh_from_db()
    assert policy.retention_days == 7


def test_the_change_page_previews_each_conditions_value(root, policy, assistant):
    body = root.get(_url(policy)).content.decode()
    assert "None yet: add one below, e.g. errored interactions &gt; 5 labelled Critical errors." in body
    _errored_interactions(assistant, 7)
    RetrainCondition.objects.create(
        policy=policy, metric="errors", comparison=">", threshold=5, label="Critical errors"
    )
    RetrainCondition.objects.create(
        policy=policy, metric="kind_share", kind="thumbs", comparison=">", threshold=0.25, window_length=2
    )
    RetrainCondition.objects.create(policy=policy, metric="corrections", threshold=3, enabled=False)
    body = html.unescape(root.get(_url(policy)).content.decode())
    assert "<tr><td>Critical errors</td><td>since the last deployment</td><td>7</td><td>> 5</td>" in body
    assert "<td>met: a check now would retrain</td>" in body
    assert (
        "<tr><td>Share of thumbs feedback in the last 2 hours</td><td>in the last 2 hours</td><td>—</td>"
        "<td>> 25.0%</td><td>not met: nothing to measure yet</td></tr>"
    ) in body
    assert (
        "<tr><td>Corrections</td><td>since the last deployment</td><td>—</td><td>> 3</td><td>off</td></tr>"
        in body
    )


def test_the_add_page_asks_to_save_first(root, assistant):
    body = root.get("/admin/training/retrainpolicy/add/").content.decode()
    assert "Save the policy with its conditions to see their current values here." in body


def test_a_condition_set_in_the_admin_triggers_a_retrain_with_its_reason(
    root, policy, assistant, live_v1, enqueued
):
    Deployment.objects.filter(assistant=assistant).update(created_at=timezone.now() - timedelta(days=1))
    assert _post(root, policy, [CRITICAL]).status_code == 302
    _errored_interactions(assistant, 5)
    quiet = tasks.check_retraining(assistant.pk)
    assert (quiet["should_retrain"], quiet["reasons"], "job" in quiet) == (False, [], False)
    _errored_interactions(assistant, 2, start=5)

    result = tasks.check_retraining(assistant.pk)

    job = TrainingJob.objects.get(pk=result["job"])
    assert result["reasons"] == ["Critical errors (7) > threshold (5)"]
    assert (job.trigger, job.reasons) == ("threshold", ["Critical errors (7) > threshold (5)"])
    created = job.events.get(kind=JobEvent.Kind.TRANSITION, to_status=TrainingJob.Status.PENDING)
    assert created.message == "Created (threshold): Critical errors (7) > threshold (5)"
