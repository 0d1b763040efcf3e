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

A multi-arm experiment (``k`` variants, ``k`` up to ``MAX_VARIANTS``) splits ``[0, traffic_split)`` into
``k`` equal parts, in arm order: ``variant``, ``variant2``, ... (``traffic_split`` is then ``k / (k + 1)``, so
every arm, the control included, gets the same share). With ``k = 1`` this is the rule above, unchanged.
The same ``u`` decides, so a user's arm is as sticky as in an A/B test.

Requests without a user ref (anonymous traffic) cannot be sticky: they are assigned at random per request.
The split still holds on average, but one anonymous customer may see both versions, and their interactions
are counted as independent units. Apps that can should send a stable, opaque user ref.
"""

from __future__ import annotations

import random

from feedback.sampling import unit_interval

CONTROL = "control"
VARIANT = "variant"
# Variants of one experiment at most (control + 4 arms): the arm names fit Interaction.arm's 8 characters.
MAX_VARIANTS = 4

# Per-request draws for anonymous traffic; the module-level Random is process-local and never seeded
# by us, so it is not predictable from outside.
_rng = random.SystemRandom()


def variant_arms(variants: int = 1) -> tuple[str, ...]:
    """The variants' arm names in arm order: ``("variant",)``, ``("variant", "variant2")``, ..."""
    return tuple(VARIANT if i == 1 else f"{VARIANT}{i}" for i in range(1, variants + 1))


def arm_names(variants: int = 1) -> tuple[str, ...]:
    """Every arm of an experiment with ``variants`` variants, control first."""
    return (CONTROL, *variant_arms(variants))


ALL_ARMS = arm_names(MAX_VARIANTS)


def bucket(*, salt: str, user_ref: str) -> float:
    """The user's uniform position in [0, 1) for this experiment's salt."""
    return unit_interval(f"{salt}:{user_ref}")


def assign(*, salt: str, user_ref: str, traffic_split: float, variants: int = 1) -> str:
    """The user's arm: ``"control"``, ``"variant"`` (or ``"variant2"``... with several variants).

    Sticky for a user ref, a fresh random draw without one.
    """
    u = bucket(salt=salt, user_ref=user_ref) if user_ref else _rng.random()
    if u >= traffic_split:
        return CONTROL
    if variants <= 1:
        return VARIANT
    # min(): u just below traffic_split must not round into a (k+1)-th variant.
    return variant_arms(variants)[min(variants - 1, int(u * variants / traffic_split))]
