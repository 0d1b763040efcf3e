"""The daily rollups add up to a full recount of the raw rows, whatever happens to the rows and the worker."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from assistants.services import assistant_create, model_version_create
from feedback import rollups
from feedback.models import DailyRollup, Feedback, Interaction, RollupMark
from feedback.rollups import FEEDBACK_SUMS, INTERACTION_SUMS, rollups_refresh, window_sums
from feedback.selectors import feedback_daily_series, feedback_stats
from feedback.services import feedback_correct, feedback_set_excluded


def recount(assistant_id, since=None, until=None) -> dict[str, int]:
    """The figures counted from every raw row, the way they were counted before rollups existed."""
    totals = {}
    for model, sums in ((Feedback, FEEDBACK_SUMS), (Interaction, INTERACTION_SUMS)):
        rows = model.objects.filter(assistant_id=assistant_id)
        if since is not None:
            rows = rows.filter(created_at__gte=since)
        if until is not None:
            rows = rows.filter(created_at__lt=until)
        totals.update({name: value or 0 for name, value in rows.aggregate(**sums).items()})
    return totals


class World:
    """Random traffic for two assistants with two versions each, over the last 60 days."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.now = timezone.now()
        self.assistants = [assistant_create(slug=f"a{n}", name=f"A{n}") for n in range(2)]
        self.versions = {
            a.pk: [None, *(model_version_create(assistant=a, name=f"{a.slug}-v{v}") for v in (1, 2))]
            for a in self.assistants
        }
        self.serial = 0

    def when(self, days_back: float) -> timezone.datetime:
        return self.now - timedelta(days=days_back)

    def add(self, n: int, *, days_back: tuple[float, float] = (0, 60)) -> None:
        rng = self.rng
        for _ in range(n):
            self.serial += 1
            assistant = rng.choice(self.assistants)
            created = self.when(rng.uniform(*days_back))
            interaction = Interaction.objects.create(
                assistant=assistant,
                model_version=rng.choice(self.versions[assistant.pk]),
                request_id=f"r{self.serial}",
                error=rng.choice([None, None, None, "", "timeout"]),
                created_at=created,
            )
            for _ in range(rng.choice([0, 1, 1, 2])):
                Feedback.objects.create(
                    interaction=interaction,
                    assistant=assistant,
                    kind=rng.choice(Feedback.Kind.values),
                    helpful=rng.choice([None, True, False]),
                    rating=rng.choice([None, 1, 2, 3, 4, 5]),
                    accuracy=rng.choice([None, 1, 3, 5]),
                    tone=rng.choice([None, 2, 4]),
                    corrected_answer=rng.choice(["", "", "Better answer."]),
                    excluded_from_training=rng.random() < 0.1,
                    created_at=created + timedelta(minutes=rng.uniform(0, 30)),
                )


def check(world: World, windows) -> None:
    for assistant in world.assistants:
        for since, until in windows:
            assert window_sums(assistant_id=assistant.pk, since=since, until=until) == recount(
                assistant.pk, since, until
            ), (assistant.slug, since, until)


def windows_of(world: World):
    midnight = rollups.local_midnight(timezone.localdate())
    return [
        (None, None),
        (midnight - timedelta(days=29), None),  # the overview's window: whole days
        (world.when(14.3), None),  # since a deployment: a partial first day
        (world.when(40.7), world.when(3.2)),  # partial days at both ends
        (world.when(20.5), world.when(20.1)),  # within one day
        (midnight - timedelta(days=10), midnight - timedelta(days=3)),
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_equal_a_full_recount_after_random_inserts_and_late_rows(db, seed):
    world = World(seed)
    world.add(60)
    check(world, windows_of(world))  # nothing rolled up yet: all from raw rows
    rollups_refresh(chunk=7)  # small chunks: many transactions, each moving the mark
    assert RollupMark.objects.get().feedback_id == Feedback.objects.order_by("-id").first().pk
    check(world, windows_of(world))
    world.add(30, days_back=(0, 0.01))  # today's traffic, past the mark
    world.add(30, days_back=(35, 50))  # late-arriving rows for long-closed days
    check(world, windows_of(world))
    rollups_refresh()
    check(world, windows_of(world))
    assert rollups_refresh() == {"feedback": 0, "interactions": 0}, "a row is counted once"
    check(world, windows_of(world))


def test_deleting_old_raw_rows_changes_no_figure(db):
    world = World(4)
    world.add(80)
    rollups_refresh()
    midnight = rollups.local_midnight(timezone.localdate())
    whole_days = [
        (None, None),
        (midnight - timedelta(days=45), None),
        (midnight - timedelta(days=50), midnight),
    ]
    before = {
        (a.pk, since, until): recount(a.pk, since, until)
        for a in world.assistants
        for since, until in whole_days
    }
    # Retention: raw rows older than 30 days go (feedback with its interactions).
    Interaction.objects.filter(created_at__lt=midnight - timedelta(days=30)).delete()
    assert Feedback.objects.filter(created_at__lt=midnight - timedelta(days=31)).count() == 0
    for (assistant_id, since, until), figures in before.items():
        assert window_sums(assistant_id=assistant_id, since=since, until=until) == figures
    world.add(20, days_back=(0, 0.01))
    rollups_refresh()
    for assistant in world.assistants:
        recent = midnight - timedelta(days=29)
        assert window_sums(assistant_id=assistant.pk, since=recent) == recount(assistant.pk, recent)


def test_curation_keeps_the_sums_right(db, alice):
    world = World(5)
    world.add(40)
    rollups_refresh()
    counted = list(Feedback.objects.order_by("id")[:6])
    world.add(10, days_back=(0, 0.01))
    fresh = list(Feedback.objects.order_by("-id")[:2])  # past the mark: left to the refresh
    for row in counted + fresh:
        feedback_set_excluded(feedback=row, excluded=not row.excluded_from_training, user=alice)
        feedback_correct(feedback=row, corrected_answer="" if row.corrected_answer else "Fixed.", user=alice)
    feedback_set_excluded(
        feedback=counted[0], excluded=counted[0].excluded_from_training, user=alice
    )  # no-op
    check(world, windows_of(world))
    rollups_refresh()
    check(world, windows_of(world))


def test_stats_and_series_read_rollups_and_todays_rows(db, django_assert_max_num_queries):
    world = World(6)
    world.add(50)
    rollups_refresh()
    world.add(10, days_back=(0, 0.001))
    assistant = world.assistants[0]
    since = rollups.local_midnight(timezone.localdate() - timedelta(days=29))
    stats = feedback_stats(assistant=assistant, since=since)
    raw = recount(assistant.pk, since)
    assert stats["total_feedback"] == raw["feedback"]
    assert stats["avg_rating"] == pytest.approx(raw["rating_sum"] / raw["rated"])
    assert stats["error_rate"] == pytest.approx(raw["errors"] / raw["interactions"])
    with django_assert_max_num_queries(4):
        series = feedback_daily_series(assistant=assistant, days=30)
    assert sum(row["total_feedback"] for row in series) == raw["feedback"]
    today = timezone.localdate().isoformat()
    assert series[-1]["day"] == today
    assert (
        series[-1]["total_feedback"]
        == recount(assistant.pk, rollups.local_midnight(timezone.localdate()))["feedback"]
    )


def test_the_refresh_adds_to_existing_days_and_keeps_versions_apart(db):
    world = World(7)
    world.add(30, days_back=(2, 2.01))
    rollups_refresh()
    rows_before = DailyRollup.objects.count()
    world.add(30, days_back=(2, 2.01))
    rollups_refresh()
    assert DailyRollup.objects.count() == rows_before, "the same days and versions: rows are added to"
    for rollup in DailyRollup.objects.all():
        version = rollup.model_version_id or None
        interactions = Interaction.objects.filter(
            assistant_id=rollup.assistant_id,
            model_version_id=version,
            created_at__gte=rollups.local_midnight(rollup.day),
            created_at__lt=rollups.local_midnight(rollup.day + timedelta(days=1)),
        )
        assert rollup.interactions == interactions.count()


@pytest.mark.django_db(transaction=True)
def test_a_row_committed_late_is_not_skipped_by_the_refresh(db):
    """PostgreSQL draws ids at insert and shows rows at commit: the refresh must wait for open writers."""
    import threading

    from django.db import connection, connections, transaction

    world = World(8)
    world.add(5)
    if connection.vendor == "sqlite":
        # One writer at a time: an open write transaction holds every other writer back, and ids are
        # visible in order. The refresh simply counts everything.
        rollups_refresh()
        check(world, windows_of(world))
        return
    assistant = world.assistants[0]
    interaction = Interaction.objects.filter(assistant=assistant).first()
    inserted, release, errors = threading.Event(), threading.Event(), []

    def slow_writer():
        try:
            with transaction.atomic():
                Feedback.objects.create(interaction=interaction, assistant=assistant, kind="rating", rating=1)
                inserted.set()
                release.wait(timeout=20)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def refresher():
        try:
            rollups_refresh()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert inserted.wait(timeout=10)
    # A later row, committed first, with a larger id.
    Feedback.objects.create(interaction=interaction, assistant=assistant, kind="rating", rating=5)
    refresh = threading.Thread(target=refresher)
    refresh.start()
    refresh.join(timeout=1)
    assert refresh.is_alive(), "the refresh counted past a row whose transaction was still open"
    release.set()
    writer.join(timeout=20)
    refresh.join(timeout=20)
    assert not errors, errors
    assert RollupMark.objects.get().feedback_id == Feedback.objects.order_by("-id").first().pk
    check(world, windows_of(world))


def test_figures_are_plain_numbers_on_every_database(db):
    # PostgreSQL sums bigint columns as numeric: a Decimal leaking out breaks float arithmetic downstream
    # (the retrain check's performance drop) and JSON.
    world = World(9)
    world.add(20)
    rollups_refresh()
    world.add(5, days_back=(0, 0.001))
    assistant = world.assistants[0]
    stats = feedback_stats(assistant=assistant)
    assert all(type(v) is int for v in window_sums(assistant_id=assistant.pk).values())
    for name in ("avg_rating", "success_rate", "helpful_rate", "error_rate"):
        assert stats[name] is None or type(stats[name]) is float, name
    for row in feedback_daily_series(assistant=assistant, days=30):
        assert row["avg_rating"] is None or type(row["avg_rating"]) is float


def recount_by_version(assistant_id) -> dict[int, dict[str, int]]:
    """Per-version figures counted from every raw row."""
    rows = (
        Feedback.objects.filter(assistant_id=assistant_id)
        .values("interaction__model_version_id")
        .annotate(**{name: FEEDBACK_SUMS[name] for name in ("feedback", "signals", "successes")})
        .order_by()
    )
    return {
        row.pop("interaction__model_version_id") or 0: {k: v or 0 for k, v in row.items()} for row in rows
    }


def test_version_sums_equal_a_recount_before_and_after_the_refresh(db):
    world = World(10)
    world.add(60)
    for assistant in world.assistants:  # nothing rolled up yet: all from raw rows
        assert rollups.version_sums(assistant_id=assistant.pk) == recount_by_version(assistant.pk)
    rollups_refresh(chunk=11)
    world.add(20, days_back=(0, 0.01))  # past the mark
    world.add(10, days_back=(40, 50))  # late rows for closed days, past the mark too
    for assistant in world.assistants:
        sums = rollups.version_sums(assistant_id=assistant.pk)
        assert sums == recount_by_version(assistant.pk)
        assert set(sums) <= {0, *(v.pk for v in world.versions[assistant.pk][1:])}
        assert all(type(v) is int for figures in sums.values() for v in figures.values())
    rollups_refresh()
    for assistant in world.assistants:
        assert rollups.version_sums(assistant_id=assistant.pk) == recount_by_version(assistant.pk)


def test_version_sums_survive_retention_in_two_queries(db, django_assert_num_queries):
    world = World(11)
    world.add(80)
    rollups_refresh()
    assistant = world.assistants[0]
    before = recount_by_version(assistant.pk)
    Interaction.objects.filter(created_at__lt=world.when(20)).delete()  # retention: feedback goes with it
    assert recount_by_version(assistant.pk) != before
    with django_assert_num_queries(2):  # the mark, then one aggregate
        assert rollups.version_sums(assistant_id=assistant.pk) == before


def test_a_refresh_skips_id_ranges_with_no_rows_instead_of_stepping_through_them(db):
    """Ids run far ahead of the mark when rows are deleted or a sequence moved on (PostgreSQL does not
    roll sequences back): the refresh counts the rows there are, in a few transactions, not one per
    empty chunk of ids."""
    world = World(5)
    world.add(10)
    rollups_refresh()
    counted_before = Feedback.objects.count()
    world.add(10)
    far = Feedback.objects.order_by("-id").first()
    Feedback.objects.filter(pk=far.pk).update(id=far.pk + 1_000_000)  # a million ids with no row
    world.add(10)
    with CaptureQueriesContext(connection) as queries:
        counted = rollups_refresh(chunk=7)
    assert counted["feedback"] == Feedback.objects.count() - counted_before
    assert len(queries) < 300, len(queries)
    check(world, windows_of(world))


def _rows_at(assistant, moments) -> None:
    for n, moment in enumerate(moments):
        interaction = Interaction.objects.create(
            assistant=assistant, request_id=f"p{moment.isoformat()}-{n}", error="timeout", created_at=moment
        )
        Feedback.objects.create(
            interaction=interaction, assistant=assistant, kind="thumbs", helpful=n % 2 == 0, created_at=moment
        )


def test_a_partial_first_day_is_its_rollup_less_the_hours_before_when_that_reads_fewer_rows(db, monkeypatch):
    """A window from 04:00 reads the 4 hours before it and subtracts them from the day's rollup; from 16:00
    it reads the 8 hours after. Both equal a recount; after retention deleted that day, the direct way."""
    assistant = assistant_create(slug="p", name="P")
    day = timezone.localdate() - timedelta(days=10)
    midnight = rollups.local_midnight(day)
    hours = (1, 2, 3.5, 5, 9, 12, 17, 20, 23.5)
    _rows_at(assistant, [midnight + timedelta(hours=h) for h in hours])
    _rows_at(assistant, [midnight - timedelta(days=3), midnight + timedelta(days=4)])  # other days
    rollups_refresh()
    complements = []
    original = rollups._raw_rows_kept_from
    monkeypatch.setattr(rollups, "_raw_rows_kept_from", lambda *a: complements.append(a) or original(*a))

    for since in (midnight + timedelta(hours=4), midnight + timedelta(hours=16)):
        assert window_sums(assistant_id=assistant.pk, since=since) == recount(assistant.pk, since), since
    assert len(complements) == 1  # only the window from 04:00 took the day's rollup less its hours

    # Retention deletes whole days from the oldest: the day's rollup still counts its rows, but its raw
    # rows before 04:00 are gone, so the complement would count all nine. The window reads what is left.
    Interaction.objects.filter(created_at__lt=midnight + timedelta(days=1)).delete()
    since = midnight + timedelta(hours=4)
    assert window_sums(assistant_id=assistant.pk, since=since) == window_sums(
        assistant_id=assistant.pk, since=midnight + timedelta(days=1)
    )
