"""Helpers shared by the bench modules: a throwaway Django database, timing and memory readings."""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_ready_dir: Path | None = None


def setup_django(tmpdir: str | os.PathLike, *, settings_module: str = "config.settings") -> None:
    """Point Django at a fresh database under ``tmpdir``, ``django.setup()`` and migrate quietly.

    By default the bench runs on a throwaway SQLite file, so DATABASE_URL/REDIS_URL are unset: a bench
    must never write into a database the user happens to have configured. Set BENCH_EXTERNAL_DB=1 to
    keep them (to benchmark PostgreSQL/Redis; the bench then writes rows into that database).

    Django settings load once per process, so a second call reuses the first database; ``python -m bench
    all`` runs each bench in its own process for that reason.
    """
    global _ready_dir
    if _ready_dir is not None:
        return
    os.environ["TRAINLOOP_VAR_DIR"] = str(tmpdir)
    if os.environ.get("BENCH_EXTERNAL_DB") != "1":
        for name in ("DATABASE_URL", "REDIS_URL"):
            os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    _ready_dir = Path(tmpdir)


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of ``values``; NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def peak_rss_mb(*, children: bool = False) -> float:
    """Peak resident memory of this process (or of its waited-for children), in MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


@dataclass
class Timer:
    start: float = 0.0
    end: float | None = None

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else time.perf_counter()) - self.start


@contextmanager
def timer() -> Iterator[Timer]:
    """``with timer() as t: ...`` then ``t.seconds`` (also readable while running)."""
    t = Timer(start=time.perf_counter())
    try:
        yield t
    finally:
        t.end = time.perf_counter()
