"""``manage.py check_loop_health``: for cron or a systemd timer, outside the worker.

The worker checks itself every five minutes, but a worker that is down checks nothing: run this from the
operating system to be told (by email and webhook, sent from this process) when it stops.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from notifications.services import loop_health_check


class Command(BaseCommand):
    help = "Check that the worker and the schedules run; notify reviewers when that changes."

    def handle(self, *args, **options):
        problems = loop_health_check(inline=True)
        for problem in problems:
            self.stdout.write(f"PROBLEM: {problem}")
        if not problems:
            self.stdout.write("The worker and the schedules are running.")
        return None
