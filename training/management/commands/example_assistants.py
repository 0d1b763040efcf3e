"""Create the seed's three example assistants with a back-dated training history (training/examples.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from training.examples import EXAMPLES, examples_create
from training.selectors.track_record import TRACK_RECORD_MAX_WEEKS


class Command(BaseCommand):
    help = (
        "Create the seed's example assistants (e-commerce support, documentation Q&A, knowledge base) with "
        "their policies and weeks of training history, for the track record; existing ones are left alone."
    )

    def add_arguments(self, parser):
        parser.add_argument("--weeks", type=int, default=12, help="Weeks of history (default 12).")
        parser.add_argument("--seed", type=int, default=13, help="Random seed of the history.")

    def handle(self, *args, weeks: int = 12, seed: int = 13, **options):
        if not 1 <= weeks <= TRACK_RECORD_MAX_WEEKS:
            raise CommandError(f"--weeks must be from 1 to {TRACK_RECORD_MAX_WEEKS}.")
        written = examples_create(weeks=weeks, seed=seed)
        for example in EXAMPLES:
            counts = written[example.slug]
            if counts is None:
                self.stdout.write(f"{example.slug}: already exists, left as it is.")
            else:
                self.stdout.write(
                    f"{example.slug} ({example.name}): {counts['jobs']} jobs and {counts['feedback']} "
                    f"feedback over {weeks} weeks."
                )
        self.stdout.write("Open /track-record/ to compare them.")
