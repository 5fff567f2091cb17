"""Sphinx extension: ``.. presets-table::``, a table of ``autoregressive.PRESETS`` from the code.

Each row is a preset's name, the fields in which it differs from ``PixelCNNConfig()`` and its
parameter count, so the table cannot drift from the presets.
"""

from __future__ import annotations

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def presets_table_lines() -> list[str]:
    """The reStructuredText of the table, one line per item."""
    from autoregressive import PRESETS, PixelCNN, PixelCNNConfig

    default = PixelCNNConfig()
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 15 65 20",
        "",
        "   * - name",
        "     - fields that differ from ``PixelCNNConfig()``",
        "     - parameters",
    ]
    for name, cfg in PRESETS.items():
        changed = [
            f"``{f}={getattr(cfg, f)!r}``"
            for f in cfg.__dataclass_fields__
            if getattr(cfg, f) != getattr(default, f)
        ]
        params = sum(p.numel() for p in PixelCNN(cfg).parameters())
        lines += [
            f"   * - ``{name!r}``",
            f"     - {', '.join(changed) or 'the defaults'}",
            f"     - {params:,}",
        ]
    return lines


class PresetsTable(SphinxDirective):
    """The directive: parses :func:`presets_table_lines` in place."""

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(StringList(presets_table_lines()), self.content_offset, container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("presets-table", PresetsTable)
    return {"parallel_read_safe": True}
