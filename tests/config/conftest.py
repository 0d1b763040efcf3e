"""Helpers for the operations tests: reading a Prometheus scrape, the log lines a handler writes."""

from __future__ import annotations

import io
import json
import logging
import os
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from config.logging import JsonFormatter

TOKEN = "metrics-token-for-the-tests-0123456789"

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    """A scrape's samples by (name, labels); parsing it is itself the check that the format is valid."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metrics_token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOW = []
    return TOKEN


@pytest.fixture
def scrape(client, metrics_token, db):
    """``scrape()``: GET /metrics with the token, parsed."""

    def read() -> Samples:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
        assert response.status_code == 200, response.content[:300]
        return parse(response.content.decode())

    return read


@pytest.fixture
def log_lines():
    """The lines the configured console handler writes, as JSON objects: ``log_lines()``.

    The handler is the one settings.LOGGING made (with the context filter); only its stream, and its
    format (to the JSON one, so the lines can be read back exactly), are changed for the test.
    """
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    stream = io.StringIO()
    old_stream = handler.setStream(stream)
    old_formatter = handler.formatter
    handler.setFormatter(JsonFormatter())
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    finally:
        handler.setStream(old_stream)
        handler.setFormatter(old_formatter)


def database_url() -> str:
    """The test database, for a server or worker started as another process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    parts = urlsplit(os.environ.get("DATABASE_URL", ""))
    return urlunsplit(parts._replace(path="/" + db["NAME"]))
