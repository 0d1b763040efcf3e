"""What a comparison is made of: its candidates (trainer, base model, settings), the online choice and k.

One definition of the rules, used wherever a comparison is named: the API, the dashboard's form, the
retrain policy's setting (validated in the admin form) and the trainers (the local trainer reads its
settings through ``LocalSettings``). It sits below the models, which validate the policy with it, so it
imports none of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_CANDIDATES = 2
MAX_CANDIDATES = 6
MIN_TOP_K = 2
MAX_TOP_K = 4  # the multi-arm experiment has at most 4 variants besides the control
LABEL_MAX = 40
BACKENDS = ("local", "openai")

ONLINE_BEST_AB = "best_ab"
ONLINE_MULTI_ARM = "multi_arm"
ONLINE_CHOICES = (
    (ONLINE_BEST_AB, "the best offline candidate goes to the usual A/B test"),
    (ONLINE_MULTI_ARM, "the top k candidates go to one multi-arm experiment"),
)

# The local trainer's settings (training/trainers/local.py) and their values.
THRESHOLDS = ("tuned", "coverage", "fixed")
FEATURES = ("word+char", "word", "char")  # assistants.backends.local.FEATURES
LOCAL_KEYS = ("threshold", "target_coverage", "threshold_value", "features")
# OpenAI's supervised fine-tuning hyperparameters: each a number in its range, or "auto".
OPENAI_HYPERPARAMETERS: dict[str, tuple[type, float, float]] = {
    "n_epochs": (int, 1, 50),
    "batch_size": (int, 1, 256),
    "learning_rate_multiplier": (float, 0.0, 10.0),  # > 0
}


class ComparisonInvalid(ValueError):
    """A comparison no job could run; the message says what to change, ``field`` where ("candidates",
    "online" or "top_k")."""

    def __init__(self, message: str, *, field: str = "candidates") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LocalSettings:
    """How the local trainer fits a candidate.

    ``threshold``: "tuned" (the similarity threshold that maximises accuracy on the validation split, the
    default), "coverage" (the highest threshold that still answers ``target_coverage`` of the validation
    questions: a chosen hand-off rate) or "fixed" (``threshold_value``). ``features``: which TF-IDF
    features compare questions: word and character n-grams (default), words only, characters only.
    """

    threshold: str = "tuned"
    target_coverage: float | None = None
    threshold_value: float | None = None
    features: str = "word+char"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> LocalSettings:
        raw = dict(raw or {})
        unknown = sorted(set(raw) - set(LOCAL_KEYS))
        if unknown:
            raise ComparisonInvalid(
                f"unknown setting(s) {', '.join(unknown)} for the local trainer; use {', '.join(LOCAL_KEYS)}"
            )
        threshold = raw.get("threshold") or "tuned"
        if threshold not in THRESHOLDS:
            raise ComparisonInvalid(f"threshold must be one of {', '.join(THRESHOLDS)}, not {threshold!r}")
        features = raw.get("features") or "word+char"
        if features not in FEATURES:
            raise ComparisonInvalid(f"features must be one of {', '.join(FEATURES)}, not {features!r}")
        coverage = _unit(raw.get("target_coverage"), "target_coverage")
        value = _unit(raw.get("threshold_value"), "threshold_value")
        if threshold == "coverage" and coverage is None:
            raise ComparisonInvalid('threshold "coverage" needs target_coverage in (0, 1], e.g. 0.9')
        if threshold == "fixed" and value is None:
            raise ComparisonInvalid('threshold "fixed" needs threshold_value in (0, 1], e.g. 0.4')
        if threshold != "coverage" and coverage is not None:
            raise ComparisonInvalid('target_coverage is for threshold "coverage" only')
        if threshold != "fixed" and value is not None:
            raise ComparisonInvalid('threshold_value is for threshold "fixed" only')
        return cls(threshold=threshold, target_coverage=coverage, threshold_value=value, features=features)

    def as_dict(self) -> dict[str, Any]:
        """Only what differs from the defaults, so equal settings compare equal."""
        out: dict[str, Any] = {}
        if self.threshold != "tuned":
            out["threshold"] = self.threshold
        if self.target_coverage is not None:
            out["target_coverage"] = self.target_coverage
        if self.threshold_value is not None:
            out["threshold_value"] = self.threshold_value
        if self.features != "word+char":
            out["features"] = self.features
        return out

    def describe(self) -> str:
        if self.threshold == "coverage":
            threshold = f"threshold for {self.target_coverage:.0%} coverage"
        elif self.threshold == "fixed":
            threshold = f"fixed threshold {self.threshold_value:g}"
        else:
            threshold = "threshold tuned on validation"
        return f"{threshold}, {self.features} features"


def _unit(value: Any, name: str) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ComparisonInvalid(f"{name} must be a number in (0, 1]")
    if not 0 < value <= 1:
        raise ComparisonInvalid(f"{name} must be in (0, 1], not {value:g}")
    return float(value)


def openai_settings_clean(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """OpenAI hyperparameters: ``n_epochs``, ``batch_size``, ``learning_rate_multiplier`` (or "auto")."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(OPENAI_HYPERPARAMETERS))
    if unknown:
        raise ComparisonInvalid(
            f"unknown setting(s) {', '.join(unknown)} for the openai trainer; use "
            f"{', '.join(OPENAI_HYPERPARAMETERS)} (OpenAI's hyperparameters)"
        )
    clean: dict[str, Any] = {}
    for name, (kind, low, high) in OPENAI_HYPERPARAMETERS.items():
        value = raw.get(name)
        if value in (None, "", "auto"):
            continue
        bad = isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        if not bad and kind is int and value != int(value):
            bad = True
        if bad or not (low < value <= high if kind is float else low <= value <= high):
            span = f"in (0, {high:g}]" if kind is float else f"a whole number from {low:g} to {high:g}"
            raise ComparisonInvalid(f'{name} must be "auto" or {span}, not {value!r}')
        clean[name] = int(value) if kind is int else float(value)
    return clean


@dataclass(frozen=True)
class CandidateSpec:
    label: str
    backend: str
    base_model: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "backend": self.backend,
            "base_model": self.base_model,
            "settings": dict(self.settings),
        }

    def trainer(self) -> str:
        """The trainer in words: "local", or "openai" and the model it fine-tunes."""
        return "local" if self.backend == "local" else f"openai {self.base_model}"

    def settings_text(self) -> str:
        """The settings in words ("threshold tuned on validation, word features", "n_epochs 2")."""
        if self.backend == "local":
            return LocalSettings.from_dict(self.settings).describe()
        return ", ".join(f"{k} {v:g}" for k, v in self.settings.items()) or "hyperparameters auto"

    def describe(self) -> str:
        """The trainer and its settings, as the job page and the timeline name them."""
        return f"{self.trainer()}: {self.settings_text()}"


@dataclass(frozen=True)
class ComparisonSpec:
    candidates: tuple[CandidateSpec, ...]
    online: str = ONLINE_BEST_AB
    top_k: int = MIN_TOP_K

    def options(self) -> dict[str, Any]:
        """What the job's options keep of it (the candidates are rows of their own)."""
        return {"online": self.online, "top_k": self.top_k}


def candidate_clean(raw: Any, index: int, *, default_base_model: str = "") -> CandidateSpec:
    """One candidate ``{label, backend, base_model, settings}``; ``index`` (from 1) names it in errors."""
    where = f"Candidate {index}"
    if not isinstance(raw, Mapping):
        raise ComparisonInvalid(f"{where}: give an object with label, backend, base_model and settings.")
    unknown = sorted(set(raw) - {"label", "backend", "base_model", "settings"})
    if unknown:
        raise ComparisonInvalid(
            f"{where}: unknown field(s) {', '.join(unknown)}; use label, backend, base_model, settings."
        )
    label = raw.get("label")
    if not isinstance(label, str) or not label.strip() or len(label.strip()) > LABEL_MAX:
        raise ComparisonInvalid(f'{where}: give a label of 1 to {LABEL_MAX} characters, e.g. "A".')
    label = label.strip()
    where = f"Candidate {index} ({label})"
    backend = raw.get("backend") or "local"
    if backend not in BACKENDS:
        raise ComparisonInvalid(f"{where}: backend must be one of {', '.join(BACKENDS)}, not {backend!r}.")
    base_model = raw.get("base_model") or ""
    if not isinstance(base_model, str) or len(base_model) > 200:
        raise ComparisonInvalid(f"{where}: base_model must be a model name of at most 200 characters.")
    base_model = base_model.strip()
    settings = raw.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ComparisonInvalid(f"{where}: settings must be an object, e.g. {{}}.")
    try:
        if backend == "local":
            if base_model:
                raise ComparisonInvalid(
                    "a local candidate trains on the live version and has no provider base model; leave "
                    "base_model empty"
                )
            settings = LocalSettings.from_dict(settings).as_dict()
        else:
            base_model = base_model or default_base_model
            if not base_model:
                raise ComparisonInvalid("an openai candidate needs a base_model to fine-tune")
            settings = openai_settings_clean(settings)
    except ComparisonInvalid as exc:
        raise ComparisonInvalid(f"{where}: {exc}.") from None
    return CandidateSpec(label=label, backend=backend, base_model=base_model, settings=settings)


def comparison_clean(
    candidates: Any,
    online: Any = ONLINE_BEST_AB,
    top_k: Any = MIN_TOP_K,
    *,
    default_base_model: str = "",
) -> ComparisonSpec:
    """A whole comparison, or ComparisonInvalid saying what is wrong.

    ``default_base_model``: an openai candidate's base model when it names none (the policy's).
    """
    if not isinstance(candidates, Sequence) or isinstance(candidates, str | bytes):
        raise ComparisonInvalid("candidates must be a list of {label, backend, base_model, settings}.")
    if not MIN_CANDIDATES <= len(candidates) <= MAX_CANDIDATES:
        raise ComparisonInvalid(
            f"A comparison has {MIN_CANDIDATES} to {MAX_CANDIDATES} candidates; {len(candidates)} given."
        )
    specs = tuple(
        candidate_clean(raw, i, default_base_model=default_base_model) for i, raw in enumerate(candidates, 1)
    )
    seen: dict[str, CandidateSpec] = {}
    for spec in specs:
        if spec.label.casefold() in seen:
            raise ComparisonInvalid(f"Two candidates are labelled {spec.label!r}: give each its own label.")
        for other in seen.values():
            if (other.backend, other.base_model, other.settings) == (
                spec.backend,
                spec.base_model,
                spec.settings,
            ):
                raise ComparisonInvalid(
                    f"Candidates {other.label!r} and {spec.label!r} are the same trainer with the same "
                    "settings: change one, or drop it."
                )
        seen[spec.label.casefold()] = spec
    if online not in (ONLINE_BEST_AB, ONLINE_MULTI_ARM):
        raise ComparisonInvalid(
            f"online must be {ONLINE_BEST_AB} or {ONLINE_MULTI_ARM}, not {online!r}.", field="online"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not MIN_TOP_K <= top_k <= MAX_TOP_K:
        raise ComparisonInvalid(
            f"top_k must be a whole number from {MIN_TOP_K} to {MAX_TOP_K}, not {top_k!r}.", field="top_k"
        )
    if online == ONLINE_MULTI_ARM and top_k > len(specs):
        raise ComparisonInvalid(
            f"top_k ({top_k}) cannot exceed the number of candidates ({len(specs)}) in a multi-arm "
            "experiment.",
            field="top_k",
        )
    return ComparisonSpec(candidates=specs, online=online, top_k=top_k)
