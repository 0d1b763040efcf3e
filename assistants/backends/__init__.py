"""Model backends that answer: one entry point whatever a ModelVersion runs on.

``answer(version=..., messages=...)`` is what the gateway calls per chat request; ``answer_many`` is what
evaluation calls over a validation split. Dispatch is on ``version.backend``:

* ``local``  -- the embedded retrieval model (``backends.local``), loaded from ``default_storage`` and kept
  in a small in-process LRU keyed by (version id, artifact sha256), because unpickling the vectorisers on
  every request would cost more than answering. When the model abstains the customer gets a polite
  hand-off line instead of a guess (``source="handoff"``).
* ``openai`` -- any OpenAI-compatible provider (``backends.openai_chat``); the assistant's system prompt is
  prepended when the conversation carries none, since fine-tuned models were trained with it.

Every failure is a ``BackendError`` whose message says what to fix.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assistants.backends.errors import BackendError

if TYPE_CHECKING:
    from assistants.backends.local import LocalRetrievalModel
    from assistants.models import ModelVersion

__all__ = [
    "HANDOFF_TEXT",
    "AnswerResult",
    "AnswerStream",
    "BackendError",
    "answer",
    "answer_many",
    "answer_stream",
    "clear_model_cache",
    "estimated_usage",
    "last_user_message",
    "load_local_model",
]

HANDOFF_TEXT = "I'm not sure — let me connect you with a human agent."
MODEL_CACHE_SIZE = 8  # artifacts are a few MB; eight versions covers live + A/B arms of a few assistants
OPENAI_EVAL_WORKERS = 4  # bounded so an evaluation run does not trip the provider's rate limit


@dataclass(frozen=True)
class AnswerResult:
    """One reply.

    source -- "model" / "fallback" (local tiers), "handoff" (local model abstained; ``text`` is the
              hand-off line), "openai" (provider answer), "error" (answer_many only; see ``error``).
    usage  -- token counts ``{prompt_tokens, completion_tokens, total_tokens}``; for the local model they
              are whitespace-token estimates (it has no tokenizer), for providers what they reported.
    score  -- the local model's similarity of the best match (None for providers).
    """

    text: str
    latency_ms: int
    source: str
    usage: dict[str, int] = field(default_factory=dict)
    score: float | None = None
    error: str = ""

    @property
    def abstained(self) -> bool:
        return self.source == "handoff"


def last_user_message(messages: Sequence[dict[str, Any]]) -> str:
    """The customer's latest message (content may be a string or a list of text parts)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def estimated_usage(messages: Sequence[dict[str, Any]], reply: str) -> dict[str, int]:
    # Same rough accounting as OpenAI's chat overhead (+4 per message, +3 per reply), on whitespace tokens.
    prompt = sum(len(_text(m.get("content")).split()) + 4 for m in messages if isinstance(m, dict)) + 3
    completion = len(reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


# -- local model cache -------------------------------------------------------------------------------

_cache: OrderedDict[tuple[int, str], LocalRetrievalModel] = OrderedDict()
_cache_lock = threading.Lock()


def clear_model_cache() -> None:
    with _cache_lock:
        _cache.clear()


def load_local_model(version: ModelVersion) -> LocalRetrievalModel:
    """The version's local model, from the LRU cache or ``default_storage`` (checksum verified)."""
    from django.core.files.storage import default_storage

    from assistants.backends.local import LocalRetrievalModel

    if not version.artifact:
        raise BackendError(
            f"Model version '{version.name}' has no artifact; train it with the local trainer."
        )
    key = (version.pk, version.artifact_sha256 or version.artifact)
    with _cache_lock:
        model = _cache.get(key)
        if model is not None:
            _cache.move_to_end(key)
            return model
    # Load outside the lock: two first requests may both load, which is cheaper than serialising all
    # requests behind one slow read.
    try:
        with default_storage.open(version.artifact, "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, OSError) as exc:
        raise BackendError(
            f"The artifact of model version '{version.name}' is missing from storage ({version.artifact}); "
            "retrain the version or restore MEDIA_ROOT."
        ) from exc
    try:
        model = LocalRetrievalModel.from_bytes(data, expected_sha256=version.artifact_sha256 or None)
    except ValueError as exc:
        raise BackendError(f"The artifact of model version '{version.name}' is unusable: {exc}.") from exc
    with _cache_lock:
        _cache[key] = model
        _cache.move_to_end(key)
        while len(_cache) > MODEL_CACHE_SIZE:
            _cache.popitem(last=False)
    return model


# -- answering ---------------------------------------------------------------------------------------


def answer(
    *, version: ModelVersion, messages: list[dict[str, Any]], fallback_text: str = HANDOFF_TEXT
) -> AnswerResult:
    """Answer one conversation with ``version``; raises ``BackendError`` when the backend fails."""
    if version.backend == "local":
        return _answer_local_many(version, [messages], fallback_text)[0]
    if version.backend == "openai":
        return _answer_openai(version, messages, _system_prompt(version))
    raise BackendError(f"Model version '{version.name}' has unknown backend '{version.backend}'.")


def answer_many(
    *,
    version: ModelVersion,
    conversations: Sequence[list[dict[str, Any]]],
    fallback_text: str = HANDOFF_TEXT,
    max_workers: int = OPENAI_EVAL_WORKERS,
) -> list[AnswerResult]:
    """Answer many conversations (evaluation). Order is preserved.

    Local: one vectorised pass (latency is the batch time divided evenly). OpenAI: a bounded thread pool;
    one failed item becomes ``source="error"`` with its message instead of aborting the run, but a missing
    key or an unknown backend raises ``BackendError`` straight away.
    """
    if not conversations:
        return []
    if version.backend == "local":
        return _answer_local_many(version, list(conversations), fallback_text)
    if version.backend != "openai":
        raise BackendError(f"Model version '{version.name}' has unknown backend '{version.backend}'.")
    from assistants.backends import openai_chat

    openai_chat.client()  # fail fast (and once) when no key is configured
    # Read the database here, not in the pool: worker threads would each open (and leak) a connection.
    system_prompt = _system_prompt(version)

    def one(messages: list[dict[str, Any]]) -> AnswerResult:
        started = time.perf_counter()
        try:
            return _answer_openai(version, messages, system_prompt)
        except BackendError as exc:
            return AnswerResult("", _elapsed_ms(started), "error", error=str(exc))

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(conversations)))) as pool:
        return list(pool.map(one, conversations))


class AnswerStream:
    """A reply that arrives in pieces: iterate for the text deltas (``BackendError`` if it breaks off).

    Once the iteration has ended, ``finish_reason`` and ``usage`` say how: the provider's own figures for
    the openai backend when it reported them (else the same estimate ``answer`` uses), the estimate for
    the local model.
    """

    def __init__(self, pieces: Iterator[Any], *, source: str, messages: Sequence[dict[str, Any]]) -> None:
        self.source = source
        self.finish_reason = "stop"
        self.usage: dict[str, int] = {}
        self._pieces = pieces
        self._messages = messages
        self._text: list[str] = []

    def __iter__(self) -> Iterator[str]:
        from assistants.backends.openai_chat import StreamEnd

        for piece in self._pieces:
            if isinstance(piece, StreamEnd):
                self.finish_reason, self.usage = piece.finish_reason, dict(piece.usage)
                continue
            self._text.append(piece)
            yield piece
        if not self.usage:
            self.usage = estimated_usage(self._messages, "".join(self._text))

    def close(self) -> None:
        """Stop early (the customer hung up): releases the provider's connection."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()


_WORD = re.compile(r"\s*\S+\s*$|\s*\S+")


def text_chunks(text: str) -> list[str]:
    """A finished answer cut where a token stream would cut it: one word (with its leading space) each."""
    return _WORD.findall(text) or ([text] if text else [])


def answer_stream(
    *, version: ModelVersion, messages: list[dict[str, Any]], fallback_text: str = HANDOFF_TEXT
) -> AnswerStream:
    """Answer one conversation as a stream; raises ``BackendError`` if the backend refuses to start.

    The local model answers in one vectorised look-up (about a millisecond), so its stream is that
    answer in word-sized chunks; an OpenAI-compatible provider's stream is relayed as it arrives.
    """
    if version.backend == "local":
        result = _answer_local_many(version, [messages], fallback_text)[0]
        return AnswerStream(iter(text_chunks(result.text)), source=result.source, messages=messages)
    if version.backend == "openai":
        from assistants.backends import openai_chat

        prompt = _with_system_prompt(version, messages, _system_prompt(version))
        return AnswerStream(
            openai_chat.chat_stream(version.provider_model, prompt), source="openai", messages=messages
        )
    raise BackendError(f"Model version '{version.name}' has unknown backend '{version.backend}'.")


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))


def _answer_local_many(
    version: ModelVersion, conversations: list[list[dict[str, Any]]], fallback_text: str
) -> list[AnswerResult]:
    started = time.perf_counter()
    model = load_local_model(version)
    replies = model.answer_many([last_user_message(m) for m in conversations])
    each_ms = round(_elapsed_ms(started) / len(conversations))
    out = []
    for messages, reply in zip(conversations, replies, strict=True):
        if reply.text is None:
            text, source = fallback_text, "handoff"
        else:
            text, source = reply.text, reply.source
        out.append(AnswerResult(text, each_ms, source, estimated_usage(messages, text), score=reply.score))
    return out


def _system_prompt(version: ModelVersion) -> str:
    return version.assistant.system_prompt if version.assistant_id else ""


def _answer_openai(version: ModelVersion, messages: list[dict[str, Any]], system_prompt: str) -> AnswerResult:
    """One provider call. No database access here: answer_many runs this in worker threads."""
    from assistants.backends import openai_chat

    prompt = _with_system_prompt(version, messages, system_prompt)
    started = time.perf_counter()
    text, usage = openai_chat.chat(version.provider_model, prompt)
    return AnswerResult(text, _elapsed_ms(started), "openai", usage)


def _with_system_prompt(
    version: ModelVersion, messages: list[dict[str, Any]], system_prompt: str
) -> list[dict[str, Any]]:
    """The provider's prompt: fine-tuned models were trained with the system prompt, so add it if absent."""
    if not version.provider_model:
        raise BackendError(f"Model version '{version.name}' has no provider model id.")
    prompt = list(messages)
    has_system = any(isinstance(m, dict) and m.get("role") in ("system", "developer") for m in prompt)
    if system_prompt and not has_system:
        prompt.insert(0, {"role": "system", "content": system_prompt})
    return prompt
