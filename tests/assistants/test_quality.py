"""The answer-quality metric (assistants/backends/quality.py): SQuAD token F1. No database."""

from __future__ import annotations

import pytest

from assistants.backends.quality import CORRECT_AT, answer_quality, squad_tokens


def test_answer_quality_identical_is_one() -> None:
    assert answer_quality("Go to Account > Billing.", "go to account billing") == 1.0


def test_answer_quality_disjoint_is_zero() -> None:
    assert answer_quality("Bananas are yellow", "Click forgot password") == 0.0


def test_answer_quality_partial_known_value() -> None:
    # candidate tokens: click, link (the article "the" is dropped) -> 2 tokens
    # reference tokens: click, link, in, email                    -> 4 tokens
    # overlap 2: precision 2/2 = 1, recall 2/4 = 0.5, F1 = 2*1*0.5/1.5 = 2/3
    assert answer_quality("Click the link", "Click link in email") == pytest.approx(2 / 3)


def test_answer_quality_none_or_empty_is_zero() -> None:
    assert answer_quality(None, "anything") == 0.0
    assert answer_quality("   ", "anything") == 0.0


def test_correct_at_is_a_half() -> None:
    assert CORRECT_AT == 0.5


def test_squad_tokens_drop_case_punctuation_and_articles() -> None:
    assert squad_tokens("The Order, an Invoice!") == ["order", "invoice"]
