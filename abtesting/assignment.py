"""Which arm of an experiment a user is in.

Sticky and deterministic: ``sha256(salt:user_ref)`` mapped to a uniform number ``u`` in [0, 1); the user is
in the variant when ``u < traffic_split``. So

- a user keeps their arm for the life of the experiment (same salt, same user → same ``u``), across
  processes and restarts, with nothing stored per user;
- each experiment has its own random salt, so being in the variant of one experiment says nothing about
  the next one (no user is always the guinea pig);
- a progressive rollout raises ``traffic_split`` stage by stage (10% → 50% → 100%): users with
  ``u < 0.1`` stay in the variant, users with ``0.1 ≤ u < 0.5`` move from control to variant, and nobody
  moves back.

Requests without a user ref (anonymous traffic) cannot be sticky: they are assigned at random per request.
The split still holds on average, but one anonymous customer may see both versions, and their interactions
are counted as independent units. Apps that can should send a stable, opaque user ref.
"""

from __future__ import annotations

import random

from feedback.sampling import unit_interval

CONTROL = "control"
VARIANT = "variant"

# Per-request draws for anonymous traffic; the module-level Random is process-local and never seeded
# by us, so it is not predictable from outside.
_rng = random.SystemRandom()


def bucket(*, salt: str, user_ref: str) -> float:
    """The user's uniform position in [0, 1) for this experiment's salt."""
    return unit_interval(f"{salt}:{user_ref}")


def assign(*, salt: str, user_ref: str, traffic_split: float) -> str:
    """``"variant"`` or ``"control"``: sticky for a user ref, a fresh random draw without one."""
    u = bucket(salt=salt, user_ref=user_ref) if user_ref else _rng.random()
    return VARIANT if u < traffic_split else CONTROL
