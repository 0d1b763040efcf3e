"""The layers hold: imports between our apps only point down, and no import circle runs through our code.

docs/ARCHITECTURE.md draws the layers. Every module of our apps is parsed with ``ast`` (nothing is
imported), so the test sees lazy imports inside functions too: an upward import is a dependency wherever
it is written.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
# Lowest first. The dashboard's library code (layout, permissions, pagination, charts, filters,
# middleware) serves every page, so it imports none of the feature apps.
LAYERS = ("dashboard", "assistants", "feedback", "abtesting", "training", "notifications", "gateway")
RANK = {app: rank for rank, app in enumerate(LAYERS)}
# Process entry points, like config/urls.py: they start or wire the whole product and may import any app.
ENTRY_POINT_PARTS = ("management", "commands")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _our_modules() -> dict[str, Path]:
    """Every module of our apps and of config, by dotted name."""
    modules = {}
    for top in (*LAYERS, "config"):
        for path in sorted((ROOT / top).rglob("*.py")) if (ROOT / top).is_dir() else ():
            modules[_module_name(path)] = path
    return modules


MODULES = _our_modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _absolute(node: ast.ImportFrom, importer: str) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if _is_package(importer) else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(node: ast.Import | ast.ImportFrom, importer: str) -> Iterator[str]:
    """The modules an import statement loads: ``from a import b`` loads ``a.b`` when that is a module."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    module = _absolute(node, importer)
    for alias in node.names:
        submodule = f"{module}.{alias.name}"
        yield submodule if submodule in MODULES else module


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: top level, also under if/with/try, not TYPE_CHECKING."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            pending.extend([*node.body, *node.orelse])
        elif isinstance(node, ast.With):
            pending.extend(node.body)
        elif isinstance(node, ast.Try):
            pending.extend([*node.body, *node.orelse, *node.finalbody])
            for handler in node.handlers:
                pending.extend(handler.body)


def _trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


TREES = _trees()


def _app(module: str) -> str:
    return module.split(".")[0]


def _is_entry_point(module: str) -> bool:
    parts = module.split(".")
    return any(parts[i : i + 2] == list(ENTRY_POINT_PARTS) for i in range(len(parts) - 1))


def upward_imports() -> list[str]:
    found = []
    for name, tree in TREES.items():
        if _app(name) not in RANK or _is_entry_point(name):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(node, name):
                app = _app(target)
                if app in RANK and RANK[app] > RANK[_app(name)]:
                    found.append(f"{name} (line {node.lineno}) imports {target}")
    return found


def import_graph(*, at_import_time: bool) -> dict[str, set[str]]:
    """Imports between our modules: those that run when a module is imported, or all of them."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, tree in TREES.items():
        if at_import_time:
            nodes = _module_level_imports(tree)
        else:
            nodes = (node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom))
        for node in nodes:
            graph[name].update(target for target in _targets(node, name) if target in MODULES)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_imports_between_apps_only_point_down():
    found = upward_imports()
    assert found == [], "imports of an app above (docs/ARCHITECTURE.md, 'Layers'):\n" + "\n".join(found)


def test_no_import_circle_at_import_time():
    found = circles(import_graph(at_import_time=True))
    assert found == [], "these modules import each other at import time:\n" + "\n".join(map(str, found))


def test_no_import_circle_through_imports_inside_functions():
    # A lazy import hides a circle from Python, not from the reader: the modules still depend on each other.
    found = circles(import_graph(at_import_time=False))
    assert found == [], "these modules depend on each other:\n" + "\n".join(map(str, found))


def test_it_finds_an_upward_import_and_a_circle():
    # The checks themselves, on a made-up graph and module: they must see what they are meant to see.
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("def f():\n    from gateway import services\n")
    assert [t for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for t in _targets(n, "feedback")] == [
        "gateway.services"
    ]
