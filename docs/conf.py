"""Sphinx configuration of the ``autoregressive`` documentation.

``make docs`` builds it twice, as HTML and as doctests, with ``-W`` (every warning fails).
Sphinx's own extensions do the work: autodoc + napoleon read the Google-style docstrings,
autosummary writes a page per name that ``api.rst`` lists, intersphinx links PyTorch and
Python. The few things no extension does are small extensions in ``docs/_ext/``; at the start
of each build this file also redraws the concept figures from the library's code
(``docs/figures.py``). Everything generated goes to ``docs/_generated/`` (git-ignored).
``tests/test_docs_api.py`` checks the API page and the docstrings' sections.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

import autoregressive

DOCS = Path(__file__).resolve().parent
GENERATED = DOCS / "_generated"
sys.path[:0] = [str(DOCS), str(DOCS / "_ext")]  # `figures` and our extensions

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
    # docs/_ext: what no Sphinx extension does
    "offline_inventory",  # small intersphinx inventories for PyTorch and Python, offline
    "benchmark_results",  # the benchmarks page from benchmarks/results/
    "presets_table",  # `.. presets-table::`, the presets from the code
    "errors_page",  # the errors page, from the tested registry in tests/error_cases.py
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
# defaults as written in the source (folder=WEIGHTS_DIR), not their values on the build machine
autodoc_preserve_defaults = True
autosummary_generate = True  # a page per name listed in api.rst (tests check it lists __all__)
# autosummary adds and rewrites pages but never deletes one: after a module moves, its old page
# would stay and warn (not in any toctree), so every build starts from an empty folder
shutil.rmtree(GENERATED / "api", ignore_errors=True)
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
# The build is offline: references resolve against inventories that docs/_ext/offline_inventory
# writes; set AUTOREGRESSIVE_DOCS_INTERSPHINX=online to use the published inventories instead.
ONLINE = os.environ.get("AUTOREGRESSIVE_DOCS_INTERSPHINX", "offline") == "online"
intersphinx_mapping = {
    "torch": (
        "https://docs.pytorch.org/docs/stable/",
        None if ONLINE else str(GENERATED / "inventories" / "torch.inv"),
    ),
    "python": (
        "https://docs.python.org/3/",
        None if ONLINE else str(GENERATED / "inventories" / "python.inv"),
    ),
}
intersphinx_timeout = 10


# -- build hooks ----------------------------------------------------------------------------------
def draw_figures(app: Sphinx) -> None:
    """Redraw the concept pages' figures from the library's code."""
    import figures

    paths = figures.main(GENERATED / "figures")
    logger.info("autoregressive docs: %d figures drawn", len(paths))


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("builder-inited", draw_figures)
    return {"parallel_read_safe": True}
