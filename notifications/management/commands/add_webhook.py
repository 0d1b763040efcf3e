"""``manage.py add_webhook URL --events job.awaiting_approval job.failed [--assistant SLUG]``

``--format slack`` for Slack-style incoming webhooks.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from assistants.models import Assistant
from notifications.models import EventType, WebhookEndpoint
from notifications.services import endpoint_create


class Command(BaseCommand):
    help = "Add a webhook endpoint and print its signing secret (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("url")
        parser.add_argument(
            "--events",
            nargs="*",
            default=[],
            metavar="TYPE",
            help=f"Event types (default: all): {', '.join(EventType.values)}.",
        )
        parser.add_argument("--assistant", help="Only this assistant's events (its slug).")
        parser.add_argument("--format", choices=WebhookEndpoint.Format.values, default="standard")
        parser.add_argument("--description", default="")

    def handle(self, *args, url, events, assistant, format, description, **options):
        target = None
        if assistant:
            target = Assistant.objects.filter(slug=assistant).first()
            if target is None:
                raise CommandError(f"No assistant '{assistant}'.")
        # Accept "a,b" as well as "a b".
        events = [e for item in events for e in item.split(",") if e]
        try:
            endpoint, secret = endpoint_create(
                url=url, events=events, assistant=target, format=format, description=description
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
            ) from None
        self.stdout.write(f"Webhook endpoint {endpoint.pk}: {endpoint.url}")
        self.stdout.write(f"Events: {', '.join(endpoint.events) or 'all'}")
        self.stdout.write("Signing secret (shown only now; verify with any Standard Webhooks library):")
        self.stdout.write(secret)
