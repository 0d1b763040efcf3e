"""``python -m bench erasure``: erase one customer from a large table; how long each batch holds its locks.

A throwaway SQLite database gets ``bench.dataset``'s generated feedback (100,000 rows; ``--quick``:
20,000), plus one customer with 1,000 interactions (2 feedback rows each) spread over that history. Two
datasets are built (so their provenance must be found and marked), then ``customer_erase`` runs and the
bench reports the number of batches, the longest batch (one transaction: the write lock SQLite holds, the
row locks PostgreSQL holds), the total time, and how long the next use of a marked dataset takes (its
rebuild). Each step runs in a child process.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

from bench.redaction import _child

CUSTOMER = "bench-customer"


def step_erase(var: str, customer_rows: int) -> dict:
    from bench.dataset import _setup

    _setup(var)
    from datetime import UTC, datetime, timedelta

    from assistants.models import Assistant
    from feedback.models import Feedback, Interaction
    from training.erasure import customer_erase
    from training.pipeline import dataset_build
    from training.pipeline.erasure import dataset_ready

    assistant = Assistant.objects.get(slug="bench")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    interactions = Interaction.objects.bulk_create(
        Interaction(
            assistant=assistant,
            request_id=f"{CUSTOMER}-{k}",
            user_ref=CUSTOMER,
            messages=[{"role": "user", "content": f"Where is my parcel number {k}?"}],
            response=f"Parcel {k} ships on Monday.",
            created_at=t0 + timedelta(minutes=k * 7),
        )
        for k in range(customer_rows)
    )
    Feedback.objects.bulk_create(
        Feedback(interaction=i, assistant=assistant, kind=k, rating=5, helpful=True, created_at=i.created_at)
        for i in interactions
        for k in ("rating", "thumbs")
    )
    datasets = [
        dataset_build(assistant=assistant, options={"max_examples": 0, "validation_share": 0.1, "seed": s})
        for s in (1, 2)
    ]
    total_rows = Feedback.objects.count()
    started = time.perf_counter()
    result = customer_erase(user_ref=CUSTOMER, assistants=[assistant])
    seconds = time.perf_counter() - started
    datasets[0].refresh_from_db()
    before = datasets[0].train_count + datasets[0].validation_count
    rebuild_started = time.perf_counter()
    ready = dataset_ready(datasets[0])
    rebuild_seconds = time.perf_counter() - rebuild_started
    return {
        "feedback_rows": total_rows,
        "erased_interactions": result.interactions,
        "erased_feedback": result.feedback,
        "provenance_rows": result.other_rows.get("training.DatasetExample", 0),
        "datasets_marked": len(result.datasets),
        "batches": result.record.batches,
        "longest_batch_ms": result.longest_batch_seconds * 1000,
        "seconds": seconds,
        "rebuild_seconds": rebuild_seconds,
        "examples_before": before,
        "rebuilt_examples": ready.train_count + ready.validation_count,
    }


def run(args) -> list[dict]:
    size = 20_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory(prefix="bench-erasure-") as var:
        gen = _child("bench.dataset", "generate", var, str(size))
        print(f"  generated {gen['rows']:,} feedback rows", file=sys.stderr)
        r = _child("bench.erasure", "erase", var, "1000")
    return [
        {
            "measure": f"erase 1 customer (1,000 interactions) among {r['feedback_rows']:,} feedback rows",
            "erased": f"{r['erased_interactions']:,} interactions, {r['erased_feedback']:,} feedback, "
            f"{r['provenance_rows']:,} provenance",
            "datasets marked": r["datasets_marked"],
            "batches": r["batches"],
            "longest batch ms": round(r["longest_batch_ms"], 1),
            "total s": round(r["seconds"], 2),
            "rebuild of a marked dataset s": round(r["rebuild_seconds"], 2),
            "examples before → after": f"{r['examples_before']:,} → {r['rebuilt_examples']:,}",
        }
    ]


if __name__ == "__main__":
    step, var, value = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps({"erase": step_erase}[step](var, value)))
