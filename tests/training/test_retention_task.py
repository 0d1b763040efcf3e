"""The nightly retention pass (training.tasks.retention_apply): per policy, old rows deleted and datasets
expired, the overview's figures for old days unchanged, running work kept, a record of what went."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from abtesting.models import Experiment, ExperimentUnit
from assistants.services import model_version_create
from feedback.models import Feedback, Interaction, RetentionRecord
from feedback.retention import retention_cutoff
from feedback.rollups import local_midnight
from tests.conftest import client_for
from training import services
from training.erasure import customer_erase
from training.models import DatasetExample, EvaluationPrompt, TrainingDataset, TrainingJob
from training.pipeline import dataset_build
from training.retention import retention_apply, retention_apply_all
from training.schedules import RETENTION_FUNC, RETENTION_NAME, RETENTION_TIME
from training.selectors import overview_figures
from training.tasks import retention_apply as retention_task

from .conftest import make_job

pytestmark = pytest.mark.django_db

DAYS = 7
BUILD = {"deduplicate": False, "validation_share": 0.25, "seed": 1, "max_examples": 0}


@pytest.fixture(autouse=True)
def _local_time_zone(settings):
    settings.TIME_ZONE = "Europe/Berlin"


def _history(assistant, *, days: int = 30, per_day: int = 3, experiment: Experiment | None = None) -> None:
    """``per_day`` answered questions with ratings at 10:00, 13:00, 16:00… local time of each of the last
    ``days`` days (today included, so some rows are younger than any cut-off)."""
    today = timezone.localdate()
    n = Interaction.objects.count()
    for back in range(days):
        for k in range(per_day):
            n += 1
            at = local_midnight(today - dt.timedelta(days=back)) + timedelta(hours=10 + 3 * k)
            if at > timezone.now():
                at = timezone.now() - timedelta(minutes=n)
            interaction = Interaction.objects.create(
                assistant=assistant,
                request_id=f"r{n}",
                user_ref=f"cust-{n % 5}",
                messages=[{"role": "user", "content": f"Question {n}: when does order {n * 7} arrive?"}],
                response=f"Order {n * 7} arrives in {n % 4 + 1} days.",
                error="timeout" if n % 11 == 0 else None,
                experiment_id=experiment.pk if experiment else None,
                arm="variant" if experiment else "",
                created_at=at,
            )
            Feedback.objects.create(
                interaction=interaction,
                assistant=assistant,
                kind="rating",
                rating=5 if n % 3 else 2,
                helpful=bool(n % 3),
                accuracy=1 + n % 5,
                tone=1 + (n * 3) % 5,
                created_at=at + timedelta(minutes=1),
            )


def _policy(assistant, days: int | None = DAYS):
    policy = services.policy_ensure(assistant=assistant)
    return services.policy_update(policy=policy, retention_days=days)


def _old_dataset(assistant, days_ago: int = 20) -> TrainingDataset:
    """A dataset of the history as built ``days_ago`` days ago (its provenance: every feedback row)."""
    dataset = dataset_build(assistant=assistant, options=BUILD)
    assert dataset.train_file and dataset.validation_file
    TrainingDataset.objects.filter(pk=dataset.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    dataset.refresh_from_db()
    return dataset


def _cutoff():
    return retention_cutoff(days=DAYS)


def test_without_a_retention_nothing_is_deleted(assistant):
    _history(assistant)
    _policy(assistant, None)
    assert retention_task() == []
    assert Interaction.objects.count() == 90 and not RetentionRecord.objects.exists()


def test_the_task_deletes_rows_older_than_the_retention_and_records_it(assistant, other_assistant):
    _history(assistant)
    _history(other_assistant, days=20)  # its policy keeps everything
    _policy(assistant)
    old = Interaction.objects.filter(assistant=assistant, created_at__lt=_cutoff())
    due, due_feedback = old.count(), Feedback.objects.filter(interaction__in=old).count()
    young = Interaction.objects.filter(assistant=assistant, created_at__gte=_cutoff()).count()
    assert due and young

    [summary] = retention_task()

    assert not old.exists()
    assert Interaction.objects.filter(assistant=assistant).count() == young
    assert Interaction.objects.filter(assistant=other_assistant).count() == 60
    record = RetentionRecord.objects.get()
    assert (record.assistant, record.retention_days, record.cutoff) == (assistant, DAYS, _cutoff())
    assert (record.interactions, record.feedback, record.kept, record.complete) == (
        due,
        due_feedback,
        0,
        True,
    )
    assert record.batches >= 1 and record.longest_batch_ms > 0
    assert summary == {
        "assistant": "shop",
        "retention_days": DAYS,
        "cutoff": _cutoff().isoformat(),
        "interactions": due,
        "feedback": due_feedback,
        "kept": 0,
        "datasets": [],
        "files_deleted": 0,
        "other_rows": {},
        "complete": True,
        "record": record.pk,
    }


def test_a_second_pass_deletes_nothing_and_records_nothing(assistant):
    _history(assistant)
    _policy(assistant)
    retention_task()
    [again] = retention_task()
    assert (again["interactions"], again["datasets"], again["record"]) == (0, [], None)
    assert RetentionRecord.objects.count() == 1


def _overview(client, assistant) -> tuple[dict, str]:
    overview_figures(assistant=assistant, refresh=True)  # what the worker caches every minute
    response = client.get(reverse("training-overview", args=[assistant.slug]))
    assert response.status_code == 200
    body = response.content.decode()
    table = body[body.index("<h2>Success rate by day</h2>") : body.index("<h2>Recent jobs</h2>")]
    shown = {name: response.context[name] for name in ("stats", "series", "categories")}
    chart = client.get(reverse("training-api-chart-success-rate", args=[assistant.slug]))
    assert chart.status_code == 200
    shown["trend_chart"] = chart.json()
    shown["decision"] = {k: v for k, v in response.context["decision"].items() if k != "policy"}
    return shown, table


def test_the_overview_shows_the_same_figures_for_old_days_after_their_rows_are_deleted(
    client, alice, assistant
):
    _history(assistant, days=35)
    _policy(assistant)
    client.force_login(alice)
    before, table_before = _overview(client, assistant)
    assert len(before["series"]) == 30 and before["stats"]["total_feedback"] == 90

    retention_task()

    assert not Interaction.objects.filter(created_at__lt=_cutoff()).exists()
    after, table_after = _overview(client, assistant)
    assert after == before
    assert table_after == table_before
    oldest = before["series"][0]
    assert f"<td>{oldest['day']}</td>" in table_after  # a deleted day's row, as it was


def test_an_expired_dataset_keeps_its_row_and_the_job_page_says_the_data_was_removed(
    client, alice, assistant, read_key
):
    _history(assistant)
    _policy(assistant)
    dataset = _old_dataset(assistant)
    files = [dataset.train_file, dataset.validation_file]
    counts = (dataset.train_count, dataset.validation_count, dataset.stats)
    job = make_job(assistant, TrainingJob.Status.DEPLOYED, dataset=dataset)
    EvaluationPrompt.objects.create(
        job=job, position=0, question="When does order 7 arrive?", reference="Tomorrow.", customer="cust-1"
    )
    young = dataset_build(assistant=assistant, options=BUILD)  # built today: stays
    provenance = DatasetExample.objects.count()

    [summary] = retention_task()

    dataset.refresh_from_db()
    assert summary["datasets"] == [dataset.pk] and summary["files_deleted"] == 2
    assert dataset.retention_expired_at is not None
    assert (dataset.train_file, dataset.validation_file) == ("", "")
    assert not any(default_storage.exists(path) for path in files)
    assert (dataset.train_count, dataset.validation_count, dataset.stats) == counts
    assert not DatasetExample.objects.filter(dataset=dataset).exists()
    assert not EvaluationPrompt.objects.filter(job=job).exists()
    record = RetentionRecord.objects.get()
    assert record.datasets == [dataset.pk]
    assert record.other_rows["training.EvaluationPrompt"] == 1
    # The expired dataset's provenance, and the young one's for the deleted rows.
    assert record.other_rows["training.DatasetExample"] == provenance - DatasetExample.objects.count()
    assert DatasetExample.objects.filter(dataset=young).exists()
    young.refresh_from_db()
    assert young.retention_expired_at is None and default_storage.exists(young.train_file)

    client.force_login(alice)
    page = client.get(reverse("training-job-detail", args=[job.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="dataset-retention"' in body and "Data removed by retention" in body
    assert f"{counts[0]} training and {counts[1]} validation examples" in body
    assert "Download train split" not in body
    download = client.get(reverse("training-dataset-download", args=[dataset.pk]), {"split": "train"})
    assert download.status_code == 404
    reader = client_for(read_key)
    api = reader.get(f"/api/v1/datasets/{dataset.pk}/download?split=train")
    assert (
        api.status_code == 404 and "deleted" in api.json()["detail"] and "retention" in api.json()["detail"]
    )
    detail = reader.get(f"/api/v1/datasets/{dataset.pk}")
    assert detail.status_code == 200 and detail.json()["downloads"] == {}


def test_a_job_in_progress_keeps_its_dataset_and_its_rows_until_it_ends(assistant):
    _history(assistant)
    _policy(assistant)
    dataset = _old_dataset(assistant)
    job = make_job(assistant, TrainingJob.Status.TRAINING, dataset=dataset)
    old = Interaction.objects.filter(created_at__lt=_cutoff())
    in_dataset = old.filter(feedback__dataset_examples__dataset=dataset).distinct()
    due, used = old.count(), in_dataset.count()
    examples = DatasetExample.objects.filter(dataset=dataset).count()
    assert 0 < used < due  # the unhelpful answers are not training examples

    [first] = retention_task()

    assert first["interactions"] == due - used and first["kept"] == used and first["datasets"] == []
    assert in_dataset.count() == used
    dataset.refresh_from_db()
    assert dataset.retention_expired_at is None and default_storage.exists(dataset.train_file)
    assert DatasetExample.objects.filter(dataset=dataset).count() == examples

    TrainingJob.objects.filter(pk=job.pk).update(status=TrainingJob.Status.FAILED)
    [second] = retention_task()

    assert second["interactions"] == used and second["kept"] == 0 and second["datasets"] == [dataset.pk]
    assert not old.exists()


def test_a_running_experiment_keeps_its_rows_and_an_ended_one_loses_its_customers_sums(assistant):
    live = model_version_create(assistant=assistant, name="shop-v1")
    candidate = model_version_create(assistant=assistant, name="shop-v2")
    running = Experiment.objects.create(assistant=assistant, control=live, variant=candidate)
    ended = Experiment.objects.create(
        assistant=assistant,
        control=live,
        variant=candidate,
        status=Experiment.Status.CONCLUDED,
        started_at=timezone.now() - timedelta(days=30),
        ended_at=timezone.now() - timedelta(days=20),
        last_analysis={"verdict": "no_difference"},
    )
    for experiment in (running, ended):
        ExperimentUnit.objects.create(experiment=experiment, arm="variant", unit="u:cust-1", n=3, successes=2)
    _history(assistant, days=20, per_day=1, experiment=running)
    _history(assistant, days=20, per_day=1)
    _policy(assistant)
    in_test = Interaction.objects.filter(experiment_id=running.pk, created_at__lt=_cutoff())
    kept = in_test.count()

    [summary] = retention_task()

    assert in_test.count() == kept > 0 and summary["kept"] == kept
    assert not Interaction.objects.filter(experiment_id=None, created_at__lt=_cutoff()).exists()
    assert summary["other_rows"]["abtesting.ExperimentUnit"] == 1
    assert list(ExperimentUnit.objects.values_list("experiment_id", flat=True)) == [running.pk]
    ended.refresh_from_db()
    assert ended.last_analysis == {"verdict": "no_difference"}

    Experiment.objects.filter(pk=running.pk).update(
        status=Experiment.Status.CONCLUDED, ended_at=timezone.now()
    )
    [after] = retention_task()
    assert after["interactions"] == kept and not in_test.exists()


def test_while_a_job_builds_its_dataset_no_row_is_deleted(assistant):
    _history(assistant)
    _policy(assistant)
    job = make_job(assistant, TrainingJob.Status.PREPARING)  # no dataset yet: its build reads the rows
    before = Interaction.objects.count()

    [summary] = retention_task()

    assert summary["interactions"] == 0 and summary["complete"] is False
    assert Interaction.objects.count() == before
    assert RetentionRecord.objects.get().complete is False
    TrainingJob.objects.filter(pk=job.pk).update(status=TrainingJob.Status.CANCELLED)
    [done] = retention_task()
    assert done["interactions"] > 0 and done["complete"] is True


def test_it_stops_at_its_time_budget(assistant):
    _history(assistant)
    policy = _policy(assistant)
    _old_dataset(assistant)

    [stopped] = retention_apply_all(budget=0)

    assert not stopped.complete and stopped.expired.deleted.interactions == 0 and stopped.datasets == []
    finished = retention_apply(policy=policy)
    assert finished.complete and finished.expired.deleted.interactions > 0 and len(finished.datasets) == 1


def test_an_erasure_does_not_mark_a_dataset_retention_expired(assistant):
    _history(assistant)
    dataset = dataset_build(assistant=assistant, options=BUILD)
    TrainingDataset.objects.filter(pk=dataset.pk).update(retention_expired_at=timezone.now())

    result = customer_erase(user_ref="cust-1", assistants=[assistant])

    dataset.refresh_from_db()
    assert result.interactions > 0 and result.datasets == []
    assert dataset.erasure_marked_at is None


def test_the_nightly_schedule_is_made_by_the_migration_and_repaired(assistant):
    schedule = Schedule.objects.get(name=RETENTION_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == (RETENTION_FUNC, Schedule.DAILY, -1)
    Schedule.objects.filter(name=RETENTION_NAME).delete()

    _policy(assistant)  # saving any policy repairs the schedules it needs

    schedule = Schedule.objects.get(name=RETENTION_NAME)
    local = timezone.localtime(schedule.next_run)
    assert (local.hour, local.minute) == (RETENTION_TIME.hour, RETENTION_TIME.minute)
    assert timezone.now() < schedule.next_run <= timezone.now() + timedelta(days=1)


def test_the_policy_form_shows_the_retention_and_refuses_less_than_a_day(client, assistant):
    policy = services.policy_ensure(assistant=assistant)
    assert policy.retention_days is None  # default: keep everything
    client.force_login(User.objects.create_superuser("root", password="x"))
    page = client.get(f"/admin/training/retrainpolicy/{policy.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'name="retention_days"' in body and "Retention" in body and "docs/PRIVACY.md" in body
    with pytest.raises(ValidationError, match="retention_days"):
        services.policy_update(policy=policy, retention_days=0)
    assert services.policy_update(policy=policy, retention_days=30).retention_days == 30
    record_list = client.get("/admin/feedback/retentionrecord/")
    assert record_list.status_code == 200
