"""Our signatures are the Standard Webhooks ones: the reference library computes the same bytes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from standardwebhooks import Webhook

from notifications import signing


def test_the_signature_matches_the_reference_implementation():
    secret = signing.secret_generate()
    body = '{"type":"job.failed","data":{"job":{"id":7}}}'
    ours = signing.signature(secret=secret, message_id="msg_1", timestamp=1_700_000_000, body=body)
    theirs = Webhook(secret).sign("msg_1", datetime.fromtimestamp(1_700_000_000, tz=UTC), body)
    assert ours == theirs


def test_the_specs_example_vector():
    # From the Standard Webhooks reference libraries' tests: a known key, id, timestamp and body.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sig = signing.signature(
        secret=secret,
        message_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body='{"test": 2432232314}',
    )
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_secret_is_whsec_and_32_random_bytes():
    first, second = signing.secret_generate(), signing.secret_generate()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def test_the_headers_carry_id_timestamp_and_signature():
    headers = signing.headers(secret=signing.secret_generate(), message_id="msg_2", timestamp=17, body="{}")
    assert headers["webhook-id"] == "msg_2"
    assert headers["webhook-timestamp"] == "17"
    assert headers["webhook-signature"].startswith("v1,")
