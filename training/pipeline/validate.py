"""Pre-flight checks, as OpenAI's fine-tuning data validation does them, before anything is uploaded.

Per chat example: every message is an object with a known role (system, user, assistant) and non-empty
string content; there is at least one user and one assistant message; the example ends with an assistant
message (the target); the token count fits the base model's training context. Per dataset: at least each
format's minimum of training examples (``formats.Format.min_examples``: 10 for chat and preference, as
OpenAI requires). Errors name the split, the 0-based example index (the line in that split's file) and
the reason.

**Token count:** exact with ``tiktoken`` (the optional ``tokens`` extra) and the ``o200k_base`` encoding
file shipped next to this module, ``encodings/o200k_base.tiktoken.gz``: o200k_base is the encoding of
the gpt-4o and gpt-4.1 families, which the default base model (gpt-4o-mini) belongs to; for gpt-3.5-turbo
(cl100k_base) it is a close estimate. The file is OpenAI's, byte for byte (its SHA-256 is the one tiktoken
checks, verified on load), gzipped to 1.7 MB from 3.6 MB. It is loaded from there, never downloaded: a
build behind a firewall must not hang on a download with no timeout. Without tiktoken the count is an
estimate, ``ceil(characters / 4) + 4`` per message plus 3 per example — OpenAI's rule of thumb (~4
characters a token) plus its per-message framing overhead. The stats record which one was used.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

KNOWN_ROLES = frozenset({"system", "user", "assistant"})
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


# The o200k_base encoding as tiktoken defines it (tiktoken_ext/openai_public.py): its ranks file, with
# the SHA-256 tiktoken expects of it, its pre-tokeniser pattern and its special tokens.
ENCODING_NAME = "o200k_base"
ENCODING_FILE = Path(__file__).with_name("encodings") / "o200k_base.tiktoken.gz"
ENCODING_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_O200K_SPECIAL_TOKENS = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}


def encoding_ranks() -> dict[bytes, int]:
    """The shipped encoding file's token ranks; ValueError when the file is not the one tiktoken expects."""
    data = gzip.decompress(ENCODING_FILE.read_bytes())
    if hashlib.sha256(data).hexdigest() != ENCODING_SHA256:
        raise ValueError(f"{ENCODING_FILE} is not OpenAI's {ENCODING_NAME} file (SHA-256 mismatch).")
    # The .tiktoken format, as tiktoken.load.load_tiktoken_bpe reads it: "<base64 token> <rank>" per line.
    return {
        base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines())
    }


@lru_cache(maxsize=1)
def encoding():
    """The tiktoken encoding, or None without tiktoken installed (then counts are estimates)."""
    try:
        import tiktoken
    except ImportError:
        return None
    return tiktoken.Encoding(
        name=ENCODING_NAME,
        pat_str=_O200K_PATTERN,
        mergeable_ranks=encoding_ranks(),
        special_tokens=_O200K_SPECIAL_TOKENS,
    )


def tokenizer_name() -> str:
    return ENCODING_NAME if encoding() is not None else "estimate: ceil(chars/4)+4 per message"


def count_tokens(text: str) -> int:
    enc = encoding()
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


def too_few_message(count: int, minimum: int) -> str:
    return (
        f"The training split has {count} example(s); at least {minimum} are needed. "
        "Collect more feedback or relax the filters (min_rating, require_helpful, min_confidence)."
    )
