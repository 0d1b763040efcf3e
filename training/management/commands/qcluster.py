"""``manage.py qcluster``: django-q2's cluster, stopped within seconds on SIGTERM or SIGINT.

Why not django-q2's own command: its ``Cluster.sig_handler`` calls ``stop_event.set()`` inside the signal
handler. systemd stops a service by sending SIGTERM to every process of it (and a terminal's Ctrl-C goes to
the whole process group); the sentinel process has SIGTERM at its default action, so it dies at once,
usually while it sleeps in ``stop_event.wait()``. ``multiprocessing``'s ``Condition.notify_all()`` (inside
``set()``) then waits for that sleeper to acknowledge the wake-up, which a dead process never does: the
main process hangs in a futex beside its defunct sentinel until systemd's SIGKILL. (django-q2 issue #346
is another deadlock of the same handler.) And when only the main process gets SIGTERM, the sentinel's
graceful stop waits for every running task, which may be hours of training.

This command runs the same ``Cluster`` but handles the signals itself, outside signal context:

1. The handler only records the signal; the main loop notices it within 0.2 s.
2. If the sentinel is alive, it is asked to stop gracefully (``stop_event.set()`` from a helper thread, so
   a sentinel that dies meanwhile cannot hang us): it stops fetching tasks, lets idle workers exit and
   drains results.
3. Whatever is still running after ``Q_STOP_GRACE`` seconds (default 5, so that the whole stop fits in 10)
   gets SIGTERM, then SIGKILL a second later. An interrupted task is not lost: a training stage's lease
   stops being renewed and the watchdog hands the job to another worker (training/services/state.py), and the
   broker delivers an unacknowledged task again after ``retry``.
4. The main process is a *child subreaper* (Linux ``prctl``), so workers orphaned by a dead sentinel are
   re-parented to it and are stopped and reaped too: no process or zombie is left behind.

It exits 0 after a requested stop, 1 when the cluster died on its own.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time

from django.conf import settings
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQClusterCommand

logger = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
POLL = 0.2
KILL_AFTER = 0.5  # seconds between SIGTERM and SIGKILL for processes that outlive the grace period


def _become_subreaper() -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux: orphans go to init, which reaps them
        return False


def _children(pid: int) -> list[int]:
    """Live (not zombie) child processes of ``pid``, from /proc."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
        state, ppid = stat[stat.rindex(b")") + 2 :].split()[:2]
        if int(ppid) == pid and state != b"Z":
            found.append(int(entry))
    return found


def _reap() -> None:
    """Collect every exited child (the sentinel, and orphans re-parented to us) so none stays a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Command(DjangoQClusterCommand):
    help = "Start the django-q2 cluster; SIGTERM or SIGINT stops it (and all its processes) within seconds."

    def handle(self, *args, **options):
        settings.SECRET_KEY  # noqa: B018 - as django-q2's command: signing needs it, fail early
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        grace = float(getattr(settings, "Q_STOP_GRACE", 5))
        _become_subreaper()

        requested: list[int] = []
        cluster = Cluster()  # installs django-q2's handlers; replaced right away

        def on_signal(signum, frame):
            requested.append(signum)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            cluster.start()
        except RuntimeError:
            if not requested:  # the sentinel failed to start by itself
                raise
        if options.get("run_once"):
            requested.append(0)
        while not requested and cluster.sentinel.is_alive():
            time.sleep(POLL)
        if requested:
            name = signal.Signals(requested[0]).name if requested[0] else "--run-once"
            logger.info("Q Cluster %s stopping (%s).", cluster.name, name)
        else:
            logger.error(
                "Q Cluster %s: the sentinel died (exit code %s).", cluster.name, cluster.sentinel.exitcode
            )
        self._stop(cluster, grace=grace)
        logger.info("Q Cluster %s has stopped.", cluster.name)
        if not requested:
            raise SystemExit(1)

    @staticmethod
    def _stop(cluster: Cluster, *, grace: float) -> None:
        deadline = time.monotonic() + grace
        sentinel = cluster.sentinel
        if sentinel.is_alive():
            # Graceful: the sentinel stops its pusher, sends its workers a poison pill and drains results.
            threading.Thread(target=cluster.stop_event.set, daemon=True).start()
            sentinel.join(timeout=max(0.0, deadline - time.monotonic()))
        # Then anything left: the sentinel if it did not finish, workers busy with a task, orphans.
        me = os.getpid()
        end = time.monotonic() + 2 * KILL_AFTER
        termed_at: dict[int, float] = {}
        while True:
            sentinel.is_alive()  # lets multiprocessing collect its own child first
            _reap()
            left = _children(me)
            now = time.monotonic()
            if not left or now > end:
                break
            for pid in left:
                if pid not in termed_at:
                    sig = signal.SIGTERM
                    termed_at[pid] = now
                elif now - termed_at[pid] >= KILL_AFTER:
                    sig = signal.SIGKILL
                else:
                    continue
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        sentinel.join(timeout=0.5)
        _reap()
