"""Every documented refusal (``tests/error_cases.py``) raises what the Errors page says it does.

The same table builds the documentation's *Errors* page, so a message changed here changes the
page, and an error the page lists is one this test has seen raised.
"""

from __future__ import annotations

import re
import tempfile

import pytest
from error_cases import CASES, Case, is_library_error, run


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.code[:60])
def test_documented_error_is_raised_by_the_library(case: Case, tmp_path):
    err = run(case, tmp_path)
    assert err is not None, f"{case.code} raised nothing"
    assert type(err) is case.error, f"{case.code}: {type(err).__name__}: {err}"
    assert re.search(case.match, str(err)), f"{case.code}: {err}"
    assert is_library_error(err), f"{case.code}: not raised by a `raise` of the library: {err}"


def test_every_area_of_the_issue_has_cases():
    areas = {case.area for case in CASES}
    assert {
        "Configuration", "Layers and blocks", "Samplers", "Checkpoints", "MNIST files",
        "Compression", "Training helpers",
    } <= areas  # fmt: skip
    assert len({case.code for case in CASES}) == len(CASES), "duplicate cases"


def test_the_docs_page_lists_every_case_with_its_real_message():
    pytest.importorskip("sphinx")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "_ext" / "errors_page.py"
    spec = importlib.util.spec_from_file_location("errors_page", path)
    assert spec is not None and spec.loader is not None
    page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page)
    listed = [row for rows in page.rows().values() for row in rows]
    assert [code for code, _, _ in listed] == [case.code for case in CASES]
    for (_, name, message), case in zip(listed, CASES, strict=True):
        assert name == case.error.__name__ and re.search(case.match, message)
        assert tempfile.gettempdir() not in message, "a path of the machine that ran it"
