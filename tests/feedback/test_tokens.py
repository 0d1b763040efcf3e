"""Feedback tokens: unguessable per interaction, stateless, valid through a SECRET_KEY rotation."""

from __future__ import annotations

import re

from feedback.tokens import feedback_token, feedback_token_valid


def test_a_token_is_url_safe_and_differs_per_interaction():
    tokens = {feedback_token(pk) for pk in range(1, 1001)}
    assert len(tokens) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", t) for t in tokens)


def test_only_the_interactions_own_token_is_valid():
    assert feedback_token_valid(7, feedback_token(7))
    assert not feedback_token_valid(8, feedback_token(7))
    assert not feedback_token_valid(7, feedback_token(7)[:-1])
    assert not feedback_token_valid(7, "")
    assert not feedback_token_valid(7, None)


def test_it_depends_on_the_secret_key_and_survives_a_rotation(settings):
    old_key, old = settings.SECRET_KEY, feedback_token(7)
    settings.SECRET_KEY = "another-secret-key-0123456789-0123456789-0123456789"
    assert feedback_token(7) != old
    assert not feedback_token_valid(7, old)
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert feedback_token_valid(7, old)
    assert feedback_token_valid(7, feedback_token(7))
