"""The seed's three example assistants and their back-dated history (training/examples.py)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from abtesting.models import Experiment
from assistants.models import Assistant
from training.examples import EXAMPLES, examples_create
from training.models import RetrainPolicy, TrainingJob
from training.selectors import track_record

SLUGS = ["ecommerce-support", "docs-qa", "knowledge-base"]


@pytest.fixture
def examples(db):
    return examples_create(weeks=8, per_day=4)


def test_it_creates_the_seeds_three_assistants_with_their_policies(examples):
    assert sorted(examples) == sorted(SLUGS)
    names = dict(Assistant.objects.values_list("slug", "name"))
    assert names == {
        "ecommerce-support": "E-Commerce Customer Support",
        "docs-qa": "SaaS Product Documentation Q&A",
        "knowledge-base": "Internal Knowledge Base Assistant",
    }
    policies = {p.assistant.slug: p for p in RetrainPolicy.objects.select_related("assistant")}
    shop, docs, kb = policies["ecommerce-support"], policies["docs-qa"], policies["knowledge-base"]
    assert (shop.min_feedback_count, shop.min_success_rate, shop.min_avg_rating, shop.schedule) == (
        50, 0.85, 4.0, "daily",
    )  # fmt: skip
    assert (docs.min_feedback_count, docs.min_success_rate, docs.min_avg_rating, docs.schedule) == (
        100, 0.90, 4.5, "weekly",
    )  # fmt: skip
    assert (kb.min_feedback_count, kb.min_success_rate, kb.min_avg_rating, kb.ab_enabled) == (
        30,
        0.75,
        3.5,
        False,
    )


def test_each_history_has_deployments_with_measured_lifts_a_live_model_and_feedback(examples):
    for slug in SLUGS:
        assistant = Assistant.objects.get(slug=slug)
        report = track_record.training_report(assistant=assistant, weeks=8)
        assert report["jobs"]["total"] >= 4, slug
        assert report["jobs"]["deployed"] >= 1, slug
        assert assistant.live_version is not None and assistant.live_version.artifact, slug
        assert report["durations"]["trigger_to_deployment"]["jobs"] == report["jobs"]["deployed"], slug
        assert report["success_rate"]["datasets"], slug
        # Every deployed version's lift was measured: by the A/B test, or offline for the knowledge base.
        sources = {row["lift_source"] for row in report["deployed_versions"]}
        assert sources == ({"offline_evaluation"} if slug == "knowledge-base" else {"ab_test"}), slug
    shop = Assistant.objects.get(slug="ecommerce-support")
    assert TrainingJob.objects.filter(assistant__slug="docs-qa", experiment__isnull=False).exists()
    assert Experiment.objects.filter(assistant=shop, status="running").count() == 0
    # The jobs follow the state machine one at a time: at most one is in progress per assistant.
    assert TrainingJob.objects.exclude(status__in=TrainingJob.TERMINAL).count() <= 1


def test_running_it_again_leaves_existing_assistants_alone(examples):
    jobs = TrainingJob.objects.count()
    assert examples_create(weeks=8, per_day=4) == dict.fromkeys(SLUGS)
    assert TrainingJob.objects.count() == jobs


def test_the_command_says_what_it_wrote(db):
    out = StringIO()
    call_command("example_assistants", "--weeks", "3", stdout=out)
    text = out.getvalue()
    for example in EXAMPLES:
        assert f"{example.slug} ({example.name}):" in text
    assert "/track-record/" in text
    out = StringIO()
    call_command("example_assistants", stdout=out)
    assert "ecommerce-support: already exists, left as it is." in out.getvalue()


def test_the_command_refuses_a_history_longer_than_the_report_shows(db):
    with pytest.raises(CommandError, match="--weeks must be from 1 to 104"):
        call_command("example_assistants", "--weeks", "0")


def test_the_other_pages_show_the_example_history(examples, client, bob):
    client.force_login(bob)
    for experiment in Experiment.objects.all()[:3]:
        response = client.get(f"/experiments/{experiment.pk}/")
        assert response.status_code == 200
        assert experiment.variant.name in response.content.decode()
    for job in TrainingJob.objects.order_by("-id")[:6]:
        response = client.get(f"/jobs/{job.pk}/")
        assert response.status_code == 200
        assert f"Job {job.pk}" in response.content.decode()
    for slug in SLUGS:
        response = client.get(f"/assistants/{slug}/")
        assert response.status_code == 200
    assert client.get("/models/").status_code == 200
