"""``manage.py add_webhook URL --events … [--assistant …]`` prints the secret; bad input is a clear error."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from notifications.models import WebhookEndpoint


def _run(*args) -> str:
    out = StringIO()
    call_command("add_webhook", *args, stdout=out)
    return out.getvalue()


def test_it_adds_an_endpoint_and_prints_its_secret_once(assistant):
    out = _run(
        "https://hooks.example.com/t",
        "--events",
        "job.awaiting_approval",
        "job.failed",
        "--assistant",
        "shop",
    )
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.url, endpoint.assistant, endpoint.format) == (
        "https://hooks.example.com/t",
        assistant,
        "standard",
    )
    assert endpoint.events == ["job.awaiting_approval", "job.failed"]
    assert out.strip().splitlines()[-1] == endpoint.secret
    assert endpoint.secret.startswith("whsec_")


def test_comma_separated_events_and_slack_format(db):
    _run(
        "https://hooks.slack.com/services/T/B/x", "--events", "job.deployed,job.rejected", "--format", "slack"
    )
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["job.deployed", "job.rejected"] and endpoint.format == "slack"
    assert endpoint.assistant is None


def test_no_events_means_all(db):
    assert "Events: all" in _run("https://hooks.example.com/all")


@pytest.mark.parametrize(
    "args, message",
    [
        (["https://x.example.com", "--assistant", "nope"], "No assistant 'nope'."),
        (["https://x.example.com", "--events", "job.exploded"], "Unknown event type(s) job.exploded"),
        (["not-a-url"], "url: Enter a valid URL."),
    ],
)
def test_bad_input_is_a_clear_error(db, args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        _run(*args)
    assert not WebhookEndpoint.objects.exists()
