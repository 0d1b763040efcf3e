from django.apps import AppConfig


class AssistantsConfig(AppConfig):
    name = "assistants"
    verbose_name = "Assistants and model versions"

    def ready(self) -> None:
        from assistants import schema  # noqa: F401  (registers the OpenAPI auth extension)
