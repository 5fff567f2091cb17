"""examples/ood_mnist.py on a few synthetic digits: the scores it reports, resume, its flags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from example_scripts import load_script, main_caller
from test_data import write_mnist

from autoregressive import PixelCNN

for _module in ("tqdm", "matplotlib"):  # the `examples` extra
    pytest.importorskip(_module)

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "ood_mnist.py"
SETS = {
    "MNIST test digits", "inverted digits", "upside-down digits", "digits rotated 90°",
    "blank (all black)", "all white",
}  # fmt: skip


@pytest.fixture(scope="module")
def script():
    return load_script(SCRIPT)


@pytest.fixture
def call(capsys):
    yield from main_caller(SCRIPT, capsys)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(root, 48, 24)
    return root


def flags(data: Path, out: Path) -> list[str]:
    """Two steps of 8 perturbed digits; 12 test digits, 4 in each set made from them."""
    return [
        *("--data-dir", str(data), "--no-download", "--out", str(out), "--threads", "1"),
        *("--train-images", "48", "--epochs", "1", "--batch-size", "8"),
        *("--limit-train-batches", "2", "--test-images", "12", "--ood-images", "4"),
        *("--chunk-size", "5", "--rate", "0.2"),
    ]


def test_reports_both_scores_of_every_set_as_the_saved_models_give_them(call, data, tmp_path):
    out = tmp_path / "out"
    code, err = call(flags(data, out))
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    sets = results["sets"]
    assert set(sets) >= SETS and len(sets) == len(SETS) + 1  # and the noise
    assert sets["MNIST test digits"]["images"] == 12 and sets["inverted digits"]["images"] == 4
    for name, row in sets.items():
        aurocs = [row.get("auroc_log_likelihood"), row.get("auroc_ratio")]
        if name == "MNIST test digits":
            assert aurocs == [None, None]
        else:
            assert all(0 <= a <= 1 for a in aurocs), (name, aurocs)
    model = PixelCNN.from_pretrained("mnist-demo")
    background = PixelCNN.from_pretrained(out / "background")
    blank = torch.zeros(1, 1, 28, 28)
    with torch.no_grad():
        raw, base = float(model.log_prob(blank)), float(background.log_prob(blank))
    row = sets["blank (all black)"]
    assert math.isclose(row["mean_log_likelihood"], raw, rel_tol=1e-5)
    assert math.isclose(row["mean_ratio"], raw - base, rel_tol=1e-5, abs_tol=1e-4)
    assert results["background"]["epochs"][0]["images"] == 16
    table = (out / "results.md").read_text()
    assert all(f"| {name} |" in table for name in SETS)
    assert (out / "scores.png").stat().st_size > 0


def test_resume_scores_with_the_saved_background_model(call, data, tmp_path, capsys):
    out = tmp_path / "out"
    assert call(flags(data, out))[0] == 0
    first = json.loads((out / "results.json").read_text())
    code, _ = call([*flags(data, out), "--resume"])
    assert code == 0
    again = json.loads((out / "results.json").read_text())
    assert again["sets"] == first["sets"] and again["background"] == first["background"]
    code, err = call([*flags(data, out), "--resume", "--rate", "0.3"])
    assert code == 2 and "background model of other settings" in err


def pairwise_auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """The definition: the share of (in, out) pairs the in-distribution score wins, ties half."""
    wins = (inside[:, None] > outside[None, :]).sum() + 0.5 * (inside[:, None] == outside).sum()
    return float(wins / (len(inside) * len(outside)))


@pytest.mark.parametrize("seed", range(5))
def test_rank_auroc_is_the_share_of_pairs_won(script, seed):
    rng = np.random.default_rng(seed)
    inside, outside = rng.integers(0, 6, 30).astype(float), rng.integers(2, 9, 17).astype(float)
    assert math.isclose(script.auroc(inside, outside), pairwise_auroc(inside, outside))
    assert script.auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert script.auroc(np.array([0.0]), np.array([1.0])) == 0.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rate", "1.5"], "--rate: must be a finite number > 0 and < 1"),
        (["--ood-images", "13"], "--ood-images 13: --test-images has only 12"),
        (["--model", "no-such-model"], "--model no-such-model: not a shipped model"),
    ],
)
def test_refuses_bad_flags_before_anything_runs(call, data, tmp_path, extra, message):
    code, err = call([*flags(data, tmp_path / "out"), *extra])
    assert code == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_refuses_more_digits_than_the_files_hold(call, data, tmp_path):
    code, err = call([*flags(data, tmp_path / "out"), "--test-images", "30"])
    assert code == 2 and "--test-images 30" in err and "24 images" in err
