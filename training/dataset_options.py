"""The knobs of one dataset build: the assistant's RetrainPolicy filters, overridable per call.

It lives beside the models, below the pipeline (``training.pipeline`` re-exports it), because
``RetrainPolicy`` validates its filters with these same rules when it is saved: a policy no build could
honour is refused in the admin, not at 2 a.m. in the worker.
"""

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
    "redaction_patterns",
    "redaction_phone_region",
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
    # Redaction (training/pipeline/redact.py). ``from_policy`` turns it on for datasets bound for a
    # provider (openai backend, ``redact_for_provider``) and for every dataset with ``redact_downloads``.
    redact: bool = False
    redaction_patterns: str = ""
    redaction_phone_region: str = "US"

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
        required = policy_requires_redaction(policy)
        if overrides.get("redact") is False and required:
            raise ValidationError(
                {
                    "redact": [
                        "The assistant's retrain policy requires redaction for this dataset; turn off "
                        "redact_for_provider / redact_downloads in the policy to build it unredacted."
                    ]
                }
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        if required:
            values["redact"] = True
        for name in ("since", "until"):
            values[name] = _as_datetime(name, values.get(name))
        options = cls(**values)
        options.check()
        return options

    def check(self) -> None:
        """Raise ValidationError (field → message) for values no build could honour."""
        # Types first: overrides also come from a job's stored ``dataset_options`` (any JSON), where
        # "no" would be a truthy ``deduplicate`` and 5.5 a ``max_examples`` that breaks the build later,
        # in the worker, instead of being refused when the job is started.
        errors = _type_errors(self)
        if errors:
            raise ValidationError(errors)
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
        errors.update(redaction_errors(self.redaction_patterns, self.redaction_phone_region))
        if errors:
            raise ValidationError(errors)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, stored on the dataset so a reviewer sees what it was built with."""
        out = dataclasses.asdict(self)
        for name in ("since", "until"):
            out[name] = out[name].isoformat() if out[name] else None
        return out


def policy_requires_redaction(policy: Any | None) -> bool:
    """A provider-bound dataset (the policy trains on the openai backend) or any, with redact_downloads."""
    if policy is None:
        return False
    if getattr(policy, "redact_downloads", False):
        return True
    return getattr(policy, "redact_for_provider", False) and getattr(policy, "backend", "") == "openai"


def redaction_errors(patterns: Any, region: Any) -> dict[str, list[str]]:
    import phonenumbers

    from feedback.redaction import PatternError, parse_patterns

    errors: dict[str, list[str]] = {}
    try:
        parse_patterns(patterns)
    except PatternError as exc:
        errors["redaction_patterns"] = [str(exc)]
    if region and str(region).upper() not in phonenumbers.SUPPORTED_REGIONS:
        errors["redaction_phone_region"] = [
            f"'{region}' is not a country code libphonenumber knows; use e.g. US, GB, DE, or leave it empty."
        ]
    return errors


_BOOL_FIELDS = ("require_helpful", "include_negative", "deduplicate", "redact")
_INT_FIELDS = ("min_rating", "max_examples", "seed")
_FLOAT_FIELDS = ("min_confidence", "similarity_threshold", "validation_share")
_STR_FIELDS = ("system_prompt", "base_model", "redaction_patterns", "redaction_phone_region")


def _type_errors(o: DatasetOptions) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for name in _BOOL_FIELDS:
        if not isinstance(getattr(o, name), bool):
            errors[name] = ["Use true or false."]
    for name in _INT_FIELDS:
        value = getattr(o, name)
        if isinstance(value, bool) or not isinstance(value, int):
            errors[name] = ["Use a whole number."]
    for name in _FLOAT_FIELDS:
        value = getattr(o, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
            errors[name] = ["Use a number."]
    for name in _STR_FIELDS:
        if not isinstance(getattr(o, name), str):
            errors[name] = ["Use a string."]
    return errors


def _as_datetime(name: str, value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime.combine(value, dt.time.min)
    else:
        # parse_* return None for a malformed value but raise ValueError for a well-formed impossible
        # one (2026-02-30): both are the user's typo, not a crash.
        try:
            parsed = parse_datetime(str(value))
            day = parse_date(str(value)) if parsed is None else None
        except ValueError:
            parsed = day = None
        if parsed is None:
            if day is None:
                raise ValidationError(
                    {name: ["Use an ISO date or datetime, e.g. 2026-01-31 or 2026-01-31T12:00:00Z."]}
                )
            parsed = dt.datetime.combine(day, dt.time.min)
    parsed = make_aware(parsed) if is_naive(parsed) else parsed
    try:
        # SQLite stores UTC: 0001-01-01T00:00+14:00 is before year 1 there (an OverflowError, a 500).
        parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValidationError(
            {name: ["Out of range: use a datetime between years 1 and 9999 in UTC."]}
        ) from None
    return parsed
