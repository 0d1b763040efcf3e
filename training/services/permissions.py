"""Who may start, cancel and approve jobs: the services check it themselves, whoever calls them."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied

APPROVE_PERM = "training.approve_trainingjob"
TRIGGER_PERM = "training.trigger_trainingjob"


def require_permission(user: AbstractBaseUser | None, perm: str, *, doing: str = "", hint: str = "") -> None:
    """Raise PermissionDenied (403 on pages and in the API) unless ``user`` has ``perm``.

    ``doing``: what the refused request amounts to, said first; ``hint``: what to do instead, said last.
    """
    if user is None or not user.is_authenticated or not user.has_perm(perm):
        name = user.get_username() if user is not None and user.is_authenticated else "anonymous"
        message = f"User '{name}' lacks the '{perm}' permission."
        raise PermissionDenied(" ".join(part for part in (doing, message, hint) if part))
