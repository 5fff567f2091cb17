"""The colour suite (``python -m benchmarks --only colour``) runs and records every measure.

Run in the hidden ``--tiny`` mode (8x8x3 images, 2-block models) into a temporary folder; the
checks are about what is recorded, not about the timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def colour_section(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench-colour")
    args = ["--tiny", "--only", "colour", "--device", "cpu", "--threads", "1", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (path,) = out.glob("*.json")
    md = path.with_suffix(".md").read_text()
    return json.loads(path.read_text())["sections"]["colour"], md


def _timing_ok(s: dict) -> bool:
    return s["n"] == len(s["times"]) >= 1 and s["min"] <= s["median"] <= s["max"]


@pytest.mark.slow
def test_colour_suite_records_both_models(colour_section: tuple[dict, str]) -> None:
    section, md = colour_section
    rows = section["rows"]
    measures = ["train step", "output layer", "sampling", "sampling"]
    assert [(r["model"], r["measure"]) for r in rows] == [
        (m, k) for m in ("dlm", "categorical") for k in measures
    ]
    keys = [key for _, key in section["columns"]]
    for row in rows:
        assert set(keys) <= set(row) and _timing_ok(row["time"])
    by = {(r["model"], r["measure"], r["batch"]): r for r in rows}
    # output layer: 2 components x (1 logit + 3 means + 3 scales + 3 coefficients) vs 3 x 256
    dlm, cat = by["dlm", "output layer", 2], by["categorical", "output layer", 2]
    assert (dlm["out_channels"], cat["out_channels"]) == (20, 768)
    assert cat["out_bytes"] == 2 * 768 * 8 * 8 * 4 and dlm["out_bytes"] == 2 * 20 * 8 * 8 * 4
    for model, steps in (("dlm", 64), ("categorical", 192)):  # a pixel vs a sub-pixel per step
        for batch in (1, 2):
            row = by[model, "sampling", batch]
            assert row["naive_steps_total"] == steps and row["naive_source"].startswith("measured")
            assert _timing_ok(row["cached"]) and row["cache_bytes"] > 0 and row["speedup"] > 0
    assert by["dlm", "train step", 2]["params"] < by["categorical", "train step", 2]["params"]
    assert f"## {section['title']}" in md and md.count("\n| dlm |") == 4
