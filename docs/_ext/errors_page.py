"""Sphinx extension: the ``library-errors`` directive, a table of the library's errors.

The rows come from the registry the tests run (``tests/error_cases.py``): each case's code is
run again at build time and the table shows the exception and the message it really raised.
A case that no longer raises what the registry says is a build warning (an error under ``-W``),
so the page cannot drift from the code.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

TESTS = Path(__file__).resolve().parents[2] / "tests"
logger = logging.getLogger(__name__)


def rows() -> dict[str, list[tuple[str, str, str]]]:
    """``{area: [(code, exception name, message), ...]}``, by running every registered case."""
    sys.path.insert(0, str(TESTS))
    try:
        import error_cases
    finally:
        sys.path.remove(str(TESTS))
    table: dict[str, list[tuple[str, str, str]]] = {}
    for area, cases in error_cases.by_area().items():
        for case in cases:
            with tempfile.TemporaryDirectory() as tmp:
                err = error_cases.run(case, Path(tmp))
            if type(err) is not case.error:
                logger.warning("errors page: %s raised %r, not %s", case.code, err, case.error)
                continue
            message = str(err).replace(tmp, "tmp")  # the scratch folder, as the code names it
            table.setdefault(area, []).append((case.code, case.error.__name__, message))
    return table


def _row(*cells: nodes.Node) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry += nodes.paragraph("", "", cell)
        row += entry
    return row


def _table(entries: list[tuple[str, str, str]]) -> nodes.table:
    group = nodes.tgroup(cols=3)
    for width in (40, 15, 45):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += _row(nodes.Text("code"), nodes.Text("raises"), nodes.Text("message"))
    body = nodes.tbody()
    for code, name, message in entries:
        # literal: the messages are shown exactly as raised (no typographic quotes)
        body += _row(
            nodes.literal(code, code), nodes.literal(name, name), nodes.literal(message, message)
        )
    group += head
    group += body
    table = nodes.table()
    table += group
    return table


class LibraryErrors(SphinxDirective):
    """``.. library-errors::``: one section per area, each a table of code, error, message."""

    def run(self) -> list[nodes.Node]:
        import autoregressive

        # rebuild the page whenever the registry, this extension or the library changes
        package = Path(autoregressive.__file__).parent
        for source in [TESTS / "error_cases.py", Path(__file__), *sorted(package.rglob("*.py"))]:
            self.env.note_dependency(str(source))
        out: list[nodes.Node] = []
        for area, entries in rows().items():
            section = nodes.section(ids=[nodes.make_id(f"errors-{area}")])
            section += nodes.title(area, area)
            section += _table(entries)
            out.append(section)
        return out


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("library-errors", LibraryErrors)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
