"""Every documented refusal (``tests/error_cases.py``) raises what the Errors page says it does.

The same table builds the documentation's *Errors* page, so a message changed here changes the
page, and an error the page lists is one this test has seen raised.
"""

from __future__ import annotations

import re

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
    assert {"Configuration", "Layers and blocks", "Samplers", "Checkpoints", "MNIST files"} <= areas
    assert len({case.code for case in CASES}) == len(CASES), "duplicate cases"
