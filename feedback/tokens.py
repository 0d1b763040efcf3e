"""Feedback tokens: proof that whoever sends feedback with a publishable key was shown the answer.

A publishable key sits in web page source, so anyone can copy it; interaction ids are sequential and
request ids are often guessable. The token is given only to whoever logged the interaction (the
interactions API, the chat gateway), who hands it to the page that shows the answer; the widget sends it
back. It is an HMAC-SHA256 of the interaction id under a key derived from SECRET_KEY (Django's
``salted_hmac``), truncated to 128 bits and base64url-encoded: unguessable, stateless (nothing stored),
and tokens made under a key listed in ``SECRET_KEY_FALLBACKS`` stay valid through a key rotation.
"""

from __future__ import annotations

import base64

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

_SALT = "trainloop.feedback.token"
TOKEN_BYTES = 16  # 128 bits
MAX_TOKEN_LENGTH = 64  # what the API accepts: longer is not a token of ours


def _token(interaction_id: int, secret: str) -> str:
    mac = salted_hmac(_SALT, str(interaction_id), secret=secret, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(mac[:TOKEN_BYTES]).rstrip(b"=").decode()


def feedback_token(interaction_id: int) -> str:
    """The token for this interaction (22 URL-safe characters)."""
    return _token(interaction_id, settings.SECRET_KEY)


def feedback_token_valid(interaction_id: int, token: str | None) -> bool:
    if not token or not isinstance(token, str):
        return False
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return any(constant_time_compare(_token(interaction_id, secret), token) for secret in secrets)
