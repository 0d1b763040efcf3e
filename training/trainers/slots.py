"""How many fine-tuning jobs run at once on one provider: ``TRAINING_PROVIDER_CONCURRENCY`` (default 2).

Providers cap the fine-tuning jobs an organisation may run at once and queue or refuse the rest, and a
comparison would otherwise start all its provider candidates together. A subject (a single job or a
comparison's candidate) takes a **slot** before it uploads or creates anything, and holds it until it
ends: the slots in use at a provider (``OPENAI_BASE_URL``) are the single jobs in ``training`` and the
unfinished candidates that took one there. Taking a slot counts them and marks the subject in one
transaction that holds the provider's ``ProviderSlot`` row, so two workers cannot both take the last one.
A subject that finds no free slot waits and asks again at its next poll.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from assistants.backends.openai_chat import DEFAULT_BASE_URL
from training.models import JobCandidate, ProviderSlot, TrainingJob
from training.trainers.base import TrainingSubject

DEFAULT_CONCURRENCY = 2
STATE = "openai"  # the trainer's bookkeeping key; the slot is its ``provider_url``


def provider_url() -> str:
    """The provider fine-tuning jobs go to now (the SDK's default when ``OPENAI_BASE_URL`` is empty)."""
    return (getattr(settings, "OPENAI_BASE_URL", "") or DEFAULT_BASE_URL).rstrip("/")


def concurrency_limit() -> int:
    return max(1, int(getattr(settings, "TRAINING_PROVIDER_CONCURRENCY", DEFAULT_CONCURRENCY)))


def slots_in_use(base_url: str) -> int:
    """Single provider jobs still training and unfinished candidates that hold a slot at ``base_url``."""
    key = f"{STATE}__provider_url"
    jobs = TrainingJob.objects.filter(
        status=TrainingJob.Status.TRAINING, backend="openai", **{f"options__{key}": base_url}
    ).count()
    candidates = (
        JobCandidate.objects.filter(backend="openai", **{f"trainer_state__{key}": base_url})
        .exclude(status__in=JobCandidate.TERMINAL)
        .count()
    )
    return jobs + candidates


@dataclass(frozen=True)
class SlotAnswer:
    taken: bool
    in_use: int
    limit: int
    base_url: str


def slot_take(subject: TrainingSubject) -> SlotAnswer:
    """Take one of the provider's slots for ``subject`` (or confirm it holds one)."""
    url = provider_url()
    limit = concurrency_limit()
    state = subject.state(STATE)
    if state.get("provider_url") == url:
        return SlotAnswer(True, 0, limit, url)
    try:
        with transaction.atomic():
            ProviderSlot.objects.get_or_create(base_url=url)
    except IntegrityError:  # another worker created the row first
        pass
    with transaction.atomic():
        # The UPDATE holds the provider's row (PostgreSQL) or the database (SQLite) until the commit, so a
        # second worker's count waits for this one's mark.
        ProviderSlot.objects.filter(base_url=url).update(taken_at=timezone.now())
        in_use = slots_in_use(url)
        if in_use >= limit:
            return SlotAnswer(False, in_use, limit, url)
        state["provider_url"] = url
        subject.state_save()
    return SlotAnswer(True, in_use + 1, limit, url)
