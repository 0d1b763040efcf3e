"""gunicorn's settings file (``gunicorn -c python:config.gunicorn config.wsgi``; ``manage.py start`` uses it).

* Logs: gunicorn's own lines (workers booting, timeouts) in the same format as Django's (``LOG_FORMAT``,
  ``config.logging``). Its access log is off: ``config.middleware.RequestIdMiddleware`` logs one line per
  request with the request id, view and status, which the access log cannot carry.
* Metrics in multi-process mode (``PROMETHEUS_MULTIPROC_DIR``, see ``config.metrics``): when a worker
  exits, its live gauges are dropped (``mark_process_dead``); its counters stay in the directory so totals
  never go backwards. The directory must be empty when the server starts: ``start`` empties it.

Only the standard library, prometheus-client and ``config.logging`` are imported: gunicorn's master reads
this file before (and without) loading Django.
"""

from __future__ import annotations

import os

from config import logging as log_formats

_format = os.environ.get("LOG_FORMAT", "text").strip().lower()
_level = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
# An invalid value is refused with a message by the settings when the workers load Django.
_format = _format if _format in log_formats.FORMATS else "text"
_level = _level if _level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO"

logconfig_dict = log_formats.logging_config(fmt=_format, level=_level)
logconfig_dict["loggers"] = {
    "gunicorn.error": {"level": _level, "handlers": ["console"], "propagate": False},
    "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
}


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
