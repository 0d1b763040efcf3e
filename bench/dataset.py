"""Dataset bench: feedback rows → chat-completion dataset, at 100k and 1M rows (``--quick``: 20k).

Each measurement runs in a child process (``python -m bench.dataset <step> ...``) on a throwaway database
(a SQLite file, or with ``--db postgres`` one created per size): ``generate`` fills it, ``build`` runs
``dataset_build`` and reports its wall time and the process's peak RSS (``getrusage``, so generation's
memory does not count), ``quality`` measures the near-duplicate finder's pair precision/recall against
exact pairwise Jaccard on a 5,000-example sample.

Targets (issues 3 and 14): 100k rows end to end < 10 s; 1M rows peak RSS < 1.5 GB; dedup at 1M ≥ 25,000
examples/s; dedup precision and recall ≥ 0.99 against exact pairwise Jaccard.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# -- realistic customer-service text ---------------------------------------------------------------
PRODUCTS = [
    "blender",
    "kettle",
    "rain jacket",
    "laptop stand",
    "desk lamp",
    "hiking backpack",
    "coffee grinder",
    "phone case",
    "running shoes",
    "wireless headphones",
    "toaster",
    "robot vacuum",
    "office chair",
    "yoga mat",
    "smart watch",
    "air fryer",
    "bed sheets",
    "winter boots",
    "baby monitor",
    "gaming mouse",
]
COUNTRIES = [
    "Canada",
    "Germany",
    "France",
    "Japan",
    "Brazil",
    "Australia",
    "Spain",
    "Norway",
    "Mexico",
    "Italy",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
NAMES = ["Anna", "Ben", "Chloé", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lena"]
CARRIERS = ["DHL", "UPS", "FedEx", "the postal service", "GLS", "DPD"]
TOPICS = [
    (
        [
            "How do I reset my password?",
            "I forgot my password, what should I do?",
            "Can't log in, password reset?",
        ],
        "To reset your password, open Settings, choose Security and click Reset password; the link we email "
        "you stays valid for {n} hours.",
    ),
    (
        ["Where is my order {o}?", "Order {o} hasn't arrived yet", "Any update on order {o}?"],
        "Your order {o} left our warehouse on {d} with {carrier} and should reach you within {n} "
        "business days.",
    ),
    (
        ["Can I return the {p}?", "How do I send back my {p}?", "I want to return a {p} I bought last week"],
        "Yes, the {p} can be returned within {m} days of delivery: start the return under Orders, print the "
        "label and drop the parcel at any {carrier} point.",
    ),
    (
        ["My {p} arrived damaged", "The {p} is broken, what now?", "Received a faulty {p}"],
        "I'm sorry the {p} arrived damaged. Upload a photo under Orders and we'll ship a replacement "
        "by {d} at "
        "no cost to you.",
    ),
    (
        ["Do you ship to {c}?", "Is delivery to {c} possible?", "Shipping options for {c}?"],
        "We ship to {c}: standard delivery takes {n} to {m} business days and express is offered at checkout "
        "for most items.",
    ),
    (
        [
            "How do I change the address on order {o}?",
            "Wrong address on order {o}",
            "Update delivery address {o}",
        ],
        "If order {o} hasn't shipped, open Orders, pick it and choose Change address; once shipped, "
        "{carrier} "
        "can redirect it with the tracking number.",
    ),
    (
        ["Why was I charged twice?", "Double charge on my card", "I see two payments for one order"],
        "The second charge is a temporary authorisation that your bank releases within {n} days; if "
        "it's still "
        "there on {d}, reply here and we'll refund it.",
    ),
    (
        ["Is the {p} covered by warranty?", "Warranty for my {p}?", "How long is the warranty on the {p}?"],
        "The {p} has a {n}-month warranty against manufacturing defects; register it under Account > "
        "Products "
        "to make claims faster.",
    ),
    (
        ["Can I cancel order {o}?", "Please cancel order {o}", "How to cancel {o}?"],
        "Order {o} can be cancelled free of charge until it ships: open Orders and press Cancel, and "
        "the refund "
        "reaches your card within {n} days.",
    ),
    (
        ["Do you have the {p} in stock?", "When is the {p} back in stock?", "{p} out of stock?"],
        "The {p} is expected back in stock on {d}; press Notify me on the product page and we'll "
        "email you the "
        "moment it's available.",
    ),
    (
        ["How do I use my discount code?", "Promo code not working", "Where do I enter a voucher?"],
        "Enter the code in the Discount field on the checkout page before paying; codes can't be "
        "combined and "
        "expire after {m} days.",
    ),
    (
        ["Can I talk to a human?", "I want to speak with an agent", "Customer service phone number?"],
        "Of course, {name} from our team can call you back: choose a time under Help > Call me, "
        "we're available "
        "from {n} am on weekdays.",
    ),
]
OPENINGS = [
    "",
    "",
    "Hi {name},",
    "Hello {name}!",
    "Thanks for your message, {name}.",
    "Good question!",
    "Happy to help with that.",
    "Thanks for waiting.",
    "Hi there,",
    "Sorry to hear that, {name}.",
]
DETAILS = [
    "Your case reference is {o} and I've noted that you contacted us on {d}.",
    "I can see the {p} on your account, bought {n} days ago with order {o}.",
    "Your {p} is currently {n} km from the {carrier} depot closest to you.",
    "I've added a note to order {o} so that {name} from the {c} team sees it too.",
    "As a thank-you we've added {n} loyalty points to your account, valid until {d}.",
    "The {p} you asked about sells for about {m} euros in {c}.",
]
EXTRAS = [
    "Thanks for reaching out!",
    "Let me know if there's anything else I can help with.",
    "Have a great day!",
    "Our team is available around the clock.",
    "You'll also get an email confirmation.",
    "You can follow every step in the app.",
    "Sorry for the inconvenience.",
    "Happy shopping!",
    "This usually takes just a couple of minutes.",
    "Keep your order number handy in case you contact us.",
]


def _fill(template: str, r: random.Random) -> str:
    return template.format(
        n=r.randint(2, 30),
        m=r.randint(14, 60),
        o=f"#{r.randint(100000, 999999)}",
        d=r.choice(DAYS),
        p=r.choice(PRODUCTS),
        c=r.choice(COUNTRIES),
        carrier=r.choice(CARRIERS),
        name=r.choice(NAMES),
    )


def _perturb(text: str, r: random.Random) -> str:
    """A near-duplicate: what copy-paste, a retry or a small edit produce (most stay ≥ 0.9 similar)."""
    k = r.random()
    if k < 0.35:
        return text.replace(".", "!") if r.random() < 0.5 else text.lower()
    if k < 0.75:
        return f"{text} {r.choice(['Thanks!', 'Cheers.', 'Kind regards.', 'Best wishes.'])}"
    w = text.split()
    w[r.randrange(len(w))] = r.choice(["really", "simply", "quickly", "now"])
    return " ".join(w)


def generate_pairs(n: int, *, seed: int = 7, dup_share: float = 0.2) -> list[tuple[str, str]]:
    """``n`` (question, answer) pairs; ``dup_share`` of them are near-duplicates of an earlier one."""
    r = random.Random(seed)
    out: list[tuple[str, str]] = []
    for _ in range(n):
        if out and r.random() < dup_share:
            q, a = out[r.randrange(len(out))]
            out.append((q, _perturb(a, r)))
            continue
        questions, answer = r.choice(TOPICS)
        q = _fill(r.choice(questions), r)
        # Real answers are macros personalised per customer: a greeting, the macro, a case detail.
        parts = [r.choice(OPENINGS).format(name=r.choice(NAMES)), _fill(answer, r)]
        if r.random() < 0.7:
            parts.append(_fill(r.choice(DETAILS), r))
        parts.extend(r.sample(EXTRAS, r.choice([0, 1, 1, 2])))
        out.append((q, " ".join(p for p in parts if p)))
    return out


# -- child steps -----------------------------------------------------------------------------------
def _setup(var: str) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.common import setup_django

    setup_django(var)


def step_generate(var: str, n: int) -> dict:
    """Insert ``n`` feedback rows (and their interactions) with batched executemany."""
    _setup(var)
    from django.db import connection, transaction

    from assistants.services import assistant_create
    from feedback.models import Feedback, Interaction

    started = time.perf_counter()
    assistant = assistant_create(
        slug="bench", name="Bench", system_prompt="You are a helpful shop assistant."
    )
    r = random.Random(11)
    extra_rows = n // 20  # 5% of interactions get a second feedback row (a correction or a changed mind)
    interactions = n - extra_rows
    pairs = generate_pairs(interactions)
    ops = connection.ops
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def columns(model):
        fields = [f for f in model._meta.concrete_fields if not f.primary_key and not f.generated]
        return fields, ", ".join(connection.ops.quote_name(f.column) for f in fields)

    i_fields, i_cols = columns(Interaction)
    f_fields, f_cols = columns(Feedback)
    i_sql = (
        f"INSERT INTO {Interaction._meta.db_table} ({i_cols}) VALUES ({', '.join('%s' for _ in i_fields)})"
    )
    f_sql = f"INSERT INTO {Feedback._meta.db_table} ({f_cols}) VALUES ({', '.join('%s' for _ in f_fields)})"
    i_cols = [f.column for f in i_fields]
    f_cols = [f.column for f in f_fields]

    def row_maker(cols: list[str], defaults: dict):
        # One tuple per row in column order, with defaults for the columns a row does not set.
        base = [defaults.get(c) for c in cols]
        index = {c: k for k, c in enumerate(cols)}

        def make(**values) -> tuple:
            row = base.copy()
            for name, value in values.items():
                row[index[name]] = value
            return tuple(row)

        return make

    i_row = row_maker(i_cols, {"assistant_id": assistant.pk, "arm": "", "latency_ms": 120})
    f_row = row_maker(
        f_cols,
        {
            "assistant_id": assistant.pk,
            "comment": "",
            "suggestion": "",
            "corrected_answer": "",
            "request_hash": "",
            "excluded_from_training": False,
            "kind": "rating",
        },
    )
    batch = 20_000
    ratings = [5, 4, 3, 2, 1]
    weights = [45, 65, 75, 85, 100]  # cumulative: 45% fives, 20% fours, 10% threes, 10% twos, 15% ones
    with transaction.atomic():
        for lo in range(0, interactions, batch):
            i_rows, f_rows = [], []
            for k in range(lo, min(lo + batch, interactions)):
                q, a = pairs[k]
                when = ops.adapt_datetimefield_value(t0 + timedelta(seconds=k * 2))
                i_rows.append(
                    i_row(
                        user_ref=f"u{k % 5000}",
                        request_id=f"req-{k}",
                        response=a,
                        created_at=when,
                        messages=json.dumps([{"role": "user", "content": q}]),
                    )
                )
                rating = r.choices(ratings, cum_weights=weights)[0]
                helpful = (rating >= 4) if r.random() < 0.9 else None
                f_rows.append(
                    f_row(
                        interaction_id=k + 1,
                        rating=rating,
                        helpful=helpful,
                        created_at=when,
                        confidence=None if r.random() < 0.7 else round(r.uniform(0.5, 1.0), 2),
                        excluded_from_training=r.random() < 0.01,
                    )
                )
                if k < extra_rows:
                    corrected = rating <= 2
                    f_rows.append(
                        f_row(
                            interaction_id=k + 1,
                            kind="correction" if corrected else "thumbs",
                            helpful=None if corrected else r.random() < 0.8,
                            corrected_answer=f"{a} Corrected by a reviewer." if corrected else "",
                            created_at=ops.adapt_datetimefield_value(t0 + timedelta(seconds=k * 2 + 1)),
                        )
                    )
            with connection.cursor() as cursor:
                cursor.executemany(i_sql, i_rows)
                cursor.executemany(f_sql, f_rows)
    assert Interaction.objects.order_by("-id").values_list("id", flat=True).first() == interactions
    return {
        "rows": Feedback.objects.count(),
        "interactions": interactions,
        "seconds": time.perf_counter() - started,
    }


def step_build(var: str, max_examples: int) -> dict:
    _setup(var)
    import resource

    from assistants.models import Assistant
    from training.pipeline import dataset_build

    assistant = Assistant.objects.get(slug="bench")

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    started, cpu_started = time.perf_counter(), cpu()
    ds = dataset_build(assistant=assistant, options={"max_examples": max_examples, "validation_share": 0.1})
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        # CPU seconds too: on a shared machine wall time includes waiting for a core.
        "cpu_seconds": cpu() - cpu_started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stats": ds.stats,
        "valid": ds.is_valid,
    }


def step_quality(var: str, n: int) -> dict:
    _setup(var)
    import numpy as np

    from training.pipeline.dedup import NearDuplicateFinder, exact_pairs, precision_recall

    texts = [f"{q}\n{a}" for q, a in generate_pairs(n, seed=99)]
    started = time.perf_counter()
    truth = exact_pairs(texts, 0.9)
    exact_seconds = time.perf_counter() - started
    finder = NearDuplicateFinder(threshold=0.9)
    for lo in range(0, n, 2000):
        finder.add(texts[lo : lo + 2000])
    found, candidates = finder.pairs()
    precision, recall = precision_recall(found, truth)
    # Decision agreement: which examples the pipeline keeps vs. clustering the exact pairs.
    ones = np.ones(n)
    kept = finder.resolve(rating=ones, newest=ones, tiebreak=np.arange(n)).keep
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(truth)), (truth[:, 0], truth[:, 1])), shape=(n, n))
    _, labels = connected_components(g, directed=False)
    exact_kept = np.zeros(n, dtype=bool)
    order = np.lexsort((-np.arange(n), labels))
    first = np.ones(n, dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    exact_kept[order[first]] = True
    return {
        "sample": n,
        "true_pairs": int(len(truth)),
        "found_pairs": int(len(found)),
        "candidates": int(candidates),
        "precision": precision,
        "recall": recall,
        "kept_agreement": float((kept == exact_kept).mean()),
        "exact_seconds": exact_seconds,
    }


def _child(step: str, *args: str) -> dict:
    cmd = [sys.executable, "-m", "bench.dataset", step, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.dataset {step} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args) -> list[dict]:
    from bench.common import bench_database

    quick = bool(getattr(args, "quick", False))
    sizes = [20_000] if quick else [100_000, 1_000_000]
    rows: list[dict] = []
    for n in sizes:
        # A database per size (on SQLite a file under ``var``; --db postgres: one created and dropped).
        with tempfile.TemporaryDirectory(prefix="bench-dataset-") as var, bench_database():
            gen = _child("generate", var, str(n))
            print(f"  generated {gen['rows']:,} feedback rows in {gen['seconds']:.1f} s", file=sys.stderr)
            # max_examples 0: every example is built, so dedup and memory see the whole volume.
            build = _child("build", var, "0")
            print(
                f"  built {n:,}: {build['seconds']:.1f} s wall, {build['cpu_seconds']:.1f} s CPU, "
                f"peak RSS {build['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
            )
        s = build["stats"]
        dedup = s.get("dedup") or {}
        throughput = s["filteredCount"] / dedup["seconds"] if dedup.get("seconds") else float("nan")
        cpu_throughput = s["filteredCount"] / dedup["cpuSeconds"] if dedup.get("cpuSeconds") else float("nan")
        rows.append(
            {
                "measure": f"build {n:,} rows",
                "feedback_rows": s["sourceCount"],
                "examples": s["exampleCount"],
                "near_dups_removed": s["filteredCount"] - s["deduplicatedCount"],
                "seconds": round(build["seconds"], 2),
                "cpu_seconds": round(build["cpu_seconds"], 2),
                "peak_rss_mb": round(build["peak_rss_mb"], 1),
                "dedup_examples_per_s": round(throughput),
                "dedup_examples_per_cpu_s": round(cpu_throughput),
                "valid": build["valid"],
                "target": "< 10 s"
                if n == 100_000
                else ("< 1536 MB RSS, dedup ≥ 25,000/s" if n >= 1_000_000 else "smoke"),
            }
        )
    with tempfile.TemporaryDirectory(prefix="bench-dataset-q-") as var, bench_database():
        q = _child("quality", var, "2000" if quick else "5000")
    rows.append(
        {
            "measure": f"dedup quality on {q['sample']:,} examples",
            "true_pairs": q["true_pairs"],
            "found_pairs": q["found_pairs"],
            "precision": round(q["precision"], 4),
            "recall": round(q["recall"], 4),
            "kept_agreement": round(q["kept_agreement"], 4),
            "target": "≥ 0.99 (issue 14)",
        }
    )
    return rows


if __name__ == "__main__":
    step, var, value = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result = {"generate": step_generate, "build": step_build, "quality": step_quality}[step](var, value)
    print(json.dumps(result, default=str))
