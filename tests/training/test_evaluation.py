"""Offline evaluation: both versions answer every validation prompt; clearly worse fails before traffic."""

from __future__ import annotations

import pytest

from training.evaluation import MIN_PROMPTS, evaluate_versions
from training.trainers.local import read_chat_jsonl

from .conftest import all_faq_pairs, make_dataset, train_local

pytestmark = pytest.mark.django_db


def _examples(assistant, pairs):
    return list(read_chat_jsonl(make_dataset(assistant, [], pairs).validation_file))


def test_it_scores_candidate_and_live_on_every_prompt(assistant, live_v1):
    pairs = all_faq_pairs()
    questions, answers = zip(*pairs, strict=True)
    candidate = train_local(assistant, list(questions), list(answers))
    report = evaluate_versions(candidate=candidate, live=live_v1, examples=_examples(assistant, pairs))
    assert report.prompts == len(pairs)
    assert report.candidate.accuracy == 1.0
    assert report.candidate.mean_quality == 1.0
    assert report.live.accuracy < 0.8  # v1 never saw the newer topics
    assert report.improvement == pytest.approx((1.0 - report.live.accuracy) / report.live.accuracy)
    assert report.candidate.mean_latency_ms >= 0 and report.live.mean_latency_ms >= 0
    assert not report.clearly_worse
    summary = report.summary()
    assert summary["eval_candidate_accuracy"] == 1.0
    assert summary["eval_live_accuracy"] == report.live.accuracy


def test_a_clearly_worse_candidate_is_flagged_with_the_reason(assistant):
    pairs = all_faq_pairs()
    questions, answers = zip(*pairs, strict=True)
    live = train_local(assistant, list(questions), list(answers), live=True)
    bad = train_local(assistant, ["Do you sell socks?"], ["Yes, lots of socks."])
    report = evaluate_versions(candidate=bad, live=live, examples=_examples(assistant, pairs))
    assert report.clearly_worse
    assert "clearly worse" in report.worse_reason and f"on {len(pairs)} prompts" in report.worse_reason


def test_too_few_prompts_are_not_evidence_of_worse(assistant):
    pairs = all_faq_pairs()[: MIN_PROMPTS - 1]
    questions, answers = zip(*pairs, strict=True)
    live = train_local(assistant, list(questions), list(answers), live=True)
    bad = train_local(assistant, ["Do you sell socks?"], ["Yes, lots of socks."])
    report = evaluate_versions(candidate=bad, live=live, examples=_examples(assistant, pairs))
    assert not report.clearly_worse


def test_without_a_live_version_there_is_nothing_to_compare(assistant):
    pairs = all_faq_pairs()[:5]
    candidate = train_local(assistant, [q for q, _ in pairs], [a for _, a in pairs])
    report = evaluate_versions(candidate=candidate, live=None, examples=_examples(assistant, pairs))
    assert report.live is None and report.improvement is None
    assert report.candidate.accuracy == 1.0
