"""End-to-end tests of examples/mnist_pixelcnn.py, run as a subprocess.

They use tiny synthetic IDX files in torchvision's layout (so the real torchvision loading code
runs) and a tiny Gated PixelCNN; everything is written under pytest's tmp_path. One test trains
briefly on the real MNIST files when ``../shared/data/mnist`` exists beside the repository.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from example_scripts import stop_when
from test_data import write_mnist

for _module in ("torchvision", "tqdm", "matplotlib"):  # the `examples` extra
    pytest.importorskip(_module)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "mnist_pixelcnn.py"
REAL_MNIST = REPO / ".." / "shared" / "data" / "mnist"
EPOCHS = 3
#: The per-epoch numbers a resumed run must reproduce exactly.
EXACT_KEYS = ("train_nll", "train_bits_per_dim", "test_nll", "test_bits_per_dim", "train_images")


def tiny_flags(data_dir: Path, out: Path) -> list[str]:
    """A 2-block, 8-channel gated model on 1,024 synthetic images: ~1-2 s per epoch."""
    return [
        *("--data-dir", str(data_dir), "--no-download", "--out", str(out)),
        *("--block", "gated", "--num-blocks", "2", "--hidden-channels", "8"),
        *("--head-channels", "0", "--batch-size", "16", "--lr", "3e-3"),
        *("--epochs", str(EPOCHS), "--binarize", "dynamic", "--seed", "1"),
        *("--eval-batch-size", "64", "--num-samples", "4", "--sample-epochs"),
    ]


def run_script(args: list[str], *, timeout: float = 300, threads: bool = True) -> str:
    cmd = [sys.executable, str(SCRIPT), *args, *(["--threads", "1"] if threads else [])]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(root, 1024, 64)
    return root


@pytest.fixture(scope="module")
def straight_run(synthetic, tmp_path_factory) -> Path:
    """An uninterrupted single-process run, shared by the tests below."""
    out = tmp_path_factory.mktemp("straight")
    run_script([*tiny_flags(synthetic, out), "--eval-initial"])
    return out


def _load_script():
    spec = importlib.util.spec_from_file_location("mnist_pixelcnn", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_help_documents_every_flag():
    parser = _load_script().build_parser()
    documented = {flag: action.help for action in parser._actions for flag in action.option_strings}
    required = """--preset --block --hidden-channels --num-blocks --lr --epochs --batch-size --seed
        --device --precision --compile --binarize --data-dir --out --sample-epochs --resume --demo
        --limit-train-batches"""
    assert set(required.split()) <= set(documented)
    for flag, text in documented.items():
        assert text and len(text) > 8, f"{flag} has no help text"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--demo" in result.stdout


def test_demo_and_reference_defaults():
    script = _load_script()
    ref = script.parse_args([])
    assert (ref.preset, ref.lr, ref.batch_size, ref.epochs) == ("reference", 1e-3, 64, 30)
    assert (ref.binarize, ref.threshold, ref.sample_epochs) == ("threshold", 0.5, [20, 30])
    demo = script.parse_args(["--demo", "--epochs", "1"])
    assert demo.binarize == "dynamic" and demo.block == "gated" and demo.epochs == 1
    assert demo.data_dir == ref.data_dir == script.default_data_dir()
    assert ref.precision == "auto"
    assert script.parse_args(["--data-dir", "elsewhere"]).data_dir == Path("elsewhere")


def test_a_preset_named_with_demo_builds_that_preset_not_the_demo_model():
    script = _load_script()
    args = script.parse_args(["--demo", "--preset", "snail-small"])
    config = script.build_config(args, (28, 28))
    assert config == script.PixelCNNConfig.preset("snail-small", image_size=(28, 28))
    assert args.binarize == "dynamic" and args.train_images == 32000  # the rest of the demo
    narrower = script.parse_args(["--demo", "--preset", "snail-small", "--hidden-channels", "16"])
    assert script.build_config(narrower, (28, 28)).hidden_channels == 16
    demo = script.build_config(script.parse_args(["--demo"]), (28, 28))
    assert (demo.block, demo.head_channels) == ("gated", 0)


def test_default_data_folder_is_shared_when_present_else_in_the_checkout(tmp_path, monkeypatch):
    script = _load_script()
    shared, local = tmp_path / "shared" / "data" / "mnist", tmp_path / "repo" / "data" / "mnist"
    monkeypatch.setattr(script, "SHARED_DATA_DIR", shared)
    monkeypatch.setattr(script, "LOCAL_DATA_DIR", local)
    assert script.default_data_dir() == local
    (shared / "MNIST" / "raw").mkdir(parents=True)
    assert script.default_data_dir() == shared
    real = _load_script()
    assert real.LOCAL_DATA_DIR == REPO / "data" / "mnist"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(real.LOCAL_DATA_DIR / "MNIST" / "raw" / "x")], cwd=REPO
    )
    assert ignored.returncode == 0, "data/mnist must be git-ignored"


def _check_png(path: Path) -> tuple[int, ...]:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    image = mpimg.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 50
    return image.shape


def test_outputs_exist_and_are_well_formed(straight_run):
    out = straight_run
    for name in (
        f"samples_epoch{EPOCHS:03d}.png",
        f"completions_epoch{EPOCHS:03d}.png",
        "loss_curve.png",
    ):
        _check_png(out / name)
    m = metrics(out)
    assert m["finished"] is True
    assert m["parameters"] > 0 and m["world_size"] == 1
    assert [e["epoch"] for e in m["epochs"]] == list(range(1, EPOCHS + 1))
    assert m["pictures"] == [f"samples_epoch{EPOCHS:03d}.png", f"completions_epoch{EPOCHS:03d}.png"]
    for epoch in m["epochs"]:
        for key in (*EXACT_KEYS, "train_seconds", "train_images_per_second", "eval_seconds"):
            assert isinstance(epoch[key], (int, float)) and math.isfinite(epoch[key]), key
        assert epoch["test_bits_per_dim"] == pytest.approx(epoch["test_nll"] / (784 * math.log(2)))
    assert m["final"]["test_nll"] == m["epochs"][-1]["test_nll"]
    assert m["epochs"][-1]["test_nll"] < m["initial_test_nll"]
    assert math.isfinite(m["train_seconds"]) and m["train_seconds"] > 0
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    # the checkpoint is safe to load and holds the final state
    from autoregressive.training import load_checkpoint

    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == EPOCHS and ckpt["metrics"] == m["epochs"]
    # precision and hardware are recorded; auto picked what this machine computes natively
    from autoregressive.training import resolve_precision

    assert m["precision"]["name"] == resolve_precision("auto", "cpu").name
    assert {e["precision"] for e in m["epochs"]} == {m["precision"]["name"]}
    assert m["hardware"]["cpu_count"] == os.cpu_count() and m["hardware"]["cpu"]
    # the final weights: config, contiguous tensors, the final test NLL
    weights = load_checkpoint(out / "weights.pt")
    assert weights["metrics"]["test_nll"] == m["final"]["test_nll"]
    assert weights["config"] == {**m["config"], "image_size": tuple(m["config"]["image_size"])}
    assert all(t.is_contiguous() for t in weights["model"].values())


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_uninterrupted_run(synthetic, straight_run, tmp_path):
    out = tmp_path / "killed"
    ckpt = out / "checkpoint.pt"
    cmd = [sys.executable, str(SCRIPT), *tiny_flags(synthetic, out), "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ckpt.exists(), f"no checkpoint appeared: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)  # in epoch 2, after the first checkpoint
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    from autoregressive.training import load_checkpoint

    assert load_checkpoint(ckpt)["epoch"] < EPOCHS, "the run was not interrupted"

    log = run_script([*tiny_flags(synthetic, out), "--resume"])
    assert "resumed from" in log
    resumed, straight = metrics(out)["epochs"], metrics(straight_run)["epochs"]
    assert [{k: e[k] for k in EXACT_KEYS} for e in resumed] == [
        {k: e[k] for k in EXACT_KEYS} for e in straight
    ]
    a, b = load_checkpoint(ckpt), load_checkpoint(straight_run / "checkpoint.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    _check_png(out / f"samples_epoch{EPOCHS:03d}.png")


def _stop_mid_epoch(cmd: list[str], ckpt: Path) -> dict:
    """Run ``cmd`` (checkpoints after every step), SIGKILL it a few steps into epoch 2; the last
    checkpoint."""

    def ready(seen: dict) -> bool:
        return seen["epoch"] == 1 and (seen["progress"] or {}).get("steps", 0) >= 5

    return stop_when(cmd, ckpt, ready, REPO)


@pytest.mark.slow
def test_a_kill_mid_epoch_resumes_bit_identical(synthetic, straight_run, tmp_path):
    out = tmp_path / "mid-epoch"
    ckpt = out / "checkpoint.pt"
    flags = [*tiny_flags(synthetic, out), "--eval-initial", "--checkpoint-minutes", "0"]
    last = _stop_mid_epoch([sys.executable, str(SCRIPT), *flags, "--threads", "1"], ckpt)
    assert last["epoch"] == 1 and 0 < last["progress"]["steps"] < 64, "killed mid-epoch 2"
    # two files: a kill between the checkpoint's write and metrics.json's leaves the latter a step
    # behind (the resume below writes it again)
    assert 0 <= last["progress"]["steps"] - metrics(out)["in_progress"]["steps"] <= 1
    assert metrics(out)["finished"] is False and not (out / "weights.pt").exists()

    log = run_script([*flags, "--resume"])
    assert f"step {last['progress']['steps']} of epoch 2" in log
    resumed, straight = metrics(out)["epochs"], metrics(straight_run)["epochs"]
    assert [{k: e[k] for k in EXACT_KEYS} for e in resumed] == [
        {k: e[k] for k in EXACT_KEYS} for e in straight
    ]
    from autoregressive.training import load_checkpoint

    a, b = load_checkpoint(out / "weights.pt"), load_checkpoint(straight_run / "weights.pt")
    assert a["metrics"] == b["metrics"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


@pytest.mark.slow
def test_divergence_stops_before_a_non_finite_checkpoint_and_resumes_from_the_last_good(
    synthetic, tmp_path
):
    from autoregressive.training import load_checkpoint

    out = tmp_path / "diverged"
    flags = [*tiny_flags(synthetic, out), "--lr", "1e30", "--checkpoint-minutes", "0"]
    cmd = [sys.executable, str(SCRIPT), *flags, "--threads", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert result.returncode == 3, result.stderr
    assert "error: training diverged at step" in result.stderr
    assert "learning rate 1e+30" in result.stderr and "loss" in result.stderr
    saved = load_checkpoint(out / "checkpoint.pt")
    for name, tensor in saved["model"].items():
        assert torch.isfinite(tensor).all(), f"{name} is not finite in the checkpoint"
    assert not (out / "weights.pt").exists() and metrics(out)["finished"] is False

    result = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=240,
                            cwd=REPO)  # fmt: skip
    step = saved["progress"]["steps"] if saved["progress"] else 0
    assert f"resumed from {out / 'checkpoint.pt'} at step {step} of epoch 1" in result.stdout
    assert result.returncode == 3 and "diverged" in result.stderr


def test_resume_refuses_a_different_run(synthetic, straight_run, tmp_path):
    out = tmp_path / "other"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes((straight_run / "checkpoint.pt").read_bytes())
    flags = [*tiny_flags(synthetic, out), "--resume", "--threads", "1", "--lr", "1e-2"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "different run" in result.stderr and "lr" in result.stderr


def test_resume_past_the_last_epoch_is_refused(synthetic, straight_run, tmp_path):
    out = tmp_path / "past"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes((straight_run / "checkpoint.pt").read_bytes())
    flags = [*tiny_flags(synthetic, out), "--resume", "--threads", "1", "--epochs", "1"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert f"after epoch {EPOCHS}, past --epochs 1" in result.stderr
    assert not (out / "weights.pt").exists()


def test_corrupted_checkpoint_is_reported_and_kept(synthetic, straight_run, tmp_path):
    out = tmp_path / "corrupt"
    out.mkdir()
    data = (straight_run / "checkpoint.pt").read_bytes()[:5000]
    (out / "checkpoint.pt").write_bytes(data)
    flags = [*tiny_flags(synthetic, out), "--resume", "--threads", "1"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "truncated or corrupted" in result.stderr
    assert (out / "checkpoint.pt").read_bytes() == data


def test_missing_data_gives_a_clear_error(tmp_path):
    flags = ["--data-dir", str(tmp_path / "none"), "--no-download", "--out", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "train-images-idx3-ubyte(.gz)" in result.stderr
    assert str(tmp_path / "none" / "MNIST" / "raw") in result.stderr


@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process(synthetic, straight_run, tmp_path):
    """torchrun with 2 CPU processes: DDP over gloo, each with half of every global batch.

    Both runs see the same global batches and step along the gradient of the same batch mean,
    so they are the same computation up to float32 summation order (the all-reduce of the
    gradients, per-half convolutions). Measured differences are ~1e-5 relative after three
    epochs; 1e-3 leaves a wide margin and still catches any real mismatch (a wrong loss scale
    or duplicated data changes the losses by percents).
    """
    out = tmp_path / "ddp"
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
        *(str(SCRIPT), *tiny_flags(synthetic, out), "--device", "cpu"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout}\n{result.stderr}"
    m = metrics(out)
    assert m["world_size"] == 2 and m["finished"] is True
    assert m["epochs"][-1]["train_images"] == 1024
    for two, one in zip(m["epochs"], metrics(straight_run)["epochs"], strict=True):
        for key in ("train_nll", "test_nll"):
            assert two[key] == pytest.approx(one[key], rel=1e-3), key
    assert result.stdout.count("done: test NLL") == 1, "only rank 0 may report"
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == [
        f"completions_epoch{EPOCHS:03d}.png",
        "loss_curve.png",
        f"samples_epoch{EPOCHS:03d}.png",
    ]


@pytest.mark.slow
@pytest.mark.skipif(
    not (REAL_MNIST / "MNIST" / "raw").is_dir(),
    reason=f"real MNIST not found at {REAL_MNIST.resolve()}/MNIST/raw (optional)",
)
def test_short_run_on_real_mnist_learns(tmp_path):
    out = tmp_path / "real"
    run_script(
        [
            *("--data-dir", str(REAL_MNIST), "--no-download", "--out", str(out)),
            *("--block", "gated", "--num-blocks", "3", "--hidden-channels", "16"),
            *("--head-channels", "0", "--batch-size", "32", "--lr", "3e-3", "--epochs", "1"),
            *("--binarize", "dynamic", "--limit-train-batches", "150"),
            *("--limit-test-batches", "2", "--eval-batch-size", "250", "--eval-initial"),
            *("--num-samples", "16", "--sample-epochs"),
        ]
    )
    m = metrics(out)
    final, initial = m["final"]["test_nll"], m["initial_test_nll"]
    assert math.isfinite(final) and final < initial, (initial, final)
    assert m["epochs"][0]["train_images"] == 150 * 32
    _check_png(out / "samples_epoch001.png")


# ---------------------------------------------------------------------- start-up checks
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
LINUX = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")


def bad(*flags: str, names: str | None = None, marks=()):
    """A case: bad flags and the flag the message must name (the first by default)."""
    return pytest.param(list(flags), names or flags[0], marks=marks, id=" ".join(flags))


#: Bad flags (added after tiny_flags; the last value of a flag wins) and the flag the message
#: must name. ``{file}`` stands for an existing file. The data has 1,024 training images.
BAD_FLAGS = [
    bad("--checkpoint-minutes", "-1"),
    bad("--checkpoint-minutes", "nan"),
    bad("--seed", "-1"),
    bad("--seed", str(2**64)),
    bad("--device", "cuda", marks=NO_CUDA),
    bad("--precision", "fp8"),
    bad("--threads", "0"),
    bad("--preset", "huge"),
    bad("--block", "dense"),
    bad("--num-blocks", "0"),
    bad("--hidden-channels", "0"),
    bad("--block", "residual", "--hidden-channels", "7", names="--hidden-channels"),
    bad("--head-channels", "-1"),
    bad("--lr", "0"),
    bad("--lr", "-0.001"),
    bad("--lr", "inf"),
    bad("--lr", "nan"),
    bad("--epochs", "0"),
    bad("--batch-size", "0"),
    bad("--limit-train-batches", "0"),
    bad("--binarize", "otsu"),
    bad("--threshold", "1"),
    bad("--threshold", "-0.1"),
    bad("--threshold", "nan"),
    bad("--train-images", "0"),
    bad("--train-images", "-5"),
    bad("--train-images", "2000"),  # more than the data set
    bad("--limit-test-batches", "0"),
    bad("--eval-batch-size", "0"),
    bad("--sample-epochs", "0"),
    bad("--sample-epochs", "1", str(EPOCHS + 1)),
    bad("--num-samples", "0"),
    bad("--out", "{file}"),
    bad("--out", "{file}/run"),
    bad("--out", "/proc/autoregressive-out", marks=LINUX),  # cannot be created
]


def call_main(script, argv: list[str]) -> int:
    """``script.main(argv)`` in this process; an argparse exit becomes its code."""
    try:
        return script.main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize(("flags", "flag"), BAD_FLAGS)
def test_bad_flags_stop_the_run_before_training(synthetic, tmp_path, capsys, flags, flag):
    file = tmp_path / "a-file"
    file.write_text("not a folder")
    flags = [f.format(file=file) for f in flags]
    code = call_main(_load_script(), [*tiny_flags(synthetic, tmp_path / "out"), *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert flag in err and "error: " in err, err
    assert not list(tmp_path.rglob("checkpoint.pt")) and not list(tmp_path.rglob("metrics.json"))
    assert file.read_text() == "not a folder"


def test_bad_flag_exits_with_code_2_from_the_command_line(tmp_path):
    flags = ["--lr", "nan", "--out", str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "argument --lr: must be a finite number > 0" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("empty", ["train", "test"])
def test_a_run_that_would_train_or_score_nothing_is_refused(tmp_path, empty):
    from autoregressive.data import BinarizedBatches

    script = _load_script()
    args = script.parse_args(["--out", str(tmp_path / "out")])
    images = {k: torch.zeros(0 if k == empty else 4, 1, 28, 28) for k in ("train", "test")}
    batches = {k: BinarizedBatches(x, batch_size=2, binarize=None) for k, x in images.items()}
    data = script.Data(batches["train"], batches["test"], images["test"], len(images["train"]))
    with pytest.raises(
        ValueError, match="would train on nothing" if empty == "train" else "would score nothing"
    ):
        script.check_start(args, data)
    assert not (tmp_path / "out").exists()


def test_start_up_creates_the_output_folder(synthetic, tmp_path):
    script = _load_script()
    args = script.parse_args(tiny_flags(synthetic, tmp_path / "a" / "b"))
    script.check_start(args, script.load_data(args, 0, 1))
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())
