"""System checks of the training app's settings (``manage.py check``, and every server and worker start)."""

from __future__ import annotations

from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured


@register()
def retrain_condition_hooks_check(app_configs, **kwargs) -> list[Error]:
    """Every path in RETRAIN_CONDITION_HOOKS imports and is callable: a typo shows at start, not as a
    scheduled check that fails every night."""
    from training.conditions import hooks

    try:
        hooks()
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="Fix or remove the path in RETRAIN_CONDITION_HOOKS.",
                id="training.E001",
            )
        ]
    return []
