"""Deterministic sampling: a key's fixed, uniform position in [0, 1).

One definition for every "same key, same answer" draw: which interactions are asked for feedback
(``feedback.services.should_ask_for_feedback``) and which arm of an experiment a user is in
(``abtesting.assignment``). It lives in the lowest app that draws.
"""

from __future__ import annotations

import hashlib

_SCALE = float(2**64)


def unit_interval(key: str) -> float:
    """``key``'s position in [0, 1): the first 8 bytes of its SHA-256, so uniform over keys and the same
    in every process, with nothing stored."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE
