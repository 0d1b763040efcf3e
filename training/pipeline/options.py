"""The knobs of one dataset build: the assistant's RetrainPolicy filters, overridable per call."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import is_naive, make_aware

# Fields a RetrainPolicy carries under the same names.
POLICY_FIELDS = (
    "min_rating",
    "require_helpful",
    "min_confidence",
    "include_negative",
    "deduplicate",
    "similarity_threshold",
    "max_examples",
    "validation_share",
    "system_prompt",
    "base_model",
)


@dataclass(frozen=True)
class DatasetOptions:
    """Seed defaults. ``max_examples`` 0 means no limit; ``system_prompt`` "" means the assistant's."""

    min_rating: int = 4
    require_helpful: bool = True
    min_confidence: float = 0.7
    include_negative: bool = False
    deduplicate: bool = True
    similarity_threshold: float = 0.9
    max_examples: int = 10_000
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    system_prompt: str = ""
    validation_share: float = 0.1
    seed: int = 0
    base_model: str = "gpt-4o-mini-2024-07-18"

    @classmethod
    def from_policy(cls, policy: Any | None, **overrides: Any) -> DatasetOptions:
        values: dict[str, Any] = {}
        if policy is not None:
            for name in POLICY_FIELDS:
                if hasattr(policy, name):
                    values[name] = getattr(policy, name)
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValidationError({name: ["Unknown dataset option."] for name in sorted(unknown)})
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("since", "until"):
            values[name] = _as_datetime(name, values.get(name))
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        """Raise ValidationError (field → message) for values no build could honour."""
        errors: dict[str, list[str]] = {}
        if not 1 <= int(self.min_rating) <= 5:
            errors["min_rating"] = ["Use a rating from 1 to 5."]
        if not 0 <= float(self.min_confidence) <= 1:
            errors["min_confidence"] = ["Use a confidence from 0 to 1."]
        if not 0 < float(self.similarity_threshold) <= 1:
            errors["similarity_threshold"] = ["Use a Jaccard similarity in (0, 1], e.g. 0.9."]
        if int(self.max_examples) < 0:
            errors["max_examples"] = ["Use 0 for no limit, or a positive number."]
        if not 0 <= float(self.validation_share) < 1:
            errors["validation_share"] = ["Use a share in [0, 1), e.g. 0.1."]
        if self.since and self.until and self.since >= self.until:
            errors["until"] = ["`until` must be after `since`."]
        if errors:
            raise ValidationError(errors)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, stored on the dataset so a reviewer sees what it was built with."""
        out = dataclasses.asdict(self)
        for name in ("since", "until"):
            out[name] = out[name].isoformat() if out[name] else None
        return out


def _as_datetime(name: str, value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime.combine(value, dt.time.min)
    else:
        parsed = parse_datetime(str(value))
        if parsed is None:
            day = parse_date(str(value))
            if day is None:
                raise ValidationError(
                    {name: ["Use an ISO date or datetime, e.g. 2026-01-31 or 2026-01-31T12:00:00Z."]}
                )
            parsed = dt.datetime.combine(day, dt.time.min)
    return make_aware(parsed) if is_naive(parsed) else parsed
