from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from assistants.models import ApiKey, Assistant
from assistants.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--assistant", help="Bind the key to this assistant slug (default: all assistants)."
        )
        parser.add_argument("--scope", required=True, choices=ApiKey.Scope.values)
        parser.add_argument(
            "--origin", action="append", default=[], help="Allowed browser origin (repeatable)."
        )
        parser.add_argument("--user", help="The key acts as this user: permissions and audit trail.")
        parser.add_argument("--name", default="", help="A label to recognise the key by.")

    def handle(self, *args, assistant=None, scope, origin, user=None, name="", **options):
        bound = None
        if assistant:
            bound = Assistant.objects.filter(slug=assistant).first()
            if bound is None:
                known = ", ".join(Assistant.objects.values_list("slug", flat=True)) or "none"
                raise CommandError(f"No assistant '{assistant}'. Known: {known}.")
        acting = None
        if user:
            acting = get_user_model().objects.filter(username=user).first()
            if acting is None:
                raise CommandError(f"No user '{user}'.")
        try:
            key, raw = api_key_create(
                scope=scope, assistant=bound, name=name, allowed_origins=origin, user=acting
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"Created {key.scope} key {key.prefix}… (store it now: it is not shown again)")
        self.stdout.write(raw)
