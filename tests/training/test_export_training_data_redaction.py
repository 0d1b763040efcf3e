"""manage.py export_training_data --redact: the exported file holds placeholders, never the originals."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from feedback.models import Feedback, Interaction
from training.models import RetrainPolicy

pytestmark = pytest.mark.django_db

EMAIL, PHONE, CARD = "dana.fox@example.com", "(415) 555-0132", "5555 5555 5555 4444"


@pytest.fixture
def rows(assistant):
    for n in range(12):
        i = Interaction.objects.create(
            assistant=assistant,
            request_id=f"r{n}",
            messages=[{"role": "user", "content": f"Refund order {n} to card {CARD}? Mail {EMAIL}, {PHONE}"}],
            response=f"Done: card {CARD} refunded, confirmation sent to {EMAIL}.",
        )
        Feedback.objects.create(interaction=i, assistant=assistant, kind="thumbs", helpful=True)


def _export(tmp_path, *args: str) -> tuple[str, str]:
    out = io.StringIO()
    target = tmp_path / "chat.jsonl"
    call_command(
        "export_training_data",
        "--assistant",
        "shop",
        "--out",
        str(target),
        "--no-deduplicate",
        "--validation-share",
        "0",
        *args,
        stdout=out,
        stderr=io.StringIO(),
    )
    return target.read_text(), out.getvalue()


def test_redact_replaces_the_originals_in_the_exported_chat_jsonl(rows, tmp_path):
    text, out = _export(tmp_path, "--redact")
    for original in (EMAIL, PHONE, CARD, "5555555555554444"):
        assert original not in text
    assert text.count("<EMAIL>") == 24 and text.count("<PHONE>") == 12 and text.count("<CARD>") == 24
    assert "Redacted:          24 EMAIL, 12 PHONE, 24 CARD (in 12 examples)" in out


def test_without_redact_the_export_says_it_holds_the_originals(rows, tmp_path):
    text, out = _export(tmp_path)
    assert EMAIL in text
    assert "Redacted:          no" in out


def test_no_redact_is_refused_when_the_policy_requires_redaction(rows, tmp_path, assistant):
    RetrainPolicy.objects.create(assistant=assistant, redact_downloads=True)
    with pytest.raises(CommandError, match="requires redaction"):
        _export(tmp_path, "--no-redact")
