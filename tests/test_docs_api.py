"""The documentation's API page and docstrings, and the small Sphinx extensions in docs/_ext.

Checked here rather than at build time: ``api.rst`` lists every public name, and every public
class and function has the Google-style sections the house style asks for.
"""

from __future__ import annotations

import inspect
import re
import sys
import zlib
from dataclasses import is_dataclass
from pathlib import Path

import pytest
import torch
from sphinx.pycode import ModuleAnalyzer

import autoregressive

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

import benchmark_results  # noqa: E402
import offline_inventory  # noqa: E402
import presets_table  # noqa: E402


def listed_in_api_page() -> set[str]:
    """Names in the API page's autosummary tables and ``:data:`` entries."""
    text = (DOCS / "api.rst").read_text()
    names = set(re.findall(r"^:data:`(\w+)`", text, flags=re.MULTILINE))
    for block in re.findall(r"\.\. autosummary::\n((?:   .*\n|\n)+)", text):
        names |= {line.strip() for line in block.splitlines() if re.fullmatch(r"   \w+", line)}
    return names


def test_the_api_page_lists_every_public_name():
    missing = set(autoregressive.__all__) - listed_in_api_page()
    assert not missing, f"add {sorted(missing)} to docs/api.rst"


def required_sections(obj: object) -> list[str]:
    """The docstring sections a public class or function must have."""
    if inspect.isclass(obj):
        required = ["Example"]
        params = [p for p in inspect.signature(obj).parameters if p != "self"]
        if params and not is_dataclass(obj):
            required.append("Args")
        if issubclass(obj, torch.nn.Module):
            required.append("Shape")
        return required
    required = ["Args", "Example"]
    if inspect.signature(obj).return_annotation not in (None, "None", inspect.Signature.empty):
        required.append("Returns")
    return required


def own_docstring(obj: object) -> str:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    doc = inspect.cleandoc(doc or "")
    if is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""  # the signature @dataclass writes when there is no docstring
    return doc


CODE = [
    n
    for n in autoregressive.__all__
    if inspect.isclass(getattr(autoregressive, n)) or inspect.isfunction(getattr(autoregressive, n))
]


@pytest.mark.parametrize("name", CODE)
def test_public_docstrings_have_the_house_sections(name):
    obj = getattr(autoregressive, name)
    doc = own_docstring(obj)
    assert doc, f"autoregressive.{name} has no docstring"
    found = set(re.findall(r"^(\w+):\s*$", doc, flags=re.MULTILINE))
    found |= {"Example"} if "Examples" in found else set()
    missing = [s for s in required_sections(obj) if s not in found]
    assert not missing, f"autoregressive.{name}'s docstring lacks {', '.join(missing)}"


@pytest.mark.parametrize("name", sorted(set(autoregressive.__all__) - set(CODE)))
def test_public_data_has_a_doc_comment(name):
    modules = [  # the submodule that defines it (a package's __init__ only re-exports)
        m
        for m, mod in sys.modules.items()
        if m.startswith("autoregressive.")
        and not hasattr(mod, "__path__")
        and name in getattr(mod, "__all__", ())
    ]
    docs = ModuleAnalyzer.for_module(modules[0]).find_attr_docs()
    assert any(attr == name for (_, attr) in docs), f"{name} needs a `#:` comment"


def test_offline_inventory_lists_names_and_their_defining_modules():
    data = offline_inventory.inventory_bytes("PyTorch", [("torch.nn.Conv2d", "class", "c.html")])
    header, _, body = data.partition(b"zlib.\n")
    lines = zlib.decompress(body).decode().splitlines()
    assert b"# Project: PyTorch" in header
    assert lines[0] == "torch.nn.Conv2d py:class 1 c.html#torch.nn.Conv2d -"
    assert lines[1].startswith("torch.nn.modules.conv.Conv2d py:class 1 c.html")


def test_presets_table_has_a_row_per_preset():
    rows = [line for line in presets_table.presets_table_lines() if line.startswith("   * - ``")]
    assert len(rows) == len(autoregressive.PRESETS)


def test_benchmark_results_shift_headings_and_drop_local_links():
    text = "## Title\n### Sub\nsee [the file](results.json) and ![plot](a.png)\n"
    out = benchmark_results._sanitise(text, {"a.png": "/_generated/benchmarks/a.png"}, top=1)
    assert out.splitlines() == [
        "# Title",
        "## Sub",
        "see the file and ![plot](/_generated/benchmarks/a.png)",
    ]


def _extra_rows(text: str) -> dict[str, str]:
    """The installation page's table of extras: extra -> the text of its row."""
    table = re.search(r"^\.\. list-table::.*?\n(?=\S)", text, flags=re.DOTALL | re.MULTILINE)
    assert table is not None, "docs/installation.rst has no list-table of the extras"
    rows = re.split(r"^   \* - ", table[0], flags=re.MULTILINE)
    return {row.split("``")[1]: " ".join(row.split()) for row in rows if row.startswith("``")}


def test_the_installation_page_names_every_extra_and_what_it_installs():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((DOCS.parent / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    rows = _extra_rows((DOCS / "installation.rst").read_text())
    assert set(rows) == set(extras)
    for extra, requirements in extras.items():
        row = rows[extra].lower()
        for requirement in requirements:
            name = re.match(r"[\w.-]+(\[[\w,]+\])?", requirement)
            assert name is not None
            if name[1] and "all of the above" not in row:  # autoregressive[other extras]
                missing = [e for e in name[1][1:-1].split(",") if f"``{e}`` extra" not in row]
            else:
                missing = [] if name[1] or name[0].lower() in row else [name[0]]
            assert not missing, f"docs/installation.rst: the {extra!r} row omits {missing}"
