"""``python -m bench [NAME|all] [--db sqlite|postgres] [--quick] [--json FILE]``.

``all`` runs every bench except ``scale`` (the pages bench at 10,000,000 feedback rows: an hour and
~10 GB of disk, so CI does not run it). ``--db postgres`` runs each bench on a database of its own,
``bench_<pid>_<n>`` on BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres), created
for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BENCHES = ("ingest", "dataset", "train", "abtest", "pages", "redaction", "erasure", "retention", "stream")
EXTRA = ("scale",)  # run by name only


def _load(name: str):
    try:
        return importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"bench.{name}":
            return None
        raise


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n== {title} ==")
    if not rows:
        print("(no results)")
        return
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    # Text left, numbers right, so figures line up by magnitude.
    numeric = [
        all(isinstance(row.get(c), int | float) or row.get(c) is None for row in rows) for c in columns
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        )

    print(line(columns))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print(line(r))


def _run_in_process(name: str, args: argparse.Namespace) -> list[dict] | None:
    module = _load(name)
    if module is None:
        print(f"\n== {name} ==\nnot available yet (bench/{name}.py is missing)")
        return None
    from bench.common import bench_database

    load = os.getloadavg()
    with bench_database():
        rows = module.run(args)
    after = os.getloadavg()
    print(
        f"{name} on {args.db}: load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min) "
        f"before, {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f} after, {os.cpu_count()} CPUs"
    )
    for row in rows or []:
        row.setdefault("db", args.db)
        row.setdefault("load1 before", round(load[0], 2))
    return rows


def _run_in_subprocess(name: str, args: argparse.Namespace) -> list[dict] | None:
    """Each bench in its own process: Django settings (and the throwaway database) load once per process."""
    if _load_spec(name) is None:
        print(f"\n== {name} ==\nnot available yet (bench/{name}.py is missing)")
        return None
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bench", name, "--db", args.db, "--json", str(out)]
        cmd += ["--quick"] if args.quick else []
        cmd += ["--rows", str(args.rows)] if args.rows else []
        proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, env=os.environ.copy())
        if proc.returncode != 0 or not out.exists():
            print(f"bench {name} failed (exit {proc.returncode})")
            return None
        return json.loads(out.read_text()).get(name)


def _load_spec(name: str):
    return importlib.util.find_spec(f"bench.{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", nargs="?", default="all", choices=(*BENCHES, *EXTRA, "all"))
    parser.add_argument(
        "--db", choices=("sqlite", "postgres"), default="sqlite", help="the database to benchmark on"
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test, noisier figures)")
    parser.add_argument(
        "--rows", type=int, metavar="N", help="data size for pages, scale and dataset (default: each bench's)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    args = parser.parse_args(argv)
    os.environ["BENCH_DB"] = args.db  # read by bench.common, also in the benches' child processes

    results: dict[str, list[dict]] = {}
    failed = False
    if args.name == "all":
        for name in BENCHES:
            rows = _run_in_subprocess(name, args)
            if rows is None:
                failed = failed or _load_spec(name) is not None
                continue
            results[name] = rows
        for name, rows in results.items():
            print_table(name, rows)  # again together at the end, so the summary is in one place
    else:
        rows = _run_in_process(args.name, args)
        if rows is not None:
            results[args.name] = rows
            print_table(args.name, rows)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
