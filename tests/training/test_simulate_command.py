"""`manage.py simulate`: customers ask the demo FAQ, interactions and feedback are logged."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from feedback.models import Feedback, Interaction
from training.demo import demo_ensure

pytestmark = pytest.mark.django_db


def test_the_demo_assistant_has_a_policy_and_a_live_v1():
    demo = demo_ensure()
    assert demo.live_version.name == "demo-v1"
    assert demo.live_version.status == "live"
    assert demo.policy.enabled
    assert demo.deployments.get().reason == "initial"


def test_customers_ask_and_give_feedback():
    demo = demo_ensure()
    out = StringIO()
    call_command("simulate", "--interactions", "40", "--seed", "7", stdout=out)
    assert Interaction.objects.filter(assistant=demo).count() == 40
    assert Feedback.objects.filter(assistant=demo).count() == 40
    assert Interaction.objects.filter(model_version=demo.live_version).count() == 40
    text = out.getvalue()
    assert "40 interactions" in text and "demo-v1: 40 asked, 40 with feedback, success" in text
    wrong = Feedback.objects.filter(assistant=demo, helpful=False)
    assert wrong.exists()  # v1 does not know every topic
    assert Feedback.objects.filter(assistant=demo, helpful=True).exists()
    corrected = wrong.exclude(corrected_answer="")
    assert corrected.exists()
    assert all(f.rating <= 2 for f in wrong)


def test_the_same_seed_gives_the_same_run():
    demo_ensure()
    call_command("simulate", "--interactions", "10", "--seed", "1", stdout=StringIO())
    first = list(Interaction.objects.order_by("id").values_list("messages", flat=True))
    Interaction.objects.all().delete()
    call_command("simulate", "--interactions", "10", "--seed", "1", stdout=StringIO())
    assert list(Interaction.objects.order_by("id").values_list("messages", flat=True)) == first


def test_bad_arguments_say_what_to_fix():
    demo_ensure()
    with pytest.raises(CommandError, match="--correction-rate must be between 0 and 1"):
        call_command("simulate", "--correction-rate", "2", stdout=StringIO())
    with pytest.raises(CommandError, match="No assistant 'x'"):
        call_command("simulate", "--assistant", "x", stdout=StringIO())
