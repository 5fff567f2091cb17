"""The package's own imports: no circles, and the model does not reach training or data code.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of a
module of the package, at module level or inside a function (an import deferred into a function
still closes a circle, it only hides it until the call).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "autoregressive"
ROOT = "autoregressive"  # the package itself: its __init__


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules that the file ``path`` imports (``ROOT`` for the package itself)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level > 1:
                raise AssertionError(f"{path.name}: relative import beyond the package")
            if node.level == 0:
                if node.module != ROOT and not (node.module or "").startswith(ROOT + "."):
                    continue
                target = node.module.removeprefix(ROOT).lstrip(".")
            else:
                target = node.module or ""
            if target:
                found.add(target.split(".")[0])
            else:  # from . import x: a submodule, or a name of the package's __init__
                found |= {a.name if a.name in modules else ROOT for a in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == ROOT:
                    found.add(ROOT)
                elif alias.name.startswith(ROOT + "."):
                    found.add(alias.name.split(".")[1])
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports; ``__init__`` is ``ROOT``."""
    files = {p.stem: p for p in package.glob("*.py") if p.stem != "__init__"}
    files[ROOT] = package / "__init__.py"
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo.extend(graph.get(v, ()))
    return seen


def test_the_graph_reader_sees_every_kind_of_import(tmp_path):
    (tmp_path / "__init__.py").write_text("from .a import x\n")
    (tmp_path / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "b.py").write_text("import autoregressive.c\nfrom autoregressive import d\n")
    (tmp_path / "c.py").write_text("from . import __version__\nfrom .a import f\n")
    (tmp_path / "d.py").write_text("import torch\n")
    graph = import_graph(tmp_path)
    assert graph == {ROOT: {"a"}, "a": {"b"}, "b": {"c", "d"}, "c": {ROOT, "a"}, "d": set()}
    assert circles(graph) == [["a", "autoregressive", "b", "c"]]


def test_the_package_has_no_import_circles():
    assert circles(import_graph()) == []


@pytest.mark.parametrize("module", ["model", "serialization", "checkpoint", "pretrained"])
def test_loading_a_model_needs_no_training_or_data_module(module):
    heavy = {"training", "data", "colour_data", "precision"}
    assert not reachable(import_graph(), module) & heavy
