"""notifications sits above training and abtesting: it imports them, nothing below imports it."""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

BELOW = ("assistants", "feedback", "abtesting", "training")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_lower_app_imports_notifications():
    offenders = [
        str(path.relative_to(settings.BASE_DIR))
        for app in BELOW
        for path in (Path(settings.BASE_DIR) / app).rglob("*.py")
        if any(name.split(".")[0] == "notifications" for name in _imported_modules(path))
    ]
    assert offenders == []
