"""More than one machine: compose.yaml's services started for real against one PostgreSQL and one Redis.

Two web processes (gunicorn) behind the proxy (Caddy), two worker clusters (``manage.py qcluster``), each
with its own var directory, sharing only the database, the broker and MEDIA_ROOT (tests/stack.py starts
them from compose.yaml). Collected only in the PostgreSQL + Redis suite (tests/conftest.py).

1. 200 local training jobs are started through the API, five after one another for each of 40
   assistants (one active job per assistant): every task runs exactly once, no job moves twice, and
   both web processes and both clusters did the work.
2. The cluster running a job's training is killed (SIGKILL to all its processes): the other cluster's
   watchdog hands the job on once its lease lapses, and the job finishes there, each move still once.
3. Every schedule fires once per period, although both clusters run django-q2's scheduler.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule, Task

from assistants.backends.local import LocalRetrievalModel
from assistants.models import ApiKey, Deployment
from assistants.services import api_key_create, assistant_create, deployment_make_live
from notifications.services import job_event_type
from tests import stack
from tests.conftest import require
from training import services
from training.demo_data import customer_questions
from training.models import JobEvent, TrainingJob
from training.schedules import watchdog_schedule_ensure
from training.trainers.local import save_version_model

S = TrainingJob.Status
ASSISTANTS = 40
JOBS_EACH = 5  # 200 jobs
# A dataset of about 13 training and 2 validation examples (when the split leaves none, nothing can be
# evaluated and the test approves the job as a reviewer would).
INTERACTIONS_EACH = 15
# The slow assistant's live version knows this many answers: a job trains on top of it for seconds,
# long enough to kill its cluster mid-training.
SLOW_BASE_EXAMPLES = 12_000

PROCESSING = re.compile(r"processing (\S+) '([\w.]+)'")
CREATED = re.compile(r"created task (\S+) from schedule \[([^\]]+)\]")


def _database_url() -> str:
    """DATABASE_URL naming the test database, which the processes must share with this test."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


def _processed(log: str) -> list[tuple[str, str]]:
    """(task name, function) of every task the cluster started, in order."""
    return PROCESSING.findall(log)


def _policy(assistant) -> None:
    # Deploy or reject on the offline evaluation alone: no A/B test, no reviewer, no scheduled check.
    services.policy_update(
        policy=services.policy_ensure(assistant=assistant),
        ab_enabled=False,
        require_approval=False,
        eval_min_prompts=1,
        enabled=False,
    )


def _slow_base(assistant) -> None:
    rng = random.Random(7)
    words = [f"w{i}" for i in range(20_000)]
    questions = [" ".join(rng.choices(words, k=10)) for _ in range(SLOW_BASE_EXAMPLES)]
    answers = [" ".join(rng.choices(words, k=12)) for _ in range(SLOW_BASE_EXAMPLES)]
    model = LocalRetrievalModel.fit(questions, answers)
    version = save_version_model(model=model, assistant=assistant, base_version=None, metrics={})
    deployment_make_live(version=version, reason=Deployment.Reason.INITIAL)


class Api:
    """Requests through the proxy, one session per thread."""

    def __init__(self, url: str, key: str):
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}"}

    def post(self, path: str, body: dict, session: requests.Session | None = None) -> dict:
        response = (session or requests).post(self.url + path, json=body, headers=self.headers, timeout=60)
        assert response.status_code in (200, 201), f"{path}: {response.status_code} {response.text[:500]}"
        return response.json()


def _ingest(api: Api, slug: str, pairs: list[tuple[str, str]]) -> None:
    with requests.Session() as session:
        for i, (question, _) in enumerate(pairs):
            api.post(
                "/api/v1/interactions",
                {
                    "assistant": slug,
                    "request_id": f"{slug}-{i}",
                    "user": f"customer-{i}",
                    "messages": [{"role": "user", "content": question}],
                    "response": "Sorry, I do not know.",
                },
                session,
            )
        items = [
            {"assistant": slug, "request_id": f"{slug}-{i}", "helpful": False, "corrected_answer": answer}
            for i, (_, answer) in enumerate(pairs)
        ]
        assert api.post("/api/v1/feedback/batch", {"items": items}, session)["created"] == len(pairs)


@pytest.fixture
def schedule_runs(transactional_db):
    """Every change of a schedule's ``next_run``, as PostgreSQL saw it: django-q2's scheduler advances
    ``next_run`` when it fires a schedule, so one row is one firing and its ``old_next_run`` the period
    that fired. Two firings of one period would both advance from the same ``old_next_run``."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE TABLE scale_out_schedule_runs (
                name text, old_next_run timestamptz, new_next_run timestamptz
            );
            CREATE FUNCTION scale_out_schedule_run() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO scale_out_schedule_runs VALUES (NEW.name, OLD.next_run, NEW.next_run);
                RETURN NEW;
            END $$;
            CREATE TRIGGER scale_out_schedule_run AFTER UPDATE ON django_q_schedule FOR EACH ROW
                WHEN (OLD.next_run IS DISTINCT FROM NEW.next_run) EXECUTE FUNCTION scale_out_schedule_run();
            """
        )

    def runs() -> list[tuple[str, object, object]]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT name, old_next_run, new_next_run FROM scale_out_schedule_runs")
            return cursor.fetchall()

    try:
        yield runs
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER IF EXISTS scale_out_schedule_run ON django_q_schedule;"
                "DROP FUNCTION IF EXISTS scale_out_schedule_run();"
                "DROP TABLE IF EXISTS scale_out_schedule_runs;"
            )


def _progress() -> str:
    jobs = Counter(TrainingJob.objects.values_list("status", flat=True))
    tasks = Counter(Task.objects.values_list("func", flat=True))
    return f"jobs {dict(jobs)}, task results {dict(tasks)}"


def _wait(condition, *, seconds: float, what: str, clusters) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        for cluster in clusters:
            assert cluster.alive, f"a cluster died:\n{cluster.output()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}: {_progress()}"
        time.sleep(0.2)


def _transitions(job_id: int) -> list[tuple[str, str]]:
    return list(
        JobEvent.objects.filter(job_id=job_id, kind=JobEvent.Kind.TRANSITION)
        .order_by("created_at", "pk")
        .values_list("from_status", "to_status")
    )


def _assert_moved_once(job_id: int) -> None:
    moves = _transitions(job_id)
    statuses = [to for _, to in moves]
    assert len(statuses) == len(set(statuses)), f"job {job_id} moved twice: {moves}"
    assert [frm for frm, _ in moves] == ["", *statuses[:-1]], f"job {job_id} skipped a move: {moves}"


@pytest.mark.django_db(transaction=True)
def test_two_web_processes_and_two_clusters_share_the_work(tmp_path, schedule_runs):
    require(shutil.which("caddy") is not None, "caddy is not installed (Debian package caddy): the proxy")
    started = time.monotonic()
    operator = User.objects.create_superuser("operator", password="operator-password")
    manage_key = api_key_create(scope=ApiKey.Scope.MANAGE, user=operator)[1]
    ingest_key = api_key_create(scope=ApiKey.Scope.INGEST)[1]
    assistants = [assistant_create(slug=f"scale-{i}", name=f"Scale {i}") for i in range(ASSISTANTS)]
    slow = assistant_create(slug="scale-slow", name="Scale slow")
    for assistant in [*assistants, slow]:
        _policy(assistant)
    _slow_base(slow)
    # Migrations make the schedules, but an earlier transactional test may have flushed them: the
    # watchdog's two (what takes a dead cluster's job over) are ensured, the others checked if there.
    watchdog_schedule_ensure()

    cluster_name = f"scale-{uuid.uuid4().hex[:8]}"  # its own queue on the shared Redis
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        "SECRET_KEY": settings.SECRET_KEY,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),  # the shared filesystem
        "Q_CLUSTER_NAME": cluster_name,
        "Q_SAVE_LIMIT": "0",  # keep every result: the test counts them
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    for name in ("Q_SYNC", "TRAINLOOP_VAR_DIR", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        env.pop(name, None)
    queue = redis.Redis.from_url(env["REDIS_URL"])
    queue_key = f"django_q:{cluster_name}:q"
    timings = {"setup": time.monotonic() - started}

    with stack.running(env, tmp_path / "stack") as deployed:
        web = deployed["web-1"] + deployed["web-2"]
        clusters = deployed["worker"]
        assert len(web) == 2 and len(clusters) == 2
        timings["start"] = time.monotonic() - started
        ingest = Api(deployed.url, ingest_key)
        manage = Api(deployed.url, manage_key)
        pairs = customer_questions()
        with ThreadPoolExecutor(max_workers=8) as pool:
            chunks = [
                [pairs[(n * 7 + i) % len(pairs)] for i in range(INTERACTIONS_EACH)]
                for n in range(ASSISTANTS + 1)
            ]
            slugs = [a.slug for a in [*assistants, slow]]
            list(pool.map(lambda args: _ingest(ingest, *args), zip(slugs, chunks, strict=True)))
        timings["ingest"] = time.monotonic() - started

        # -- 1. 200 jobs through the API -------------------------------------------------------------
        jobs: list[int] = []
        current: dict[str, int | None] = {a.slug: None for a in assistants}
        left = {a.slug: JOBS_EACH for a in assistants}

        def approve_waiting(ids) -> None:
            # A dataset whose split left no validation example cannot be evaluated: a reviewer decides.
            for job_id in TrainingJob.objects.filter(pk__in=ids, status=S.AWAITING_APPROVAL).values_list(
                "pk", flat=True
            ):
                manage.post(f"/api/v1/jobs/{job_id}/approve", {})

        def start_next() -> bool:
            """Start the next job of every assistant whose job ended; True when all 200 have ended."""
            approve_waiting(current.values())
            ended = set(
                TrainingJob.objects.filter(
                    pk__in=[j for j in current.values() if j], status__in=TrainingJob.TERMINAL
                ).values_list("pk", flat=True)
            )
            for slug, job_id in current.items():
                if (job_id is None or job_id in ended) and left[slug]:
                    jobs.append(manage.post("/api/v1/jobs", {"assistant": slug})["id"])
                    current[slug] = jobs[-1]
                    left[slug] -= 1
            return not any(left.values()) and all(j in ended for j in current.values())

        _wait(start_next, seconds=180, what="200 jobs to end", clusters=clusters)
        assert len(jobs) == ASSISTANTS * JOBS_EACH

        def notified() -> Counter:
            tasks = Task.objects.filter(func="notifications.tasks.job_event")
            return Counter(tuple(args[:3]) for args in tasks.values_list("args", flat=True))

        def to_notify() -> Counter:
            moves = JobEvent.objects.filter(job_id__in=jobs, kind=JobEvent.Kind.TRANSITION)
            return Counter(
                (job_id, frm, to)
                for job_id, frm, to in moves.values_list("job_id", "from_status", "to_status")
                if job_event_type(from_status=frm, to_status=to)
            )

        def re_enqueued() -> int:
            watchdogs = Task.objects.filter(func="training.tasks.watchdog", success=True)
            return sum(len(result["enqueued"]) for result in watchdogs.values_list("result", flat=True))

        def settled() -> bool:
            """The queue is empty, no task is running, and the last moves' notifications are done."""
            if queue.llen(queue_key):
                return False
            stored = set(Task.objects.values_list("name", flat=True))  # before the logs: a result is
            names = {n for c in clusters for n, _ in _processed(c.output())}  # stored after its log line
            advanced = Task.objects.filter(func="training.tasks.job_advance").count()
            return (
                stored == names
                and advanced >= len(jobs) + re_enqueued()
                and sum(notified().values()) >= sum(to_notify().values())
            )

        _wait(settled, seconds=60, what="the queue to drain", clusters=clusters)
        timings["jobs"] = time.monotonic() - started

        ended = Counter(TrainingJob.objects.filter(pk__in=jobs).values_list("status", flat=True))
        failed = TrainingJob.objects.filter(pk__in=jobs).exclude(status__in=(S.DEPLOYED, S.REJECTED))
        assert not failed.exists(), [(j.pk, j.status, j.error) for j in failed[:5]]
        # Each assistant's first job deploys its first version; the others are rejected for matching
        # it, or deployed by the reviewer when there was nothing to evaluate them on.
        assert set(ended) <= {S.DEPLOYED, S.REJECTED} and ended[S.DEPLOYED] >= ASSISTANTS, ended
        for job_id in jobs:
            _assert_moved_once(job_id)

        # Every task ran once: no task name twice across both clusters, every stored result is one of
        # them, and nothing enqueued was lost (the API's 200 jobs plus what the watchdog re-enqueued;
        # one notification per notified move: a job's start and its decision).
        stored = Task.objects.values_list("name", "attempt_count", "success", "result")
        processed = [_processed(c.output()) for c in clusters]
        names = Counter(n for runs in processed for n, _ in runs)
        assert max(names.values()) == 1, names.most_common(3)
        assert {name for name, *_ in stored} <= set(names)
        assert all(attempts == 1 for _, attempts, _, _ in stored)
        assert all(success for _, _, success, _ in stored), [r for _, _, ok, r in stored if not ok][:3]
        advances = Counter(
            args[0]
            for args in Task.objects.filter(func="training.tasks.job_advance").values_list("args", flat=True)
        )
        assert set(jobs) <= set(advances)
        assert sum(advances.values()) == len(jobs) + re_enqueued()
        assert notified() == to_notify()
        # The work was shared: both clusters ran jobs, both web processes started them.
        for runs in processed:
            assert sum(func == "training.tasks.job_advance" for _, func in runs) >= 20, Counter(
                f for _, f in runs
            )
        # The product logs one line per request (config.middleware.RequestIdMiddleware; gunicorn's access
        # log is off), in text or JSON: "POST /api/v1/jobs 201 in 12 ms".
        started_by = [w.output().count("POST /api/v1/jobs 201 in ") for w in web]
        assert sum(started_by) == len(jobs) and min(started_by) >= 50, started_by

        # Both schedulers run through two periods of every schedule before one of them is killed.
        every_minute = set(
            Schedule.objects.filter(schedule_type=Schedule.MINUTES, minutes=1).values_list("name", flat=True)
        )
        assert {"training.watchdog", "training.watchdog.half"} <= every_minute

        def two_periods() -> bool:
            fired = Counter(name for name, _, _ in schedule_runs())
            return all(fired[name] >= 2 for name in every_minute)

        _wait(two_periods, seconds=120, what="two periods of every schedule", clusters=clusters)
        timings["periods"] = time.monotonic() - started

        # -- 2. a cluster killed mid-training ---------------------------------------------------------
        offsets = [len(c.output()) for c in clusters]
        slow_job = manage.post("/api/v1/jobs", {"assistant": slow.slug})["id"]

        def training_under_lease() -> bool:
            job = TrainingJob.objects.get(pk=slow_job)
            assert job.status in (S.PENDING, S.PREPARING, S.TRAINING), (
                f"training ended before the kill: {job}"
            )
            return job.status == S.TRAINING and bool(job.lease_owner)

        _wait(training_under_lease, seconds=60, what="the slow job to train", clusters=clusters)

        def running_job(cluster, offset) -> str | None:
            log = cluster.output()[offset:]
            for name, func in _processed(log):
                if func == "training.tasks.job_advance" and f"({name})" not in log:
                    return name
            return None

        running: list[str | None] = []

        def one_cluster_runs_it() -> bool:
            # A second job_advance of the job (the watchdog's, had it looked while the job was pending)
            # finds the stage claimed and returns at once.
            running[:] = [running_job(c, o) for c, o in zip(clusters, offsets, strict=True)]
            return sum(1 for r in running if r) == 1

        _wait(one_cluster_runs_it, seconds=10, what="one cluster to run the job", clusters=clusters)
        victim, survivor = (clusters[0], clusters[1]) if running[0] else (clusters[1], clusters[0])
        lost_task = running[0] or running[1]
        victim.kill()
        killed_at = timezone.now()
        assert TrainingJob.objects.get(pk=slow_job).status == S.TRAINING  # killed mid-training
        timings["kill"] = time.monotonic() - started

        def slow_job_ended() -> bool:
            approve_waiting([slow_job])
            return TrainingJob.objects.get(pk=slow_job).is_terminal

        # The lease lapses within 30 s; the watchdog looks twice a minute; then training runs again.
        _wait(slow_job_ended, seconds=150, what="the takeover", clusters=[survivor])
        timings["takeover"] = time.monotonic() - started
        job = TrainingJob.objects.get(pk=slow_job)
        assert job.status in (S.DEPLOYED, S.REJECTED), (job.status, job.error)
        _assert_moved_once(slow_job)
        moved_on = JobEvent.objects.get(job_id=slow_job, from_status=S.TRAINING)
        assert moved_on.created_at > killed_at
        # The killed cluster's task never finished; the survivor's watchdog re-enqueued the job, and the
        # survivor ran it.
        assert not Task.objects.filter(name=lost_task).exists()
        survivor_runs = _processed(survivor.output())
        watchdogs = Task.objects.filter(
            func="training.tasks.watchdog", name__in=[n for n, _ in survivor_runs], started__gt=killed_at
        )
        assert any(slow_job in t.result["enqueued"] for t in watchdogs)
        taken_over = {
            name
            for name, args in Task.objects.filter(
                func="training.tasks.job_advance", started__gt=killed_at, success=True
            ).values_list("name", "args")
            if args == (slow_job,)
        }
        assert taken_over & {n for n, _ in survivor_runs}

        # -- 3. schedules: once per period ------------------------------------------------------------
        stack.stop_all(clusters)
        created = Counter(schedule for c in clusters for _, schedule in CREATED.findall(c.output()))
        runs = schedule_runs()
        fired = Counter(name for name, _, _ in runs)
        periods = Counter((name, old) for name, old, _ in runs)
        assert max(periods.values()) == 1, [p for p, n in periods.items() if n > 1]
        assert created == fired  # every task a scheduler created advanced its schedule: one per period
        names = Counter(n for c in clusters for n, _ in _processed(c.output()))
        assert max(names.values()) == 1, names.most_common(3)
    timings["total"] = time.monotonic() - started
    print("scale-out timings (s from start):", {k: round(v) for k, v in timings.items()})
