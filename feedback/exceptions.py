"""What the feedback services refuse with (the base classes: ``assistants.exceptions``)."""

from __future__ import annotations

from assistants.exceptions import Conflict


class IdempotencyConflict(Conflict):
    """The same idempotency key (or request id) was sent earlier with a different body."""
