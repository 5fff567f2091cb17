"""examples/compress_images.py on a few synthetic digits and colour patches: exact round trips,
tables whose figures agree with the model's likelihood, and the flags it refuses."""

from __future__ import annotations

import json
import lzma
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from example_scripts import load_script
from test_data import write_mnist

from autoregressive import PixelCNN, PixelCNNConfig
from autoregressive.training import save_checkpoint

pytest.importorskip("constriction", reason='needs pip install ".[compression]"')

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "compress_images.py"
#: bytes of a stream besides the coder's words: header and checksum
OVERHEAD = 54


@pytest.fixture(scope="module")
def script():
    return load_script(SCRIPT)


def check_sizes(results: dict, streams: int) -> None:
    """The coded bits are the NLL up to the coder's last words; baselines by name."""
    n, nll = results["images"], results["nll_bits_per_image"]
    assert len(results["stream_bytes"]) == streams and not math.isnan(nll)
    payload_bits = 8 * (sum(results["stream_bytes"]) - streams * OVERHEAD) / n
    assert nll - 1 <= payload_bits <= nll * 1.01 + streams * 64 / n
    assert results["header_bits_per_image"] == 8 * OVERHEAD * streams / n


def baseline_names(raw: str, unit: str) -> set[str]:
    each = {f"{c} per {unit}" for c in ("gzip -9", "bz2 -9", "lzma -9e")}
    return {raw, *each, "gzip -9 of all", "bz2 -9 of all", "lzma -9e of all",
            f"png per {unit}", "png of all"}  # fmt: skip


def test_compresses_a_few_digits_at_the_models_likelihood(script, tmp_path):
    write_mnist(tmp_path / "data", 4, 6)
    out = tmp_path / "out"
    flags = ["--data-dir", str(tmp_path / "data"), "--no-download", "--limit", "5"]
    assert (
        script.main([*flags, "--stream-images", "3", "--batch-size", "2", "--out", str(out)]) == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == 5 and results["unit"] == "digit"
    check_sizes(results, streams=2)
    assert set(results["baselines"]) == baseline_names("packed bits", "digit")
    assert results["baselines"]["packed bits"] == 5 * 98
    table = (out / "results.md").read_text()
    assert "| autoregressive.compress |" in table and "bytes per digit" in table


def smooth_patches(n: int, size: int) -> np.ndarray:
    """``n`` colour patches ``(n, 3, size, size)`` ``uint8``: gradients plus a little noise."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size)
    base = ramp[None, None, :, None] + ramp[None, None, None, :] / 2  # (1, 1, s, s)
    shift = rng.integers(0, 50, (n, 3, 1, 1))
    noise = rng.integers(0, 4, (n, 3, size, size))
    return (base + shift + noise).clip(0, 255).astype(np.uint8)


def write_weights(path: Path, layout: str) -> PixelCNN:
    """A tiny untrained mixture model, saved as a ``weights.pt`` or a run's ``checkpoint.pt``."""
    torch.manual_seed(0)
    config = PixelCNNConfig(
        data_channels=3, distribution="logistic_mixture", levels=256, mixtures=2,
        num_blocks=1, hidden_channels=8, image_size=(6, 6),
    )  # fmt: skip
    model = PixelCNN(config)
    if layout == "weights":
        save_checkpoint(path, {"config": config.to_dict(), "model": model.state_dict()})
    else:
        run = {"config": config.to_dict(), "seed": 0}
        save_checkpoint(path, {"run": run, "model": model.state_dict(), "epoch": 1})
    return model.eval()


@pytest.mark.parametrize("layout", ["weights", "checkpoint"])
def test_compresses_colour_patches_at_the_models_likelihood(script, tmp_path, layout):
    model = write_weights(tmp_path / "model.pt", layout)
    patches = smooth_patches(3, 6)
    np.save(tmp_path / "patches.npy", patches)
    out = tmp_path / "out"
    flags = ["--data", "colour", "--weights", str(tmp_path / "model.pt"), "--out", str(out)]
    flags += ["--images", str(tmp_path / "patches.npy"), "--stream-images", "2"]
    assert script.main([*flags, "--batch-size", "2"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == 3 and results["sub_pixels_per_image"] == 108
    check_sizes(results, streams=2)
    with torch.no_grad():
        nats = -model.log_prob(torch.from_numpy(patches).long()).sum().item()
    assert results["nll_bits_per_image"] == pytest.approx(nats / math.log(2) / 3, rel=1e-5)
    baselines = results["baselines"]
    assert set(baselines) == baseline_names("raw bytes", "image")
    assert baselines["raw bytes"] == patches.size
    assert baselines["gzip -9 per image"] > baselines["gzip -9 of all"]  # 3 headers, not 1
    table = (out / "results.md").read_text()
    assert "| model NLL + stream headers |" in table and "bytes per image" in table


def test_reads_the_patches_in_pixel_order(script):
    images = script.byte_set(torch.from_numpy(smooth_patches(2, 4)), "patch")
    assert images.raw.shape == (2, 48) and images.pixels.shape == (2, 4, 4, 3)
    assert images.raw[1, :3].tolist() == images.values[1, :, 0, 0].tolist()  # R, G, B
    assert images.values.dtype == torch.long and images.units == "patches"


@pytest.mark.parametrize("size", [1, 98, 3072, 70_000])
def test_lzma_9e_with_a_small_dictionary_matches_the_preset(script, size):
    data = smooth_patches(size // 108 + 1, 6).tobytes()[:size]
    small = script.lzma_9e(data)
    assert len(small) == len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    assert lzma.decompress(small) == data


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--model", "no-such-model"], "not a shipped model"),
        (["--data", "colour"], "--data colour needs --weights"),
        (["--images", "x.npy"], "pass --data colour with it"),
    ],
)
def test_refuses_flags_that_cannot_work(script, capsys, flags, says):
    with pytest.raises(SystemExit):
        script.main(flags)
    assert says in capsys.readouterr().err


@pytest.mark.parametrize(
    ("array", "says"),
    [
        (np.zeros((2, 3, 6, 6), np.float32), "save uint8 images"),
        (np.zeros((2, 1, 6, 6), np.uint8), "channel"),  # the model's own check: RGB
    ],
)
def test_refuses_images_the_model_cannot_code(script, tmp_path, capsys, array, says):
    write_weights(tmp_path / "model.pt", "weights")
    np.save(tmp_path / "x.npy", array)
    flags = ["--data", "colour", "--weights", str(tmp_path / "model.pt")]
    flags += ["--images", str(tmp_path / "x.npy"), "--out", str(tmp_path / "out")]
    assert script.main(flags) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_refuses_a_checkpoint_without_a_model(script, tmp_path, capsys):
    save_checkpoint(tmp_path / "other.pt", {"epoch": 3})
    flags = ["--data", "colour", "--weights", str(tmp_path / "other.pt")]
    assert script.main([*flags, "--out", str(tmp_path / "out")]) == 2
    assert "no config and weights" in capsys.readouterr().err
