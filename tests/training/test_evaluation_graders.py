"""Graders: OpenAI-shaped specs, local metrics, and the LLM judge against the fake OpenAI server."""

from __future__ import annotations

import pytest

from tests.fake_openai import FakeOpenAIServer
from training.evaluation import graders as g
from training.evaluation.judge import BudgetExhausted, Judge

REFERENCE = "You can return unused items within 30 days of delivery for a full refund."
PARAPHRASE = (
    "Anything you haven't used may be sent back up to thirty days after it arrives; we refund it all."
)
FLUENT_WRONG = "You can return unused items within 14 days of delivery for a full refund."
QUESTION = "What is your return policy?"


@pytest.fixture
def fake(settings):
    with FakeOpenAIServer(time_limit=60) as server:
        settings.OPENAI_BASE_URL = server.url + "/v1"
        settings.OPENAI_API_KEY = "sk-test"
        yield server


def judge(**kwargs) -> Judge:
    options = {"model": "gpt-4o-mini", "budget_usd": 1.0, "input_price": 0.15, "output_price": 0.6}
    return Judge(**{**options, **kwargs})


def item(answer: str | None) -> g.Item:
    return g.Item(QUESTION, REFERENCE, answer)


def test_a_paraphrased_correct_answer_is_correct_for_the_judge_and_wrong_for_token_f1(fake):
    f1 = g.build("token_f1").grade_many([item(PARAPHRASE), item(FLUENT_WRONG)], None)
    assert [x.passed for x in f1] == [False, True]  # token F1 gets both wrong
    labels = g.build("label_model", judge_model="gpt-4o-mini").grade_many(
        [item(PARAPHRASE), item(FLUENT_WRONG)], judge()
    )
    assert [x.passed for x in labels] == [True, False]
    assert labels[0].reason.startswith("correct: ") and labels[1].reason.startswith("incorrect: ")
    scores = g.build("score_model", judge_model="gpt-4o-mini").grade_many([item(PARAPHRASE)], judge())
    assert scores[0].score == 1.0 and scores[0].passed


def test_the_judge_sees_the_rubric_question_reference_and_answer(fake):
    g.build("label_model", judge_model="judge-1", rubric="Be strict.").grade_many([item(PARAPHRASE)], judge())
    ((_, _, payload),) = fake.requests_to("POST", "/v1/chat/completions")
    assert payload["model"] == "gpt-4o-mini"  # the Judge's model is the one called
    assert payload["temperature"] == 0 and payload["response_format"] == {"type": "json_object"}
    system, user = payload["messages"]
    assert system["content"].startswith("Be strict.")
    assert f"Question: {QUESTION}" in user["content"] and f"Reference answer: {REFERENCE}" in user["content"]
    assert f"Answer to grade: {PARAPHRASE}" in user["content"]


@pytest.mark.parametrize(
    "reply",
    [
        "not json at all",
        '{"label": "correct"}',  # no reason
        '{"label": "maybe", "reason": "unsure"}',  # not one of the labels
        '{"label": "correct", "reason": "ok", "confidence": 0.9}',  # an extra key
        '["correct", "ok"]',
    ],
)
def test_a_malformed_label_is_asked_again_then_left_ungraded_with_the_reason(fake, reply):
    fake.judge_replies = [reply, reply]
    (grade,) = g.build("label_model", judge_model="m").grade_many([item(PARAPHRASE)], judge())
    assert grade.passed is None and grade.score is None
    assert grade.error.startswith("unparseable judge output")
    assert len(fake.requests_to("POST", "/v1/chat/completions")) == 2


@pytest.mark.parametrize("reply", ['{"score": 1.5, "reason": "great"}', '{"score": true, "reason": "yes"}'])
def test_a_score_outside_the_range_is_malformed(fake, reply):
    fake.judge_replies = [reply, reply]
    (grade,) = g.build("score_model", judge_model="m").grade_many([item(PARAPHRASE)], judge())
    assert grade.passed is None and "must be a number in [0, 1]" in grade.error


def test_one_malformed_reply_is_recovered_by_the_retry(fake):
    fake.judge_replies = ["garbage"]
    (grade,) = g.build("label_model", judge_model="m").grade_many([item(PARAPHRASE)], judge())
    assert grade.passed is True and grade.error == ""


def test_transient_provider_errors_are_retried_by_the_sdk(fake):
    fake.transient_failures = {"POST /v1/chat/completions": [429, 500]}
    (grade,) = g.build("label_model", judge_model="m").grade_many([item(PARAPHRASE)], judge())
    assert grade.passed is True
    assert len(fake.requests_to("POST", "/v1/chat/completions")) == 3


def test_usage_and_cost_are_what_the_provider_reported(fake):
    j = judge(input_price=1.0, output_price=2.0)
    g.build("label_model", judge_model="m").grade_many([item(PARAPHRASE), item(FLUENT_WRONG)], j)
    assert j.usage.calls == 2
    assert j.usage.prompt_tokens > 0 and j.usage.completion_tokens > 0
    expected = (j.usage.prompt_tokens * 1.0 + j.usage.completion_tokens * 2.0) / 1_000_000
    assert j.usage.cost_usd == pytest.approx(expected)


def test_the_budget_stops_judging_before_it_is_exceeded(fake):
    # One call reserves ~(prompt + 300 output tokens) at these prices: about $0.0004 each.
    j = judge(budget_usd=0.001, input_price=1.0, output_price=1.0, workers=1)
    with pytest.raises(BudgetExhausted, match=r"judge budget of \$0\.00 is spent"):
        g.build("label_model", judge_model="m").grade_many([item(PARAPHRASE)] * 20, j)
    assert 1 <= j.usage.calls < 20
    assert j.usage.cost_usd <= 0.001


def test_concurrency_is_bounded(fake):
    fake.delay_seconds = {"POST /v1/chat/completions": 0.05}
    j = judge(workers=2)
    import threading

    seen, lock, peak = [0], threading.Lock(), [0]
    original = j.complete

    def counting(messages):
        with lock:
            seen[0] += 1
            peak[0] = max(peak[0], seen[0])
        try:
            return original(messages)
        finally:
            with lock:
                seen[0] -= 1

    j.complete = counting
    g.build("label_model", judge_model="m").grade_many([item(PARAPHRASE)] * 8, j)
    assert peak[0] == 2


def test_cosine_uses_the_embeddings_endpoint(fake):
    j = judge(embedding_model="text-embedding-3-small")
    same, other = g.build("cosine").grade_many([item(REFERENCE), item("Socks are blue.")], j)
    assert same.score == pytest.approx(1.0) and same.passed
    assert other.score < 0.5 and not other.passed
    assert fake.requests_to("POST", "/v1/embeddings")[0][2]["model"] == "text-embedding-3-small"
    assert j.usage.embedding_tokens > 0


@pytest.mark.parametrize(
    ("name", "answer", "passed"),
    [
        ("token_f1", REFERENCE, True),
        ("rouge_l", "Return unused items within 30 days of delivery.", True),
        ("rouge_l", "Socks are blue.", False),
        ("bleu", REFERENCE, True),
        ("fuzzy_match", REFERENCE.upper(), True),
        ("string_check", f"Sure! {REFERENCE.lower()} Anything else?", True),
        ("string_check", PARAPHRASE, False),
    ],
)
def test_local_graders(name, answer, passed):
    (grade,) = g.build(name).grade_many([item(answer)], None)
    assert grade.passed is passed and 0 <= grade.score <= 1 and grade.reason


def test_an_abstention_fails_every_grader_without_calling_the_judge(fake):
    for name in ("token_f1", "string_check", "label_model"):
        (grade,) = g.build(name, judge_model="m").grade_many([item(None)], judge())
        assert grade.passed is False and grade.score == 0.0
    assert fake.requests_to("POST", "/v1/chat/completions") == []


def test_specs_have_openai_evals_shapes():
    from openai.types.graders import (
        LabelModelGrader,
        ScoreModelGrader,
        StringCheckGrader,
        TextSimilarityGrader,
    )

    StringCheckGrader.model_validate(g.build("string_check").spec())
    TextSimilarityGrader.model_validate(g.build("rouge_l").spec())
    ScoreModelGrader.model_validate(g.build("score_model", judge_model="m").spec())
    label = LabelModelGrader.model_validate(g.build("label_model", judge_model="m").spec())
    assert label.passing_labels == ["correct"]


def test_auto_is_a_judge_only_for_provider_trained_candidates_with_a_provider():
    assert g.resolve("auto", candidate_backend="openai", provider=True) == "label_model"
    assert g.resolve("auto", candidate_backend="local", provider=True) == "token_f1"
    assert g.resolve("auto", candidate_backend="openai", provider=False) == "token_f1"
    assert g.resolve("rouge_l", candidate_backend="openai", provider=True) == "rouge_l"
