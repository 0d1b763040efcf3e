"""Build a training dataset from feedback and write it to a file, with a progress bar and a summary."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from assistants.models import Assistant
from training.pipeline import FORMATS, dataset_build
from training.pipeline.storage import iter_json_array


class ProgressBar:
    """A one-line bar on stderr, only when stderr is a terminal (logs and pipes stay clean)."""

    def __init__(self, stream, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.enabled = hasattr(stream, "isatty") and stream.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        share = done / total if total else 1.0
        filled = int(share * self.width)
        rate = done / max(now - self.started, 1e-9)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {share:6.1%} {done:,}/{total:,} rows {rate:,.0f}/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class Command(BaseCommand):
    help = "Export training data built from feedback: --assistant SLUG --format FORMAT --out FILE [filters]."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--assistant", required=True, help="Assistant slug.")
        parser.add_argument("--format", default="chat_completion", choices=list(FORMATS))
        parser.add_argument("--out", required=True, help="Output file; the validation split goes next to it.")
        parser.add_argument(
            "--as", dest="as_", choices=["jsonl", "json"], help="Default: from --out's extension."
        )
        parser.add_argument("--min-rating", type=int)
        parser.add_argument("--require-helpful", action=argparse.BooleanOptionalAction, default=None)
        parser.add_argument("--min-confidence", type=float)
        parser.add_argument("--include-negative", action=argparse.BooleanOptionalAction, default=None)
        parser.add_argument("--deduplicate", action=argparse.BooleanOptionalAction, default=None)
        parser.add_argument("--similarity-threshold", type=float)
        parser.add_argument("--max-examples", type=int, help="0: no limit.")
        parser.add_argument("--since", help="ISO date or datetime (feedback created at or after).")
        parser.add_argument("--until", help="ISO date or datetime (feedback created before).")
        parser.add_argument("--system-prompt")
        parser.add_argument("--validation-share", type=float, help="0 puts every example in --out.")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--base-model")
        parser.add_argument(
            "--redact",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Replace personal data with placeholders (on anyway when the policy requires it).",
        )

    def handle(self, *args, **o) -> None:
        assistant = Assistant.objects.filter(slug=o["assistant"]).first()
        if assistant is None:
            known = ", ".join(Assistant.objects.values_list("slug", flat=True)[:20]) or "none yet"
            raise CommandError(f"No assistant '{o['assistant']}' (known: {known}).")
        names = (
            "min_rating",
            "require_helpful",
            "min_confidence",
            "include_negative",
            "deduplicate",
            "similarity_threshold",
            "max_examples",
            "since",
            "until",
            "system_prompt",
            "validation_share",
            "seed",
            "base_model",
            "redact",
        )
        options = {name: o[name] for name in names if o.get(name) is not None}
        out = Path(o["out"])
        # Refuse an unusable --out before building: a build can take minutes and stores a dataset row.
        if not o["out"] or out.is_dir():
            raise CommandError(f"--out must be a file path, not a directory: '{o['out']}'.")
        as_ = o["as_"] or ("json" if out.suffix.lower() == ".json" else "jsonl")
        bar = ProgressBar(self.stderr._out if hasattr(self.stderr, "_out") else sys.stderr)
        try:
            dataset = dataset_build(assistant=assistant, format=o["format"], options=options, progress=bar)
        except ValidationError as exc:
            details = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            raise CommandError(f"Invalid filters: {details}") from None
        finally:
            bar.close()

        try:
            written = [self._write(dataset.train_file, out, as_)]
            if dataset.validation_file:
                written.append(
                    self._write(
                        dataset.validation_file, out.with_name(f"{out.stem}.validation{out.suffix}"), as_
                    )
                )
        except OSError as exc:  # unwritable directory, full disk, a directory in the way…
            raise CommandError(
                f"Dataset {dataset.pk} was built but could not be written to {exc.filename or out}: "
                f"{exc.strerror or exc}. Download it with GET /api/v1/datasets/{dataset.pk}/download."
            ) from None
        s = dataset.stats
        reasons = ", ".join(f"{k} {v:,}" for k, v in s["filteredByReason"].items()) or "none"
        avg_rating = f"{s['avgRating']:.2f}" if s["avgRating"] is not None else "–"
        avg_quality = f"{s['avgQuality']:.1f}/5" if s["avgQuality"] is not None else "–"
        self.stdout.write(
            f"Dataset {dataset.pk} ({dataset.format}) for {assistant.slug}\n"
            f"  Feedback rows:     {s['sourceCount']:,} ({s['candidateCount']:,} interactions)\n"
            f"  After filters:     {s['filteredCount']:,} (filter rate {s['filterRate']:.1%})\n"
            f"  After dedup:       {s['deduplicatedCount']:,} (dedup rate {s['dedupeRate']:.1%})\n"
            f"  Examples:          {s['exampleCount']:,} (train {dataset.train_count:,}, "
            f"validation {dataset.validation_count:,})\n"
            f"  Avg rating:        {avg_rating}   Avg quality: {avg_quality}\n"
            f"  Dropped rows:      {reasons}\n"
            f"  Estimated tokens:  {s['estimatedTokens']:,} ({s['tokenizer']})\n"
            f"  Redacted:          {_redacted(s.get('redaction'))}\n"
            f"  Built in:          {s['seconds']:.2f} s\n"
            f"  Wrote:             {', '.join(written)}"
        )
        if not dataset.is_valid:
            for error in dataset.validation_errors[:20]:
                self.stderr.write(f"  ✗ {error['error']}")
            raise CommandError(f"Dataset {dataset.pk} failed the pre-flight checks; do not upload it.")
        self.stdout.write(self.style.SUCCESS("  Pre-flight checks passed."))

    @staticmethod
    def _write(path: str, target: Path, as_: str) -> str:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as dst:
            if as_ == "json":
                for chunk in iter_json_array(path):
                    dst.write(chunk)
            else:
                with default_storage.open(path, "rb") as src:
                    shutil.copyfileobj(src, dst)
        return str(target)


def _redacted(redaction: dict | None) -> str:
    if not redaction or not redaction.get("enabled"):
        return "no (the files hold the customers' own words)"
    counts = ", ".join(f"{n:,} {t}" for t, n in redaction["counts"].items() if n) or "nothing found"
    return f"{counts} (in {redaction['examples']:,} examples)"
