"""Tests for the embedded local retrieval model (assistants/backends/local.py).

Pure Python + scikit-learn: no Django, no database.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The project root must be importable even when pytest runs without pytest-django
# (which would otherwise add manage.py's directory to sys.path for us).
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from assistants.backends.local import (  # noqa: E402
    DEFAULT_THRESHOLD,
    Answer,
    LocalRetrievalModel,
)
from assistants.backends.quality import CORRECT_AT, answer_quality  # noqa: E402

FAQ: dict[str, str] = {
    "How do I reset my password?": "Click 'Forgot password' on the login page and follow the emailed link.",
    "How can I cancel my subscription?": "Go to Account > Billing and press Cancel subscription.",
    "Where is my order?": "Open Orders and click Track to see the courier status.",
    "Do you ship internationally?": "Yes, we ship to over 40 countries; rates are shown at checkout.",
    "How do I get a refund?": "Request a refund within 30 days from the Orders page.",
    "Can I change my delivery address?": "Yes, until the order ships: edit it under Orders > Details.",
    "What payment methods do you accept?": "We accept Visa, Mastercard, PayPal and bank transfer.",
    "How do I contact support?": "Use the chat widget or email support@example.com.",
}

# Held-out paraphrases (reordered words, typos, different phrasing) -> seen question.
PARAPHRASES: dict[str, str] = {
    "password reset, how do I do it": "How do I reset my password?",
    "how do i rest my pasword": "How do I reset my password?",
    "cancel my subscripton please": "How can I cancel my subscription?",
    "where's my order??": "Where is my order?",
    "do you ship internationaly": "Do you ship internationally?",
    "how to get refund": "How do I get a refund?",
    "can i change the delivery adress": "Can I change my delivery address?",
    "which payment methods are accepted": "What payment methods do you accept?",
    "contact support how": "How do I contact support?",
}


@pytest.fixture(scope="module")
def faq_model() -> LocalRetrievalModel:
    return LocalRetrievalModel.fit(list(FAQ), list(FAQ.values()))


# -- fitting and answering --------------------------------------------------------


def test_empty_training_set_raises() -> None:
    with pytest.raises(ValueError, match="no \\(question, answer\\) examples"):
        LocalRetrievalModel.fit([], [])
    with pytest.raises(ValueError):
        LocalRetrievalModel.fit(["  "], ["blank question is not an example"])


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="same length"):
        LocalRetrievalModel.fit(["a question"], [])


def test_answers_seen_question(faq_model: LocalRetrievalModel) -> None:
    for question, expected in FAQ.items():
        answer = faq_model.answer(question)
        assert answer.text == expected
        assert answer.source == "model"
        assert answer.score == pytest.approx(1.0, abs=1e-5)  # float32 features
    assert faq_model.n_examples == len(FAQ)
    assert faq_model.threshold == DEFAULT_THRESHOLD


def test_paraphrases_are_retrieved(faq_model: LocalRetrievalModel) -> None:
    answers = faq_model.answer_many(list(PARAPHRASES))
    for answer, seen in zip(answers, PARAPHRASES.values(), strict=True):
        assert answer.source == "model"
        assert answer.text == FAQ[seen]
        assert DEFAULT_THRESHOLD <= answer.score < 1.0


def test_unrelated_question_is_not_answered(faq_model: LocalRetrievalModel) -> None:
    for question in ["tell me a joke", "What's the weather in Paris?", "", "¿¿??"]:
        answer = faq_model.answer(question)
        assert answer == Answer(None, answer.score, "none")
        assert answer.score < faq_model.threshold


def test_answer_many_matches_answer(faq_model: LocalRetrievalModel) -> None:
    questions = list(PARAPHRASES) + ["tell me a joke"]
    assert faq_model.answer_many(questions) == [faq_model.answer(q) for q in questions]
    assert faq_model.answer_many([]) == []


def test_later_duplicate_wins() -> None:
    model = LocalRetrievalModel.fit(
        ["How do I reset my password?", "Where is my order?", "how do I reset my password"],
        ["old answer", "Track it under Orders.", "new answer"],
    )
    assert model.n_examples == 2
    assert model.answer("How do I reset my password?").text == "new answer"


def test_falls_back_to_base_knowledge(faq_model: LocalRetrievalModel) -> None:
    new = LocalRetrievalModel.fit(
        ["Do you have a mobile app?"], ["Yes, search for ExampleShop in your app store."], base=faq_model
    )
    assert new.n_examples == 1
    assert new.n_fallback_examples == len(FAQ)

    own = new.answer("is there a mobile app")
    assert (own.source, own.text) == ("model", "Yes, search for ExampleShop in your app store.")

    inherited = new.answer("how do i rest my pasword")
    assert (inherited.source, inherited.text) == ("fallback", FAQ["How do I reset my password?"])

    assert new.answer("tell me a joke").source == "none"


def test_fallback_survives_several_versions(faq_model: LocalRetrievalModel) -> None:
    v2 = LocalRetrievalModel.fit(["Do you have a mobile app?"], ["Yes."], base=faq_model)
    v3 = LocalRetrievalModel.fit(["Are you open on Sundays?"], ["No, Monday to Saturday."], base=v2)
    assert v3.n_fallback_examples == len(FAQ) + 1
    assert v3.answer("do you have a mobile app").text == "Yes."
    assert v3.answer("Where is my order?").text == FAQ["Where is my order?"]


def test_learning_from_corrections_improves_held_out_accuracy() -> None:
    # Version 1 was trained with three outdated answers.
    outdated = dict(FAQ)
    outdated["How do I get a refund?"] = "Refunds are not possible."
    outdated["What payment methods do you accept?"] = "Only cash on delivery."
    outdated["How do I contact support?"] = "Call us on the phone line."
    v1 = LocalRetrievalModel.fit(list(outdated), list(outdated.values()))

    # Reviewers corrected those answers; version 2 learns just the corrections and
    # keeps version 1 as fallback for everything else.
    corrections = {q: FAQ[q] for q in outdated if outdated[q] != FAQ[q]}
    v2 = LocalRetrievalModel.fit(list(corrections), list(corrections.values()), base=v1)

    held_out = list(PARAPHRASES)
    references = [FAQ[seen] for seen in PARAPHRASES.values()]

    def accuracy(model: LocalRetrievalModel) -> float:
        answers = model.answer_many(held_out)
        correct = [
            answer_quality(a.text, ref) >= CORRECT_AT for a, ref in zip(answers, references, strict=True)
        ]
        return sum(correct) / len(held_out)

    before, after = accuracy(v1), accuracy(v2)
    assert before == pytest.approx(6 / 9)  # the three corrected topics were wrong
    assert after == 1.0
    assert after > before
    # the outdated answer is gone even from the fallback tier
    assert "Only cash on delivery." not in v2.fallback_answers


# -- threshold tuning -------------------------------------------------------------


def test_tune_threshold_on_tiny_held_out_set(faq_model: LocalRetrievalModel) -> None:
    model = LocalRetrievalModel.from_bytes(faq_model.to_bytes())  # don't mutate the shared fixture
    validation = [
        # paraphrase, reference = the stored answer             -> correct when answered
        ("how do i rest my pasword", FAQ["How do I reset my password?"]),
        ("cancel my subscripton please", FAQ["How can I cancel my subscription?"]),
        # paraphrase, reference = an answer the model never saw -> wrong when answered
        ("where's my order??", "Orders ship within 24 hours from our Berlin warehouse."),
        # unrelated question                                    -> model should abstain
        ("tell me a joke", "Sorry, I can only help with shop questions."),
    ]
    questions = [q for q, _ in validation]
    scores = [a.score for a in model.answer_many(questions)]
    assert scores[3] < min(scores[:2])  # premise of the hand computation below

    metrics = model.tune_threshold(questions, [ref for _, ref in validation])

    # Hand computation: at most 2 of 4 answers can be right, so accuracy = 2/4.
    # Among thresholds reaching it the highest is chosen: the lower of the two
    # correct scores. Everything scoring at or above it is answered.
    expected_threshold = min(scores[:2])
    expected_answered = sum(s >= expected_threshold for s in scores)
    assert metrics["validation_accuracy"] == 0.5
    assert metrics["threshold"] == pytest.approx(expected_threshold)
    assert metrics["coverage"] == expected_answered / 4
    assert metrics["answered_accuracy"] == 2 / expected_answered
    assert metrics["validation_examples"] == 4
    assert 0.0 <= metrics["validation_accuracy"] <= 1.0
    assert model.threshold == metrics["threshold"]
    assert model.metrics == metrics
    # and the model now behaves as the metrics say
    answered = [a.text is not None for a in model.answer_many(questions)]
    assert sum(answered) == expected_answered


def test_tune_threshold_without_validation_data(faq_model: LocalRetrievalModel) -> None:
    model = LocalRetrievalModel.from_bytes(faq_model.to_bytes())
    metrics = model.tune_threshold([], [])
    assert metrics == {
        "validation_accuracy": None,
        "coverage": None,
        "answered_accuracy": None,
        "threshold": DEFAULT_THRESHOLD,
        "validation_examples": 0,
    }
    assert model.threshold == DEFAULT_THRESHOLD


def test_tune_threshold_accuracy_is_in_unit_interval_on_paraphrases(faq_model: LocalRetrievalModel) -> None:
    model = LocalRetrievalModel.from_bytes(faq_model.to_bytes())
    metrics = model.tune_threshold(list(PARAPHRASES), [FAQ[s] for s in PARAPHRASES.values()])
    assert metrics["validation_accuracy"] == 1.0
    assert metrics["coverage"] == 1.0
    assert 0.0 < metrics["threshold"] <= 1.0


# -- features and coverage (a comparison's candidates vary them) -----------------------


def test_word_or_char_features_change_what_matches() -> None:
    both = LocalRetrievalModel.fit(list(FAQ), list(FAQ.values()))
    words = LocalRetrievalModel.fit(list(FAQ), list(FAQ.values()), features="word")
    chars = LocalRetrievalModel.fit(list(FAQ), list(FAQ.values()), features="char")
    assert (both.features, words.features, chars.features) == ("word+char", "word", "char")

    typo = "how do i rest my pasword"  # "rest", "pasword": no word of the FAQ's question
    assert words.answer_many([typo])[0].score < chars.answer_many([typo])[0].score
    # A seen question is still an exact match (unit-length rows with one half, too).
    for model in (words, chars):
        assert model.answer("How do I reset my password?").score == pytest.approx(1.0)
    # Word+char is the average of the two cosines.
    question = "where's my order??"
    mean = (words.answer(question).score + chars.answer(question).score) / 2
    assert both.answer(question).score == pytest.approx(mean, abs=1e-6)
    with pytest.raises(ValueError, match="unknown features 'bigrams'"):
        LocalRetrievalModel.fit(list(FAQ), list(FAQ.values()), features="bigrams")


def test_one_half_survives_a_round_trip_and_a_new_version_on_top() -> None:
    words = LocalRetrievalModel.fit(list(FAQ), list(FAQ.values()), features="word")
    loaded = LocalRetrievalModel.from_bytes(words.to_bytes())
    assert loaded.features == "word"
    assert loaded.answer_many(list(PARAPHRASES)) == words.answer_many(list(PARAPHRASES))
    on_top = LocalRetrievalModel.fit(["Is there an app?"], ["Yes."], base=loaded, features="char")
    assert on_top.features == "char" and on_top.answer("Where is my order?").source == "fallback"


@pytest.mark.parametrize("coverage", [0.5, 0.75, 1.0])
def test_threshold_for_coverage_answers_that_share(faq_model: LocalRetrievalModel, coverage: float) -> None:
    questions = list(PARAPHRASES) + ["tell me a joke", "what is the meaning of life"]
    model = LocalRetrievalModel.fit(list(FAQ), list(FAQ.values()))

    model.threshold = model.threshold_for_coverage(questions, coverage)

    answered = sum(a.text is not None for a in model.answer_many(questions))
    assert answered >= coverage * len(questions)
    # The highest such threshold: a hair above it answers fewer than asked.
    model.threshold += 1e-6
    assert sum(a.text is not None for a in model.answer_many(questions)) < coverage * len(questions)


def test_threshold_for_coverage_never_answers_what_shares_nothing(faq_model: LocalRetrievalModel) -> None:
    assert faq_model.threshold_for_coverage([], 0.9) == faq_model.threshold
    # "zzzz qqqq" shares no feature with any question: no threshold answers it, so 100 % coverage
    # becomes "answer every other question" (here the exact match, score 1), not "answer anything".
    assert faq_model.answer("zzzz qqqq").score == 0
    assert faq_model.threshold_for_coverage(["Where is my order?", "zzzz qqqq"], 1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="coverage"):
        faq_model.threshold_for_coverage(["x"], 0)


# -- persistence ------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path, faq_model: LocalRetrievalModel) -> None:
    v2 = LocalRetrievalModel.fit(["Do you have a mobile app?"], ["Yes."], base=faq_model)
    v2.tune_threshold(list(PARAPHRASES), [FAQ[s] for s in PARAPHRASES.values()])
    path = tmp_path / "models" / "v2.pkl"

    digest = v2.save(path)
    loaded = LocalRetrievalModel.load(path, expected_sha256=digest)

    questions = list(PARAPHRASES) + list(FAQ) + ["is there an app", "tell me a joke"]
    assert loaded.answer_many(questions) == v2.answer_many(questions)
    assert loaded.threshold == v2.threshold
    assert loaded.metrics == v2.metrics
    assert (loaded.n_examples, loaded.n_fallback_examples) == (v2.n_examples, v2.n_fallback_examples)
    assert len(digest) == 64

    # bytes round trip (for Django storage) and tamper detection
    data = v2.to_bytes()
    assert LocalRetrievalModel.from_bytes(data).answer_many(questions) == v2.answer_many(questions)
    with pytest.raises(ValueError, match="checksum"):
        LocalRetrievalModel.from_bytes(data, expected_sha256="0" * 64)
