"""The import graph of azml_client has no circles: read from the source, every import statement counted.

Each module's imports are read with ``ast`` (module level, inside functions and under ``if TYPE_CHECKING``
alike) and resolved to the most specific module of the package they name: ``from azml_client._formatters import
_openai`` is an edge to ``azml_client._formatters._openai``, ``from azml_client._formatters import get_formatter``
one to the package ``azml_client._formatters``. A package's own ``__init__`` importing its modules is an edge
like any other; the parent packages Python imports on the way are not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import azml_client

PACKAGE = Path(azml_client.__file__).parent
FORMATTERS = "azml_client._formatters"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The package modules that ``name`` (at ``path``) imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    base = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                target = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                target = node.module or ""
            if not (target == "azml_client" or target.startswith("azml_client.")):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in modules:
                    yield submodule
                elif target in modules:
                    yield target


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set(_imports(name, path, modules)) - {name} for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    graph = _graph()
    # Known edges, so that a reader that finds nothing cannot pass.
    assert "azml_client._formatters._base" in graph[f"{FORMATTERS}._chat"]
    assert f"{FORMATTERS}._openai" in graph[f"{FORMATTERS}._base"]  # `from azml_client._formatters import _openai`
    assert FORMATTERS in graph["azml_client._models._base"]  # `from azml_client._formatters import ...`
    assert "azml_client._transport._client" in graph["azml_client._transport"]


def test_circles_are_found() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_circle_touches_the_formatter_package() -> None:
    circles = [circle for circle in _circles(_graph()) if any(m.startswith(FORMATTERS) for m in circle)]
    assert circles == []


@pytest.mark.parametrize("module", ["_base", "_openai", "_shapes", "_registry"])
def test_lower_formatter_modules_do_not_import_the_package_or_the_built_ins(module: str) -> None:
    imported = _graph()[f"{FORMATTERS}.{module}"]
    above = {FORMATTERS, f"{FORMATTERS}._chat", f"{FORMATTERS}._completion", f"{FORMATTERS}._lookup"}
    assert not imported & above


def test_the_formatter_layer_imports_nothing_above_it() -> None:
    graph = _graph()
    allowed = ("azml_client._formatters", "azml_client._config", "azml_client._exceptions", "azml_client._types")
    for name, imported in graph.items():
        if name.startswith(FORMATTERS):
            assert all(target.startswith(allowed) or target == "azml_client._json" for target in imported), name


def test_the_package_has_no_import_circle() -> None:
    assert _circles(_graph()) == []


def test_no_floor_imports_one_above_it() -> None:
    """The transport knows no formatter or model; the formatters no transport or model; the models nothing above."""
    below = {
        "azml_client._transport": ("azml_client._formatters", "azml_client._models"),
        "azml_client._formatters": ("azml_client._transport", "azml_client._models"),
        "azml_client._models": ("azml_client.cli", "azml_client.langchain", "azml_client.testing"),
    }
    for name, imported in _graph().items():
        for floor, above in below.items():
            if name.startswith(floor):
                assert not [target for target in imported if target.startswith(above)], name
