"""examples/compress_mnist.py on a few synthetic digits: exact round trips, a results table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from example_scripts import load_script
from test_data import write_mnist

pytest.importorskip("constriction", reason='needs pip install ".[compression]"')

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "compress_mnist.py"


@pytest.fixture(scope="module")
def script():
    return load_script(SCRIPT)


def test_compresses_a_few_digits_at_the_models_likelihood(script, tmp_path):
    write_mnist(tmp_path / "data", 4, 6)
    out = tmp_path / "out"
    flags = ["--data-dir", str(tmp_path / "data"), "--no-download", "--limit", "5"]
    assert (
        script.main([*flags, "--stream-images", "3", "--batch-size", "2", "--out", str(out)]) == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["digits"] == 5 and len(results["stream_bytes"]) == 2
    payload_bits = 8 * (sum(results["stream_bytes"]) - 2 * 54) / 5
    nll = results["nll_bits_per_digit"]
    assert nll - 1 <= payload_bits <= nll * 1.01 + 2 * 64 / 5
    assert set(results["baselines"]) == {
        "packed bits", "gzip -9", "bz2 -9", "lzma -9e", "png per digit", "png of all"
    }  # fmt: skip
    assert results["baselines"]["packed bits"] == 5 * 98
    table = (out / "results.md").read_text()
    assert "| autoregressive.compress |" in table and not math.isnan(nll)


def test_refuses_an_unknown_model(script, capsys):
    with pytest.raises(SystemExit):
        script.main(["--model", "no-such-model"])
    assert "not a shipped model" in capsys.readouterr().err
