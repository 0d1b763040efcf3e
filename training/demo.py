"""The demo assistant that a fresh install starts with: a shop FAQ bot with a policy and a live v1."""

from __future__ import annotations

from django.db import transaction

from assistants.backends.local import LocalRetrievalModel
from assistants.models import Assistant, Deployment
from assistants.services import assistant_create, deployment_make_live
from training.demo_data import launch_faq

DEMO_SLUG = "demo"

# The demo policy's minute-scale loop (``demo_policy_live``), for about 90 customers a minute (the live
# demo's rate) of whom 80 % give feedback: with returning customers, about 40 users with feedback a
# minute, 20 per arm in a test.
DEMO_POLICY = {
    # The retrain check runs every minute; the month of history already holds far more than 100 feedback
    # since demo-v2 went live, so the first check after the history starts a job.
    "schedule": "minutely",
    "min_feedback_count": 100,
    # A planned look every minute over at most 72 minutes (72 planned looks). Only the cadence is
    # minute-scale: the boundaries follow the information gathered, as in a daily plan. A look waits
    # for the worker's next minute after its interval, so a longer interval delays a decision that the
    # data already carries by up to a whole interval.
    "ab_look_interval_minutes": 1,
    "ab_max_duration_days": 0.05,
    # The plan is sized for a 10 % relative lift with 80 % power. demo-v2 succeeds for about 85-90 % of
    # its customers, so a larger lift is not a rate (no plan could be made: 0.9 x 1.2 > 1); at 90 % the
    # plan needs about 210-270 users, five to seven minutes of the demo's customers; a clear difference
    # crosses a boundary before that.
    "ab_min_improvement": 0.1,
    # 30 users with feedback per arm before any decision.
    "ab_min_sample_size": 30,
    # A real win waits for a reviewer (the path the walk-through shows): only a lift of at least +50 %
    # (the lower end of its interval) would deploy itself.
    "require_approval": True,
    "auto_deploy_threshold": 0.5,
}


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


def demo_policy_live(*, assistant: Assistant):
    """Give the demo assistant's policy the minute-scale loop of ``DEMO_POLICY`` (idempotent).

    Called by the live demo once the back-dated history is written, so no check runs on half a history
    (the history's own A/B test keeps the daily defaults it was written with).
    """
    from training.services import policy_ensure, policy_update

    policy = policy_ensure(assistant=assistant)
    if all(getattr(policy, name) == value for name, value in DEMO_POLICY.items()):
        return policy
    return policy_update(policy=policy, **DEMO_POLICY)


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
