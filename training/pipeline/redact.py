"""The pipeline's redaction step: every example is redacted before it is written anywhere.

``dataset_build`` calls ``ExampleRedactor.redact`` on each rendered record before its pre-flight check and
before it is spooled, so neither the stored files nor the temporary spool ever hold an original value, and
the token estimate is that of the text actually sent. What is redacted: every string of the record (the
customer's messages, the answer, a correction, RAG metadata such as the question), except our own system
prompt. One ``Redaction`` per example keeps placeholders consistent across its question and answer
(``<EMAIL>`` in both, ``<EMAIL_2>`` for a second address). Detection is ``feedback.redaction``'s.

Counts per type are kept per example in compact arrays (two bytes a type), so the stats can count only the
examples that were written (after de-duplication and ``max_examples``).
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from feedback.redaction import Redaction, Redactor, parse_patterns
from training.dataset_options import DatasetOptions

_MAX_COUNT = 65_535  # array("H")


class ExampleRedactor:
    def __init__(self, options: DatasetOptions) -> None:
        self.redactor = Redactor(
            custom=parse_patterns(options.redaction_patterns),
            phone_region=options.redaction_phone_region or None,
        )
        self.types = self.redactor.types
        self._counts = {t: array("H") for t in self.types}

    def redact(self, record: dict[str, Any], system_prompt: str) -> dict[str, Any]:
        """The record with personal data replaced; the example's counts are appended."""
        redaction = Redaction()
        out = self._walk(record, redaction, system_prompt)
        for t, counts in self._counts.items():
            counts.append(min(redaction.counts.get(t, 0), _MAX_COUNT))
        return out

    def _walk(self, value: Any, redaction: Redaction, system_prompt: str) -> Any:
        if isinstance(value, str):
            return self.redactor.redact(value, redaction)
        if isinstance(value, list):
            return [self._walk(v, redaction, system_prompt) for v in value]
        if isinstance(value, dict):
            if value.get("role") == "system" and system_prompt and value.get("content") == system_prompt:
                return value  # ours, not the customer's
            return {k: self._walk(v, redaction, system_prompt) for k, v in value.items()}
        return value

    def stats(self, keep: np.ndarray) -> dict[str, Any]:
        """Values redacted per type in the kept examples, and how many kept examples had any."""
        counts: dict[str, int] = {}
        any_redacted = np.zeros(len(keep), dtype=bool)
        for t, values in self._counts.items():
            per_example = np.frombuffer(values, dtype=np.uint16) if len(values) else np.zeros(0, np.uint16)
            kept = per_example[keep]
            counts[t] = int(kept.sum(dtype=np.int64))
            any_redacted[keep] |= kept > 0
        return {
            "enabled": True,
            "counts": counts,
            "total": sum(counts.values()),
            "examples": int(any_redacted.sum()),
        }


def redaction_stats_off() -> dict[str, Any]:
    return {"enabled": False, "counts": {}, "total": 0, "examples": 0}
