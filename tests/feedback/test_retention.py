"""Retention in the feedback layer: rows older than the cut-off go in batches, every figure for every day
stays exactly as it was, and rows the figures have not counted or that are still needed stay."""

from __future__ import annotations

import datetime as dt
import random
from datetime import timedelta

import pytest
from django.utils import timezone

from assistants.services import assistant_create, model_version_create
from feedback import retention
from feedback.models import CurationLog, DailyRollup, Feedback, Interaction
from feedback.retention import interactions_due, interactions_expire, retention_cutoff
from feedback.rollups import local_midnight, rollups_refresh, window_sums
from feedback.selectors import feedback_daily_series, feedback_stats

pytestmark = pytest.mark.django_db

DAYS = 10


@pytest.fixture(autouse=True)
def _local_time_zone(settings):
    # Local days differ from UTC days here, so a cut-off on the wrong midnight would show.
    settings.TIME_ZONE = "America/New_York"


class World:
    """Random traffic for two assistants over the last 45 days, some feedback arriving days later."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.now = timezone.now()
        self.assistants = [assistant_create(slug=f"a{n}", name=f"A{n}") for n in range(2)]
        self.versions = {
            a.pk: [None, *(model_version_create(assistant=a, name=f"{a.slug}-v{v}") for v in (1, 2))]
            for a in self.assistants
        }
        self.serial = 0

    def add(self, n: int, *, days_back: tuple[float, float] = (0, 45), assistant=None) -> list[Interaction]:
        rng = self.rng
        made = []
        for _ in range(n):
            self.serial += 1
            owner = assistant or rng.choice(self.assistants)
            created = self.now - timedelta(days=rng.uniform(*days_back))
            interaction = Interaction.objects.create(
                assistant=owner,
                model_version=rng.choice(self.versions[owner.pk]),
                request_id=f"r{self.serial}",
                user_ref=f"customer-{rng.randrange(20)}",
                messages=[{"role": "user", "content": f"Where is order {self.serial}?"}],
                error=rng.choice([None, None, None, "", "timeout"]),
                created_at=created,
            )
            made.append(interaction)
            for _ in range(rng.choice([0, 1, 1, 2])):
                feedback = Feedback.objects.create(
                    interaction=interaction,
                    assistant=owner,
                    kind=rng.choice(Feedback.Kind.values),
                    helpful=rng.choice([None, True, False]),
                    rating=rng.choice([None, 1, 2, 3, 4, 5]),
                    accuracy=rng.choice([None, 1, 3, 5]),
                    helpfulness=rng.choice([None, 2, 5]),
                    tone=rng.choice([None, 2, 4]),
                    relevance=rng.choice([None, 3]),
                    completeness=rng.choice([None, 1, 4]),
                    corrected_answer=rng.choice(["", "", "Better answer."]),
                    excluded_from_training=rng.random() < 0.1,
                    # Mostly minutes later, sometimes days later (a customer rating an old answer).
                    created_at=min(self.now, created + timedelta(minutes=rng.choice([1, 5, 30, 3 * 1440]))),
                )
                if rng.random() < 0.1:
                    CurationLog.objects.create(feedback=feedback, action="exclude", detail={})
        return made


def figures(world: World) -> dict:
    """Every figure the pages and APIs read, for every whole-day window and every day of the history."""
    today = timezone.localdate()
    out = {}
    for assistant in world.assistants:
        a = assistant.pk
        out[(a, "all time")] = feedback_stats(assistant=assistant)
        out[(a, "series")] = feedback_daily_series(assistant=assistant, days=50)
        for back in (1, 7, 29, 30, 46):
            since = local_midnight(today - dt.timedelta(days=back))
            out[(a, "since", back)] = feedback_stats(assistant=assistant, since=since)
        for back in range(50):
            day = today - dt.timedelta(days=back)
            out[(a, "day", back)] = window_sums(
                assistant_id=a, since=local_midnight(day), until=local_midnight(day + dt.timedelta(days=1))
            )
    return out


def test_the_cut_off_is_the_local_midnight_n_days_back(settings):
    now = timezone.make_aware(dt.datetime(2026, 3, 10, 1, 30))  # 01:30 in New York: 06:30 UTC
    cutoff = retention_cutoff(days=7, now=now)
    assert timezone.localtime(cutoff) == timezone.make_aware(dt.datetime(2026, 3, 3))
    assert retention_cutoff(days=1, now=now) == local_midnight(dt.date(2026, 3, 9))
    with pytest.raises(ValueError, match="at least 1 day"):
        retention_cutoff(days=0)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_figure_for_every_day_is_the_same_after_the_old_rows_are_deleted(seed):
    world = World(seed)
    world.add(150)
    before = figures(world)  # the rollups were never refreshed: the pass must do it before deleting
    target = world.assistants[0]
    cutoff = retention_cutoff(days=DAYS)
    old = Interaction.objects.filter(assistant=target, created_at__lt=cutoff)
    due = old.exclude(feedback__created_at__gte=cutoff).count()

    result = interactions_expire(assistant_id=target.pk, cutoff=cutoff, batch_size=7)

    assert result.deleted.interactions == due > 0
    assert result.deleted.batches >= due // 7
    assert figures(world) == before
    # What stays of the old days: only interactions whose feedback is younger than the cut-off.
    assert old.count() == result.kept
    assert not old.exclude(feedback__created_at__gte=cutoff).exists()
    assert (
        not Feedback.objects.filter(assistant=target, interaction__created_at__lt=cutoff)
        .exclude(interaction__feedback__created_at__gte=cutoff)
        .exists()
    )
    # The other assistant kept everything.
    other = world.assistants[1]
    assert Interaction.objects.filter(assistant=other, created_at__lt=cutoff).count() > 0


def test_it_deletes_the_feedback_and_the_curation_log_with_the_interactions():
    world = World(3)
    world.add(40, days_back=(20, 30), assistant=world.assistants[0])
    target = world.assistants[0]
    ids = list(Interaction.objects.filter(assistant=target).values_list("pk", flat=True))
    feedback = Feedback.objects.filter(interaction_id__in=ids).count()
    logs = CurationLog.objects.filter(feedback__interaction_id__in=ids).count()

    result = interactions_expire(assistant_id=target.pk, cutoff=retention_cutoff(days=DAYS), batch_size=10)

    assert (result.deleted.interactions, result.deleted.feedback) == (40, feedback)
    assert result.deleted.other.get("feedback.CurationLog", 0) == logs
    assert result.deleted.batches == 4 and result.complete and result.kept == 0
    assert not Interaction.objects.filter(pk__in=ids).exists()
    assert not Feedback.objects.filter(interaction_id__in=ids).exists()
    assert DailyRollup.objects.filter(assistant=target).exists()


def test_a_second_pass_deletes_nothing():
    world = World(4)
    world.add(30, days_back=(15, 20), assistant=world.assistants[0])
    cutoff = retention_cutoff(days=DAYS)
    first = interactions_expire(assistant_id=world.assistants[0].pk, cutoff=cutoff)
    second = interactions_expire(assistant_id=world.assistants[0].pk, cutoff=cutoff)
    assert first.deleted.interactions == 30
    assert (second.deleted.interactions, second.deleted.feedback, second.deleted.batches) == (0, 0, 0)


def test_rows_younger_than_the_cut_off_stay():
    world = World(5)
    young = world.add(10, days_back=(0, DAYS - 0.5), assistant=world.assistants[0])
    result = interactions_expire(assistant_id=world.assistants[0].pk, cutoff=retention_cutoff(days=DAYS))
    assert result.deleted.interactions == 0
    assert Interaction.objects.filter(pk__in=[i.pk for i in young]).count() == 10


def test_an_old_interaction_with_young_feedback_waits_for_its_feedback():
    world = World(6)
    target = world.assistants[0]
    cutoff = retention_cutoff(days=DAYS)
    interaction = Interaction.objects.create(
        assistant=target, request_id="late", created_at=cutoff - timedelta(hours=2)
    )
    Feedback.objects.create(
        interaction=interaction,
        assistant=target,
        kind="thumbs",
        helpful=True,
        created_at=cutoff + timedelta(hours=1),
    )
    result = interactions_expire(assistant_id=target.pk, cutoff=cutoff)
    assert result.deleted.interactions == 0 and result.kept == 1
    assert Feedback.objects.filter(interaction=interaction).exists()
    # A day later the feedback is older than the cut-off too.
    later = interactions_expire(assistant_id=target.pk, cutoff=cutoff + timedelta(days=1))
    assert later.deleted.interactions == 1 and later.deleted.feedback == 1


def test_the_callers_rows_to_keep_stay():
    world = World(7)
    target = world.assistants[0]
    rows = world.add(12, days_back=(15, 20), assistant=target)
    for i in rows[:3]:
        Interaction.objects.filter(pk=i.pk).update(experiment_id=99, arm="variant")
    keep = Interaction.objects.filter(pk__in=[rows[3].pk, rows[4].pk]).values("pk")

    result = interactions_expire(
        assistant_id=target.pk,
        cutoff=retention_cutoff(days=DAYS),
        keep_experiments=[99],
        keep_interactions=keep,
    )

    assert result.deleted.interactions == 7 and result.kept == 5
    assert set(Interaction.objects.filter(assistant=target).values_list("pk", flat=True)) == {
        i.pk for i in rows[:5]
    }


def test_a_row_stored_after_the_refresh_is_not_deleted_before_the_rollups_count_it(monkeypatch):
    """A late import of an old row lands between the pass's refresh and its deletion: it stays (its day's
    figures have not counted it), and the next pass counts it first, then deletes it."""
    world = World(8)
    target = world.assistants[0]
    world.add(10, days_back=(15, 20), assistant=target)
    cutoff = retention_cutoff(days=DAYS)
    old_day = timezone.localdate() - dt.timedelta(days=17)
    real_refresh = retention.rollups_refresh
    late = []

    def refresh_then_a_late_row_arrives():
        counted = real_refresh()
        if not late:
            late.extend(world.add(1, days_back=(17, 17), assistant=target))
        return counted

    monkeypatch.setattr(retention, "rollups_refresh", refresh_then_a_late_row_arrives)
    result = interactions_expire(assistant_id=target.pk, cutoff=cutoff)

    assert result.deleted.interactions == 10 and result.kept == 1
    assert Interaction.objects.filter(pk=late[0].pk).exists()
    day = (local_midnight(old_day), local_midnight(old_day + dt.timedelta(days=1)))
    with_late_row = window_sums(assistant_id=target.pk, since=day[0], until=day[1])

    again = interactions_expire(assistant_id=target.pk, cutoff=cutoff)

    assert again.deleted.interactions == 1 and again.kept == 0
    assert window_sums(assistant_id=target.pk, since=day[0], until=day[1]) == with_late_row
    assert with_late_row["interactions"] >= 1


def test_it_stops_when_asked_and_the_next_pass_carries_on():
    world = World(9)
    target = world.assistants[0]
    world.add(30, days_back=(15, 20), assistant=target)
    asked = []

    def after_one_chunk() -> bool:
        asked.append(1)
        return len(asked) > 1

    cutoff = retention_cutoff(days=DAYS)
    first = interactions_expire(
        assistant_id=target.pk, cutoff=cutoff, batch_size=2, should_stop=after_one_chunk
    )
    assert not first.complete
    assert first.deleted.interactions == 2 * retention.CHUNK_BATCHES and first.kept == 10
    rest = interactions_expire(assistant_id=target.pk, cutoff=cutoff, batch_size=2)
    assert rest.complete and rest.deleted.interactions == 10 and rest.kept == 0


def test_the_cut_off_must_be_a_local_midnight():
    world = World(10)
    with pytest.raises(ValueError, match="local midnight"):
        interactions_expire(assistant_id=world.assistants[0].pk, cutoff=timezone.now() - timedelta(days=3))


def test_the_rows_due_are_those_the_pass_deletes():
    world = World(11)
    target = world.assistants[0]
    world.add(25, days_back=(5, 25), assistant=target)
    cutoff = retention_cutoff(days=DAYS)
    rollups_refresh()
    due = set(interactions_due(assistant_id=target.pk, cutoff=cutoff).values_list("pk", flat=True))
    before = set(Interaction.objects.filter(assistant=target).values_list("pk", flat=True))
    interactions_expire(assistant_id=target.pk, cutoff=cutoff)
    after = set(Interaction.objects.filter(assistant=target).values_list("pk", flat=True))
    assert due and before - after == due
