"""Trainers: one interface (base.Trainer), one module per backend."""

from __future__ import annotations

from training.trainers.base import Trainer, TrainerError, TrainingOutcome, TrainingSubject, as_subject

__all__ = ["Trainer", "TrainerError", "TrainingOutcome", "TrainingSubject", "as_subject", "get_trainer"]


def get_trainer(backend: str) -> Trainer:
    """The trainer for a ModelVersion backend name ("local" or "openai")."""
    if backend == "local":
        from training.trainers.local import LocalTrainer

        return LocalTrainer()
    if backend == "openai":
        from training.trainers.openai import OpenAITrainer

        return OpenAITrainer()
    raise ValueError(f"Unknown training backend '{backend}': use 'local' or 'openai'.")
