"""End-to-end tests of examples/colour_pixelcnn.py, run as a subprocess.

They train a tiny Gated PixelCNN for two short epochs on a few synthetic images in CIFAR-10's
pickle format (read with ``--no-verify``, the checksum-free reader), once per likelihood, and
check what the run wrote; a resumed run must reproduce an uninterrupted one exactly. One test
runs on the offline photo patches (skipped without scikit-image). The start-up checks of the
flags call the script's ``main`` in this process: they stop before any training.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from example_scripts import LINUX, NO_CUDA, bad, load_script, main_caller
from test_colour_data import write_cifar10

for _module in ("torchvision", "tqdm", "matplotlib"):  # the `examples` extra
    pytest.importorskip(_module)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "colour_pixelcnn.py"
PNG = b"\x89PNG\r\n\x1a\n"


def tiny_flags(out: Path, distribution: str) -> list[str]:
    """A 2-block, 6-channel gated model, 3 steps of 4 images per epoch, 2 epochs."""
    return [
        *("--out", str(out), "--distribution", distribution, "--mixtures", "2"),
        *("--block", "gated", "--num-blocks", "2", "--hidden-channels", "6"),
        *("--head-channels", "0", "--batch-size", "4", "--lr", "3e-3", "--epochs", "2"),
        *("--limit-train-batches", "3", "--eval-batch-size", "8", "--seed", "1"),
        *("--num-samples", "2", "--completions", "2", "--sample-epochs", "1", "--threads", "1"),
    ]


def run_script(args: list[str], *, expect: int = 0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == expect, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, per_batch=4)  # 20 training and 4 test images
    return ["--dataset", "cifar10", "--data-dir", str(root), "--no-verify"]


@pytest.mark.slow
@pytest.mark.parametrize("distribution", ["logistic_mixture", "categorical"])
def test_trains_and_writes_everything(cifar: list[str], tmp_path: Path, distribution: str) -> None:
    out = tmp_path / "run"
    stdout = run_script([*cifar, *tiny_flags(out, distribution)]).stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["finished"] and m["distribution"] == distribution
    assert m["config"]["distribution"] == distribution and m["config"]["data_channels"] == 3
    assert (m["train_images"], m["test_images"]) == (20, 4)
    assert [e["epoch"] for e in m["epochs"]] == [1, 2]
    for epoch in m["epochs"]:
        assert 0 < epoch["test_bits_per_dim"] < 12 and math.isfinite(epoch["train_bits_per_dim"])
        assert epoch["train_images"] == 12  # 3 steps of 4
        assert f"epoch {epoch['epoch']}: train" in stdout
    # test bits/dim is the mean NLL over the 4 test images in base 2 per dimension
    last = m["epochs"][-1]
    assert last["test_bits_per_dim"] == pytest.approx(
        last["test_nll"] / (3 * 32 * 32 * math.log(2)), rel=1e-12
    )
    names = [f"{kind}_epoch{e:03d}.png" for e in (1, 2) for kind in ("samples", "completions")]
    assert m["pictures"] == names
    for name in [*names, "loss_curve.png"]:
        assert (out / name).read_bytes().startswith(PNG), name
    assert (out / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(cifar: list[str], tmp_path: Path) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    run_script([*cifar, *tiny_flags(whole, "logistic_mixture")])
    first = tiny_flags(split, "logistic_mixture")
    first[first.index("--epochs") + 1] = "1"
    run_script([*cifar, *first])
    assert len(json.loads((split / "metrics.json").read_text())["epochs"]) == 1
    run_script([*cifar, *tiny_flags(split, "logistic_mixture"), "--resume"])
    a, b = (json.loads((d / "metrics.json").read_text())["epochs"] for d in (whole, split))
    keys = ("train_bits_per_dim", "test_bits_per_dim", "test_nll", "train_images")
    assert [[e[k] for k in keys] for e in a] == [[e[k] for k in keys] for e in b]
    assert (whole / "samples_epoch002.png").read_bytes() == (
        split / "samples_epoch002.png"
    ).read_bytes()


@pytest.mark.slow
def test_resume_refuses_another_runs_checkpoint(cifar: list[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = tiny_flags(out, "logistic_mixture")
    flags[flags.index("--epochs") + 1] = "1"
    run_script([*cifar, *flags])
    flags[flags.index("--lr") + 1] = "1e-2"
    result = run_script([*cifar, *flags, "--resume"], expect=2)
    assert "another run" in result.stderr and "lr" in result.stderr


@pytest.mark.slow
def test_cifar10_without_files_says_where_they_belong(tmp_path: Path) -> None:
    args = ["--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-download"]
    result = run_script([*args, *tiny_flags(tmp_path / "out", "categorical")], expect=2)
    assert "cifar-10-batches-py" in result.stderr


@pytest.mark.slow
def test_runs_on_the_photo_patches(tmp_path: Path) -> None:
    pytest.importorskip("skimage", reason="the photo patches need scikit-image")
    out = tmp_path / "run"
    flags = [
        *tiny_flags(out, "logistic_mixture"),
        "--train-images",
        "12",
        "--limit-test-batches",
        "1",
    ]
    run_script(flags)
    m = json.loads((out / "metrics.json").read_text())
    assert "not CIFAR-10" in m["data"] and m["train_images"] == 12
    assert all(0 < e["test_bits_per_dim"] < 12 for e in m["epochs"])


# ---------------------------------------------------------------------- start-up checks
#: Bad flags (added after tiny_flags; the last value of a flag wins) and the flag the message
#: must name. ``{file}`` stands for an existing file. The data has 20 training and 4 test images.
BAD_FLAGS = [
    bad("--seed", "-1"),
    bad("--device", "cuda", marks=NO_CUDA),
    bad("--precision", "fp8"),
    bad("--threads", "0"),
    bad("--dataset", "mnist"),
    bad("--train-images", "0"),
    bad("--train-images", "-5"),
    bad("--train-images", "21"),  # more than the data set
    bad("--limit-test-batches", "0"),
    bad("--eval-batch-size", "0"),
    bad("--distribution", "gaussian"),
    bad("--mixtures", "0"),
    bad("--block", "dense"),
    bad("--num-blocks", "0"),
    bad("--hidden-channels", "0"),
    bad("--hidden-channels", "10"),  # not a multiple of 3 colour groups
    bad("--head-channels", "-1"),
    bad("--lr", "0"),
    bad("--lr", "inf"),
    bad("--lr", "nan"),
    bad("--epochs", "0"),
    bad("--batch-size", "0"),
    bad("--limit-train-batches", "0"),
    bad("--sample-epochs", "0"),
    bad("--sample-epochs", "3"),  # past --epochs 2
    bad("--num-samples", "0"),
    bad("--completions", "0"),
    bad("--completions", "5"),  # more than the test set
    bad("--temperature", "0"),
    bad("--temperature", "-1"),
    bad("--temperature", "inf"),
    bad("--temperature", "nan"),
    bad("--out", "{file}"),
    bad("--out", "{file}/run"),
    bad("--out", "/proc/autoregressive-out", marks=LINUX),  # cannot be created
]


def _load_script():
    return load_script(SCRIPT)


@pytest.fixture
def call_main(capsys):
    """``main(argv)`` of the script in this process: ``(exit code, stderr)``."""
    yield from main_caller(SCRIPT, capsys)


@pytest.mark.parametrize(("flags", "flag"), BAD_FLAGS)
def test_bad_flags_stop_the_run_before_training(
    cifar: list[str], tmp_path: Path, call_main, flags: list[str], flag: str
) -> None:
    file = tmp_path / "a-file"
    file.write_text("not a folder")
    flags = [f.format(file=file) for f in flags]
    code, err = call_main([*cifar, *tiny_flags(tmp_path / "out", "categorical"), *flags])
    assert code == 2, err
    assert flag in err and "error: " in err, err
    assert not list(tmp_path.rglob("checkpoint.pt")) and not list(tmp_path.rglob("metrics.json"))
    assert file.read_text() == "not a folder"


def test_a_run_that_would_train_nothing_is_refused(tmp_path: Path, call_main) -> None:
    write_cifar10(tmp_path / "empty", per_batch=0)
    cifar = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"), "--no-verify"]
    code, err = call_main([*cifar, *tiny_flags(tmp_path / "out", "categorical")])
    assert code == 2 and "error: the run would train on nothing: the training set" in err, err
    assert "--train-images" in err and not (tmp_path / "out").exists()


def test_only_epochs_that_saw_images_count_as_trained() -> None:
    trained = _load_script().trained
    epoch = {"train_bits_per_dim": 5.0, "test_bits_per_dim": 5.5}
    assert trained([epoch, epoch])
    assert not trained([])
    assert not trained([epoch, {**epoch, "test_bits_per_dim": math.nan}])
    assert not trained([{**epoch, "train_bits_per_dim": math.nan}, epoch])


@pytest.mark.slow
def test_resume_refuses_fewer_epochs_than_the_checkpoint_has(
    cifar: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    flags = tiny_flags(out, "logistic_mixture")
    run_script([*cifar, *flags])
    flags[flags.index("--epochs") + 1] = "1"
    before = (out / "metrics.json").read_bytes()
    result = run_script([*cifar, *flags, "--resume"], expect=2)
    assert "past --epochs 1; pass --epochs 2 or more" in result.stderr
    assert (out / "metrics.json").read_bytes() == before


@pytest.mark.slow
def test_a_diverging_run_stops_with_the_library_error(cifar, tmp_path):
    out = tmp_path / "diverged"
    result = run_script([*cifar, *tiny_flags(out, "categorical"), "--lr", "1e30"], expect=3)
    assert "error: training diverged at step" in result.stderr
    assert "learning rate 1e+30" in result.stderr
    assert not (out / "checkpoint.pt").exists(), "no checkpoint of a diverged epoch"
