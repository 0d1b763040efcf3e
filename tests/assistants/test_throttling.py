"""Rate counters are atomic and shared by every web process (Redis add+incr, or a locked counter file)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from django.conf import settings

from assistants import throttling

# Two OS processes hit the per-key throttle as fast as they can, at the same moment.
CHILD = textwrap.dedent(
    """
    import sys, time
    import django
    django.setup()
    from assistants.auth import ApiKeyRateThrottle
    from assistants.models import ApiKey

    class Request:
        auth = ApiKey(hashed_key=sys.argv[1])

    start_at, attempts = float(sys.argv[2]), int(sys.argv[3])
    while time.time() < start_at:
        time.sleep(0.001)
    passed = sum(ApiKeyRateThrottle().allow_request(Request, None) for _ in range(attempts))
    print(passed, time.time() - start_at)
    """
)


def test_two_processes_share_one_count_and_let_exactly_the_limit_through():
    limit, attempts = 1500, 1200  # 2,400 tries in all: each process alone stays under the limit
    hashed = uuid.uuid4().hex * 2
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "API_THROTTLE_RATE": f"{limit}/day",
        "SECRET_KEY": settings.SECRET_KEY,
    }
    start_at = f"{time.time() + 3:.3f}"  # both have imported Django by then
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, hashed, start_at, str(attempts)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        results.append(out.split())
    passed = [int(r[0]) for r in results]
    assert sum(passed) == limit, passed
    assert all(p > 0 for p in passed)  # both really took part


@pytest.mark.parametrize("store", ["file", "cache"])
def test_a_window_opens_with_the_first_hit_and_expires_after_its_period(settings, tmp_path, store):
    settings.RATE_COUNTER_STORE = store
    settings.RATE_COUNTER_FILE = tmp_path / "counters"
    rate = throttling.Rate(3, 60)
    name = f"t-{uuid.uuid4().hex}"
    assert throttling.hit(name, rate, now=1000.0) == (1, 1000.0)
    assert throttling.hit(name, rate, cost=2, now=1030.0)[0] == 3
    if store == "file":  # the cache's expiry is the cache's clock, not ours
        assert throttling.hit(name, rate, now=1061.0) == (1, 1061.0)
