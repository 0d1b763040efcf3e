"""training.services.start: what a new job records about what it trains from."""

from __future__ import annotations

import pytest

from training.models import RetrainPolicy
from training.services import trigger_training

pytestmark = pytest.mark.django_db


def test_a_local_job_trains_on_the_live_version_and_names_no_provider_model(assistant, live_v1):
    RetrainPolicy.objects.create(assistant=assistant, backend="local")
    job = trigger_training(assistant=assistant)
    assert job.backend == "local" and job.base_version == live_v1
    assert job.base_model == ""


def test_a_provider_job_fine_tunes_the_policys_base_model_unless_told_otherwise(assistant, live_v1):
    RetrainPolicy.objects.create(assistant=assistant, backend="openai", base_model="gpt-4.1-mini-2025-04-14")
    job = trigger_training(assistant=assistant)
    assert (job.backend, job.base_model, job.base_version) == ("openai", "gpt-4.1-mini-2025-04-14", live_v1)
    job.delete()
    other = trigger_training(assistant=assistant, options={"base_model": "gpt-4o-2024-08-06"})
    assert other.base_model == "gpt-4o-2024-08-06"
