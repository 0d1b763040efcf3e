"""``python -m bench retention``: the nightly retention pass over a large table, with ingestion running.

A throwaway database gets N interactions with one feedback row each, spread evenly over the last 60 days
(1,000,000; ``--quick``: 20,000; ``--rows N``), and the rollups are brought up to date as the worker
keeps them. The assistant's policy keeps 30 days, so about half the rows are due. Then, in one child
process, a second process ingests (``interaction_log`` + ``feedback_submit``, one after the other, as
fast as it can) while ``training.retention.retention_apply_all`` runs; the bench reports the rows
deleted, the batches, the longest batch (one transaction: the write lock SQLite holds, the row locks
PostgreSQL holds), the pass's rate, and the ingest latencies before and during the pass. It also checks
that every figure for every day before today (daily series and totals) is unchanged by the deletion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.redaction import _child

ROOT = Path(__file__).resolve().parent.parent
HISTORY_DAYS = 60
RETENTION_DAYS = 30
BASELINE_SECONDS = 2.0


def _setup(var: str) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.common import setup_django

    setup_django(var)


def step_generate(var: str, n: int) -> dict:
    """``n`` interactions and ``n`` feedback rows over the last HISTORY_DAYS days, then the rollups."""
    _setup(var)
    from datetime import timedelta

    from django.db import connection, transaction
    from django.utils import timezone

    from assistants.services import assistant_create
    from feedback.models import Feedback, Interaction
    from feedback.rollups import rollups_refresh
    from training.models import RetrainPolicy

    started = time.perf_counter()
    assistant = assistant_create(slug="bench", name="Bench")
    RetrainPolicy.objects.create(assistant=assistant, enabled=False, retention_days=RETENTION_DAYS)
    now = timezone.now()
    step = timedelta(days=HISTORY_DAYS) / n
    ops, qn = connection.ops, connection.ops.quote_name
    i_cols = ("assistant_id", "request_id", "user_ref", "messages", "response", "arm", "created_at")
    f_cols = (
        "interaction_id", "assistant_id", "kind", "helpful", "rating", "accuracy", "comment", "suggestion",
        "corrected_answer", "excluded_from_training", "request_hash", "created_at",
    )  # fmt: skip
    i_sql = (
        f"INSERT INTO {qn(Interaction._meta.db_table)} ({', '.join(qn(c) for c in i_cols)}) "
        f"VALUES ({', '.join('%s' for _ in i_cols)})"
    )
    f_sql = (
        f"INSERT INTO {qn(Feedback._meta.db_table)} ({', '.join(qn(c) for c in f_cols)}) "
        f"VALUES ({', '.join('%s' for _ in f_cols)})"
    )
    batch = 20_000
    with transaction.atomic():
        for lo in range(0, n, batch):
            i_rows, f_rows = [], []
            for k in range(lo, min(lo + batch, n)):
                when = ops.adapt_datetimefield_value(now - timedelta(days=HISTORY_DAYS) + step * k)
                messages = json.dumps([{"role": "user", "content": f"Where is my order #{k}?"}])
                i_rows.append(
                    (assistant.pk, f"req-{k}", f"u{k % 5000}", messages, "It ships today.", "", when)
                )
                rating = 5 - k % 5
                f_rows.append(
                    (
                        k + 1,
                        assistant.pk,
                        "rating",
                        rating >= 4,
                        rating,
                        1 + k % 5,
                        "",
                        "",
                        "",
                        False,
                        "",
                        when,
                    )
                )
            with connection.cursor() as cursor:
                cursor.executemany(i_sql, i_rows)
                cursor.executemany(f_sql, f_rows)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    rollups_refresh()
    return {"rows": n, "generate_seconds": generated, "rollups_seconds": time.perf_counter() - started}


def step_ingest(var: str, folder: str) -> dict:
    """Ingest one interaction and its feedback at a time until ``folder``/stop exists; each write's
    (start, seconds)."""
    _setup(var)
    from assistants.models import Assistant
    from feedback.services import feedback_submit, interaction_log

    assistant = Assistant.objects.get(slug="bench")
    stop = Path(folder) / "stop"
    Path(folder, "ready").touch()
    writes = []
    k = 0
    while not stop.exists():
        k += 1
        began = time.time()
        logged = interaction_log(
            assistant=assistant,
            request_id=f"live-{k}",
            messages=[{"role": "user", "content": "Is the kettle in stock?"}],
            response="Yes.",
        )
        feedback_submit(interaction=logged.interaction, data={"helpful": True})
        writes.append((began, time.time() - began))
    return {"writes": writes}


def _old_figures(assistant) -> dict:
    """Every figure for every day before today: the daily series and the totals up to today's midnight."""
    import datetime as dt

    from django.utils import timezone

    from feedback.rollups import local_midnight, window_sums
    from feedback.selectors import feedback_daily_series

    today = timezone.localdate()
    series = [
        row
        for row in feedback_daily_series(assistant=assistant, days=HISTORY_DAYS + 2)
        if row["day"] < str(today)
    ]
    totals = window_sums(assistant_id=assistant.pk, until=local_midnight(today))
    per_day = [
        window_sums(
            assistant_id=assistant.pk,
            since=local_midnight(today - dt.timedelta(days=back)),
            until=local_midnight(today - dt.timedelta(days=back - 1)),
        )
        for back in range(1, HISTORY_DAYS + 2)
    ]
    return {"series": series, "totals": totals, "per_day": per_day}


def step_expire(var: str) -> dict:
    _setup(var)
    from assistants.models import Assistant
    from bench.common import percentile
    from feedback.models import Interaction
    from training.retention import retention_apply_all

    assistant = Assistant.objects.get(slug="bench")
    before = _old_figures(assistant)
    rows_before = Interaction.objects.count()
    with tempfile.TemporaryDirectory(prefix="bench-retention-ingest-") as folder:
        writer = subprocess.Popen(
            [sys.executable, "-m", "bench.retention", "ingest", var, folder],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while not Path(folder, "ready").exists():
            if writer.poll() is not None:
                raise RuntimeError(f"the ingest process failed:\n{writer.stderr.read()[-3000:]}")
            time.sleep(0.05)
        time.sleep(BASELINE_SECONDS)
        began = time.time()
        [result] = retention_apply_all()
        ended = time.time()
        Path(folder, "stop").touch()
        out, err = writer.communicate(timeout=120)
        if writer.returncode != 0:
            raise RuntimeError(f"the ingest process failed:\n{err[-3000:]}")
    writes = json.loads(out.strip().splitlines()[-1])["writes"]
    baseline = [s * 1000 for start, s in writes if start < began]
    during = [s * 1000 for start, s in writes if began <= start < ended]
    deleted = result.expired.deleted
    return {
        "rows_before": rows_before,
        "deleted_interactions": deleted.interactions,
        "deleted_feedback": deleted.feedback,
        "batches": deleted.batches,
        "longest_batch_ms": deleted.longest_batch_seconds * 1000,
        "seconds": ended - began,
        "complete": result.complete,
        "unchanged": _old_figures(assistant) == before,
        "writes_during": len(during),
        "baseline_p50_ms": percentile(baseline, 50),
        "during_p50_ms": percentile(during, 50),
        "during_p99_ms": percentile(during, 99),
        "during_max_ms": max(during, default=float("nan")),
        "baseline_max_ms": max(baseline, default=float("nan")),
    }


def run(args) -> list[dict]:
    size = args.rows or (20_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as var:
        gen = _child("bench.retention", "generate", var, str(size))
        print(
            f"  generated {gen['rows']:,} interactions and feedback rows in {gen['generate_seconds']:.1f} s, "
            f"rollups {gen['rollups_seconds']:.1f} s",
            file=sys.stderr,
        )
        r = _child("bench.retention", "expire", var)
    return [
        {
            "measure": f"retention pass: {RETENTION_DAYS} of {HISTORY_DAYS} days kept, "
            f"{r['rows_before']:,} interactions (+ as many feedback rows)",
            "deleted": f"{r['deleted_interactions']:,} interactions + {r['deleted_feedback']:,} feedback",
            "batches": r["batches"],
            "longest batch ms": round(r["longest_batch_ms"], 1),
            "pass s": round(r["seconds"], 2),
            "rows/s": round(r["deleted_interactions"] / r["seconds"]) if r["seconds"] else None,
            "old days' figures unchanged": "yes" if r["unchanged"] else "NO",
            "ingest during pass": r["writes_during"],
            "ingest p50 ms before → during": f"{r['baseline_p50_ms']:.1f} → {r['during_p50_ms']:.1f}",
            "ingest p99 / max ms during": f"{r['during_p99_ms']:.1f} / {r['during_max_ms']:.1f}",
        }
    ]


if __name__ == "__main__":
    step, var, *rest = sys.argv[1:]
    if step == "generate":
        print(json.dumps(step_generate(var, int(rest[0]))))
    elif step == "ingest":
        print(json.dumps(step_ingest(var, rest[0])))
    else:
        print(json.dumps(step_expire(var)))
