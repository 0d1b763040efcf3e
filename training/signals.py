"""Signals other apps listen to (training never imports them: notifications sits above it)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent once per status change of a training job, after the commit, with plain values:
# ``job_id``, ``from_status`` ("" when the job was just created), ``to_status`` and ``user_id`` (the
# person who caused it, or None). Listeners read the job themselves.
job_status_changed = Signal()
