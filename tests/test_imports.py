"""The package's own imports: no circles, and each part imports only the floors below it.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of a
module of the package, at module level, inside a function or under ``TYPE_CHECKING`` (an import
deferred into a function still closes a circle, it only hides it until the call). Importing
``autoregressive.a.b`` runs the package ``autoregressive.a`` first, so that is an edge too.

A *part* is a sub-package (``sampling``, ``layers``, ...) or a module of the bottom floor
(``validation``, ``checksums``, ...); :data:`MAY_IMPORT` is the table of the floors.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "autoregressive"
ROOT = "autoregressive"  # the package itself: its __init__

#: the bottom floor: modules every part may import
BOTTOM = frozenset({"_version", "validation", "conditioning", "checksums", "checkpoint"})
#: part -> the other parts it may import. Floors, bottom-up: BOTTOM; distributions and the
#: sampling engine; layers; models; coding (compression with a model), scoring (out-of-distribution
#: scores), training and data. The engine never imports a layer; no model imports the coder.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "_version": frozenset(),
    "validation": frozenset(),
    "checksums": frozenset(),
    "conditioning": frozenset({"validation"}),
    "checkpoint": frozenset({"checksums"}),
    "distributions": BOTTOM,
    "sampling": BOTTOM | {"distributions"},
    "layers": BOTTOM | {"distributions", "sampling"},
    "models": BOTTOM | {"distributions", "sampling", "layers"},
    "coding": BOTTOM | {"distributions", "sampling", "models"},
    "scoring": BOTTOM | {"distributions", "models"},
    "data": BOTTOM,
    "training": BOTTOM | {"distributions", "data"},
}


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``package``."""
    names = {}
    for path in package.rglob("*.py"):
        parts = [ROOT, *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The package modules that the file ``path`` of module ``name`` imports."""
    here = name if path.stem == "__init__" else name.rpartition(".")[0]  # its package
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                package = here.split(".")
                if node.level > len(package):
                    raise AssertionError(f"{path}: relative import beyond the package")
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            if base not in modules:
                continue
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
    for target in list(found):  # importing a.b.c runs the packages a.b and a first
        parents = target.split(".")[:-1]
        found |= {".".join(parents[:k]) for k in range(1, len(parents) + 1)}
    ancestors = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 2)}
    return found - ancestors  # a package being imported is already running


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports (dotted names; ``ROOT`` is the __init__)."""
    files = module_names(package)
    return {name: imports_of(path, name, set(files)) for name, path in files.items()}


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


def part(module: str) -> str:
    """The part a module belongs to: ``autoregressive.sampling.rows`` -> ``sampling``."""
    return module.split(".")[1] if "." in module else ROOT


def floor_violations(
    graph: dict[str, set[str]], may_import: dict[str, frozenset[str]] = MAY_IMPORT
) -> list[str]:
    """Every import of a part that ``may_import`` does not allow (the package's __init__ may)."""
    found = []
    for module, targets in sorted(graph.items()):
        p = part(module)
        if p == ROOT:
            continue
        allowed = may_import.get(p, frozenset()) | {p}
        found += [f"{module} imports {t}" for t in sorted(targets) if part(t) not in allowed]
    return found


def test_the_graph_reader_sees_every_kind_of_import(tmp_path):
    (tmp_path / "__init__.py").write_text("from .a import x\n")
    (tmp_path / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "b.py").write_text("import autoregressive.c\nfrom autoregressive import d\n")
    (tmp_path / "c.py").write_text("from . import __version__\nfrom .a import f\n")
    (tmp_path / "d.py").write_text("import torch\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "__init__.py").write_text("from .e import y\n")
    (tmp_path / "sub" / "e.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..d import z\n"
    )
    (tmp_path / "f.py").write_text("from .sub.e import y\n")
    graph = import_graph(tmp_path)
    a, b, c, d, e, f, sub = (f"{ROOT}.{n}" for n in ("a", "b", "c", "d", "sub.e", "f", "sub"))
    assert graph == {
        ROOT: {a},
        a: {b},
        b: {c, d},
        c: {a},  # `from . import __version__`: the package, already running
        d: set(),
        sub: {e},
        e: {d},
        f: {e, sub},  # importing sub.e runs sub's __init__ first
    }
    graph[c].add(ROOT)
    assert circles(graph) == [[ROOT, a, b, c]]


def test_the_package_has_no_import_circles():
    assert circles(import_graph()) == []


def test_every_part_has_a_floor():
    assert {part(m) for m in import_graph()} - {ROOT} - set(MAY_IMPORT) == set()


def test_each_part_imports_only_the_floors_below_it():
    assert floor_violations(import_graph()) == []


def test_the_floor_rule_catches_an_upward_import():
    graph = {
        f"{ROOT}.sampling.cached": {f"{ROOT}.layers.conv", f"{ROOT}.sampling.rows"},
        f"{ROOT}.layers.conv": {f"{ROOT}.sampling.rows", f"{ROOT}.validation"},
        f"{ROOT}.data.mnist": {f"{ROOT}.models"},
    }
    assert floor_violations(graph) == [
        f"{ROOT}.data.mnist imports {ROOT}.models",
        f"{ROOT}.sampling.cached imports {ROOT}.layers.conv",
    ]


@pytest.mark.parametrize(
    "module", ["models.pixelcnn", "models.serialization", "checkpoint", "models.pretrained"]
)
def test_loading_a_model_needs_no_training_or_data_module(module):
    reached = reachable(import_graph(), f"{ROOT}.{module}")
    assert not {m for m in reached if part(m) in {"training", "data"}}
