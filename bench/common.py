"""Helpers shared by the bench modules: a throwaway Django database, timing and memory readings."""

from __future__ import annotations

import itertools
import os
import re
import resource
import statistics
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

_ready_dir: Path | None = None
_databases = itertools.count()

# Where ``--db postgres`` creates its throwaway databases (a server the user runs; never DATABASE_URL,
# which may point at real data).
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def bench_db() -> str:
    """``sqlite`` (the default) or ``postgres``, as ``python -m bench --db`` chose."""
    return os.environ.get("BENCH_DB") or "sqlite"


@contextmanager
def bench_database() -> Iterator[str | None]:
    """With ``--db postgres``: a fresh database ``bench_<pid>_<n>`` for the duration, then dropped.

    It is announced to Django (and to child processes: gunicorn, the dataset steps) through
    DATABASE_URL and BENCH_EXTERNAL_DB=1, so ``setup_django`` keeps it; REDIS_URL is unset so the bench
    never writes into a Redis the user runs. On SQLite this does nothing: ``setup_django`` makes its own
    file under the bench's temporary directory. Yields the database's name (None on SQLite).
    """
    if bench_db() != "postgres":
        yield None
        return
    import psycopg

    server = os.environ.get("BENCH_PG_URL") or DEFAULT_PG_URL
    name = f"bench_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "BENCH_EXTERNAL_DB", "REDIS_URL", "SECRET_KEY")}
    os.environ["DATABASE_URL"] = urlsplit(server)._replace(path=f"/{name}").geturl()
    os.environ["BENCH_EXTERNAL_DB"] = "1"
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 50)
    try:
        yield name
    finally:
        if _ready_dir is not None:
            from django.db import connections

            connections.close_all()
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# Bulk loads through executemany of at least this many rows make the next read ANALYZE the table first.
ANALYZE_AFTER_ROWS = 10_000
_INSERT_INTO = re.compile(r'\s*INSERT\s+INTO\s+"?(\w+)"?', re.IGNORECASE)


def _analyze_after_bulk_loads(sender, connection, **kwargs) -> None:
    """On PostgreSQL, ANALYZE a table the bench just bulk-loaded before the next statement reads anything.

    Production relies on autovacuum to analyse a table whose rows changed by 10 % (docs/PERFORMANCE.md:
    a requirement). A bench loads a million rows and queries them a second later, before autovacuum's
    next round: without statistics the planner guesses, and the figures depend on luck (issue 14
    measured 292 ms un-analysed against 157 ms analysed). Doing what autovacuum would do, at a fixed
    point, makes every bench's loader deterministic without each loader having to remember.
    """
    if connection.vendor != "postgresql":
        return
    loaded: dict[str, int] = {}

    def wrapper(execute, sql, params, many, context):
        match = _INSERT_INTO.match(sql) if many else None
        if match is None and loaded and not sql.lstrip().upper().startswith("INSERT"):
            tables = [t for t, n in loaded.items() if n >= ANALYZE_AFTER_ROWS]
            if tables:
                with connection.connection.cursor() as raw:
                    raw.execute("ANALYZE " + ", ".join(f'"{t}"' for t in tables))
                for table in tables:
                    del loaded[table]
        result = execute(sql, params, many, context)
        if match is not None:
            rows = len(params) if isinstance(params, list | tuple) else ANALYZE_AFTER_ROWS
            loaded[match.group(1)] = loaded.get(match.group(1), 0) + rows
        return result

    connection.execute_wrappers.append(wrapper)


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
    from django.db.backends.signals import connection_created

    connection_created.connect(_analyze_after_bulk_loads)
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
