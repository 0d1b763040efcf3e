"""The fast feedback-item validation must answer exactly as FeedbackItemSerializer does."""

from __future__ import annotations

import json
import random

from feedback.validation import FeedbackItemSerializer, validate_feedback_item

VALUES = [
    None,
    True,
    False,
    0,
    1,
    3,
    5,
    6,
    -1,
    2**70,
    0.5,
    1.0,
    1.5,
    float("nan"),
    float("inf"),
    "",
    " ",
    "  x ",
    "5",
    "true",
    "yes",
    "shop",
    "bad slug!",
    "thumbs",
    "rating",
    "teleport",
    "x" * 201,
    "a\x00b",
    "\ud800",
    "é",
    [],
    {},
    [1],
    {"a": 1},
    2**63 - 1,
    2**63,
]
FIELDS = [
    "assistant",
    "interaction_id",
    "request_id",
    "kind",
    "helpful",
    "rating",
    "accuracy",
    "tone",
    "comment",
    "suggestion",
    "corrected_answer",
    "confidence",
    "idempotency_key",
    "unknown",
]


def _serializer(data):
    item = FeedbackItemSerializer(data=data)
    if item.is_valid():
        return dict(item.validated_data), None
    return None, item.errors


def test_it_agrees_with_the_serializer_on_random_items():
    rng = random.Random(7)
    for _ in range(3000):
        data = {name: rng.choice(VALUES) for name in rng.sample(FIELDS, rng.randint(0, 6))}
        if rng.random() < 0.5:
            data["interaction_id"] = rng.choice([1, 2, "3"])
        fast, fast_errors = validate_feedback_item(data)
        slow, slow_errors = _serializer(data)
        assert fast_errors == slow_errors, data
        # Compared as canonical JSON: 1 and 1.0 are equal in Python but hash differently as a body.
        assert json.dumps(fast, sort_keys=True) == json.dumps(slow, sort_keys=True), data


def test_it_agrees_on_things_that_are_not_objects():
    for data in ([1, 2], "x", None, 3):
        assert validate_feedback_item(data)[1] == _serializer(data)[1]


def test_a_good_item_comes_back_with_the_fields_defaults():
    attrs, errors = validate_feedback_item({"interaction_id": 7, "rating": 4, "comment": "  ok "})
    assert errors is None
    assert attrs == {"interaction_id": 7, "rating": 4, "comment": "ok", "helpful": None}


def test_each_rule_across_fields_says_what_to_send():
    assert validate_feedback_item({"helpful": True})[1] == {
        "interaction_id": ["Send exactly one of `interaction_id` or `request_id`."]
    }
    assert validate_feedback_item({"interaction_id": 1, "comment": " "})[1] == {
        "non_field_errors": [
            "Feedback carries nothing: send at least one of helpful, rating, accuracy, helpfulness, tone, "
            "relevance, completeness, comment, suggestion, corrected_answer."
        ]
    }
    assert validate_feedback_item({"request_id": "r1", "kind": "rating", "helpful": True})[1] == {
        "kind": ["Feedback of kind 'rating' needs `rating`."]
    }


def test_values_are_taken_only_in_their_json_type():
    attrs, errors = validate_feedback_item({"interaction_id": "3", "rating": "5"})
    assert attrs is None
    assert errors == {
        "interaction_id": ["Must be a whole number (a JSON number without a fraction)."],
        "rating": ["Must be a whole number (a JSON number without a fraction)."],
    }
