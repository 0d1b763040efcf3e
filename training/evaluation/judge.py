"""Calls to an LLM judge (and the embeddings endpoint) on the configured OpenAI-compatible provider.

Judge calls are the expensive part of an evaluation, so this module owns three guarantees:

* **Bounded concurrency**: ``run_many`` sends at most ``workers`` requests at once (a thread pool), so a
  200-prompt pairwise evaluation does not open 400 connections or trip the provider's rate limit.
* **Retries**: the SDK retries 408/409/429/5xx and connection errors with backoff (``max_retries``);
  a judge reply that cannot be parsed is asked once more (``parse_retries``) before the item is recorded
  as ungraded with the reason — never silently scored.
* **A budget**: every call first *reserves* its worst-case cost (the prompt's estimated tokens plus
  ``max_tokens`` of output at the configured prices); a call whose reservation would exceed the job's
  budget is not made, and the evaluation stops with ``BudgetExhausted``. The actual usage the provider
  reports replaces the reservation, so the recorded cost is the provider's token count times the prices.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai

from assistants.backends.openai_chat import ProviderNotConfigured, client, describe_api_error

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_WORKERS = 4
DEFAULT_MAX_RETRIES = 3
JUDGE_MAX_TOKENS = 300
JUDGE_TIMEOUT = 60.0


class BudgetExhausted(Exception):
    """The next judge call would take the job over its evaluation budget."""


class JudgeError(Exception):
    """The provider refused or failed a judge call after its retries (the message says why)."""


def provider_configured() -> bool:
    try:
        client()
    except ProviderNotConfigured:
        return False
    return True


def _estimate_tokens(messages: Sequence[dict[str, Any]]) -> int:
    # ~4 characters a token plus the chat format's per-message overhead: only for the budget's reservation.
    return sum(len(str(m.get("content") or "")) // 4 + 4 for m in messages) + 3


@dataclass
class Usage:
    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "embedding_tokens": self.embedding_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


@dataclass
class Judge:
    """One job's judge: its model, prices, budget, and the usage so far (shared by every grader)."""

    model: str
    budget_usd: float
    input_price: float  # USD per 1M prompt tokens
    output_price: float  # USD per 1M completion tokens
    embedding_model: str = ""
    workers: int = DEFAULT_WORKERS
    max_retries: int = DEFAULT_MAX_RETRIES
    parse_retries: int = 1
    usage: Usage = field(default_factory=Usage)
    _reserved: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _client(self) -> openai.OpenAI:
        return client(max_retries=self.max_retries, timeout=JUDGE_TIMEOUT)

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_price + completion_tokens * self.output_price) / 1_000_000

    def _reserve(self, amount: float) -> None:
        with self._lock:
            if self.usage.cost_usd + self._reserved + amount > self.budget_usd:
                raise BudgetExhausted(
                    f"The judge budget of ${self.budget_usd:.2f} is spent (${self.usage.cost_usd:.4f} used "
                    f"in {self.usage.calls} calls); raise the policy's eval_judge_budget_usd or choose a "
                    "cheaper grader."
                )
            self._reserved += amount

    def _settle(self, reserved: float, prompt_tokens: int, completion_tokens: int, *, ok: bool) -> None:
        with self._lock:
            self._reserved -= reserved
            self.usage.calls += 1
            self.usage.failed_calls += 0 if ok else 1
            self.usage.prompt_tokens += prompt_tokens
            self.usage.completion_tokens += completion_tokens
            self.usage.cost_usd += self._cost(prompt_tokens, completion_tokens)

    def complete(self, messages: list[dict[str, Any]]) -> str:
        """One judge reply (JSON mode, temperature 0). Raises BudgetExhausted or JudgeError."""
        reserved = self._cost(_estimate_tokens(messages), JUDGE_MAX_TOKENS)
        self._reserve(reserved)
        try:
            completion = self._client().chat.completions.create(
                model=self.model,
                messages=messages,
                temperature=0,
                max_tokens=JUDGE_MAX_TOKENS,
                response_format={"type": "json_object"},
            )
        except openai.OpenAIError as exc:
            self._settle(reserved, 0, 0, ok=False)
            raise JudgeError(describe_api_error(exc)) from exc
        usage = completion.usage
        self._settle(
            reserved,
            usage.prompt_tokens if usage else _estimate_tokens(messages),
            usage.completion_tokens if usage else JUDGE_MAX_TOKENS,
            ok=True,
        )
        if not completion.choices:
            return ""
        return completion.choices[0].message.content or ""

    def complete_json(
        self, messages: list[dict[str, Any]], parse: Callable[[Any], T]
    ) -> tuple[T | None, str, str]:
        """Ask, parse strictly with ``parse`` (raises ValueError on a bad shape); ask again once when the
        reply is malformed. Returns (value or None, raw reply, error)."""
        raw, error = "", ""
        for _ in range(1 + self.parse_retries):
            raw = self.complete(messages)
            try:
                return parse(json.loads(raw)), raw, ""
            except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
                error = f"unparseable judge output ({exc}): {raw[:200]!r}"
        return None, raw, error

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embeddings for ``texts`` (one request per 256 texts); counted against the budget."""
        if not self.embedding_model:
            raise JudgeError("No embeddings model configured (policy eval_embedding_model).")
        out: list[list[float]] = []
        for lo in range(0, len(texts), 256):
            chunk = texts[lo : lo + 256]
            reserved = self._cost(sum(len(t) // 4 + 1 for t in chunk), 0)
            self._reserve(reserved)
            try:
                response = self._client().embeddings.create(model=self.embedding_model, input=chunk)
            except openai.OpenAIError as exc:
                self._settle(reserved, 0, 0, ok=False)
                raise JudgeError(describe_api_error(exc)) from exc
            tokens = response.usage.prompt_tokens if response.usage else 0
            self._settle(reserved, tokens, 0, ok=True)
            with self._lock:
                self.usage.embedding_tokens += tokens
            out.extend(d.embedding for d in sorted(response.data, key=lambda d: d.index))
        return out

    def run_many(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items`` with at most ``workers`` calls in flight; order preserved.

        The first ``BudgetExhausted`` stops new work (calls already in flight finish) and is raised.
        """
        stop = threading.Event()

        def guarded(item: T) -> R:
            if stop.is_set():
                raise BudgetExhausted("stopped")
            try:
                return fn(item)
            except BudgetExhausted:
                stop.set()
                raise

        if not items:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(items)))) as pool:
            futures = [pool.submit(guarded, item) for item in items]
        results: list[R] = []
        first_budget: BudgetExhausted | None = None
        for future in futures:
            exc = future.exception()
            if isinstance(exc, BudgetExhausted):
                if first_budget is None or str(first_budget) == "stopped":
                    first_budget = exc if str(exc) != "stopped" or first_budget is None else first_budget
                continue
            if exc is not None:
                raise exc
            results.append(future.result())
        if first_budget is not None:
            raise first_budget
        return results
