"""Offline evaluation: both versions answer every validation prompt; figures carry intervals; clearly
worse and significant are read off interval ends, and only on enough prompts."""

from __future__ import annotations

import pytest

from tests.fake_openai import FakeOpenAIServer
from training.evaluation import EvaluationSettings, Prompt, evaluate_prompts, evaluate_versions
from training.evaluation.intervals import paired_bootstrap, win_rate_interval
from training.evaluation.judge import Judge
from training.evaluation.pairwise import Pair, judge_pair, judge_pairs
from training.trainers.local import read_chat_jsonl

from .conftest import all_faq_pairs, make_dataset, train_local

pytestmark = pytest.mark.django_db

REFERENCE = "Refunds are issued to your original payment method within 5 business days after we receive it."
RIGHT = "We send the money back to the card you paid with, five working days after the parcel reaches us."
WRONG = "Refunds are issued to your original payment method within 30 business days after we receive it."


@pytest.fixture
def fake(settings):
    with FakeOpenAIServer(time_limit=60) as server:
        settings.OPENAI_BASE_URL = server.url + "/v1"
        settings.OPENAI_API_KEY = "sk-test"
        yield server


def _judge() -> Judge:
    return Judge(model="judge", budget_usd=1.0, input_price=0.15, output_price=0.6)


def _examples(assistant, pairs):
    return list(read_chat_jsonl(make_dataset(assistant, [], pairs).validation_file))


def test_it_scores_candidate_and_live_on_every_prompt_with_intervals(assistant, live_v1):
    pairs = all_faq_pairs()
    questions, answers = zip(*pairs, strict=True)
    candidate = train_local(assistant, list(questions), list(answers))
    report = evaluate_versions(candidate=candidate, live=live_v1, examples=_examples(assistant, pairs))
    assert report.prompts == len(pairs) >= 50
    assert report.candidate.accuracy == 1.0 and report.candidate.mean_quality == 1.0
    assert report.live.accuracy < 0.8  # v1 never saw the newer topics
    assert report.improvement == pytest.approx((1.0 - report.live.accuracy) / report.live.accuracy)
    low, high = report.improvement_ci[1:]
    assert low < report.improvement < high
    estimate, diff_low, diff_high = report.accuracy_difference_ci
    assert 0 < diff_low < estimate < diff_high
    assert report.live.accuracy_ci[1] < report.live.accuracy < report.live.accuracy_ci[2]
    # Pairwise from token F1 scores: the candidate never loses a prompt.
    assert report.pairwise_by == "token_f1 scores" and report.win_rate > 0.5
    assert report.win_rate_method == "Wilson over prompts" and report.win_rate_ci[1] > 0.5
    assert report.enough_prompts and report.significant and not report.clearly_worse
    assert report.summary()["eval_improvement_low"] == low
    assert len(report.rows) == len(pairs) and any(r.differs for r in report.rows)


def test_the_intervals_are_seeded(assistant, live_v1):
    pairs = all_faq_pairs()
    candidate = train_local(assistant, [q for q, _ in pairs][:40], [a for _, a in pairs][:40])
    first = evaluate_versions(candidate=candidate, live=live_v1, examples=_examples(assistant, pairs))
    again = evaluate_versions(candidate=candidate, live=live_v1, examples=_examples(assistant, pairs))
    assert first.accuracy_difference_ci == again.accuracy_difference_ci
    assert first.bootstrap == {"resamples": 2000, "seed": 17, "confidence": 0.95}


def test_a_clearly_worse_candidate_is_flagged_with_the_intervals_upper_end(assistant):
    pairs = all_faq_pairs()
    questions, answers = zip(*pairs, strict=True)
    live = train_local(assistant, list(questions), list(answers), live=True)
    bad = train_local(assistant, ["Do you sell socks?"], ["Yes, lots of socks."])
    report = evaluate_versions(candidate=bad, live=live, examples=_examples(assistant, pairs))
    assert report.clearly_worse
    assert report.accuracy_difference_ci[2] < -0.05
    assert "even the upper end of the 95 % interval" in report.worse_reason
    assert f"on {len(pairs)} prompts" in report.worse_reason


def test_a_small_gap_whose_interval_reaches_the_margin_is_not_clearly_worse(assistant):
    pairs = all_faq_pairs()
    questions, answers = zip(*pairs, strict=True)
    live = train_local(assistant, list(questions), list(answers), live=True)
    # The candidate misses a handful of questions: its point estimate is below live, not clearly so.
    candidate = train_local(assistant, list(questions[5:]), list(answers[5:]))
    report = evaluate_versions(candidate=candidate, live=live, examples=_examples(assistant, pairs))
    assert report.candidate.accuracy < report.live.accuracy
    assert report.accuracy_difference_ci[2] >= -0.05 and not report.clearly_worse


def test_fewer_prompts_than_the_minimum_decide_nothing(assistant):
    pairs = all_faq_pairs()[:49]
    questions, answers = zip(*pairs, strict=True)
    live = train_local(assistant, list(questions), list(answers), live=True)
    bad = train_local(assistant, ["Do you sell socks?"], ["Yes, lots of socks."])
    report = evaluate_versions(candidate=bad, live=live, examples=_examples(assistant, pairs))
    assert not report.enough_prompts and report.min_prompts == 50
    assert not report.clearly_worse and not report.significant
    assert "Fewer than 50 graded prompts: no automatic decision" in report.describe()
    lower = evaluate_versions(
        candidate=bad,
        live=live,
        examples=_examples(assistant, pairs),
        settings=EvaluationSettings(min_prompts=20),
    )
    assert lower.enough_prompts and lower.clearly_worse


def test_without_a_live_version_there_is_nothing_to_compare(assistant):
    pairs = all_faq_pairs()[:5]
    candidate = train_local(assistant, [q for q, _ in pairs], [a for _, a in pairs])
    report = evaluate_versions(candidate=candidate, live=None, examples=_examples(assistant, pairs))
    assert report.live is None and report.improvement is None and report.win_rate is None
    assert report.candidate.accuracy == 1.0


def test_with_a_judge_the_paraphrasing_candidate_wins_against_a_fluent_wrong_live(assistant, fake):
    """End to end: token F1 would call this candidate worse; the judge sees it is right."""
    questions = [f"When do I get my refund for order {i}?" for i in range(60)]
    live = train_local(assistant, questions, [WRONG] * 60, live=True)
    candidate = train_local(assistant, questions, [RIGHT] * 60)
    prompts = [Prompt([{"role": "user", "content": q}], q, REFERENCE) for q in questions]
    f1 = evaluate_prompts(candidate=candidate, live=live, prompts=prompts, settings=EvaluationSettings())
    assert f1.candidate.accuracy == 0.0 and f1.live.accuracy == 1.0 and f1.clearly_worse
    judged = evaluate_prompts(
        candidate=candidate, live=live, prompts=prompts, settings=EvaluationSettings(grader="label_model")
    )
    assert judged.grader["type"] == "label_model"
    assert judged.candidate.accuracy == 1.0 and judged.live.accuracy == 0.0
    assert judged.win_rate == 1.0 and judged.pairwise_by == "judge gpt-4o-mini, both orders"
    assert judged.significant and not judged.clearly_worse
    assert judged.judge_usage["calls"] == 60 * 2 + 60 * 2  # grade both answers, judge both orders
    assert judged.judge_usage["cost_usd"] > 0
    row = judged.rows[0]
    assert row.candidate.reason.startswith("correct") and row.live.reason.startswith("incorrect")
    assert (
        "candidate first → candidate" in row.pairwise.reason
        and "live first → candidate" in row.pairwise.reason
    )


def test_a_judge_grader_without_a_provider_falls_back_to_token_f1_and_says_so(assistant, live_v1, settings):
    settings.OPENAI_API_KEY = ""
    pairs = all_faq_pairs()[:10]
    report = evaluate_versions(
        candidate=live_v1,
        live=None,
        examples=_examples(assistant, pairs),
        settings=EvaluationSettings(grader="score_model"),
    )
    assert report.grader["evaluation_metric"] == "token_f1"
    assert "needs a provider" in report.notes[0]


def test_the_judge_budget_stops_the_evaluation_with_the_reason(assistant, fake):
    questions = [f"Refund {i}?" for i in range(60)]
    live = train_local(assistant, questions, [WRONG] * 60, live=True)
    candidate = train_local(assistant, questions, [RIGHT] * 60)
    prompts = [Prompt([{"role": "user", "content": q}], q, REFERENCE) for q in questions]
    settings = EvaluationSettings(grader="label_model", budget_usd=0.002)
    report = evaluate_prompts(candidate=candidate, live=live, prompts=prompts, settings=settings)
    assert report.stopped_reason.startswith("The judge budget of $0.00 is spent")
    assert "eval_judge_budget_usd" in report.stopped_reason
    assert 0 < report.judge_usage["cost_usd"] <= 0.002
    assert not report.enough_prompts and not report.significant


def test_malformed_judge_outputs_leave_prompts_ungraded_and_block_decisions(assistant, fake):
    questions = [f"Refund {i}?" for i in range(60)]
    answers = [RIGHT + (" [[judge:garbage]]" if i < 10 else "") for i in range(60)]
    live = train_local(assistant, questions, [WRONG] * 60, live=True)
    candidate = train_local(assistant, questions, answers)
    prompts = [Prompt([{"role": "user", "content": q}], q, REFERENCE) for q in questions]
    report = evaluate_prompts(
        candidate=candidate, live=live, prompts=prompts, settings=EvaluationSettings(grader="label_model")
    )
    assert report.candidate.ungraded == 10 and report.candidate.accuracy == 1.0  # over the 50 graded
    assert "10 prompt(s) could not be graded" in report.notes[0]
    assert not report.enough_prompts  # 10 of 60 ungraded is more than a tenth
    assert report.rows[0].candidate.error.startswith("unparseable judge output")


# -- pairwise ---------------------------------------------------------------------------------------------


def test_the_position_swap_cancels_a_judge_that_always_prefers_answer_a(fake):
    fake.judge_position_bias = "A"
    pair = Pair("Refund?", REFERENCE, False, candidate=WRONG, live=RIGHT)
    outcome = judge_pair(pair, _judge())
    assert outcome.orders == ["A", "A"]
    assert outcome.outcome == 0.5  # won as A, lost as B: a tie, not a win
    first, second = [
        p["messages"][1]["content"] for _, _, p in fake.requests_to("POST", "/v1/chat/completions")
    ]
    assert f"Answer A: {WRONG}" in first and f"Answer B: {RIGHT}" in first
    assert f"Answer A: {RIGHT}" in second and f"Answer B: {WRONG}" in second


def test_an_unbiased_judge_gives_the_same_winner_in_both_orders(fake):
    assert judge_pair(Pair("Refund?", REFERENCE, False, RIGHT, WRONG), _judge()).outcome == 1.0
    assert judge_pair(Pair("Refund?", REFERENCE, False, WRONG, RIGHT), _judge()).outcome == 0.0
    assert judge_pair(Pair("Refund?", REFERENCE, False, RIGHT, RIGHT), _judge()).outcome == 0.5


def test_the_judge_is_told_when_the_reference_is_the_customers_correction(fake):
    judge_pairs([Pair("Refund?", REFERENCE, True, RIGHT, WRONG)], _judge())
    payload = fake.requests_to("POST", "/v1/chat/completions")[0][2]
    assert "Reference answer (the customer's own correction): " in payload["messages"][1]["content"]


def test_a_malformed_pairwise_reply_leaves_the_prompt_unjudged(fake):
    fake.judge_replies = ['{"winner": "C", "reason": "?"}', '{"winner": "C", "reason": "?"}']
    outcome = judge_pair(Pair("Refund?", REFERENCE, False, RIGHT, WRONG), _judge())
    assert outcome.outcome is None and "'winner' must be one of" in outcome.error


# -- intervals ------------------------------------------------------------------------------------------


def test_the_win_rate_interval_is_wilson_over_prompts():
    from scipy.stats import binomtest

    interval, method = win_rate_interval([1.0] * 30 + [0.0] * 10 + [0.5] * 10)
    assert method == "Wilson over prompts"
    assert interval.estimate == pytest.approx(0.7)
    wilson = binomtest(35, 50).proportion_ci(confidence_level=0.95, method="wilson")
    assert (interval.low, interval.high) == pytest.approx((wilson.low, wilson.high))


def test_prompts_clustered_by_customer_use_a_cluster_bootstrap_and_wider_intervals():
    outcomes = [1.0] * 30 + [0.0] * 30
    flat, _ = win_rate_interval(outcomes)
    # Six customers, each asking ten times and always getting the same verdict: six units of evidence.
    customers = [f"c{i // 10}" for i in range(60)]
    clustered, method = win_rate_interval(outcomes, clusters=customers)
    assert method == "cluster bootstrap over customers"
    assert clustered.high - clustered.low > 2 * (flat.high - flat.low)


def test_the_paired_bootstrap_is_tighter_than_the_gap_between_unpaired_intervals():
    live = [1.0] * 40 + [0.0] * 20
    candidate = [1.0] * 45 + [0.0] * 15  # wins 5 prompts, loses none
    ci = paired_bootstrap(
        candidate_passed=candidate, candidate_quality=candidate, live_passed=live, live_quality=live
    )
    assert ci.accuracy_difference.low > 0  # every resample has candidate ≥ live
    assert ci.candidate_accuracy.low < ci.live_accuracy.high  # the unpaired intervals overlap


def test_validation_prompts_carry_who_asked_and_whether_the_reference_is_a_correction(assistant):
    from feedback.models import Interaction
    from training.evaluation import validation_prompts
    from training.pipeline import dataset_build

    from .conftest import give_feedback

    pairs = all_faq_pairs()[:30]
    give_feedback(assistant, 30, helpful=True, pairs=pairs)
    give_feedback(assistant, 30, helpful=False, corrected=True, pairs=pairs)
    dataset = dataset_build(assistant=assistant, options={"validation_share": 0.5, "deduplicate": False})
    prompts = validation_prompts(dataset)
    assert len(prompts) == dataset.validation_count > 5
    asked = {(i.user_ref, i.question) for i in Interaction.objects.filter(assistant=assistant)}
    assert all((p.customer, p.question) in asked for p in prompts)
    corrected = [p for p in prompts if p.reference_is_correction]
    assert corrected and all(p.reference in dict(pairs).values() for p in corrected)
