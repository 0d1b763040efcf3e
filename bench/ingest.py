"""Ingest throughput over HTTP: the product's feedback endpoints against a naive DRF baseline.

Starts gunicorn (2 workers) on 127.0.0.1 against a throwaway SQLite database (WAL), then drives it from
this process with a few client threads (http.client, back to back; gunicorn's sync workers close each
connection, so every request reconnects, as any client of them would) for a fixed time per scenario:

- ``baseline``: POST /bench/baseline/feedback, a ModelSerializer + CreateAPIView (bench/baseline.py);
- ``single``:   POST /api/v1/feedback, one item, unique Idempotency-Key header;
- ``batch``:    POST /api/v1/feedback/batch, 100 items, each with its own idempotency_key;
- ``raw``:      no HTTP, no Django: the same rows (same columns and values as ``batch`` stores) inserted
                from this process with the driver's per-row ``executemany``, 100 rows per transaction,
                one connection. The physical-ish limit the batch endpoint is compared with.
- ``copy``:     PostgreSQL only: the same rows with ``COPY … FROM STDIN``, 100 per transaction, from this
                process: the database's bulk loader with nothing in front of it, the floor under both.

The three HTTP scenarios use the same key authentication.
Throttling is lifted (API_THROTTLE_RATE) so it doesn't cap
the figures; its cache lookup still runs, as in production. Besides rates and latencies the table shows
the server's CPU time per request and per row (read from /proc): on a shared machine, where neighbours
take cores away, that is the steadier measure of the code's own cost. With ``--db postgres`` the ``srv``
columns count gunicorn's processes (or, for ``raw``, this process) and ``db cpu us/row`` PostgreSQL's
server processes for the bench database (when it runs on this machine); ``x raw (cpu)`` compares the two
scenarios by all that CPU per row, i.e. as if both got the same share of the machine.

Targets (issues 2 and 14, on a 2-core machine, ratios within one run): single POST >= 1.3x the
baseline; batch >= 3x raw ``executemany`` on PostgreSQL (where the batch is one INSERT from a jsonb
array), >= 0.5x on SQLite (one writer at a time: the batch can at best approach the raw insert).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import percentile, setup_django

ROOT = Path(__file__).resolve().parent.parent
BATCH_SIZE = 100
INTERACTIONS = 1000
CLIENTS = 4
WORKERS = 2
# gunicorn's default sync workers: measured faster here than gthread (2 threads: ~3x slower, as the
# threads of one process contend for the GIL; 1 thread: no better than sync). Override with
# BENCH_GUNICORN_ARGS="--worker-class gthread --threads 2" to compare.
DEFAULT_GUNICORN_ARGS: tuple[str, ...] = ()
TARGETS = {
    "single": ("x baseline", 1.3, ">= 1.3x baseline"),
    "batch": ("x raw", {"postgresql": 3.0, "sqlite": 0.5}, ">= {}x raw executemany"),
}
COMMENT = "The answer was right but took two tries to get there."


@dataclass
class Load:
    ok: int = 0
    errors: int = 0
    rows: int = 0
    late_rows: int = 0  # acknowledged after the window closed: stored, but not counted in the rates
    seconds: float = 0.0
    server_cpu: float = 0.0  # CPU seconds gunicorn (master + workers) spent during the window
    client_cpu: float = 0.0  # CPU seconds this process (the load generator) spent
    db_cpu: float | None = None  # CPU seconds PostgreSQL's server processes spent for this load
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""

    def add(self, other: Load) -> None:
        self.ok += other.ok
        self.errors += other.errors
        self.rows += other.rows
        self.late_rows += other.late_rows
        self.seconds += other.seconds
        self.server_cpu += other.server_cpu
        self.client_cpu += other.client_cpu
        if other.db_cpu is not None:
            self.db_cpu = (self.db_cpu or 0.0) + other.db_cpu
        self.latencies += other.latencies
        self.first_error = self.first_error or other.first_error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed() -> tuple[str, list[int]]:
    from assistants.models import ApiKey
    from assistants.services import api_key_create, assistant_create
    from feedback.models import Interaction

    assistant = assistant_create(slug="bench", name="Bench assistant")
    _, raw = api_key_create(scope=ApiKey.Scope.INGEST, assistant=assistant, name="bench")
    Interaction.objects.bulk_create(
        Interaction(
            assistant=assistant,
            request_id=f"req-{i}",
            messages=[{"role": "user", "content": f"Where is my order {i}?"}],
            response="It ships tomorrow.",
        )
        for i in range(INTERACTIONS)
    )
    ids = list(Interaction.objects.filter(assistant=assistant).values_list("id", flat=True))
    return raw, ids


def _assistant_id() -> int:
    from assistants.models import Assistant

    return Assistant.objects.get(slug="bench").pk


def _start_server(tmp: str, port: int, log) -> subprocess.Popen:
    env = os.environ.copy()
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings_bench",
        TRAINLOOP_VAR_DIR=tmp,
        API_THROTTLE_RATE="100000000/minute",
        LOG_LEVEL="WARNING",
        DEBUG="False",
    )
    extra = os.environ.get("BENCH_GUNICORN_ARGS")
    cmd = [
        sys.executable, "-m", "gunicorn", "config.wsgi",
        "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS),
        "--log-level", "warning", "--timeout", "60",
        *(extra.split() if extra is not None else DEFAULT_GUNICORN_ARGS),
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
    )


def _wait_ready(proc: subprocess.Popen, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode} before serving")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/feedback-prompt")  # cheap: answered 401 without a key
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer on port {port} within {timeout:.0f}s")


def _stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)  # its own session: the master and its workers, nothing else
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _server_cpu(master: int) -> float:
    """CPU seconds used so far by the gunicorn master and its workers (from /proc; 0 where unavailable).

    Unlike requests/s, this doesn't move when other processes on the machine compete for the cores.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == master or ppid == master:
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


class DbCpu:
    """CPU time of the PostgreSQL server processes serving the bench's database, read from /proc.

    The web process's CPU is only part of what a row costs: the database parses, checks and stores it in
    processes of its own. They are counted when PostgreSQL runs on this machine (a process title names
    its database); otherwise, and on SQLite (which works inside the processes already counted), the
    reading is None. ``own`` is the backend serving this process (the raw scenario); the others serve
    gunicorn's workers.
    """

    def __init__(self) -> None:
        from django.db import connection

        self.name = self.own = None
        if connection.vendor != "postgresql" or not os.path.isdir("/proc"):
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database(), pg_backend_pid()")
            name, own = cursor.fetchone()
        if f" {name} " in _cmdline(own):
            self.name, self.own = name, own

    def read(self) -> dict[int, float]:
        """CPU seconds so far of each server process of the database (empty when not readable)."""
        if self.name is None:
            return {}
        ticks = os.sysconf("SC_CLK_TCK")
        spent = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and f" {self.name} " in _cmdline(int(entry)):
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                spent[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
        return spent

    def spent(self, before: dict[int, float], after: dict[int, float], *, own: bool) -> float | None:
        """CPU seconds spent between two readings by this process's backend (``own``) or the others'."""
        if self.name is None:
            return None
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items() if (pid == self.own) == own)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace") + " "
    except OSError:
        return ""


# A request factory returns (path, body, extra headers, rows carried) for the n-th request of a thread
# in the load tagged ``tag`` (tags keep idempotency keys unique across loads).
Factory = Callable[[str, int, int], tuple[str, bytes, dict[str, str], int]]


def _load(
    port: int, token: str, factory: Factory, *, seconds: float, clients: int, server: int, db: DbCpu
) -> Load:
    """Run ``clients`` threads of back-to-back requests for ``seconds``; count what finished in time."""
    load = Load()
    tag = uuid.uuid4().hex[:8]
    cpu_before = _server_cpu(server)
    db_before = db.read()
    client_before = time.process_time()
    lock = threading.Lock()
    start = time.perf_counter()
    stop_at = start + seconds
    auth = f"Bearer {token}"

    def client(thread: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = Load()
        n = 0
        try:
            while True:
                path, body, headers, rows = factory(tag, thread, n)
                n += 1
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    break
                try:
                    conn.request(
                        "POST", path, body,
                        {"Authorization": auth, "Content-Type": "application/json", **headers},
                    )  # fmt: skip
                    resp = conn.getresponse()
                    payload = resp.read()
                    status = resp.status
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()  # the next request reconnects
                    status, payload = 0, repr(exc).encode()
                t1 = time.perf_counter()
                if t1 > stop_at:
                    mine.late_rows += rows if 200 <= status < 300 else 0
                    break
                if 200 <= status < 300:
                    mine.ok += 1
                    mine.rows += rows
                    mine.latencies.append(t1 - t0)
                else:
                    mine.errors += 1
                    mine.first_error = mine.first_error or f"{status}: {payload[:300]!r}"
        finally:
            conn.close()
            with lock:
                load.add(mine)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    load.seconds = seconds
    load.server_cpu = _server_cpu(server) - cpu_before
    load.db_cpu = db.spent(db_before, db.read(), own=False)
    load.client_cpu = time.process_time() - client_before
    return load


def _factories(ids: list[int]) -> dict[str, Factory]:
    count = len(ids)

    def baseline(tag: str, thread: int, n: int):
        i = thread * 1_000_003 + n
        body = {
            "interaction": ids[i % count], "kind": "rating", "rating": 1 + i % 5, "comment": COMMENT,
            "idempotency_key": f"{tag}-{thread}-{n}",
        }  # fmt: skip
        return "/bench/baseline/feedback", json.dumps(body).encode(), {}, 1

    def single(tag: str, thread: int, n: int):
        i = thread * 1_000_003 + n
        body = {"interaction_id": ids[i % count], "kind": "rating", "rating": 1 + i % 5, "comment": COMMENT}
        return "/api/v1/feedback", json.dumps(body).encode(), {"Idempotency-Key": f"{tag}-{thread}-{n}"}, 1

    templates: dict[tuple[str, int], str] = {}

    def batch(tag: str, thread: int, n: int):
        # Encoding 100 items costs the client about a millisecond, on the cores the server needs: encode
        # them once per thread and only substitute the request number.
        template = templates.get((tag, thread))
        if template is None:
            items = [
                {
                    "interaction_id": ids[(thread * 7919 + j) % count],
                    "kind": "rating",
                    "rating": 1 + j % 5,
                    "comment": COMMENT,
                    "idempotency_key": f"{tag}-{thread}-@N@-{j}",
                }  # fmt: skip
                for j in range(BATCH_SIZE)
            ]
            template = templates[(tag, thread)] = json.dumps({"items": items})
        return "/api/v1/feedback/batch", template.replace("@N@", str(n)).encode(), {}, BATCH_SIZE

    return {"baseline": baseline, "single": single, "batch": batch}


def _raw_executemany(ids: list[int], assistant_id: int, *, seconds: float, db: DbCpu) -> Load:
    """Insert batch-like rows with the driver's executemany for ``seconds``: one process, one connection.

    The rows carry what the batch endpoint stores for its items (kind, rating, comment, a unique
    idempotency key, a 64-character request hash, one timestamp per batch); the database computes the
    generated ``success`` column for both.
    """
    import hashlib

    from django.db import connection, transaction
    from django.utils import timezone

    from feedback.models import Feedback

    meta = Feedback._meta
    names = ["interaction_id", "assistant_id", "kind", "rating", "comment", "suggestion", "corrected_answer"]
    names += ["excluded_from_training", "idempotency_key", "request_hash", "created_at"]
    columns = ", ".join(connection.ops.quote_name(meta.get_field(n).column) for n in names)
    sql = f"INSERT INTO {meta.db_table} ({columns}) VALUES ({', '.join(['%s'] * len(names))})"
    tag = uuid.uuid4().hex[:8]
    load = Load()
    db_before = db.read()
    cpu_before = time.process_time()
    start = time.perf_counter()
    stop_at = start + seconds
    n = 0
    count = len(ids)
    while True:
        t0 = time.perf_counter()
        if t0 >= stop_at:
            break
        now = timezone.now()
        rows = [
            (ids[(n * 7919 + j) % count], assistant_id, "rating", 1 + j % 5, COMMENT, "", "", False,
             f"{tag}-{n}-{j}", hashlib.sha256(f"{tag}-{n}-{j}".encode()).hexdigest(), now)
            for j in range(BATCH_SIZE)
        ]  # fmt: skip
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        t1 = time.perf_counter()
        n += 1
        if t1 > stop_at:
            load.late_rows += BATCH_SIZE
            break
        load.ok += 1
        load.rows += BATCH_SIZE
        load.latencies.append(t1 - t0)
    load.seconds = seconds
    load.server_cpu = load.client_cpu = time.process_time() - cpu_before
    load.db_cpu = db.spent(db_before, db.read(), own=True)
    return load


def _raw_copy(ids: list[int], assistant_id: int, *, seconds: float, db: DbCpu) -> Load:
    """PostgreSQL only: the same rows as ``_raw_executemany`` with ``COPY … FROM STDIN``, 100 rows per
    transaction, one process, one connection: the database's own bulk path with nothing in front of it,
    so the floor any endpoint's cost per row can approach (the unique and secondary indexes are
    maintained row by row whatever the statement)."""
    import hashlib

    from django.db import connection, transaction
    from django.utils import timezone

    from feedback.models import Feedback

    meta = Feedback._meta
    names = ["interaction_id", "assistant_id", "kind", "rating", "comment", "suggestion", "corrected_answer"]
    names += ["excluded_from_training", "idempotency_key", "request_hash", "created_at"]
    columns = ", ".join(connection.ops.quote_name(meta.get_field(n).column) for n in names)
    sql = f"COPY {meta.db_table} ({columns}) FROM STDIN"
    tag = uuid.uuid4().hex[:8]
    load = Load()
    db_before = db.read()
    cpu_before = time.process_time()
    start = time.perf_counter()
    stop_at = start + seconds
    n = 0
    count = len(ids)
    while True:
        t0 = time.perf_counter()
        if t0 >= stop_at:
            break
        now = timezone.now()
        rows = [
            (ids[(n * 7919 + j) % count], assistant_id, "rating", 1 + j % 5, COMMENT, "", "", False,
             f"c{tag}-{n}-{j}", hashlib.sha256(f"c{tag}-{n}-{j}".encode()).hexdigest(), now)
            for j in range(BATCH_SIZE)
        ]  # fmt: skip
        with transaction.atomic(), connection.cursor() as cursor:
            with cursor.cursor.copy(sql) as copy:  # psycopg 3's COPY, under Django's cursor wrapper
                for row in rows:
                    copy.write_row(row)
        t1 = time.perf_counter()
        n += 1
        if t1 > stop_at:
            load.late_rows += BATCH_SIZE
            break
        load.ok += 1
        load.rows += BATCH_SIZE
        load.latencies.append(t1 - t0)
    load.seconds = seconds
    load.server_cpu = load.client_cpu = time.process_time() - cpu_before
    load.db_cpu = db.spent(db_before, db.read(), own=True)
    return load


def _row(name: str, endpoint: str, load: Load, clients: int) -> dict:
    ms = [x * 1000 for x in load.latencies]
    cpu = load.server_cpu + (load.db_cpu or 0.0)
    return {
        "scenario": name,
        "endpoint": endpoint,
        "clients": clients,
        "requests": load.ok,
        "errors": load.errors,
        "req/s": load.ok / load.seconds,
        "rows/s": load.rows / load.seconds,
        "p50 ms": percentile(ms, 50),
        "p99 ms": percentile(ms, 99),
        "srv cpu ms/req": load.server_cpu * 1000 / load.ok if load.ok else None,
        "srv cpu us/row": load.server_cpu * 1e6 / load.rows if load.rows else None,
        # Cores busy serving and generating load: with 2 cores, what's left went to other processes.
        "srv cores": load.server_cpu / load.seconds,
        "client cores": load.client_cpu / load.seconds,
        # PostgreSQL's own processes (None on SQLite, which works inside the processes counted above).
        "db cpu us/row": load.db_cpu * 1e6 / load.rows if load.rows and load.db_cpu is not None else None,
        "cpu us/row (srv+db)": cpu * 1e6 / load.rows if load.rows else None,
        # What that CPU cost per row allows if the server and the database had the 2 cores to themselves.
        "rows/s @2 idle cores": 2 * load.rows / cpu if cpu else None,
    }


def run(args) -> list[dict]:
    quick = getattr(args, "quick", False)
    seconds = float(os.environ.get("BENCH_SECONDS") or (3 if quick else 10))
    # The scenarios take turns, so a neighbour's load on this shared machine hits them alike and the
    # ratio to the baseline stays meaningful; each gets ``seconds`` in total.
    rounds = 1 if quick else 5
    warmup = 1.0 if quick else 2.0
    endpoints = {
        "baseline": "/bench/baseline/feedback",
        "single": "/api/v1/feedback",
        "batch": f"/api/v1/feedback/batch x{BATCH_SIZE}",
        "raw": f"executemany x{BATCH_SIZE}, 1 process",
        "copy": f"COPY x{BATCH_SIZE}, 1 process",
    }
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        setup_django(tmp, settings_module="bench.settings_bench")
        token, ids = _seed()
        from django.db import connection

        vendor = connection.vendor
        assistant_id = _assistant_id()
        port = _free_port()
        log_path = Path(tmp) / "gunicorn.log"
        factories = _factories(ids)
        db = DbCpu()
        # PostgreSQL's COPY: the floor under the ratio's denominator (no COPY on SQLite).
        direct = {"raw": _raw_executemany, **({"copy": _raw_copy} if vendor == "postgresql" else {})}
        totals = {name: Load() for name in (*factories, *direct)}
        stored = 0
        with open(log_path, "wb") as log:
            server = _start_server(tmp, port, log)
            try:
                _wait_ready(server, port)
                for factory in factories.values():
                    warm = _load(
                        port, token, factory, seconds=warmup, clients=CLIENTS, server=server.pid, db=db
                    )
                    stored += warm.rows + warm.late_rows
                for insert in direct.values():
                    warm = insert(ids, assistant_id, seconds=warmup, db=db)
                    stored += warm.rows + warm.late_rows
                for _ in range(rounds):
                    for name, factory in factories.items():
                        load = _load(
                            port,
                            token,
                            factory,
                            seconds=seconds / rounds,
                            clients=CLIENTS,
                            server=server.pid,
                            db=db,
                        )
                        stored += load.rows + load.late_rows
                        totals[name].add(load)
                    # The same rows without HTTP or Django, in the same round: the ratio's denominator.
                    for name, insert in direct.items():
                        load = insert(ids, assistant_id, seconds=seconds / rounds, db=db)
                        stored += load.rows + load.late_rows
                        totals[name].add(load)
            except Exception:
                print(f"ingest: gunicorn log:\n{log_path.read_text()[-3000:]}", file=sys.stderr)
                raise
            finally:
                _stop_server(server)
        for name, load in totals.items():
            if load.errors:
                print(
                    f"ingest/{name}: {load.errors} failed requests, first: {load.first_error}",
                    file=sys.stderr,
                )

        from feedback.models import Feedback

        in_db = Feedback.objects.count()
        if in_db != stored:
            print(f"ingest: {stored} rows acknowledged but {in_db} stored", file=sys.stderr)

    rows = [
        _row(name, endpoints[name], load, 1 if name in direct else CLIENTS) for name, load in totals.items()
    ]
    base, base_cpu = rows[0]["rows/s"], rows[0]["srv cpu us/row"]
    raw_row = next(row for row in rows if row["scenario"] == "raw")
    raw, raw_cpu = raw_row["rows/s"], raw_row["cpu us/row (srv+db)"]
    for row in rows:
        row["db"] = vendor
        row["x baseline"] = row["rows/s"] / base if base else None
        row["x raw"] = row["rows/s"] / raw if raw else None
        # The same ratio by server CPU per row: steady when neighbours load the machine.
        row["x baseline (cpu)"] = (
            base_cpu / row["srv cpu us/row"] if base_cpu and row["srv cpu us/row"] else None
        )
        # And against raw by all the CPU a row costs (web process or bench process, plus the database's):
        # what the ratio would be if both sides got the same CPU.
        row["x raw (cpu)"] = (
            raw_cpu / row["cpu us/row (srv+db)"] if raw_cpu and row["cpu us/row (srv+db)"] else None
        )
        column, threshold, label = TARGETS.get(row["scenario"], (None, None, ""))
        if isinstance(threshold, dict):
            threshold = threshold[vendor]
            label = label.format(threshold)
        row["target"] = label
        row["met"] = ("yes" if (row[column] or 0) >= threshold else "NO") if column else ""
    print(
        f"ingest: {os.cpu_count()} CPUs; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (above the CPU count, other processes competed for the cores)"
    )
    return rows
