"""Sphinx configuration of the ``autoregressive`` documentation.

``make docs`` builds it twice, as HTML and as doctests, with ``-W`` (every warning fails).
At the start of each build (``builder-inited``) this file

* writes the API reference's sections from ``autoregressive.__all__`` and fails the build if a
  public name has no docstring (:func:`write_api_sections`, :func:`check_docstrings`);
* redraws the concept figures from the library's code (``docs/figures.py``);
* collects the benchmark results committed under ``benchmarks/results/`` (:func:`write_benchmarks`);
* writes a small offline intersphinx inventory for PyTorch and Python (:func:`write_inventories`).

Everything generated goes to ``docs/_generated/`` (git-ignored).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import shutil
import sys
import time
import zlib
from dataclasses import is_dataclass
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

import autoregressive

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"
INCLUDE = GENERATED / "include"  # generated text that pages include (not documents themselves)
sys.path.insert(0, str(DOCS))  # for `figures`
sys.path.insert(0, str(DOCS / "_ext"))  # for `errors_page`

logger = logging.getLogger("autoregressive.docs")

# -- project ---------------------------------------------------------------------------------
project = "autoregressive"
author = "autoregressive developers"
copyright = "autoregressive developers"
release = autoregressive.__version__
version = release

# -- general ---------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "errors_page",
]
if importlib.util.find_spec("sphinx_copybutton") is not None:  # optional nicety
    extensions.append("sphinx_copybutton")

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated/include", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]
default_role = "code"  # `x` renders as code instead of warning-free italics
pygments_style = "sphinx"
pygments_dark_style = "monokai"

# -- autodoc / autosummary / napoleon ----------------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"  # types go next to each argument, signatures stay short
autodoc_typehints_description_target = "documented_params"
autodoc_inherit_docstrings = False  # no torch docstrings (nn.Module.forward, ...) in our pages
autodoc_class_signature = "mixed"
autosummary_generate = False  # stubs are generated from __all__ by write_api_sections()
add_module_names = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ["Shape"]  # torch's docstring section: rendered like "Example"
napoleon_use_rtype = False
napoleon_attr_annotations = False  # True types __init__ args by class attributes (wrong)

# -- doctest -----------------------------------------------------------------------------------
# The library's docstrings use these names without importing them, as torch's do.
doctest_global_setup = """
import math
import torch
from torch import nn
from autoregressive import *
torch.manual_seed(0)
torch.set_num_threads(1)
"""
doctest_test_doctest_blocks = "default"

# -- HTML --------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"autoregressive {release}"
html_static_path: list[str] = []
html_theme_options = {
    "source_repository": "",
    "navigation_with_keys": True,
}
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True

# -- intersphinx -------------------------------------------------------------------------------
# CI has no network, and a missing inventory is a warning (so a failed -W build). By default the
# references resolve against small inventories written offline by write_inventories() below;
# set AUTOREGRESSIVE_DOCS_INTERSPHINX=online to use the projects' published inventories instead.
TORCH_DOCS = "https://docs.pytorch.org/docs/stable/"
PYTHON_DOCS = "https://docs.python.org/3/"
ONLINE = os.environ.get("AUTOREGRESSIVE_DOCS_INTERSPHINX", "offline") == "online"
intersphinx_mapping = {
    "torch": (TORCH_DOCS, None if ONLINE else str(GENERATED / "inventories" / "torch.inv")),
    "python": (PYTHON_DOCS, None if ONLINE else str(GENERATED / "inventories" / "python.inv")),
}
intersphinx_timeout = 10

#: (name, role, page) of the PyTorch objects our pages and signatures refer to
TORCH_OBJECTS = [
    ("torch.Tensor", "class", "tensors.html"),
    ("torch.Size", "class", "size.html"),
    ("torch.dtype", "class", "tensor_attributes.html"),
    ("torch.device", "class", "tensor_attributes.html"),
    ("torch.Generator", "class", "generated/torch.Generator.html"),
    ("torch.no_grad", "class", "generated/torch.no_grad.html"),
    ("torch.rand", "function", "generated/torch.rand.html"),
    ("torch.bernoulli", "function", "generated/torch.bernoulli.html"),
    ("torch.compile", "function", "generated/torch.compile.html"),
    ("torch.nn.Module", "class", "generated/torch.nn.Module.html"),
    ("torch.nn.Conv2d", "class", "generated/torch.nn.Conv2d.html"),
    ("torch.nn.Sequential", "class", "generated/torch.nn.Sequential.html"),
    ("torch.nn.ModuleList", "class", "generated/torch.nn.ModuleList.html"),
    ("torch.nn.Linear", "class", "generated/torch.nn.Linear.html"),
    ("torch.nn.ReLU", "class", "generated/torch.nn.ReLU.html"),
    ("torch.nn.GELU", "class", "generated/torch.nn.GELU.html"),
    ("torch.optim.Optimizer", "class", "optim.html"),
    ("torch.optim.Adam", "class", "generated/torch.optim.Adam.html"),
    ("torch.utils.data.DataLoader", "class", "data.html"),
    ("torch.utils.data.Dataset", "class", "data.html"),
    (
        "torch.nn.parallel.DistributedDataParallel",
        "class",
        "generated/torch.nn.parallel.DistributedDataParallel.html",
    ),
]
#: (name, role, page) of the Python objects our pages and signatures refer to
PYTHON_OBJECTS = [
    *((t, "class", "library/functions.html") for t in ("int", "float", "bool", "object")),
    *((t, "class", "library/stdtypes.html") for t in ("str", "tuple", "list", "dict")),
    ("None", "data", "library/constants.html"),
    ("ValueError", "exception", "library/exceptions.html"),
    ("dataclasses.dataclass", "function", "library/dataclasses.html"),
    ("dataclasses.replace", "function", "library/dataclasses.html"),
    ("typing.Any", "data", "library/typing.html"),
    ("typing.Literal", "data", "library/typing.html"),
    ("typing.ClassVar", "data", "library/typing.html"),
    ("pathlib.Path", "class", "library/pathlib.html"),
    ("math.log", "function", "library/math.html"),
]


def _runtime_name(name: str) -> str | None:
    """Where the object ``name`` is defined (``torch.nn.modules.conv.Conv2d``), if elsewhere.

    Signatures name classes by their defining module, so the inventory lists both names.
    """
    module, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    real = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    return real if inspect.isclass(obj) and real != name else None


def write_inventory(path: Path, project: str, objects: list[tuple[str, str, str]]) -> None:
    """Write a Sphinx ``objects.inv`` (format 2) for ``objects`` to ``path``."""
    lines = []
    for name, role, page in objects:
        lines.append(f"{name} py:{role} 1 {page}#{name} -")
        real = _runtime_name(name)
        if real is not None:  # e.g. torch._C.Generator, shown as torch.Generator
            lines.append(f"{real} py:{role} 1 {page}#{name} {name}")
    header = (
        f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode() + zlib.compress("\n".join(lines).encode() + b"\n"))


def write_inventories() -> None:
    write_inventory(GENERATED / "inventories" / "torch.inv", "PyTorch", TORCH_OBJECTS)
    write_inventory(GENERATED / "inventories" / "python.inv", "Python", PYTHON_OBJECTS)


# Written here, at import, because intersphinx reads the inventories before any hook of ours.
write_inventories()


# -- the API reference from __all__ -------------------------------------------------------------
#: the library's modules in reading order, with the title of their section in the API page
API_SECTIONS = {
    "autoregressive.masks": "Masks",
    "autoregressive.conv": "Masked convolution",
    "autoregressive.residual": "Residual block",
    "autoregressive.gated": "Gated blocks",
    "autoregressive.sequential": "Containers",
    "autoregressive.config": "Configuration",
    "autoregressive.model": "Model",
    "autoregressive.distributions": "Output distributions",
    "autoregressive.sampling": "Noise and the naive sampler",
    "autoregressive.cached": "Cached sampler",
}
#: modules outside ``__all__`` documented whole, when they exist
EXTRA_MODULES = {
    "autoregressive.data": "Data (used by the MNIST example)",
    "autoregressive.training": "Training (used by the MNIST example)",
    "autoregressive.precision": "Training precision (bf16 where the hardware computes it)",
    "autoregressive.pretrained": "Pretrained weights shipped with the package",
    "autoregressive.checksums": "Checksums of checkpoints and released weights",
}


def _defining_module(name: str) -> str:
    """The submodule whose ``__all__`` exports ``name`` (the section it belongs in)."""
    for module in API_SECTIONS:
        if name in getattr(importlib.import_module(module), "__all__", ()):
            return module
    obj = getattr(autoregressive, name)
    return getattr(obj, "__module__", None) or "autoregressive"


def _underline(title: str, char: str = "-") -> str:
    return f"{title}\n{char * len(title)}\n"


def _is_code(obj: object) -> bool:
    return inspect.isclass(obj) or inspect.isfunction(obj)


def _attr_doc(name: str) -> list[str]:
    """The ``#:`` comment above a public variable where its module defines it, as lines."""
    module = _defining_module(name)
    docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    for (_, attr), lines in docs.items():
        if attr == name:
            return [line for line in lines if line.strip()]
    return []


def _presets_table() -> str:
    """A table of every preset: the fields it sets and its parameter count, from the code."""
    from autoregressive import PRESETS, PixelCNN, PixelCNNConfig

    default = PixelCNNConfig()
    rows = []
    for name, cfg in PRESETS.items():
        changed = [
            f"``{f}={getattr(cfg, f)!r}``"
            for f in cfg.__dataclass_fields__
            if getattr(cfg, f) != getattr(default, f)
        ]
        params = sum(p.numel() for p in PixelCNN(cfg).parameters())
        rows.append((f"``{name!r}``", ", ".join(changed) or "the defaults", f"{params:,}"))
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 15 65 20",
        "",
        "   * - name",
        "     - fields that differ from ``PixelCNNConfig()``",
        "     - parameters",
    ]
    for row in rows:
        lines += [f"   * - {row[0]}", f"     - {row[1]}", f"     - {row[2]}"]
    return "\n".join(lines) + "\n"


def write_data_stub(name: str, doc: list[str]) -> None:
    """The page of a public variable, documented under its public name ``autoregressive.NAME``."""
    body = "\n".join(f"   {line}" for line in doc)
    text = (
        f"{_underline(f'autoregressive.{name}', '=')}\n.. currentmodule:: autoregressive\n\n"
        f".. py:data:: {name}\n\n{body}\n"
    )
    if name == "PRESETS":
        text += "\n" + _presets_table()
        text += "\nUse one with :meth:`PixelCNNConfig.preset` or :meth:`PixelCNN.from_preset`.\n"
    path = GENERATED / "api" / f"autoregressive.{name}.rst"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_api_sections() -> Path:
    """Write ``_generated/include/api.rst``: an autosummary table per module, from ``__all__``."""
    groups: dict[str, list[str]] = {}
    for name in autoregressive.__all__:
        groups.setdefault(_defining_module(name), []).append(name)
    order = [m for m in API_SECTIONS if m in groups] + [m for m in groups if m not in API_SECTIONS]
    parts = [".. This file is generated by docs/conf.py from autoregressive.__all__.\n"]
    parts.append(".. currentmodule:: autoregressive\n")
    for module in order:
        title = API_SECTIONS.get(module, f"Other names from ``{module}``")
        parts.append(_underline(title))
        if module in API_SECTIONS:
            parts.append(f".. automodule:: {module}\n   :no-members:\n   :no-index:\n")
            # automodule switches the current module; the public names live in the package
            parts.append(".. currentmodule:: autoregressive\n")
        code = [n for n in groups[module] if _is_code(getattr(autoregressive, n))]
        data = [n for n in groups[module] if n not in code]
        if code:
            entries = "\n".join(f"   {name}" for name in code)
            parts.append(
                f".. autosummary::\n   :toctree: _generated/api\n   :nosignatures:\n\n{entries}\n"
            )
        for name in data:  # autosummary would take the summary of e.g. `dict`: list them here
            doc = _attr_doc(name)
            summary = doc[0] if doc else ""
            parts.append(
                f".. toctree::\n   :hidden:\n\n   _generated/api/autoregressive.{name}\n\n"
                f":data:`{name}`\n    {summary}\n"
            )
            write_data_stub(name, doc)
    extra = [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is not None]
    if extra:
        parts.append(_underline("Example utilities"))
        parts.append(
            "Not part of ``autoregressive.__all__``: modules the MNIST example "
            "(:doc:`tutorial`) is built from, importable as ``autoregressive.data`` and "
            "``autoregressive.training``, and ``autoregressive.precision``, "
            "``autoregressive.pretrained`` and ``autoregressive.checksums``, which they use.\n"
        )
        entries = "\n".join(f"   {m.removeprefix('autoregressive.')}" for m in extra)
        parts.append(f".. autosummary::\n   :toctree: _generated/api\n\n{entries}\n")
    path = INCLUDE / "api.rst"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(parts)
    if not path.exists() or path.read_text() != text:  # unchanged: keep Sphinx's cache valid
        path.write_text(text)
    return path


def generate_api_stubs(app: Sphinx, sections: Path) -> None:
    """One page per public name under ``_generated/api/``, from our autosummary templates."""
    from sphinx.ext.autosummary.generate import generate_autosummary_docs

    generate_autosummary_docs(
        [str(sections)],
        output_dir=str(DOCS / "_generated" / "api"),
        suffix=".rst",
        base_path=str(DOCS),
        app=app,
        overwrite=True,
    )


#: a public callable's docstring must have these Google-style sections (rule, section)
def _required_sections(obj: object) -> list[str]:
    import torch

    if inspect.isclass(obj):
        required = ["Example"]
        params = [p for p in inspect.signature(obj).parameters if p not in ("self",)]
        if params and not is_dataclass(obj):
            required.append("Args")
        if issubclass(obj, torch.nn.Module):
            required += ["Shape"]
        return required
    if callable(obj):
        required = ["Args", "Example"]
        ret = inspect.signature(obj).return_annotation
        if ret not in (None, "None", inspect.Signature.empty):
            required.append("Returns")
        return required
    return []


def _own_docstring(obj: object) -> str:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    doc = inspect.cleandoc(doc or "")
    if is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):  # type: ignore[union-attr]
        return ""  # the signature @dataclass writes when there is no docstring
    return doc


#: Public names whose docstrings still lack a required section, in files that the docs do not
#: own (model.py, cached.py): reported at build time but not fatal. Empty it once they are fixed.
KNOWN_GAPS: set[str] = set()


def check_docstrings() -> list[str]:
    """Problems with the docstrings of the names in ``autoregressive.__all__``, as messages."""
    problems = []
    for name in autoregressive.__all__:
        obj = getattr(autoregressive, name, None)
        if obj is None:
            problems.append(f"{name} is in autoregressive.__all__ but not defined")
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            doc = _own_docstring(obj)
            if not doc:
                problems.append(f"autoregressive.{name} has no docstring")
                continue
            found = set(re.findall(r"^(\w+):\s*$", doc, flags=re.MULTILINE))
            found |= {"Example"} if "Examples" in found else set()
            missing = [s for s in _required_sections(obj) if s not in found]
            if missing:
                problems.append(
                    f"autoregressive.{name}'s docstring lacks the section(s) {', '.join(missing)}"
                )
        elif not _attr_doc(name):  # data: documented by a `#:` comment where it is defined
            problems.append(
                f"autoregressive.{name} has no `#:` comment in {_defining_module(name)}"
            )
    return problems


# -- benchmarks page ----------------------------------------------------------------------------
#: where the benchmark suite writes (override with AUTOREGRESSIVE_DOCS_BENCHMARKS to preview)
RESULTS = Path(os.environ.get("AUTOREGRESSIVE_DOCS_BENCHMARKS", ROOT / "benchmarks" / "results"))
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)[^)]*\)")
_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)[^)]*\)")


def _sanitise(markdown: str, images: dict[str, str], top: int) -> str:
    """Make a results file safe to include in the page.

    Headings are shifted so that the file's highest one becomes level ``top`` (levels past 6
    become bold lines), images point to the copies under ``_generated/benchmarks/`` and local
    links (which would not resolve) become their text.
    """

    def image(m: re.Match[str]) -> str:
        target = images.get(Path(m.group(2)).name)
        return f"![{m.group(1)}]({target})" if target else m.group(1)

    def link(m: re.Match[str]) -> str:
        return m.group(0) if re.match(r"https?://", m.group(2)) else m.group(1)

    lines = markdown.splitlines()
    levels = [len(h.group(1)) for h in map(_HEADING.match, lines) if h]
    shift = top - min(levels) if levels else 0
    out = []
    for line in lines:
        heading = _HEADING.match(line)
        if heading:
            level = len(heading.group(1)) + shift
            line = f"{'#' * level} {heading.group(2)}" if level <= 6 else f"**{heading.group(2)}**"
        out.append(_LINK.sub(link, _IMAGE.sub(image, line)))
    return "\n".join(out).strip() + "\n"


def write_benchmarks() -> Path:
    """Write ``_generated/include/benchmarks.md`` from ``benchmarks/results/*.md`` and ``*.png``."""
    static = GENERATED / "benchmarks"
    shutil.rmtree(static, ignore_errors=True)
    static.mkdir(parents=True)
    tables = sorted(RESULTS.glob("*.md")) if RESULTS.is_dir() else []
    plots = sorted(RESULTS.glob("*.png")) if RESULTS.is_dir() else []
    images = {}
    for png in plots:
        shutil.copy2(png, static / png.name)
        images[png.name] = f"/_generated/benchmarks/{png.name}"

    parts = ["<!-- generated by docs/conf.py from benchmarks/results/ -->\n"]
    if not tables and not plots:
        parts.append(
            "```{note}\nNo results committed yet: `benchmarks/results/` holds no tables or "
            "plots. Run `make bench` (or `make bench-quick`) and commit what it writes.\n```\n"
        )

    def owner(png: Path) -> str | None:  # the longest table name that starts the plot's name
        stems = [t.stem for t in tables if png.stem == t.stem or png.stem.startswith(t.stem + "-")]
        return max(stems, key=len) if stems else None

    shown: set[str] = set()
    for table in tables:
        text = table.read_text(encoding="utf-8")
        if not _HEADING.match(text.lstrip().split("\n", 1)[0]):  # no title of its own
            text = f"# `{table.stem}`\n\n{text}"
        parts.append(_sanitise(text, images, top=1))
        parts.append(f"Source: `benchmarks/results/{table.name}`.\n")
        shown |= {Path(m.group(2)).name for m in _IMAGE.finditer(text)}
        json = table.with_suffix(".json")
        if json.exists():
            parts.append(f"Raw numbers: `benchmarks/results/{json.name}`.\n")
        for png in plots:
            if png.name not in shown and owner(png) == table.stem:
                parts.append(f"![{png.stem}]({images[png.name]})\n")
                shown.add(png.name)
    for png in plots:
        if png.name not in shown:
            parts.append(f"# `{png.stem}`\n\n![{png.stem}]({images[png.name]})\n")
    path = INCLUDE / "benchmarks.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# -- build hooks ----------------------------------------------------------------------------------
def on_builder_inited(app: Sphinx) -> None:
    start = time.perf_counter()
    for problem in check_docstrings():
        if problem.split()[0].removeprefix("autoregressive.").removesuffix("'s") in KNOWN_GAPS:
            logger.info("known docstring gap (KNOWN_GAPS in docs/conf.py): %s", problem)
        else:
            logger.warning(problem, type="autoregressive", subtype="docstring")
    generate_api_stubs(app, write_api_sections())
    write_benchmarks()

    import figures

    paths = figures.main(GENERATED / "figures")
    logger.info(
        "autoregressive docs: API pages, %d figures and the benchmarks page generated in %.1f s",
        len(paths),
        time.perf_counter() - start,
    )


def setup(app: Sphinx) -> dict[str, object]:
    # before autosummary's and intersphinx's own builder-inited handlers (priority 500)
    app.connect("builder-inited", on_builder_inited, priority=100)
    return {"parallel_read_safe": True}
