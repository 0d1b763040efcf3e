"""Calibration: each grader's agreement with the customers on held-out rated answers."""

from __future__ import annotations

import pytest

from training.evaluation import EvaluationSettings
from training.evaluation.calibration import agreement, calibration_items, grader_calibration
from training.models import DatasetExample

from .conftest import all_faq_pairs, give_feedback, make_dataset

pytestmark = pytest.mark.django_db

PARAPHRASED = {
    "How can I track my order?": (
        "Open My Account, then Orders: every parcel that left us has a link to follow it."
    ),
}


def test_graders_are_scored_against_the_customers_verdicts(assistant):
    pairs = all_faq_pairs()[:20]
    dataset = make_dataset(assistant, pairs, [])  # the training split knows the right answer to each
    give_feedback(assistant, 20, helpful=True, pairs=pairs)
    give_feedback(assistant, 10, helpful=False, pairs=pairs)
    result = grader_calibration(
        assistant=assistant, dataset=dataset, limit=100, judge=None, settings=EvaluationSettings()
    )
    assert result["items"] == 30 and result["customer_success_rate"] == pytest.approx(20 / 30)
    assert set(result["graders"]) == {"token_f1", "rouge_l", "bleu", "fuzzy_match", "string_check (ilike)"}
    f1 = result["graders"]["token_f1"]
    assert f1 == {"n": 30, "accuracy": 1.0, "kappa": 1.0, "false_pass": 0, "false_fail": 0, "ungraded": 0}


def test_a_grader_that_misses_paraphrases_shows_it_in_its_agreement(assistant):
    (question, truth) = next(p for p in all_faq_pairs() if p[0] in PARAPHRASED)
    dataset = make_dataset(assistant, [(question, truth)], [])
    # Customers liked the paraphrased answer; token F1 against the training answer calls it wrong.
    give_feedback(assistant, 5, helpful=True, pairs=[(question, PARAPHRASED[question])])
    give_feedback(assistant, 5, helpful=False, pairs=[(question, truth)])
    result = grader_calibration(
        assistant=assistant, dataset=dataset, limit=100, judge=None, settings=EvaluationSettings()
    )
    f1 = result["graders"]["token_f1"]
    # It fails every answer: agreement is only the share of unhelpful ones, and kappa has no meaning.
    assert f1["accuracy"] == 0.5 and f1["false_fail"] == 5 and f1["kappa"] is None


def test_feedback_used_for_training_is_held_out(assistant):
    pairs = all_faq_pairs()[:10]
    dataset = make_dataset(assistant, pairs, [])
    trained = give_feedback(assistant, 6, helpful=True, pairs=pairs)
    held_out = give_feedback(assistant, 4, helpful=True, pairs=pairs)
    DatasetExample.objects.bulk_create(
        DatasetExample(dataset=dataset, feedback=f, split=DatasetExample.Split.TRAIN) for f in trained
    )
    items, counts = calibration_items(assistant=assistant, dataset=dataset, limit=100)
    assert {i.answer for i in items} <= {f.interaction.response for f in held_out}
    assert len(items) == 4 and counts == {"rated": 4, "no_reference": 0}


def test_a_correction_is_the_reference_and_items_without_one_are_counted(assistant):
    pairs = all_faq_pairs()[:4]
    give_feedback(assistant, 4, helpful=False, corrected=True, pairs=pairs)
    give_feedback(assistant, 3, helpful=True, pairs=pairs)  # no dataset: nothing to compare with
    items, counts = calibration_items(assistant=assistant, dataset=None, limit=100)
    assert len(items) == 4 and all(i.reference_is_correction and not i.customer_success for i in items)
    assert counts["no_reference"] == 3


def test_kappa_is_none_when_one_side_has_a_single_class():
    assert agreement([True, True], [True, False])["kappa"] is None
    assert agreement([], [])["accuracy"] is None
