"""Structured logs: the context every line carries (request id, job, experiment, task) and the formats.

One ``ContextVar`` holds the fields of what this thread is doing now: the web's request id middleware
binds ``request_id``, a django-q2 task binds the request id it was enqueued with plus its own ``task`` and
``task_id`` (``config.queue``), a job's stage binds ``job_id`` and ``assistant_id``, an experiment's look
``experiment_id``. ``ContextFilter`` copies
them onto every record a handler emits, so a line logged deep in a trainer or the provider client names the
job and the request without being passed them.

Two formats (``LOG_FORMAT``): ``text``, one readable line with the fields as ``key=value`` at its end, and
``json``, one JSON object per line (python-json-logger: it serialises the record's extra fields, dates and
exceptions, which a hand-written formatter would have to re-implement).

This module imports only the standard library and python-json-logger: the settings use it before Django's
apps are loaded, and every app may import it (a leaf, like ``config.env``).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

FORMATS = ("text", "json")

# A client's X-Request-ID is echoed in headers and logs: bounded, and only characters that need no
# escaping anywhere (UUIDs, hex trace ids, "req-42", "svc:abc.1"). Anything else gets a fresh id.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("trainloop_log_context", default=_EMPTY)

# Attributes Django's loggers attach for their own handlers (the request object, runserver's timing):
# not fields a log line should carry.
_NOT_FIELDS = frozenset({"request", "server_time"})
_SKIP = frozenset(RESERVED_ATTRS) | _NOT_FIELDS | {"taskName"}


def new_request_id() -> str:
    """32 hex digits. Unique, not secret: the PRNG (reseeded in every forked process) costs a fraction of a
    microsecond, a uuid4's urandom call tens of them on a busy machine, on every request."""
    return f"{random.getrandbits(128):032x}"


def request_id_from(header: str | None) -> str:
    """The client's request id when it is acceptable (``REQUEST_ID_RE``), else a new one."""
    if header and REQUEST_ID_RE.fullmatch(header):
        return header
    return new_request_id()


def context() -> Mapping[str, Any]:
    """The fields bound in this thread now (read-only)."""
    return _context.get()


def request_id() -> str | None:
    return _context.get().get("request_id")


def push(**fields: Any) -> Token:
    """Add ``fields`` (None values are left out) to the context; undo with ``pop(token)``."""
    merged = {**_context.get(), **{name: value for name, value in fields.items() if value is not None}}
    return _context.set(MappingProxyType(merged))


def pop(token: Token) -> None:
    _context.reset(token)


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Every line logged inside the block carries ``fields``."""
    token = push(**fields)
    try:
        yield
    finally:
        pop(token)


def request_started(request_id: str) -> None:
    """A web request begins: its context is its id alone (nothing left from the thread's last request)."""
    _context.set(MappingProxyType({"request_id": request_id}))


def request_ended(**kwargs: Any) -> None:
    """Django's ``request_finished`` (the answer sent, a stream included): nothing is bound any more."""
    _context.set(_EMPTY)


class ContextFilter(logging.Filter):
    """Copy the bound fields onto the record; a field given in ``extra=`` wins over the bound one."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's fields beyond the standard ones: ``extra=`` and the bound context."""
    return {k: v for k, v in record.__dict__.items() if k not in _SKIP and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """``2025-01-02 10:00:00,123 INFO training.services.state Job 7: training -> evaluating job_id=7 …``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = {name: value for name, value in record_fields(record).items() if value is not None}
        if not fields:
            return line
        return line + " " + " ".join(f"{name}={_text(value)}" for name, value in sorted(fields.items()))


def _text(value: Any) -> str:
    text = str(value)
    return repr(text) if not text or any(c.isspace() or c in "\"'=" for c in text) else text


class JsonFormatter(_JsonFormatter):
    """``{"time": "2025-01-02T10:00:00.123+00:00", "level": "INFO", "logger": "…", "message": "…", …}``"""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=sorted(_SKIP),
            timestamp="time",
        )


def logging_config(*, fmt: str, level: str) -> dict[str, Any]:
    """The ``dictConfig`` for Django (``settings.LOGGING``) and for gunicorn's own loggers."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "config.logging.ContextFilter"}},
        "formatters": {
            "text": {"()": "config.logging.TextFormatter"},
            "json": {"()": "config.logging.JsonFormatter"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": fmt, "filters": ["context"]},
        },
        "root": {"handlers": ["console"], "level": level},
    }
