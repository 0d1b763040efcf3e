"""Dedup throughput of another commit's finder against this one, alternating in one process.

``python -m bench.dedup_compare COMMIT [N] [ROUNDS]`` (defaults: 1,000,000 examples, 1 round) loads
``training/pipeline/dedup.py`` as it was at COMMIT (``git show``), generates N examples with the dataset
bench's generator (seed 7, 20 % near-duplicates), and times ``add`` (chunks of 5,000) + ``resolve`` for
each version in turn, in CPU and wall seconds, then the current version's precision and recall against
exact pairwise Jaccard on 2,000 and 5,000 examples (seed 99, as the dataset bench's quality step). Not
part of ``python -m bench all``: a tool to compare two versions of the finder under the same load.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _old_module(commit: str, folder: str):
    source = subprocess.run(
        ["git", "show", f"{commit}:training/pipeline/dedup.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    path = Path(folder) / "dedup_old.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("dedup_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["dedup_old"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def main(argv: list[str], folder: str) -> None:
    import numpy as np

    from bench.dataset import generate_pairs
    from training.pipeline import dedup as new

    commit, n, rounds = (
        argv[0],
        int(argv[1]) if len(argv) > 1 else 1_000_000,
        int(argv[2]) if len(argv) > 2 else 1,
    )
    old = _old_module(commit, folder)
    texts = [f"{q}\n{a}" for q, a in generate_pairs(n)]

    def run(module) -> tuple[float, float, int]:
        cpu, wall = time.process_time(), time.perf_counter()
        finder = module.NearDuplicateFinder(threshold=0.9)
        for lo in range(0, n, 5000):
            finder.add(texts[lo : lo + 5000])
        ones = np.ones(n)
        result = finder.resolve(rating=ones, newest=ones, tiebreak=np.arange(n))
        return time.process_time() - cpu, time.perf_counter() - wall, int(result.keep.sum())

    for _ in range(rounds):
        for name, module in ((commit, old), ("current", new)):
            cpu, wall, kept = run(module)
            print(
                f"{name}: {n:,} examples, {n / cpu:,.0f}/CPU-s, {n / wall:,.0f}/wall-s, kept {kept:,}, "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    for m in (2000, 5000):
        sample = [f"{q}\n{a}" for q, a in generate_pairs(m, seed=99)]
        truth = new.exact_pairs(sample, 0.9)
        finder = new.NearDuplicateFinder(threshold=0.9)
        for lo in range(0, m, 2000):
            finder.add(sample[lo : lo + 2000])
        found, _ = finder.pairs()
        precision, recall = new.precision_recall(found, truth)
        print(f"quality on {m:,}: {len(truth):,} true pairs, precision {precision:.4f}, recall {recall:.4f}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # One temporary folder for the settings' var dir and the old module's copy, removed at the end.
    with tempfile.TemporaryDirectory(prefix="dedup-compare-") as folder:
        os.environ.setdefault("TRAINLOOP_VAR_DIR", folder)
        import django

        django.setup()
        main(sys.argv[1:], folder)
