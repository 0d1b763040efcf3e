"""The job page's evaluation: the headline win rate with its interval, the intervals, calibration, and the
per-prompt table (question, reference, both answers, verdicts and reasons), filterable to disagreements."""

from __future__ import annotations

from html import escape

import pytest
from django.urls import reverse

from training.evaluation import EvaluationSettings, evaluate_versions, evaluation_prompts_replace
from training.evaluation.calibration import grader_calibration
from training.models import TrainingJob
from training.trainers.local import read_chat_jsonl

from .conftest import all_faq_pairs, give_feedback, make_dataset, make_job, train_local

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluated(assistant, live_v1) -> TrainingJob:
    pairs = all_faq_pairs()
    candidate = train_local(assistant, [q for q, _ in pairs], [a for _, a in pairs])
    dataset = make_dataset(assistant, pairs[:20], pairs)
    report = evaluate_versions(
        candidate=candidate, live=live_v1, examples=list(read_chat_jsonl(dataset.validation_file))
    )
    give_feedback(assistant, 6, helpful=True, pairs=pairs[:20])
    give_feedback(assistant, 4, helpful=False, pairs=pairs[:20])
    report.calibration = grader_calibration(
        assistant=assistant, dataset=dataset, limit=50, judge=None, settings=EvaluationSettings()
    )
    job = make_job(
        assistant,
        TrainingJob.Status.AWAITING_APPROVAL,
        new_model_version=candidate,
        base_version=live_v1,
        dataset=dataset,
        evaluation=report.as_dict(),
    )
    evaluation_prompts_replace(job=job, report=report)
    return job


def _get(client, job, **params):
    return client.get(reverse("training-job-detail", args=[job.pk]), params, **params.pop("headers", {}))


def test_it_shows_the_headline_win_rate_intervals_and_calibration(client, bob, evaluated):
    client.force_login(bob)  # a viewer reads it all
    body = client.get(reverse("training-job-detail", args=[evaluated.pk])).content.decode()
    win = evaluated.evaluation["win_rate"]
    low, high = evaluated.evaluation["win_rate_ci"][1:]
    assert f"The candidate wins <strong>{win:.1%}</strong>" in body
    assert f"(95 % CI {low:.1%}–{high:.1%}, Wilson over prompts" in body
    assert (
        "Grader: <strong>token_f1</strong> (text_similarity)." in body
        and "&quot;evaluation_metric&quot;: &quot;token_f1&quot;" in body
    )
    acc_low, acc_high = evaluated.evaluation["live"]["accuracy_ci"][1:]
    assert f"[{acc_low:.3f}, {acc_high:.3f}]" in body
    assert (
        "decisions use the lower end" in body
        and "paired bootstrap over prompts, 2000 resamples, seed 17" in body
    )
    assert 'id="calibration"' in body and "On 10 answers customers rated" in body
    assert "<td>token_f1</td>" in body and "<td>string_check (ilike)</td>" in body


def test_it_lists_every_prompt_with_both_answers_verdicts_and_reasons(client, bob, evaluated):
    client.force_login(bob)
    body = client.get(reverse("training-job-detail", args=[evaluated.pk])).content.decode()
    first = evaluated.evaluation_prompts.get(position=0)
    assert escape(first.question) in body and escape(first.reference) in body
    assert "✓ pass" in body and "✗ fail" in body and "token_f1 1.00 ≥ 0.5." in body
    assert "candidate wins" in body and "next →" in body  # 50 a page


def test_the_filter_shows_only_disagreements_as_an_htmx_partial(client, bob, evaluated):
    client.force_login(bob)
    response = client.get(
        reverse("training-job-detail", args=[evaluated.pk]),
        {"prompts": "differs"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="eval-prompts",
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="eval-prompts">') and "<html" not in body
    same = evaluated.evaluation_prompts.filter(differs=False).first()
    differing = evaluated.evaluation_prompts.filter(differs=True).first()
    assert escape(differing.question) in body and f"<td>{escape(same.question)}</td>" not in body
    assert body.count('<tr class="differs">') == min(
        50, evaluated.evaluation_prompts.filter(differs=True).count()
    )


def test_the_next_page_continues_the_table(client, bob, evaluated):
    client.force_login(bob)
    body = client.get(
        reverse("training-job-detail", args=[evaluated.pk]), {"prompts_page": "2"}
    ).content.decode()
    assert escape(evaluated.evaluation_prompts.get(position=50).question) in body and "← previous" in body


def test_an_unknown_filter_is_a_400_that_says_what_to_use(client, bob, evaluated):
    client.force_login(bob)
    response = client.get(reverse("training-job-detail", args=[evaluated.pk]), {"prompts": "nope"})
    assert response.status_code == 400
    assert (
        "The prompts filter must be one of all, differs, not &#x27;nope&#x27;." in response.content.decode()
    )


def test_the_table_needs_the_view_permission(client, django_user_model, evaluated):
    client.force_login(django_user_model.objects.create_user("mallory"))
    response = client.get(
        reverse("training-job-detail", args=[evaluated.pk]),
        {"prompts": "differs"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="eval-prompts",
    )
    assert response.status_code == 403


def test_the_page_runs_a_constant_number_of_queries(client, bob, evaluated, django_assert_max_num_queries):
    client.force_login(bob)
    with django_assert_max_num_queries(9):
        response = client.get(reverse("training-job-detail", args=[evaluated.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    # The evaluation, its calibration and a page of the per-prompt table.
    assert "The candidate wins" in body and 'id="calibration"' in body
    assert body.count("<tr class=") == min(evaluated.evaluation_prompts.count(), 50)
