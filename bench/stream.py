"""Concurrent streamed chat answers through the gateway: gunicorn sync workers against gthread workers.

A provider that streams slowly (the project's fake OpenAI-compatible server, ``tests/fake_openai.py``,
pausing ``CHUNK_SECONDS`` between chunks, so one answer of ``WORDS`` words takes ≈ 1.3 s) sits behind
the gateway; ``CLIENTS`` threads each ask for ``STREAMS_PER_CLIENT`` streamed answers with the ``openai``
SDK, all at once. Each server layout is started fresh on 127.0.0.1 against a throwaway SQLite database:

* ``sync``: what ``start`` ran before (2 sync workers): a stream holds a whole worker process, so at
  most 2 answers stream at a time and everyone else waits for a worker;
* ``gthread``: what ``start`` runs now (2 workers x 8 threads): a stream holds one thread.

Reported per layout: answers per second, time to the first token and to the last one (p50 / p95,
measured by the clients), failed streams. Bounded: 64 streams per layout (after one unmeasured warm-up
stream per client), one run.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import percentile, setup_django

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 16
STREAMS_PER_CLIENT = 4
WORDS = 24
CHUNK_SECONDS = 0.05
LAYOUTS = {
    "sync (2 workers)": ["--workers", "2"],
    "gthread (2 workers x 8 threads)": ["--workers", "2", "--worker-class", "gthread", "--threads", "8"],
    "gthread (2 workers x 16 threads)": ["--workers", "2", "--worker-class", "gthread", "--threads", "16"],
}
QUESTION = " ".join(f"word{i}" for i in range(WORDS - 3))  # the fake answers "[model] You asked: …"


def _fake_openai():
    spec = importlib.util.spec_from_file_location("fake_openai", ROOT / "tests" / "fake_openai.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fake_openai"] = module
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed() -> str:
    from assistants.models import ApiKey
    from assistants.services import (
        api_key_create,
        assistant_create,
        deployment_make_live,
        model_version_create,
    )

    assistant = assistant_create(slug="bench", name="Bench assistant")
    version = model_version_create(
        assistant=assistant, name="bench-ft", backend="openai", provider_model="gpt-4o-mini"
    )
    deployment_make_live(version=version, reason="initial")
    return api_key_create(scope=ApiKey.Scope.INGEST, assistant=assistant, name="bench")[1]


def _serve(tmp: str, port: int, provider: str, layout: list[str], log) -> subprocess.Popen:
    env = os.environ.copy()
    env.update(
        TRAINLOOP_VAR_DIR=tmp,
        OPENAI_BASE_URL=provider + "/v1",
        OPENAI_API_KEY="sk-bench",
        API_THROTTLE_RATE="100000000/minute",
        LOG_LEVEL="WARNING",
        DEBUG="False",
    )
    cmd = [
        sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning", "--timeout", "120", "--no-control-socket", *layout,
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
    )


def _wait_ready(proc: subprocess.Popen, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode} before serving")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer on port {port} within {timeout:.0f}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the master and its workers only
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _drive(port: int, key: str) -> dict:
    import openai

    first: list[float] = []
    total: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    began_at = [0.0]
    start_line = threading.Barrier(CLIENTS, action=lambda: began_at.__setitem__(0, time.perf_counter()))

    def client() -> None:
        with openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=120
        ) as sdk:
            # Warm-up, not measured: gunicorn's workers import Django after the port is open, and each
            # thread opens its database connection on its first request.
            list(
                sdk.chat.completions.create(
                    model="bench", messages=[{"role": "user", "content": "hi"}], stream=True
                )
            )
            start_line.wait()
            for _ in range(STREAMS_PER_CLIENT):
                began = time.perf_counter()
                got_first = None
                try:
                    stream = sdk.chat.completions.create(
                        model="bench", messages=[{"role": "user", "content": QUESTION}], stream=True
                    )
                    words = 0
                    for chunk in stream:
                        if chunk.choices and chunk.choices[0].delta.content:
                            words += 1
                            if got_first is None:
                                got_first = time.perf_counter() - began
                    if words != WORDS:
                        raise RuntimeError(f"{words} words instead of {WORDS}")
                except Exception as exc:  # counted and shown, the run goes on
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    first.append(got_first)
                    total.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - began_at[0]
    return {"wall": wall, "first": first, "total": total, "errors": errors}


def run(args) -> list[dict]:
    rows = []
    fake_openai = _fake_openai()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        setup_django(tmp)
        key = _seed()
        with fake_openai.FakeOpenAIServer(time_limit=900) as provider:
            provider.stream_chunk_seconds = CHUNK_SECONDS
            for name, layout in LAYOUTS.items():
                port = _free_port()
                log_path = Path(tmp) / "gunicorn.log"
                with open(log_path, "wb") as log:
                    server = _serve(tmp, port, provider.url, layout, log)
                    try:
                        _wait_ready(server, port)
                        result = _drive(port, key)
                    finally:
                        _stop(server)
                if result["errors"]:
                    print(f"stream/{name}: {len(result['errors'])} failed, first: {result['errors'][0]}")
                done = len(result["total"])
                rows.append(
                    {
                        "server": name,
                        "streams": done,
                        "failed": len(result["errors"]),
                        "concurrent clients": CLIENTS,
                        "answers/s": done / result["wall"],
                        "first token p50 s": percentile(result["first"], 50),
                        "first token p95 s": percentile(result["first"], 95),
                        "whole answer p50 s": percentile(result["total"], 50),
                        "whole answer p95 s": percentile(result["total"], 95),
                        "wall s": result["wall"],
                    }
                )
    print(
        f"stream: {CLIENTS} clients x {STREAMS_PER_CLIENT} streamed answers of {WORDS} words, provider pause "
        f"{CHUNK_SECONDS} s per chunk; load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    return rows
