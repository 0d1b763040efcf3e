"""`manage.py check_retraining` prints the decision and its reasons."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from training.models import TrainingJob
from training.services import policy_ensure, policy_update

from .conftest import give_feedback

pytestmark = pytest.mark.django_db


def _run(*args) -> str:
    out = StringIO()
    call_command("check_retraining", *args, stdout=out)
    return out.getvalue()


def test_it_prints_the_decision_and_reasons(assistant, live_v1):
    policy_update(policy=policy_ensure(assistant=assistant), min_feedback_count=2)
    give_feedback(assistant, 2)
    out = _run("--assistant", "shop")
    assert "shop: retrain (trigger: threshold)" in out
    assert "  - Feedback count (2) >= threshold (2)" in out
    assert not TrainingJob.objects.exists()


def test_it_says_when_nothing_is_due(assistant, live_v1):
    out = _run()
    assert "shop: no retrain" in out
    assert "0 feedback since the last deployment" in out


def test_trigger_starts_the_job(assistant, live_v1):
    policy_update(policy=policy_ensure(assistant=assistant), min_feedback_count=1)
    give_feedback(assistant, 1)
    out = _run("--assistant", "shop", "--trigger")
    job = TrainingJob.objects.get()
    assert f"started training job {job.pk}" in out


def test_an_unknown_assistant_is_named(assistant):
    with pytest.raises(CommandError, match="No assistant with slug 'nope'. Known: shop"):
        _run("--assistant", "nope")
