"""Who may open a page: one decorator for every dashboard view."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.decorators import login_required, permission_required

# What a refused user reads (the 403 page shows it when the refusal carries no message of its own).
FORBIDDEN = "Your account may not do this. Ask an admin to add you to the reviewer group."


def page_permission_required(*perms: str) -> Callable:
    """A signed-in user with every one of ``perms``.

    Without a session: the login page, which brings the user back (``login_required``). Signed in but
    without a permission: 403, not the login page again (``permission_required(raise_exception=True)``),
    which says to ask an admin (``403.html``). Checked before the view runs, so a refused user learns
    nothing about which objects exist.
    """
    if not perms:
        raise TypeError("Name at least one permission.")

    def decorator(view: Callable) -> Callable:
        return login_required(permission_required(perms, raise_exception=True)(view))

    return decorator
