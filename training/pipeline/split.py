"""Deterministic, seeded train/validation split.

An example's split depends only on (seed, interaction id): a hash, not a shuffle, so an interaction stays
in the same split when the dataset is rebuilt with more feedback (no validation example leaks into a later
training set). The interaction id rather than a feedback id, because one example is one interaction and
its representative (latest) feedback row changes when new feedback arrives.
"""

from __future__ import annotations

import hashlib

TRAIN = "train"
VALIDATION = "validation"
_SCALE = float(2**64)


def split_of(interaction_id: int, *, seed: int, validation_share: float) -> str:
    if validation_share <= 0:
        return TRAIN
    digest = hashlib.blake2b(f"{seed}:{interaction_id}".encode(), digest_size=8).digest()
    return VALIDATION if int.from_bytes(digest, "big") / _SCALE < validation_share else TRAIN
