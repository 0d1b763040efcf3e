"""Settings for the ingest bench: the product's settings plus a naive baseline endpoint to compare with."""

import os

from config.settings import *  # noqa: F403
from config.settings import DATABASES

ROOT_URLCONF = "bench.baseline_urls"

# To try a database setting before the product adopts it, e.g. BENCH_CONN_MAX_AGE=60 (persistent
# connections); unset, the bench runs exactly the product's configuration.
if os.environ.get("BENCH_CONN_MAX_AGE"):
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ["BENCH_CONN_MAX_AGE"])
