"""The demo assistant that a fresh install starts with: a shop FAQ bot with a policy and a live v1."""

from __future__ import annotations

from django.db import transaction

from assistants.backends.local import LocalRetrievalModel
from assistants.models import Assistant, Deployment
from assistants.services import assistant_create, deployment_make_live
from training.demo_data import launch_faq

DEMO_SLUG = "demo"


def demo_model_train(*, assistant: Assistant):
    """Train v1 on the launch FAQ and make it live.

    There is no held-out data yet, so the threshold keeps its default.
    """
    from training.services import policy_ensure
    from training.trainers.local import save_version_model

    policy_ensure(assistant=assistant)
    questions, answers = launch_faq()
    model = LocalRetrievalModel.fit(questions, answers)
    metrics = {
        "validation_accuracy": None,
        "coverage": None,
        "threshold": model.threshold,
        "train_examples": model.n_examples,
        "validation_examples": 0,
        "note": "Trained on the launch FAQ; no feedback yet to validate on.",
    }
    version = save_version_model(model=model, assistant=assistant, base_version=None, metrics=metrics)
    deployment_make_live(version=version, reason=Deployment.Reason.INITIAL, note="Launch FAQ model.")
    return version


def demo_only() -> bool:
    """Whether the database holds the demo assistant and nothing else: the demo may only play there."""
    return (
        Assistant.objects.filter(slug=DEMO_SLUG).exists()
        and not Assistant.objects.exclude(slug=DEMO_SLUG).exists()
    )


def demo_ensure() -> Assistant | None:
    """Create the demo assistant on an empty database; leave a database that has assistants alone."""
    if Assistant.objects.exists():
        return None
    with transaction.atomic():
        assistant = assistant_create(
            slug=DEMO_SLUG,
            name="Demo shop support",
            system_prompt="You are the friendly customer-service assistant of an online shop.",
        )
        demo_model_train(assistant=assistant)
    assistant.refresh_from_db()
    return assistant
