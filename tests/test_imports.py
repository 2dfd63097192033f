"""The import graph of dreamkit and its built-in plugins has no cycles, counting every import a
module makes (at the top, or inside a function: both are dependencies) except those under
``if TYPE_CHECKING:`` (never run). A cycle means two modules that cannot be understood, tested or
changed one without the other; the usual cause is a low layer reaching up for a convenience
(a default host, the package's version)."""

from __future__ import annotations

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _modules() -> dict[str, pathlib.Path]:
    """Module name → file, for the dreamkit package and each built-in plugin package."""
    found = {}
    for package in [REPO / "dreamkit", *sorted((REPO / "plugins").glob("dreamkit_*"))]:
        for path in package.rglob("*.py"):
            parts = path.relative_to(package.parent).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, except those under ``if TYPE_CHECKING:``."""
    found = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the modules of ours it imports. ``from pkg import name`` counts as importing
    ``pkg.name`` when that is a module, else ``pkg`` (importing a submodule runs its package's
    ``__init__`` first either way, so a submodule's own package is not an edge)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = name.split(".")
                    keep = len(parts) - node.level + (1 if is_package else 0)
                    base = ".".join(parts[:keep] + ([node.module] if node.module else []))
                submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
                wanted = submodules + ([base] if len(submodules) < len(node.names) else [])
            for target in wanted:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return found


def test_the_analysis_sees_a_cycle_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_covers_the_core_and_the_plugins():
    graph = import_graph()
    assert {"dreamkit.plugins", "dreamkit.models.loading", "dreamkit_style.effect", "dreamkit_web.app"} <= set(graph)
    assert "dreamkit.plugins" in graph["dreamkit.models.loading"]  # a local import is a dependency too
    assert "dreamkit.context" not in graph["dreamkit.hookspecs"]  # a TYPE_CHECKING one is not


def test_the_import_graph_has_no_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(component) for component in found)


def test_plugins_import_nothing_from_the_cli():
    graph = import_graph()
    offenders = {name: "dreamkit.cli" for name, targets in graph.items()
                 if not name.startswith("dreamkit.") and name != "dreamkit" and "dreamkit.cli" in targets}
    assert not offenders, offenders
