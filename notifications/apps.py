from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # The lower apps announce what happened with signals (plain ids, after the commit); we turn them
        # into emails and webhooks. They never import us.
        from notifications import receivers

        receivers.connect()
