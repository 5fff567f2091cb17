"""Tests of save_pretrained / from_pretrained, models.pretrained and package_weights.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from error_cases import is_library_error
from helpers import read_only
from safetensors.torch import load_file, save_file

from autoregressive import Conditioning, PixelCNN, PixelCNNConfig
from autoregressive.checkpoint import CheckpointError, load_checkpoint
from autoregressive.checksums import file_sha256, tensors_sha256
from autoregressive.models.pretrained import WEIGHTS_DIR, ChecksumError, available, load_pretrained
from autoregressive.models.serialization import CONFIG_NAME, PRETRAINED_FORMAT, WEIGHTS_NAME
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


@pytest.mark.slow  # scores the 10,000 test images
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


# ------------------------------------------------------------- save_pretrained / from_pretrained
SIZE = (5, 5)
CONFIGS = {
    "residual-bernoulli": PixelCNNConfig(num_blocks=1, hidden_channels=4, image_size=SIZE),
    "gated-bernoulli-head": PixelCNNConfig(
        block="gated", num_blocks=2, hidden_channels=4, head_channels=8, image_size=SIZE
    ),
    "residual-categorical-rgb": PixelCNNConfig(
        data_channels=3, distribution="categorical", levels=4, num_blocks=1, hidden_channels=6
    ),
    "gated-logistic-mixture": PixelCNNConfig(
        data_channels=3,
        distribution="logistic_mixture",
        levels=8,
        mixtures=2,
        block="gated",
        num_blocks=2,
        hidden_channels=4,
    ),
    "residual-learned-embedding": PixelCNNConfig(
        distribution="categorical",
        levels=5,
        input_embedding="learned",
        embedding_dim=3,
        num_blocks=1,
        hidden_channels=4,
    ),
    "gated-conditional": PixelCNNConfig(
        block="gated",
        num_blocks=2,
        hidden_channels=4,
        num_classes=3,
        vector_size=2,
        spatial_channels=2,
    ),
    "residual-conditional": PixelCNNConfig(
        num_blocks=1, hidden_channels=4, num_classes=3, vector_size=2, spatial_channels=2
    ),
}


def _inputs(config: PixelCNNConfig, n: int = 3, seed: int = 0) -> dict[str, object]:
    """A batch of ``n`` valid images ``x`` and the conditioning ``cond`` ``config`` asks for."""
    g = torch.Generator().manual_seed(seed)
    levels = 2 if config.distribution == "bernoulli" else config.levels
    x = torch.randint(0, levels, (n, config.data_channels, *SIZE), generator=g)
    parts = {}
    if config.num_classes is not None:
        parts["labels"] = torch.randint(0, config.num_classes, (n,), generator=g)
    if config.vector_size is not None:
        parts["vector"] = torch.randn(n, config.vector_size, generator=g)
    if config.spatial_channels is not None:
        parts["spatial"] = torch.randn(n, config.spatial_channels, *SIZE, generator=g)
    x = x.float() if config.distribution == "bernoulli" else x
    return {"x": x, "cond": Conditioning(**parts) if parts else None}


def _model(config: PixelCNNConfig, seed: int = 0, **factory) -> PixelCNN:
    torch.manual_seed(seed)
    return PixelCNN(config, **factory)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_save_then_load_gives_the_same_model_bit_for_bit(name, tmp_path):
    model = _model(CONFIGS[name])
    assert model.save_pretrained(tmp_path / "m") == tmp_path / "m"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    loaded = PixelCNN.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and not loaded.training
    assert tensors_sha256(loaded.state_dict()) == tensors_sha256(model.state_dict())
    inputs = _inputs(model.config)
    assert torch.equal(loaded.log_prob(**inputs), model.eval().log_prob(**inputs))
    assert PixelCNN.from_pretrained(str(tmp_path / "m")).config == model.config  # a str path


def test_the_dtype_of_the_weights_is_kept(tmp_path):
    model = _model(CONFIGS["gated-bernoulli-head"], dtype=torch.float64)
    loaded = PixelCNN.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    x = _inputs(model.config)["x"]
    assert torch.equal(loaded.log_prob(x), model.eval().log_prob(x))


def test_config_json_holds_the_format_the_version_and_the_config(tmp_path):
    import autoregressive

    model = _model(CONFIGS["gated-conditional"])
    header = json.loads((model.save_pretrained(tmp_path) / CONFIG_NAME).read_text())
    assert header["format"] == PRETRAINED_FORMAT
    assert header["library_version"] == autoregressive.__version__
    assert header["weights_sha256"] == tensors_sha256(model.state_dict())
    assert PixelCNNConfig.from_dict(header["config"]) == model.config
    assert load_file(tmp_path / WEIGHTS_NAME).keys() == model.state_dict().keys()


def test_saving_again_replaces_the_pair_and_keeps_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    _model(CONFIGS["residual-bernoulli"], seed=1).save_pretrained(tmp_path)
    other = _model(CONFIGS["gated-bernoulli-head"], seed=2)
    other.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME, "notes.txt"]
    loaded = PixelCNN.from_pretrained(tmp_path)
    assert tensors_sha256(loaded.state_dict()) == tensors_sha256(other.state_dict())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_dict_round_trips_through_json(name):
    config = CONFIGS[name]
    data = config.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert PixelCNNConfig.from_dict(json.loads(json.dumps(data))) == config
    assert list(data) == [f.name for f in dataclasses.fields(PixelCNNConfig)]


def test_config_from_dict_takes_defaults_and_names_bad_keys():
    assert PixelCNNConfig.from_dict({}) == PixelCNNConfig()
    with pytest.raises(ValueError, match=r"unknown fields 'num_block', 'depth' \(fields: "):
        PixelCNNConfig.from_dict({"num_block": 2, "depth": 3})
    with pytest.raises(TypeError, match=r"num_blocks must be an int, got str"):
        PixelCNNConfig.from_dict({"num_blocks": "2"})
    with pytest.raises(ValueError, match=r"block must be one of"):
        PixelCNNConfig.from_dict({"block": "dense"})
    with pytest.raises(TypeError, match=r"field names must be str, got 3"):
        PixelCNNConfig.from_dict({3: 1})
    with pytest.raises(TypeError, match=r"data must be a dict of fields, got list"):
        PixelCNNConfig.from_dict([("num_blocks", 2)])


# ------------------------------------------------------------------------ the shipped weights
#: ``tensors_sha256`` of the ``mnist-demo`` state_dict as ``PixelCNN.from_pretrained`` loaded it
#: before save_pretrained existed (computed with that code, commit e1fa95c).
MNIST_DEMO_WEIGHTS_SHA256 = "582d4402e323036de649d36a05a56f8468a71d7cb46f25438fb8002c883f9e44"


def _load_the_old_way(name: str) -> PixelCNN:
    """The shipped model loaded as the code before save_pretrained did, step by step."""
    saved = load_checkpoint(WEIGHTS_DIR / available()[name]["file"])
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()}
    model = PixelCNN(PixelCNNConfig(**fields))
    model.load_state_dict(saved["model"])
    return model.eval()


def test_mnist_demo_loads_the_same_model_as_before(tmp_path):
    old, new = _load_the_old_way("mnist-demo"), PixelCNN.from_pretrained("mnist-demo")
    assert new.config == old.config and not new.training
    assert tensors_sha256(new.state_dict()) == MNIST_DEMO_WEIGHTS_SHA256
    assert tensors_sha256(old.state_dict()) == MNIST_DEMO_WEIGHTS_SHA256
    x = torch.randint(0, 2, (4, 1, 28, 28), generator=torch.Generator().manual_seed(0)).float()
    expected = old.log_prob(x)
    assert torch.equal(new.log_prob(x), expected)
    again = PixelCNN.from_pretrained(new.save_pretrained(tmp_path / "mnist-demo"))
    assert torch.equal(again.log_prob(x), expected)


@pytest.mark.slow
def test_loading_a_model_imports_no_training_or_data_code(tmp_path):
    _model(CONFIGS["gated-conditional"]).save_pretrained(tmp_path)
    code = (
        "import sys, autoregressive\n"
        "autoregressive.PixelCNN.from_pretrained('mnist-demo')\n"
        f"autoregressive.PixelCNN.from_pretrained({str(tmp_path)!r})\n"
        "heavy = ['autoregressive.training', 'autoregressive.data', 'torchvision']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"loading a model imported {done.stdout.strip()}"


# ---------------------------------------------------------------------------------- errors
def _saved(tmp_path: Path, name: str = "residual-bernoulli", seed: int = 0) -> Path:
    return _model(CONFIGS[name], seed=seed).save_pretrained(tmp_path / name)


def _edit_header(directory: Path, **changes: object) -> None:
    header = json.loads((directory / CONFIG_NAME).read_text())
    (directory / CONFIG_NAME).write_text(json.dumps(header | changes))


def _foreign_weights(tmp_path: Path) -> Path:
    """A directory whose model.safetensors is another model's (its checksum recorded too)."""
    directory = _saved(tmp_path)
    other = _saved(tmp_path, "gated-bernoulli-head")
    (directory / WEIGHTS_NAME).write_bytes((other / WEIGHTS_NAME).read_bytes())
    _edit_header(directory, weights_sha256=tensors_sha256(load_file(other / WEIGHTS_NAME)))
    return directory


def _changed_value(tmp_path: Path) -> Path:
    """A directory with one weight changed after saving (names and shapes unchanged)."""
    directory = _saved(tmp_path)
    weights = load_file(directory / WEIGHTS_NAME)
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1
    save_file(weights, directory / WEIGHTS_NAME)
    return directory


def _without(filename: str):
    def damage(tmp_path: Path) -> Path:
        directory = _saved(tmp_path)
        (directory / filename).unlink()
        return directory

    return damage


def _written_over(filename: str, data: bytes | None = None, cut: int = 0):
    def damage(tmp_path: Path) -> Path:
        directory = _saved(tmp_path)
        path = directory / filename
        path.write_bytes(data if data is not None else path.read_bytes()[:-cut])
        return directory

    return damage


def _header(**changes: object):
    def damage(tmp_path: Path) -> Path:
        directory = _saved(tmp_path)
        _edit_header(directory, **changes)
        return directory

    return damage


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "weights.pt"
    save_checkpoint(path, {"model": {}})
    return path


#: (how the directory is made, the error, what its message says)
DAMAGED = {
    "missing directory": (lambda t: t / "absent", CheckpointError, r"no saved model at .*absent"),
    "a file": (_a_file, CheckpointError, r"weights.pt is a file; from_pretrained takes the dir"),
    "no config.json": (_without(CONFIG_NAME), CheckpointError, r"no config.json \(its weights "),
    "no weights": (_without(WEIGHTS_NAME), CheckpointError, r"config.json but no model.safet"),
    "damaged JSON": (
        _written_over(CONFIG_NAME, b'{"format": "autoregressive.pretrained/1", "con'),
        CheckpointError,
        r"config.json is not valid JSON \(.*\): it is damaged; save the model again",
    ),
    "another format": (
        _header(format="diffusers", library_version="9.0"),
        CheckpointError,
        r"has format 'diffusers', not 'autoregressive.pretrained/1'.*autoregressive 9.0",
    ),
    "JSON list": (_written_over(CONFIG_NAME, b"[1, 2]"), CheckpointError, r"has format 'list'"),
    "unknown config field": (
        _header(config={"num_blocks": 1, "hidden_channels": 4, "depth": 3}),
        CheckpointError,
        r"config in .*config.json is invalid: PixelCNNConfig: unknown field 'depth'",
    ),
    "bad config value": (
        _header(config={"num_blocks": "one"}),
        CheckpointError,
        r"is invalid: PixelCNNConfig: num_blocks must be an int, got str",
    ),
    "no checksum": (_header(weights_sha256=None), CheckpointError, r"no 'weights_sha256'"),
    "truncated weights": (
        _written_over(WEIGHTS_NAME, cut=7),
        CheckpointError,
        r"model.safetensors cannot be read \(.*\): it is damaged",
    ),
    "foreign weights": (
        _foreign_weights,
        CheckpointError,
        r"do not fit its config \(missing weights .*; unexpected weights .*\): they belong to",
    ),
    "wrong shapes": (
        _header(config=CONFIGS["residual-bernoulli"].replace(hidden_channels=6).to_dict()),
        CheckpointError,
        r"wrong shapes network.0.weight: \(4, 1, 7, 7\) but the model's is \(6, 1, 7, 7\)",
    ),
    "changed value": (
        _changed_value,
        CheckpointError,
        r"damaged or were replaced: their SHA-256 differs from the one in config.json",
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_or_mismatched_directory_is_a_clear_error(case, tmp_path):
    make, error, match = DAMAGED[case]
    directory = make(tmp_path)
    with pytest.raises(error, match=match) as info:
        PixelCNN.from_pretrained(directory)
    assert is_library_error(info.value), info.value


def test_an_interrupted_save_is_detected(tmp_path, monkeypatch):
    _model(CONFIGS["residual-bernoulli"], seed=1).save_pretrained(tmp_path)
    real_replace = os.replace

    def crash_at_config(src, dst):
        if Path(dst).name == CONFIG_NAME:
            raise KeyboardInterrupt  # the process dies between the two files
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_at_config)
    with pytest.raises(KeyboardInterrupt):
        _model(CONFIGS["residual-bernoulli"], seed=2).save_pretrained(tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    with pytest.raises(CheckpointError, match=r"the two files may come from different saves"):
        PixelCNN.from_pretrained(tmp_path)


def test_names_and_directories_are_told_apart(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"no pretrained model named 'nope'; available: .*mnist-d"):
        PixelCNN.from_pretrained("nope")
    with pytest.raises(TypeError, match=r"name_or_dir must be a shipped name"):
        PixelCNN.from_pretrained(3)
    monkeypatch.chdir(tmp_path)
    model = _model(CONFIGS["residual-bernoulli"])
    model.save_pretrained("mnist-demo")
    with pytest.raises(ValueError, match=r"both a shipped model and a directory here; pass Path"):
        PixelCNN.from_pretrained("mnist-demo")
    assert PixelCNN.from_pretrained(Path("mnist-demo")).config == model.config
    assert PixelCNN.from_pretrained("./mnist-demo").config == model.config


def test_saving_where_a_file_is_is_a_clear_error(tmp_path):
    model = _model(CONFIGS["residual-bernoulli"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"file is not a directory; pass the path of a new or"):
        model.save_pretrained(tmp_path / "file")
    with pytest.raises(ValueError, match=r"is not a directory \(.*file, above it, is a file\)"):
        model.save_pretrained(tmp_path / "file" / "model")
    with pytest.raises(TypeError, match=r"directory must be a str or a Path, got int"):
        model.save_pretrained(3)
    assert (tmp_path / "file").read_text() == "x"


def test_saving_into_a_read_only_directory_is_a_clear_error(tmp_path, monkeypatch):
    model = _model(CONFIGS["residual-bernoulli"])
    directory = model.save_pretrained(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    refused = pytest.raises(PermissionError, match=r"cannot write to .*m \(Permission denied\)")
    with read_only(directory, monkeypatch), refused:
        _model(CONFIGS["residual-bernoulli"], seed=1).save_pretrained(directory)
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
