"""Django admin: the grader is chosen next to each grader's agreement with the customers."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from training import services
from training.models import RetrainPolicy, TrainingJob

from .conftest import make_job

pytestmark = pytest.mark.django_db

CALIBRATION = {
    "items": 40,
    "customer_success_rate": 0.6,
    "references_from_corrections": 7,
    "skipped_no_reference": 3,
    "graders": {
        "token_f1": {"n": 40, "accuracy": 0.925, "kappa": 0.84, "false_pass": 1, "false_fail": 2},
        "bleu": {"n": 40, "accuracy": 0.7, "kappa": 0.41, "false_pass": 0, "false_fail": 12},
        "label_model": {
            "n": 0,
            "accuracy": None,
            "kappa": None,
            "error": "The judge budget of $1.00 is spent",
        },
    },
}


@pytest.fixture
def root(client):
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client


def _change_page(client, policy: RetrainPolicy) -> str:
    response = client.get(f"/admin/training/retrainpolicy/{policy.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_policy_page_shows_the_latest_calibration_beside_the_grader(root, assistant):
    policy = services.policy_ensure(assistant=assistant)
    make_job(assistant, TrainingJob.Status.REJECTED, evaluation={"calibration": {**CALIBRATION, "items": 5}})
    latest = make_job(
        assistant, TrainingJob.Status.AWAITING_APPROVAL, evaluation={"calibration": CALIBRATION}
    )
    body = _change_page(root, policy)
    assert 'name="eval_grader"' in body and 'name="eval_min_prompts"' in body and 'value="50"' in body
    assert f"(job {latest.pk}," in body and "On 40 answers customers rated" in body
    token_f1, bleu = body.index("<td>token_f1</td>"), body.index("<td>bleu</td>")
    assert token_f1 < bleu  # best agreement first
    assert "92.5%" in body and "0.84" in body
    assert "The judge budget of $1.00 is spent" in body


def test_before_any_evaluation_it_says_when_figures_will_appear(root, assistant):
    body = _change_page(root, services.policy_ensure(assistant=assistant))
    assert "No evaluated job with customer-rated answers yet" in body


def test_the_grader_can_be_chosen_and_a_bad_budget_is_refused(root, assistant):
    policy = services.policy_ensure(assistant=assistant)
    services.policy_update(policy=policy, eval_grader="label_model", eval_judge_budget_usd=2.5)
    policy.refresh_from_db()
    assert policy.eval_grader == "label_model"
    with pytest.raises(ValidationError, match="eval_judge_budget_usd"):
        services.policy_update(policy=policy, eval_judge_budget_usd=-1)
    with pytest.raises(ValidationError, match="eval_min_prompts"):
        services.policy_update(policy=policy, eval_min_prompts=0)
