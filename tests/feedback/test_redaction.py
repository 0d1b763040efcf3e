"""The redaction engine: typed placeholders, consistency within an example, checksums, custom patterns."""

from __future__ import annotations

import pytest

from bench.redaction import load_cases, score
from feedback.redaction import PatternError, Redaction, Redactor, parse_patterns


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def test_it_replaces_each_type_with_its_placeholder(redactor):
    text = (
        "I'm anna.smith@example.com, call +44 20 7946 0958. Card 4111 1111 1111 1111, "
        "IBAN DE89 3704 0044 0532 0130 00, from 203.0.113.7."
    )
    out = redactor.redact(text)
    assert out == "I'm <EMAIL>, call <PHONE>. Card <CARD>, IBAN <IBAN>, from <IP>."


def test_it_keeps_placeholders_consistent_within_an_example(redactor):
    redaction = Redaction()
    question = redactor.redact("Change ANNA@example.com to bob@example.com; call (415) 555-0132", redaction)
    answer = redactor.redact(
        "Done: anna@example.com is now bob@example.com; we call +1 415-555-0132.", redaction
    )
    assert question == "Change <EMAIL> to <EMAIL_2>; call <PHONE>"
    assert answer == "Done: <EMAIL> is now <EMAIL_2>; we call <PHONE>."
    assert redaction.counts == {"EMAIL": 4, "PHONE": 2}


def test_a_new_example_starts_its_numbering_again(redactor):
    assert redactor.redact("x@example.com and y@example.com") == "<EMAIL> and <EMAIL_2>"
    assert redactor.redact("y@example.com") == "<EMAIL>"


@pytest.mark.parametrize(
    "text",
    [
        "reference 4111 1111 1111 1112",  # fails Luhn
        "order 1234567812345670",  # passes Luhn, but no card scheme starts with 1
        "account DE89 3704 0044 0532 0130 01",  # IBAN-shaped, wrong check digits
        "delivered 2024-01-15 at 10:30, paid $1,234.56",
        "updated to version 10.2.3.4",
        "Order ORD-2024-118832 and ticket #123-456-7890",
        "Tracking 1Z999AA10123456784",
    ],
)
def test_it_leaves_look_alikes_alone(redactor, text):
    assert redactor.redact(text) == text


def test_custom_patterns_win_over_built_in_types():
    redactor = Redactor(custom=parse_patterns("ORDER: ORD-\\d{4}-\\d{6}\n# comment\n\nTICKET: TCK\\d+"))
    assert redactor.redact("ORD-2024-118832 / TCK991, 415-555-0132") == "<ORDER> / <TICKET>, <PHONE>"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ORDER ORD-\\d+", "write NAME: regex"),
        ("order: ORD-\\d+", "must be upper case"),
        ("EMAIL: .+@.+", "built-in type"),
        ("ORDER: ORD-(\\d+", "does not compile"),
        ("ORDER: \\d*", "matches the empty string"),
    ],
)
def test_bad_pattern_lines_are_refused_with_the_line_named(text, message):
    with pytest.raises(PatternError, match=message) as exc:
        parse_patterns("TICKET: TCK\\d+\n" + text)
    assert str(exc.value).startswith("Line 2:")


def test_nested_values_are_redacted_and_keys_kept(redactor):
    redaction = Redaction()
    value = {"messages": [{"role": "user", "content": "me@example.com"}], "n": 3, "ok": None}
    assert redactor.redact_value(value, redaction) == {
        "messages": [{"role": "user", "content": "<EMAIL>"}],
        "n": 3,
        "ok": None,
    }


def test_labelled_set_precision_and_recall(redactor):
    """The labelled set (≥ 500 strings, tricky negatives included) stays above a floor per type; the exact
    figures are `python -m bench redaction`'s, reported in docs/PERFORMANCE.md."""
    cases = load_cases()
    assert len(cases) >= 500
    assert sum(1 for c in cases if not c["entities"]) >= 200
    tally = score(redactor, cases)
    assert set(tally) == {"EMAIL", "PHONE", "CARD", "IBAN", "IP"}
    for type_, c in tally.items():
        assert c["tp"] / (c["tp"] + c["fp"]) >= 0.95, type_
        assert c["tp"] / (c["tp"] + c["fn"]) >= 0.95, type_
