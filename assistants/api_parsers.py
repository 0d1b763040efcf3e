"""The JSON parser of every API endpoint (REST API and the OpenAI-compatible gateway).

DRF's ``JSONParser`` reads the whole body whatever its size, lets ``json`` recurse until Python's stack
gives out (``[`` x 100,000 was a ``RecursionError``, a 500), and accepts any string JSON can escape --
``\\u0000``, which PostgreSQL text refuses, and lone surrogates like ``\\ud800``, which no database can
encode. Serializer ``CharField``s refuse those, but free-form JSON (``metadata``, ``dataset_options``)
reached the database unchecked. This parser refuses all of it, for every field of every endpoint, once.
"""

from __future__ import annotations

import codecs
import json

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils import json as drf_json

# No request of ours nests deeper than ~5 levels (a batch item's fields, a message's content parts);
# 64 leaves room for any client metadata while staying far below Python's recursion limit.
MAX_JSON_DEPTH = 64


class BodyRefused(exceptions.ParseError):
    """Well-formed JSON we will not take; the message says why (the error handler prints it as is)."""


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


def body_limit() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def too_large_message(limit: int) -> str:
    return (
        f"The request body is larger than the limit of {limit:,} bytes "
        f"(DATA_UPLOAD_MAX_MEMORY_SIZE): split it, e.g. into batches of fewer items."
    )


def unstorable(text: str) -> bool:
    """NUL (PostgreSQL text refuses it) or an unpaired surrogate (UTF-8 cannot encode it)."""
    if "\x00" in text:
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


UNSTORABLE_MESSAGE = (
    "This text contains a NUL character (\\u0000) or an unpaired surrogate (\\ud800-\\udfff): "
    "remove it and retry."
)


def _path(parts: tuple) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


def check_json_value(data, *, check_text: bool = True, check_depth: bool = True) -> None:
    """Refuse a parsed JSON value nested deeper than MAX_JSON_DEPTH or holding unstorable text.

    Iterative (an explicit stack), so the check itself cannot run out of stack. Every unstorable
    string is named by its path (``items[3].comment``), so one answer lists everything to fix.
    """
    bad: list[str] = []
    stack: list[tuple[object, int, tuple]] = [(data, 1, ())]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, dict | list):
            if check_depth and depth > MAX_JSON_DEPTH:
                raise BodyRefused(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
            pairs = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in pairs:
                if check_text and isinstance(key, str) and unstorable(key):
                    bad.append(_path((*where, key)))
                elif isinstance(item, dict | list) or (check_text and isinstance(item, str)):
                    stack.append((item, depth + 1, (*where, key)))
        elif isinstance(value, str) and unstorable(value):
            bad.append(_path(where))
    if bad:
        raise exceptions.ValidationError({path: [UNSTORABLE_MESSAGE] for path in sorted(bad)})


class SafeJSONParser(JSONParser):
    """DRF's JSON parser with a size limit (413), a depth limit and a NUL/surrogate check (400)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = get_encoding(parser_context)
        # The body's size was checked when DRF read it (Django's RequestDataTooBig, answered 413 by
        # assistants.api_errors).
        raw = stream.read() if stream is not None else b""
        try:
            text = codecs.decode(raw, encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        try:
            data = drf_json.loads(text, parse_constant=drf_json.strict_constant if self.strict else None)
        except RecursionError:
            raise BodyRefused(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.") from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        # Cheap guards keep the ingest path fast (a full walk over a parsed 100-item batch cost twice
        # the parse); the walk that names each bad string only runs when something is wrong.
        if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _deeper_than(data, MAX_JSON_DEPTH):
            raise BodyRefused(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
        # Strict JSON refuses raw control characters and UTF-8 decoding refuses encoded surrogates, so
        # NUL or a lone surrogate can only arrive as a \u escape. Re-encoding (C speed) finds both: a lone
        # surrogate cannot be encoded, and NUL comes back as \u0000 (as may a literal backslash-u0000,
        # which only costs a walk that finds nothing).
        if "\\u" in text:
            again = json.dumps(data, ensure_ascii=False)
            try:
                again.encode()
                suspect = "\\u0000" in again
            except UnicodeEncodeError:
                suspect = True
            if suspect:
                check_json_value(data, check_depth=False)
        return data


def _deeper_than(data, limit: int) -> bool:
    """Whether arrays and objects nest deeper than ``limit``: level by level, containers only."""
    level, depth = [data], 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below = []
        for value in level:
            children = value.values() if type(value) is dict else value
            below.extend(child for child in children if type(child) is dict or type(child) is list)
        level = below
    return False
