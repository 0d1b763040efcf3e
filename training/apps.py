from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training loop"

    def ready(self) -> None:
        # The A/B app tells us when an experiment ends, so a job in `testing` moves on at once; the
        # watchdog also polls experiments, so nothing depends on this signal alone.
        from abtesting.signals import experiment_concluded

        experiment_concluded.connect(_on_experiment_concluded, dispatch_uid="training.experiment_concluded")

        from training import checks  # noqa: F401  (registers the system checks)


def _on_experiment_concluded(sender, experiment, **kwargs) -> None:
    from training.services import experiment_concluded

    experiment_concluded(experiment_id=experiment.pk)
