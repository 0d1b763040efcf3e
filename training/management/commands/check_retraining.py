"""Print whether each assistant should be retrained, and why (optionally start the job)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from assistants.models import Assistant
from training import services
from training.policy import should_retrain


class Command(BaseCommand):
    help = (
        "Print the retrain decision and its reasons per assistant; --trigger starts a job when it says yes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--assistant", help="Slug of one assistant (default: all).")
        parser.add_argument(
            "--trigger", action="store_true", help="Start a training job when retraining is due."
        )

    def handle(self, *args, assistant=None, trigger=False, **options):
        if assistant:
            assistants = list(Assistant.objects.filter(slug=assistant))
            if not assistants:
                raise CommandError(f"No assistant with slug '{assistant}'. Known: {self._known()}.")
        else:
            assistants = list(Assistant.objects.all())
            if not assistants:
                self.stdout.write("No assistants yet.")
                return
        for item in assistants:
            decision = should_retrain(item)
            verdict = "retrain" if decision.should_retrain else "no retrain"
            self.stdout.write(
                f"{item.slug}: {verdict}" + (f" (trigger: {decision.trigger})" if decision.trigger else "")
            )
            for reason in decision.reasons:
                self.stdout.write(f"  - {reason}")
            if decision.blocked_by:
                self.stdout.write(f"  blocked: {decision.blocked_by}")
            if not decision.reasons:
                m = decision.metrics
                self.stdout.write(
                    f"  no threshold reached: {m.get('feedback_count', 0)} feedback since the last deployment"
                )
            if trigger and decision.should_retrain:
                try:
                    job = services.trigger_training(
                        assistant=item, trigger=decision.trigger, reasons=decision.reasons
                    )
                except services.JobActive as exc:
                    self.stdout.write(f"  not started: {exc}")
                else:
                    self.stdout.write(self.style.SUCCESS(f"  started training job {job.pk}"))

    def _known(self) -> str:
        return ", ".join(Assistant.objects.values_list("slug", flat=True)) or "none"
