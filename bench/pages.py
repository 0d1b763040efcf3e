"""Pages bench: median server render time of the dashboard's pages over 1,000,000 feedback rows.

A throwaway database (``bench.common``) is filled with one assistant's 1,000,000 interactions and their
feedback spread over the last 180 days (so ~167k fall in the overview's 30-day window), 200 training
jobs with timelines and an A/B experiment, by bulk SQL inserts. Each page is then requested through
Django's test client by a signed-in reviewer: 3 warm-up requests, then 15 timed ones (``--quick``:
20,000 rows, 7 timed, a smoke test for CI; ``--rows N`` for another size; ``python -m bench scale``:
10,000,000). Target (issues 6 and 14): median < 100 ms per page, the cold-cache overview included.

The chart JSON the pages fetch (``training.api_charts``, ``abtesting.api_charts``) is timed the same way,
with the reviewer's session and, for the success-rate trend, with a read API key as a customer's
intranet page would fetch it. Target (issue 19): median < 50 ms per chart.

The overview reads its aggregates from the shared figures cache, which the worker refreshes every
minute; it is measured as served, and with that cache cleared before every request (a cold cache: the
first visitor after the worker has been down). Its figures come from the daily rollups, which the
worker's first refresh builds after the bulk load (timed and shown), plus the raw rows past their mark:
the "cold, 1,000 new rows" row adds that many rows after the refresh, as a minute of heavy traffic
would, to show what the rows the rollups don't hold yet cost.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from datetime import timedelta
from typing import Any

from bench.common import median, percentile, setup_django, timer

ROWS = 1_000_000
QUICK_ROWS = 20_000
DAYS = 180
CHUNK = 50_000
TARGET_MS = 100.0
CHART_TARGET_MS = 50.0
SNAPSHOT_DAYS = 30


def _fill(rows: int) -> dict[str, Any]:
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction
    from django.utils import timezone

    from abtesting.models import Experiment, ExperimentSnapshot
    from assistants.models import ApiKey, Deployment
    from assistants.services import (
        api_key_create,
        assistant_create,
        deployment_make_live,
        model_version_create,
    )
    from feedback.rollups import local_midnight
    from training.models import JobEvent, TrainingJob

    rng = random.Random(7)
    now = timezone.now()
    assistant = assistant_create(slug="shop", name="Shop support")
    v1 = model_version_create(assistant=assistant, name="shop-v1")
    v2 = model_version_create(assistant=assistant, name="shop-v2", base_version=v1)
    d1 = deployment_make_live(version=v1, reason=Deployment.Reason.INITIAL)
    # The live version was deployed at local noon 14 days ago, whatever the hour the bench runs: the
    # figures since the deployment read its partial first day from raw rows, at most half a day of them
    # (``feedback.rollups.window_sums``), and noon is that worst case.
    deployed = local_midnight(timezone.localdate() - timedelta(days=14)) + timedelta(hours=12)
    Deployment.objects.filter(pk=d1.pk).update(created_at=deployed)

    start = now - timedelta(days=DAYS)
    span = DAYS * 86400
    interaction_columns = (
        "id", "assistant_id", "model_version_id", "experiment_id", "arm", "user_ref", "request_id",
        "messages", "response", "latency_ms", "error", "feedback_requested_at", "created_at",
    )  # fmt: skip
    feedback_columns = (
        "id", "interaction_id", "assistant_id", "kind", "helpful", "rating", "accuracy", "helpfulness",
        "tone", "relevance", "completeness", "comment", "suggestion", "corrected_answer", "confidence",
        "excluded_from_training", "idempotency_key", "request_hash", "created_at",
    )  # fmt: skip
    # Insert oldest first, like real traffic: ids and created_at grow together.
    offsets = sorted(rng.random() * span for _ in range(rows))
    with transaction.atomic(), connection.cursor() as cursor:
        for base in range(0, rows, CHUNK):
            interactions, feedback = [], []
            for i in range(base, min(rows, base + CHUNK)):
                pk = i + 1
                created = start + timedelta(seconds=offsets[i])
                question = f"Where is my order {pk}? <b>asap</b>"
                messages = json.dumps([{"role": "user", "content": question}])
                error = "timeout" if rng.random() < 0.02 else None
                interactions.append(
                    (
                        pk,
                        assistant.pk,
                        v1.pk,
                        None,
                        "",
                        f"u{pk % 5000}",
                        f"req-{pk}",
                        messages,
                        f"Your order {pk} ships tomorrow.",
                        rng.randint(80, 900),
                        error,
                        None,
                        created,
                    )
                )
                helpful = rng.random() < 0.8
                rating = rng.choice((None, 1, 2, 3, 4, 5, 5))
                cats = [rng.randint(1, 5) if rng.random() < 0.3 else None for _ in range(5)]
                kind = "rating" if rating is not None else "thumbs"
                feedback.append((pk, pk, assistant.pk, kind, helpful, rating, *cats,
                                 "<script>alert(1)</script> too slow" if rng.random() < 0.1 else "", "", "",
                                 round(rng.random(), 2), rng.random() < 0.01, None, "", created))  # fmt: skip
            _load(cursor, "feedback_interaction", interaction_columns, interactions)
            _load(cursor, "feedback_feedback", feedback_columns, feedback)
    with connection.cursor() as cursor:
        # The rows were inserted with explicit ids: move PostgreSQL's sequences past them.
        from django.core.management.color import no_style

        from feedback.models import Feedback, Interaction

        for sql in connection.ops.sequence_reset_sql(no_style(), [Interaction, Feedback]):
            cursor.execute(sql)
        if connection.vendor == "postgresql":
            # What autovacuum does after a bulk insert, done now rather than in the middle of the timed
            # requests (at 10M rows its pass takes minutes): statistics, and the visibility map that
            # lets index-only scans skip the heap, as on a database that has settled.
            cursor.execute("VACUUM (ANALYZE) feedback_interaction, feedback_feedback")
        cursor.execute("ANALYZE")  # as autovacuum would (PostgreSQL) or as sqlite's optimize would

    jobs = [
        TrainingJob(assistant=assistant, trigger=rng.choice(TrainingJob.Trigger.values), status=status,
                    created_at=now - timedelta(hours=200 - i), new_model_version=v1)
        for i, status in enumerate(["deployed", "rejected", "failed", "cancelled"] * 50)
    ]  # fmt: skip
    TrainingJob.objects.bulk_create(jobs[:-1])
    experiment = Experiment.objects.create(
        assistant=assistant, control=v1, variant=v2, status="concluded", decision="variant_better",
        last_analysis={"control": {"n": 4000, "rate": 0.7, "rate_low": 0.69, "rate_high": 0.71},
                       "variant": {"n": 4010, "rate": 0.74, "rate_low": 0.73, "rate_high": 0.75},
                       "relative_lift": 0.057,
                       "sequential": {"p_value": 0.001, "ci_low": 0.02, "ci_high": 0.09},
                       "srm_p_value": 0.9, "srm_ok": True, "verdict": "variant_better"},
    )  # fmt: skip
    ExperimentSnapshot.objects.bulk_create(
        ExperimentSnapshot(experiment=experiment, day=(now - timedelta(days=SNAPSHOT_DAYS - d)).date(),
                           analysis={"ab_test_results": {
                               "controlSuccessRate": 0.7, "variantSuccessRate": 0.7 + d / 1000,
                               "improvement": d / 700, "ci": [d / 700 - 0.05, d / 700 + 0.05]}})
        for d in range(SNAPSHOT_DAYS)
    )  # fmt: skip
    job = TrainingJob.objects.create(
        assistant=assistant, trigger="threshold", status="awaiting_approval", base_version=v1,
        new_model_version=v2, experiment=experiment, reasons=["Feedback count (1000) >= threshold (100)"],
        metrics={"validation_accuracy": 0.8,
                 "loss_curve": [{"step": s, "train_loss": 1 / s} for s in range(1, 200)]},
        evaluation={"candidate": {"accuracy": 0.8}, "live": {"accuracy": 0.7}, "prompts": 100},
    )  # fmt: skip
    JobEvent.objects.bulk_create(
        [JobEvent(job=job, kind="transition", message=f"step {i}") for i in range(40)]
    )
    user = User.objects.create_user("reviewer", password="x")
    user.groups.add(Group.objects.get(name="reviewer"))
    read_key = api_key_create(scope=ApiKey.Scope.READ, assistant=assistant)[1]
    return {"user": user, "job": job, "experiment": experiment, "read_key": read_key}


def _load(cursor, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Bulk-load rows: PostgreSQL's COPY (executemany ran at ~6,000 rows/s there, an hour for the 10 M
    rows of ``bench scale``), SQLite's executemany (already at the engine's speed)."""
    from django.db import connection

    names = ", ".join(columns)
    if connection.vendor == "postgresql":
        with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})", rows)


def _more(after: int, n: int) -> None:
    """``n`` new interactions with feedback, stored after the rollups' last refresh (today's traffic)."""
    from django.utils import timezone

    from assistants.models import Assistant
    from feedback.models import Feedback, Interaction

    assistant = Assistant.objects.get(slug="shop")
    now = timezone.now()
    made = Interaction.objects.bulk_create(
        Interaction(assistant=assistant, request_id=f"more-{after}-{i}", response="ok", created_at=now)
        for i in range(n)
    )
    Feedback.objects.bulk_create(
        Feedback(interaction=i, assistant=assistant, kind="rating", rating=1 + k % 5, created_at=now)
        for k, i in enumerate(made)
    )


def _time_page(client, url: str, rounds: int, *, cold: bool = False, **headers) -> list[float]:
    from django.core.cache import caches

    for _ in range(3):
        response = client.get(url, **headers)
        assert response.status_code == 200, (url, response.status_code)
    samples = []
    for _ in range(rounds):
        if cold:
            caches["figures"].clear()  # the overview's aggregates: measure a cold cache too
        t0 = time.perf_counter()
        response = client.get(url, **headers)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        samples.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200 and content
    return samples


def run(args, *, rows: int | None = None) -> list[dict]:
    quick = bool(getattr(args, "quick", False))
    rows = rows or getattr(args, "rows", None) or (QUICK_ROWS if quick else ROWS)
    rounds = 7 if quick else 15
    tmp = tempfile.mkdtemp(prefix="bench-pages-")
    try:
        return _run(tmp, rows, rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the million-row database is ~1 GB


def _run(tmp: str, rows: int, rounds: int) -> list[dict]:
    setup_django(tmp)

    from django.core.cache import caches
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from feedback.rollups import rollups_refresh

    with timer() as fill_time:
        data = _fill(rows)
    print(f"filled {rows:,} interactions + feedback in {fill_time.seconds:.0f} s")
    with timer() as backfill:
        rollups_refresh()  # the worker's first run after the load: every row is new to it
    print(f"rollups built from {rows:,} rows in {backfill.seconds:.1f} s")
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(data["user"])
    job, experiment = data["job"].pk, data["experiment"].pk
    key = {"HTTP_AUTHORIZATION": f"Bearer {data['read_key']}"}
    charts = [
        ("chart: success rate", "/api/v1/assistants/shop/charts/success-rate", {}),
        ("chart: success rate, read key", "/api/v1/assistants/shop/charts/success-rate", key),
        ("chart: success rate, cache miss", "/api/v1/assistants/shop/charts/success-rate", {}),
        ("chart: category ratings", "/api/v1/assistants/shop/charts/category-ratings", {}),
        ("chart: job loss curve", f"/api/v1/jobs/{job}/charts/loss", {}),
        ("chart: job A/B test", f"/api/v1/jobs/{job}/charts/ab-test", {}),
        ("chart: experiment arms", f"/api/v1/experiments/{experiment}/charts/arms", {}),
        ("chart: experiment daily rates", f"/api/v1/experiments/{experiment}/charts/daily-rates", {}),
        ("chart: experiment daily lift", f"/api/v1/experiments/{experiment}/charts/daily-lift", {}),
    ]
    pages = [
        ("overview", "/assistants/shop/"),
        ("overview, cache miss", "/assistants/shop/"),
        ("overview, cache miss, 1,000 new rows", "/assistants/shop/"),
        ("jobs list", "/jobs/"),
        ("job detail", f"/jobs/{data['job'].pk}/"),
        ("feedback explorer", "/feedback/"),
        ("feedback explorer, filtered", "/feedback/?assistant=shop&rating=1&helpful=no"),
        ("feedback explorer, page 50", "/feedback/?assistant=shop&page=50"),
    ]
    results = [{
        "page": "(rollups built by the worker after the load)",
        "feedback_rows": rows,
        "median_ms": round(backfill.seconds * 1000, 1),
        "p90_ms": None,
        "queries": None,
        "target_ms": None,
        "ok": None,
    }]  # fmt: skip
    # The charts first: the "1,000 new rows" page adds rows the rollups do not hold yet.
    timed = [(name, url, headers, CHART_TARGET_MS) for name, url, headers in charts]
    timed += [(name, url, {}, TARGET_MS) for name, url in pages]
    for name, url, headers, target in timed:
        if "new rows" in name:
            _more(rows, 1000)
        samples = _time_page(client, url, rounds, cold="miss" in name, **headers)
        if "miss" in name:
            caches["figures"].clear()
        with CaptureQueriesContext(connection) as queries:
            client.get(url, **headers)
        ms = median(samples)
        results.append({
            "page": name,
            "feedback_rows": rows,
            "median_ms": round(ms, 1),
            "p90_ms": round(percentile(samples, 90), 1),
            "queries": len(queries),
            "target_ms": target,
            "ok": ms < target,
        })  # fmt: skip
    return results
