"""Tests of autoregressive.pretrained and examples/package_weights.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from autoregressive import PixelCNN, PixelCNNConfig
from autoregressive.checksums import file_sha256
from autoregressive.pretrained import WEIGHTS_DIR, ChecksumError, available, load_pretrained
from autoregressive.training import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
REAL_MNIST = REPO.parent / "shared" / "data" / "mnist"
TINY = PixelCNNConfig(block="gated", num_blocks=2, hidden_channels=8, image_size=(8, 8))


def _package_script():
    path = REPO / "examples" / "package_weights.py"
    spec = importlib.util.spec_from_file_location("package_weights", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def packaged(tmp_path) -> tuple[Path, PixelCNN]:
    """A fake finished run (as mnist_pixelcnn.py writes it), packaged into a tmp folder."""
    torch.manual_seed(0)
    model = PixelCNN(TINY)
    run = tmp_path / "run"
    final = {"epoch": 3, "test_nll": 40.5, "test_bits_per_dim": 0.91}
    save_checkpoint(
        run / "weights.pt",
        {"config": dataclasses.asdict(TINY), "model": model.state_dict(),
         "metrics": final | {"binarize": "threshold", "threshold": 0.5}},
    )  # fmt: skip
    metrics = {"finished": True, "parameters": 123, "precision": {"name": "fp32"},
               "hardware": {"cpu": "test"}, "wall_seconds": 1.0}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    folder = tmp_path / "weights"
    assert _package_script().main([str(run), "tiny", "--folder", str(folder)]) == 0
    return folder, model


def test_packaged_weights_load_with_their_config_and_figures(packaged):
    folder, model = packaged
    entry = available(folder)["tiny"]
    assert entry["sha256"] == file_sha256(folder / "tiny.pt")
    assert (entry["test_nll"], entry["epochs"], entry["precision"]) == (40.5, 3, "fp32")
    loaded = load_pretrained("tiny", folder=folder)
    assert loaded.config == TINY and not loaded.training
    x = torch.randint(0, 2, (3, 1, 8, 8)).float()
    assert torch.equal(loaded.log_prob(x), model.eval().log_prob(x))


def test_unknown_name_lists_the_known_ones(packaged):
    folder, _ = packaged
    with pytest.raises(ValueError, match=r"no pretrained model named 'nope'; available: tiny"):
        load_pretrained("nope", folder=folder)
    with pytest.raises(ValueError, match="available: "):
        PixelCNN.from_pretrained("nope")


@pytest.mark.parametrize("offset", [0, 100, -1, -5000])
def test_a_changed_byte_fails_the_checksum(packaged, offset):
    folder, _ = packaged
    path = folder / "tiny.pt"
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="damaged or was replaced: SHA-256"):
        load_pretrained("tiny", folder=folder)


def test_a_missing_file_is_a_clear_error(packaged):
    folder, _ = packaged
    (folder / "tiny.pt").unlink()
    with pytest.raises(ChecksumError, match="missing"):
        load_pretrained("tiny", folder=folder)


def test_an_unfinished_run_is_not_packaged(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "weights.pt", {"config": {}, "model": {}, "metrics": {}})
    (run / "metrics.json").write_text(json.dumps({"finished": False}))
    with pytest.raises(SystemExit, match="has not finished"):
        _package_script().main([str(run), "x", "--folder", str(tmp_path / "w")])


@pytest.mark.parametrize("name", sorted(available()))
def test_every_shipped_model_matches_its_checksum(name):
    entry = available()[name]
    assert file_sha256(WEIGHTS_DIR / entry["file"]) == entry["sha256"]
    assert PixelCNN.from_pretrained(name).config.data_channels == 1


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_MNIST / "MNIST" / "raw").is_dir(), reason="needs ../shared MNIST")
@pytest.mark.parametrize("name", [n for n in sorted(available()) if n.startswith("mnist")])
def test_shipped_mnist_model_reproduces_its_test_nll(name):
    from autoregressive.data import (
        BinarizedBatches,
        derive_seed,
        dynamic_binarize,
        load_mnist,
        threshold_binarize,
    )
    from autoregressive.training import evaluate

    entry = available()[name]
    test_x, _ = load_mnist(REAL_MNIST, train=False, download=False)
    if entry["data"]["binarize"] == "threshold":
        x = threshold_binarize(test_x, entry["data"]["threshold"])
    else:
        x = dynamic_binarize(test_x, torch.Generator().manual_seed(derive_seed(0, "test")))
    model = PixelCNN.from_pretrained(name)
    stats = evaluate(
        model, BinarizedBatches(x, batch_size=500, binarize=None), device=torch.device("cpu")
    )
    assert stats.images == 10_000
    assert stats.nll == pytest.approx(entry["test_nll"], abs=0.1)
