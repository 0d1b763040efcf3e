"""The demo assistant that a fresh install starts with."""

from __future__ import annotations

from assistants.models import Assistant
from assistants.services import assistant_create

DEMO_SLUG = "demo"


def demo_ensure() -> Assistant | None:
    """Create the demo assistant on an empty database; leave a database that has assistants alone."""
    if Assistant.objects.exists():
        return None
    return assistant_create(
        slug=DEMO_SLUG,
        name="Demo shop support",
        system_prompt="You are the friendly customer-service assistant of an online shop.",
    )
