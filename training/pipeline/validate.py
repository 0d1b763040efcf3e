"""Pre-flight checks, as OpenAI's fine-tuning data validation does them, before anything is uploaded.

Per chat example: every message is an object with a known role (system, user, assistant) and non-empty
string content; there is at least one user and one assistant message; the example ends with an assistant
message (the target); the estimated token count fits the base model's training context. Per dataset: at
least 10 training examples (chat and preference). Errors name the split, the 0-based example index (the
line in that split's file) and the reason.

**Token estimate:** ``tiktoken``'s ``o200k_base`` when its encoding file is available offline (cached in
``TIKTOKEN_CACHE_DIR``); otherwise ``ceil(characters / 4) + 4`` per message plus 3 per example — OpenAI's
rule of thumb (~4 characters a token) plus its per-message framing overhead. The stats record which one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

KNOWN_ROLES = frozenset({"system", "user", "assistant"})
MIN_TRAINING_EXAMPLES = 10
# Training context per base model family (OpenAI's documented per-example limits); longest prefix wins.
CONTEXT_LIMITS = {
    "gpt-4.1": 65_536,
    "gpt-4o-mini": 65_536,
    "gpt-4o": 65_536,
    "gpt-3.5-turbo": 16_385,
}
DEFAULT_CONTEXT_LIMIT = 16_385  # unknown models: the smallest limit, so nothing passes that might not fit


def context_limit(base_model: str) -> int:
    for prefix in sorted(CONTEXT_LIMITS, key=len, reverse=True):
        if (base_model or "").startswith(prefix):
            return CONTEXT_LIMITS[prefix]
    return DEFAULT_CONTEXT_LIMIT


_O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


def _encoding_cached() -> bool:
    """Whether tiktoken would find o200k_base in its cache (its own lookup rule, tiktoken/load.py).

    tiktoken downloads a missing file, with no timeout: behind a firewall that drops packets a build (and
    the job waiting on it) would hang instead of falling back to the estimate.
    """
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:  # tiktoken's "no cache": every use downloads
        return False
    return os.path.isfile(os.path.join(cache_dir, hashlib.sha1(_O200K_URL.encode()).hexdigest()))


@lru_cache(maxsize=1)
def _encoding():
    if not _encoding_cached():
        return None
    try:
        import tiktoken

        return tiktoken.get_encoding("o200k_base")
    except Exception:  # not installed, or an unreadable cached file: fall back to the documented estimate
        return None


def tokenizer_name() -> str:
    return "o200k_base" if _encoding() is not None else "estimate: ceil(chars/4)+4 per message"


def count_tokens(text: str) -> int:
    enc = _encoding()
    if enc is not None:
        return len(enc.encode(text, disallowed_special=()))
    return math.ceil(len(text) / 4)


def _check_messages(messages: Any, *, need_final_assistant: bool) -> tuple[str | None, int]:
    if not isinstance(messages, list) or not messages:
        return "has no messages", 0
    tokens = 3
    roles = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"message {i} is not an object with role and content", tokens
        role = m.get("role")
        if role not in KNOWN_ROLES:
            return f"message {i} has unknown role {role!r} (use system, user or assistant)", tokens
        content = m.get("content")
        if not isinstance(content, str) or not content.strip():
            return f"message {i} ({role}) has empty content", tokens
        roles.append(role)
        tokens += count_tokens(content) + 4
    if "user" not in roles:
        return "has no user message", tokens
    if need_final_assistant and roles[-1] != "assistant":
        return f"ends with a {roles[-1]} message; the last message must be the assistant's answer", tokens
    return None, tokens


def _too_long(tokens: int, limit: int) -> str | None:
    if tokens > limit:
        return f"is about {tokens} tokens, over the base model's {limit}-token training context"
    return None


def check_chat(record: dict[str, Any], limit: int) -> tuple[str | None, int]:
    error, tokens = _check_messages(record.get("messages"), need_final_assistant=True)
    return error or _too_long(tokens, limit), tokens


def check_preference(record: dict[str, Any], limit: int) -> tuple[str | None, int]:
    error, tokens = _check_messages((record.get("input") or {}).get("messages"), need_final_assistant=False)
    if error:
        return f"input {error}", tokens
    for key in ("preferred_output", "non_preferred_output"):
        out = record.get(key)
        if not (
            isinstance(out, list)
            and len(out) == 1
            and isinstance(out[0], dict)
            and out[0].get("role") == "assistant"
            and str(out[0].get("content") or "").strip()
        ):
            return f"{key} must be one non-empty assistant message", tokens
        tokens += count_tokens(out[0]["content"]) + 4
    return _too_long(tokens, limit), tokens


def check_rag(record: dict[str, Any], limit: int) -> tuple[str | None, int]:
    content = record.get("content")
    if not isinstance(content, str) or not content.strip():
        return "has empty content", 0
    return None, count_tokens(content)


def check_classification(record: dict[str, Any], limit: int) -> tuple[str | None, int]:
    if not str(record.get("text") or "").strip():
        return "has empty text", 0
    if not record.get("label"):
        return "has no label", 0
    return None, count_tokens(record["text"])


CHECKS = {
    "chat_completion": check_chat,
    "preference": check_preference,
    "rag_documents": check_rag,
    "classification": check_classification,
}


def preflight_lines(
    lines: Iterable[str | bytes],
    *,
    format: str = "chat_completion",
    base_model: str = "",
    split: str = "train",
    min_examples: int | None = None,
) -> list[dict[str, Any]]:
    """Check a JSONL file's lines; the errors in the dataset's ``validation_errors`` shape."""
    check = CHECKS[format]
    limit = context_limit(base_model)
    errors: list[dict[str, Any]] = []
    count = 0
    for index, line in enumerate(lines):
        count += 1
        try:
            record = json.loads(line)
        except ValueError as exc:
            errors.append(
                {"example": index, "split": split, "error": f"Example {index} is not valid JSON: {exc}."}
            )
            continue
        error, _ = check(record if isinstance(record, dict) else {}, limit)
        if error:
            errors.append({"example": index, "split": split, "error": f"Example {index} {error}."})
    if min_examples is None:
        min_examples = MIN_TRAINING_EXAMPLES if format in ("chat_completion", "preference") else 1
    if split == "train" and count < min_examples:
        errors.append({"example": None, "split": split, "error": too_few_message(count, min_examples)})
    return errors


def too_few_message(count: int, minimum: int) -> str:
    return (
        f"The training split has {count} example(s); at least {minimum} are needed. "
        "Collect more feedback or relax the filters (min_rating, require_helpful, min_confidence)."
    )
