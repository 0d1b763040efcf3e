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


# -- the demo that `make run` plays: back-dated history, then customers through the gateway ---------------


def test_the_history_spans_a_month_with_a_retrain_and_its_ab_test():
    from datetime import timedelta

    from django.db.models import Count, Q
    from django.utils import timezone

    from abtesting.models import Experiment, ExperimentSnapshot
    from assistants.models import Deployment
    from training.demo_loop import demo_history_write

    demo = demo_ensure()
    now = timezone.now()

    totals = demo_history_write(assistant=demo, days=30, per_day=20, seed=5, now=now)

    interactions = Interaction.objects.filter(assistant=demo)
    assert totals["interactions"] == interactions.count() > 30 * 10
    assert totals["feedback"] == Feedback.objects.filter(assistant=demo).count() > 0
    oldest = interactions.order_by("created_at").first().created_at
    assert now - timedelta(days=30) <= oldest < now - timedelta(days=29)
    days = {d.date() for d in interactions.values_list("created_at", flat=True)}
    assert len(days) >= 30  # traffic on every day, so the trend chart has a shape
    v1, v2 = (d.version for d in Deployment.objects.filter(assistant=demo).order_by("created_at"))
    assert (v1.name, v2.name) == ("demo-v1", "demo-v2")
    assert Deployment.objects.get(version=v1).created_at < oldest + timedelta(seconds=1)
    deployed = Deployment.objects.get(version=v2).created_at
    assert now - timedelta(days=16) < deployed < now - timedelta(days=14)
    demo.refresh_from_db()
    assert demo.live_version == v2
    experiment = Experiment.objects.get(assistant=demo)
    assert (experiment.control, experiment.variant) == (v1, v2)
    assert experiment.status != Experiment.Status.RUNNING
    assert ExperimentSnapshot.objects.filter(experiment=experiment).count() == 3  # one look a day
    in_test = interactions.filter(experiment_id=experiment.pk)
    assert set(in_test.values_list("arm", flat=True)) == {"control", "variant"}
    # ids grow with time, as they do live (the A/B tally counts by id up to a time watermark)
    ordered = list(interactions.order_by("created_at", "id").values_list("id", flat=True))
    assert ordered == sorted(ordered)

    def success(version):
        rows = Feedback.objects.filter(interaction__model_version=version)
        return rows.aggregate(r=Count("id", filter=Q(helpful=True)) * 1.0 / Count("id"))["r"]

    assert success(v2) > success(v1) + 0.2  # the retrain on customers' corrections helped


def test_the_history_is_written_once():
    from training.demo_loop import demo_history_write

    demo = demo_ensure()
    call_command("simulate", "--interactions", "3", "--seed", "1", stdout=StringIO())

    with pytest.raises(ValueError, match="already has interactions"):
        demo_history_write(assistant=demo, days=30, per_day=5)


def test_the_live_demo_refuses_a_database_with_other_assistants():
    from assistants.services import assistant_create

    demo_ensure()
    assistant_create(slug="acme", name="Acme support")

    with pytest.raises(CommandError, match="only runs on a database whose one assistant is the demo"):
        call_command("simulate", "--live", "http://127.0.0.1:9", stdout=StringIO())
    assert not Interaction.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_live_customers_talk_to_the_gateway_over_http(live_server):
    from training.demo_loop import demo_customer_key, demo_customers_run

    demo = demo_ensure()
    lines = []

    report = demo_customers_run(
        url=live_server.url,
        key=demo_customer_key(assistant=demo),
        per_minute=0,  # no pause between customers
        feedback_rate=1.0,
        correction_rate=1.0,
        customers=30,
        seed=11,
        report_every=10,
        log=lines.append,
    )

    assert report["served"] == 30 and report["failed"] == 0
    logged = Interaction.objects.filter(assistant=demo)
    assert logged.count() == 30
    assert all(r.startswith("gw-") for r in logged.values_list("request_id", flat=True))  # via the gateway
    refs = list(logged.values_list("user_ref", flat=True))
    assert len(set(refs)) < len(refs)  # some customers came back
    streamed = logged.exclude(first_token_ms=None).count()
    assert 0 < streamed < 30  # some read a streamed answer
    assert Feedback.objects.filter(assistant=demo).count() == 30
    assert Feedback.objects.exclude(corrected_answer="").exists()
    stats = report["versions"]["demo-v1"]
    assert stats["asked"] == stats["judged"] == 30
    assert len(lines) == 3 and "demo-v1 " in lines[-1]


def test_the_demo_plays_only_where_the_demo_is_the_one_assistant():
    from assistants.services import assistant_create
    from training.demo import demo_only

    assert not demo_only()  # nothing yet
    demo_ensure()
    assert demo_only()
    assistant_create(slug="acme", name="Acme support")
    assert not demo_only()


def test_the_live_demo_policy_has_minute_scale_checks_and_looks():
    from django_q.models import Schedule

    from abtesting.services import planned_looks
    from training.demo import DEMO_POLICY, demo_policy_live
    from training.schedules import schedule_name

    demo = demo_ensure()
    assert demo.policy.ab_look_interval_minutes == 1440  # daily until the history is written
    policy = demo_policy_live(assistant=demo)
    assert (policy.schedule, policy.ab_look_interval_minutes) == ("minutely", 1)
    assert policy.ab_max_duration_days * 1440 == pytest.approx(72)
    assert planned_looks(policy.ab_max_duration_days, 1 / 1440) == 72
    assert policy.require_approval and policy.auto_deploy_threshold == DEMO_POLICY["auto_deploy_threshold"]
    schedule = Schedule.objects.get(name=schedule_name(demo.pk))
    assert (schedule.schedule_type, schedule.minutes) == (Schedule.MINUTES, 1)
    assert demo_policy_live(assistant=demo).pk == policy.pk  # idempotent


def test_a_policy_with_too_many_planned_looks_is_refused():
    from django.core.exceptions import ValidationError

    from training.services import policy_update

    demo = demo_ensure()
    with pytest.raises(ValidationError, match="planned looks"):
        policy_update(policy=demo.policy, ab_look_interval_minutes=1, ab_max_duration_days=1)
    with pytest.raises(ValidationError):
        policy_update(policy=demo.policy, ab_look_interval_minutes=0)
    # A daily plan keeps working however long it runs.
    assert policy_update(policy=demo.policy, ab_look_interval_minutes=1440, ab_max_duration_days=120)
