"""``python -m bench redaction``: precision and recall of each redaction type on the labelled set.

The set is ``tests/feedback/data/redaction_cases.jsonl`` (made by ``python -m bench.redaction_cases
--seed 16``). A labelled value counts as found (true positive) when a detection of the same type covers
all of it: a detection that leaves digits of a card number in clear does not count. Every detection
that covers no labelled value of its type is a false positive. Also reports the redactor's speed on the
set's texts, and what it adds to a dataset build: ``bench.dataset``'s generated customer-service feedback
(100k rows; ``--quick``: 20k) built with and without ``redact``, each in its own child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.redaction_cases import OUT as CASES

ROOT = Path(__file__).resolve().parent.parent


def load_cases(path: Path = CASES) -> list[dict]:
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def score(redactor, cases: list[dict]) -> dict[str, dict[str, int]]:
    """{type: {"tp", "fp", "fn"}} over ``cases``."""
    tally: dict[str, Counter] = {}
    for case in cases:
        text = case["text"]
        labels = []
        for type_, surface in case["entities"]:
            start = text.find(surface)
            assert start >= 0, f"label {surface!r} not in {text!r}"
            labels.append((type_, start, start + len(surface)))
        found = redactor.find(text)
        matched_labels: set[int] = set()
        for f in found:
            hit = next(
                (
                    i
                    for i, (t, s, e) in enumerate(labels)
                    if i not in matched_labels and t == f.type and f.start <= s and e <= f.end
                ),
                None,
            )
            counter = tally.setdefault(f.type, Counter())
            if hit is None:
                counter["fp"] += 1
            else:
                matched_labels.add(hit)
                counter["tp"] += 1
        for i, (type_, _, _) in enumerate(labels):
            if i not in matched_labels:
                tally.setdefault(type_, Counter())["fn"] += 1
    return {t: {k: c[k] for k in ("tp", "fp", "fn")} for t, c in sorted(tally.items())}


def rows_from(tally: dict[str, dict[str, int]]) -> list[dict]:
    rows = []
    for type_, c in tally.items():
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        rows.append(
            {
                "type": type_,
                "labelled": tp + fn,
                "found": tp,
                "false positives": fp,
                "precision": tp / (tp + fp) if tp + fp else float("nan"),
                "recall": tp / (tp + fn) if tp + fn else float("nan"),
            }
        )
    return rows


def run(args) -> list[dict]:
    from feedback.redaction import Redactor

    cases = load_cases()
    redactor = Redactor()
    rows = rows_from(score(redactor, cases))
    texts = [c["text"] for c in cases]
    rounds = 3 if args.quick else 20
    # CPU time, not wall time: on a shared machine wall time includes waiting for a core.
    started = time.process_time()
    for _ in range(rounds):
        for text in texts:
            redactor.redact(text)
    per_text = (time.process_time() - started) / (rounds * len(texts))
    # The dataset bench's texts: customer-service messages, most without personal data.
    plain = ["Where is my order? It should have arrived last week.", "Thanks, that solved it!"] * 300
    started = time.process_time()
    for _ in range(rounds):
        for text in plain:
            redactor.redact(text)
    per_plain = (time.process_time() - started) / (rounds * len(plain))
    print(
        f"{len(cases)} labelled strings ({sum(1 for c in cases if not c['entities'])} without personal data)"
    )
    rows.append({"type": "speed: labelled set", "CPU µs per text": per_text * 1e6})
    rows.append({"type": "speed: text without digits or @", "CPU µs per text": per_plain * 1e6})
    size = 20_000 if args.quick else 100_000
    with tempfile.TemporaryDirectory(prefix="bench-redaction-") as var:
        gen = _child("bench.dataset", "generate", var, str(size))
        print(f"  generated {gen['rows']:,} feedback rows", file=sys.stderr)
        for redact in (0, 1):
            build = _child("bench.redaction", "build", var, str(redact))
            rows.append(
                {
                    "type": f"build {size:,} rows, redact {'on' if redact else 'off'}",
                    "seconds": round(build["seconds"], 2),
                    "cpu seconds": round(build["cpu_seconds"], 2),
                    "examples": build["examples"],
                    "examples per CPU s": round(build["examples"] / build["cpu_seconds"]),
                    "values redacted": build["redacted"],
                }
            )
    return rows


def _child(module: str, step: str, *args: str) -> dict:
    cmd = [sys.executable, "-m", module, step, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {step} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def step_build(var: str, redact: int) -> dict:
    """Build the generated feedback into a chat dataset (every example: max_examples 0)."""
    import resource

    from bench.dataset import _setup

    _setup(var)
    from assistants.models import Assistant
    from training.pipeline import dataset_build

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    assistant = Assistant.objects.get(slug="bench")
    started, cpu_started = time.perf_counter(), cpu()
    ds = dataset_build(
        assistant=assistant, options={"max_examples": 0, "validation_share": 0.1, "redact": bool(redact)}
    )
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu() - cpu_started,
        "examples": ds.stats["exampleCount"],
        "redacted": ds.stats["redaction"]["total"],
    }


if __name__ == "__main__":
    step, var, value = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps({"build": step_build}[step](var, value)))
