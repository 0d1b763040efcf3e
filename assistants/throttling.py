"""Rate counters shared by every web process: the per-key API throttle and the publishable-key limits.

A limit is only as good as its counter. Reading a count, adding one and writing it back loses increments
when two processes do it at once (on Redis ~20 % were lost at 6,000/minute), and a per-process cache
counts each web process alone (two gunicorn workers let twice the rate through). So a counter is either

* ``cache``: ``SET NX`` opens the window with its expiry and ``INCRBY`` adds one, in one atomic Redis
  round trip (the default with ``REDIS_URL``; another cache backend gets ``cache.add`` + ``cache.incr``);
  or
* ``file``: the embedded default (SQLite, no Redis). The counters live in one small file next to the
  database, each in a slot chosen by a hash of its name, updated under ``flock``: a few microseconds per
  request, shared by every process on the machine, and no write on the SQLite database (whose single
  write lock the ingest path needs). Two names that hash to one slot share a count; with 65,536 slots
  that makes a limit slightly stricter, never looser.

A window opens with the first hit of its name and lasts the rate's period (as DRF's throttles do).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework import exceptions

from config import metrics

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

FILE_SLOTS = 65536
_SLOT = struct.Struct("<dq")  # window start (epoch seconds), count


@dataclass(frozen=True)
class Rate:
    limit: int
    seconds: int

    @classmethod
    def parse(cls, rate: str) -> Rate:
        """``"6000/minute"`` → Rate(6000, 60); the settings check the format at start-up."""
        count, period = rate.split("/")
        return cls(int(count), PERIODS[period[0]])


def _store() -> str:
    return getattr(settings, "RATE_COUNTER_STORE", "cache")


def hit(name: str, rate: Rate, *, cost: int = 1, now: float | None = None) -> tuple[int, float]:
    """Add ``cost`` to the counter ``name`` in its current window: ``(count now, window start)``.

    The window's start is exact once the count exceeds ``rate.limit`` (it says when to retry); below the
    limit the cache store does not read it back, to keep a request at one round trip.
    """
    now = time.time() if now is None else now
    if _store() == "file":
        return _file_hit(name, rate, cost, now)
    return _cache_hit(name, rate, cost, now)


def _cache_hit(name: str, rate: Rate, cost: int, now: float) -> tuple[int, float]:
    key = f"rate:{name}"
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        # One round trip: SET NX opens the window with its expiry, INCRBY counts, atomically (MULTI).
        # Django's incr() would cost two more (EXISTS, then INCRBY).
        raw_key = cache.make_and_validate_key(key)
        pipe = cache._cache.get_client(raw_key, write=True).pipeline(transaction=True)
        pipe.set(raw_key, 0, ex=rate.seconds, nx=True)
        pipe.incrby(raw_key, cost)
        opened, count = pipe.execute()
        if opened:
            cache.set(f"{key}:start", now, rate.seconds)
        return count, _window_start(cache, key, count, rate, now)
    for _ in range(3):
        if cache.add(key, 0, rate.seconds):
            cache.set(f"{key}:start", now, rate.seconds)
        try:
            count = cache.incr(key, cost)
        except ValueError:  # the window expired between add and incr: open the next one
            continue
        return count, _window_start(cache, key, count, rate, now)
    raise RuntimeError(f"Could not count {name!r} in the cache.")  # pragma: no cover - cache flapping


def _window_start(cache, key: str, count: int, rate: Rate, now: float) -> float:
    """When the window opened; only read when the limit is exceeded (it is only needed for Retry-After)."""
    if count <= rate.limit:
        return now
    start = cache.get(f"{key}:start")
    return now if start is None else float(start)


# The counter file's descriptor, per process (a descriptor inherited across fork shares its lock state).
_file: dict[tuple[int, str], int] = {}
_file_lock = threading.Lock()  # flock does not exclude threads of one process sharing the descriptor


def _counter_fd() -> int:
    path = str(getattr(settings, "RATE_COUNTER_FILE", Path(settings.VAR_DIR) / "rate-counters"))
    key = (os.getpid(), path)
    fd = _file.get(key)
    if fd is None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        _file[key] = fd
    return fd


def _file_hit(name: str, rate: Rate, cost: int, now: float) -> tuple[int, float]:
    digest = hashlib.blake2b(f"{name}/{rate.seconds}".encode(), digest_size=8).digest()
    offset = (int.from_bytes(digest, "big") % FILE_SLOTS) * _SLOT.size
    with _file_lock:
        fd = _counter_fd()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(fd, _SLOT.size, offset)
            start, count = _SLOT.unpack(raw) if len(raw) == _SLOT.size else (0.0, 0)
            if now - start >= rate.seconds or now < start - 1:  # expired (or the clock went back)
                start, count = now, 0
            count += cost
            os.pwrite(fd, _SLOT.pack(start, count), offset)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    return count, start


def charge(name: str, rate_setting: str, *, cost: int = 1, what: str) -> None:
    """Count ``cost`` against the limit named by ``rate_setting``; 429 (Throttled) once it is exceeded."""
    rate = Rate.parse(getattr(settings, rate_setting))
    count, start = hit(name, rate, cost=cost)
    if count > rate.limit:
        metrics.request_throttled(rate_setting)
        wait = max(1.0, start + rate.seconds - time.time())
        raise exceptions.Throttled(
            wait=wait,
            detail=f"Too much feedback {what}: at most {rate.limit} per {rate.seconds} s "
            f"({rate_setting}). Try again in {wait:.0f} s.",
        )


def publishable_origin_charge(request, key, *, cost: int) -> None:
    """Count ``cost`` feedback items (or questions) against the key's browser origin.

    Requests without an Origin header (curl with a key copied from a page) share one count per key.
    """
    origin = request.META.get("HTTP_ORIGIN") or "-"
    charge(
        f"pub-origin:{key.hashed_key[:24]}:{origin}",
        "PUBLISHABLE_ORIGIN_RATE",
        cost=cost,
        what=f"from origin {origin}" if origin != "-" else "from requests without an Origin",
    )


def publishable_user_charge(key, customers: dict[str, int]) -> None:
    """Count feedback per customer: ``{customer ref: items}``, the ref chosen by the caller."""
    for customer, cost in customers.items():
        charge(
            f"pub-user:{key.hashed_key[:24]}:{customer}",
            "PUBLISHABLE_USER_RATE",
            cost=cost,
            what="for one customer",
        )
