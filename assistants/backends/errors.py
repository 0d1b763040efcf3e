"""The one exception model backends raise, so callers (gateway, evaluation) handle a single type."""

from __future__ import annotations


class BackendError(Exception):
    """The model could not answer; the message says why and what to fix."""
