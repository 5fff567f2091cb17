"""Train a PixelCNN on binarized MNIST; write samples, completions, a loss curve and the test NLL.

    python examples/mnist_pixelcnn.py --demo          # CPU-sized run (8.5-53 min on 2 cores)
    python examples/mnist_pixelcnn.py                 # the 30-epoch reference run
    python examples/mnist_pixelcnn.py --resume        # continue from <out>/checkpoint.pt
    torchrun --nproc_per_node=2 examples/mnist_pixelcnn.py --device cpu   # data parallel

Into ``--out`` it writes ``checkpoint.pt`` (atomically, every ``--checkpoint-minutes`` and after
every epoch; ``--resume`` continues from the step it holds), ``samples_epoch<k>.png``
(64 samples) and ``completions_epoch<k>.png`` (top halves of test images given, bottoms sampled)
at the sample epochs, ``loss_curve.png`` and ``metrics.json`` (updated with every checkpoint),
and after the last epoch ``weights.pt`` (config, weights and final metrics: what
``examples/package_weights.py`` packages for ``PixelCNN.from_pretrained``).

Training runs in ``--precision auto``: bf16 autocast where the device computes bf16 natively
(CUDA with compute capability >= 8.0, CPUs with AMX or AVX512-BF16), float32 elsewhere. The
test NLL is always computed in float32. A step with a non-finite loss or gradient stops the run
before its optimizer step (the library's ``DivergenceError``), and no checkpoint ever holds a
non-finite number, so ``--resume`` restarts from the last good state. Data: ``--data-dir`` when
given, else ``../shared/data/mnist`` beside the checkout when it holds the files, else
``data/mnist`` in the checkout (git-ignored), where torchvision downloads MNIST when the network
allows.

The model is the library's :class:`autoregressive.PixelCNN` with a Bernoulli likelihood; the
loss is its negative log-likelihood in nats per image (binary cross-entropy summed over pixels).
Uses only the public API of ``autoregressive``, ``autoregressive.data`` and
``autoregressive.training``, plus torchvision (data files), tqdm and matplotlib. The scaffolding
it shares with the other examples is in ``common.py`` (command line), ``loop.py``
(epochs, checkpoints, resume) and ``outputs.py`` (pictures, metrics.json, log lines).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist

from autoregressive import PRESETS, PixelCNN, PixelCNNConfig
from autoregressive.data import (
    BinarizedBatches,
    derive_seed,
    dynamic_binarize,
    load_mnist,
    threshold_binarize,
)
from autoregressive.training import (
    CheckpointError,
    DivergenceError,
    EpochProgress,
    save_checkpoint,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
import common
import loop
import outputs
from loop import Run

REPO = Path(__file__).resolve().parents[1]
#: MNIST as laid out for this project's developers and CI (read only; used when present).
SHARED_DATA_DIR = REPO.parent / "shared" / "data" / "mnist"
#: Where MNIST goes otherwise: a git-ignored folder in the checkout.
LOCAL_DATA_DIR = REPO / "data" / "mnist"


def default_data_dir() -> Path:
    """``../shared/data/mnist`` when it holds MNIST's raw files, else ``data/mnist``."""
    return SHARED_DATA_DIR if (SHARED_DATA_DIR / "MNIST" / "raw").is_dir() else LOCAL_DATA_DIR


#: The seed project's reference run (``make mnist``).
REFERENCE: dict[str, Any] = {
    "preset": "reference",
    "lr": 1e-3,
    "batch_size": 64,
    "epochs": 30,
    "binarize": "threshold",
    "train_images": None,
    "sample_epochs": [20, 30],
    "out": "runs/mnist",
    "checkpoint_minutes": 10.0,
}

#: The CPU-sized demo (``make demo``): a small Gated PixelCNN, 7x7 first kernel, 1x1 head,
#: dynamic binarization.
DEMO: dict[str, Any] = {
    "preset": "gated-small",
    "block": "gated",
    "num_blocks": 6,
    "hidden_channels": 32,
    "head_channels": 0,
    "lr": 2e-3,
    "batch_size": 32,
    "epochs": 3,
    "binarize": "dynamic",
    "train_images": 32000,
    "sample_epochs": [],
    "out": "runs/demo",
    "checkpoint_minutes": 10.0,
}

#: Arguments that define the run: a checkpoint resumes only a run with the same values.
RUN_KEYS = (
    "seed",
    "lr",
    "batch_size",
    "binarize",
    "threshold",
    "train_images",
    "limit_train_batches",
)
#: The flag that sets each field of the model's config.
CONFIG_FLAGS = common.MODEL_FLAGS
#: The last epoch's numbers that metrics.json repeats as ``final``.
FINAL = ("epoch", "train_nll", "test_nll", "test_bits_per_dim")


# ---------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """The command line; flags left unset take the ``--demo`` or reference value."""
    p = argparse.ArgumentParser(
        prog="mnist_pixelcnn.py",
        description=f"{__doc__.splitlines()[0]} Defaults: the reference run; --demo: the "
        "CPU-sized run. Runs under torchrun for data parallelism.",
        formatter_class=common.HelpFormatter,
    )
    ref = common.profile_help(REFERENCE, DEMO)
    demo = (
        "the CPU-sized run: gated PixelCNN, 6 blocks x 32 channels, 7x7 first kernel, 1x1 "
        "head, dynamic binarization, the first 32,000 training images for 3 epochs, Adam lr "
        "2e-3, batch 32; it trains in 8.5-53 min on a 2-core CPU (an idle Intel Xeon to an AMD "
        "EPYC on one thread beside other jobs); explicit flags still override"
    )
    g = common.add_run_flags(p, demo, ref("out"), checkpoint_minutes=ref("checkpoint_minutes"))
    g.add_argument("--compile", action="store_true", help="torch.compile the training objective")
    g = common.add_model_flags(p, ref)
    g.add_argument("--preset", choices=sorted(PRESETS), help=f"model preset ({ref('preset')})")
    common.add_training_flags(p, ref)
    g = common.add_data_flags(p, ref, common.MNIST_DIR_HELP, "never try to download missing files")
    binarize = "threshold: x > --threshold; dynamic: a Bernoulli draw per image and epoch, "
    binarize += f"fixed-seed draw of the test set ({ref('binarize')})"
    g.add_argument("--binarize", choices=["threshold", "dynamic"], help=binarize)
    cut = common.finite_float(at_least=0, below=1)
    g.add_argument(
        "--threshold", type=cut, default=0.5, help="cut of --binarize threshold, in [0, 1)"
    )
    limit = "score at most this many test batches (for tests)"
    g.add_argument("--limit-test-batches", type=common.positive_int, help=limit)
    size = "images per test batch (default: --batch-size; large batches are slow on CPUs)"
    g.add_argument("--eval-batch-size", type=common.positive_int, help=size)
    initial = "also score the untrained model (epoch 0 of the loss curve)"
    g.add_argument("--eval-initial", action="store_true", help=initial)
    common.add_sample_flags(p, ref, num_samples=64)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill unset flags from the ``--demo`` or reference profile.

    Every flag is checked here (exit code 2 naming the flag) except what needs the data and
    the output folder: :func:`check_start`.
    """

    def finish(args: argparse.Namespace) -> None:
        if args.eval_batch_size is None:
            args.eval_batch_size = args.batch_size
        if args.data_dir is None:
            args.data_dir = default_data_dir()
        common.check_config(lambda: build_config(args, (28, 28)), CONFIG_FLAGS)  # MNIST: 28x28

    return common.parse_profiled(build_parser(), argv, REFERENCE, DEMO, finish)


def build_config(args: argparse.Namespace, image_size: tuple[int, int]) -> PixelCNNConfig:
    changes: dict[str, Any] = {"image_size": image_size}
    for key in ("block", "num_blocks", "hidden_channels", "head_channels"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    return PixelCNNConfig.preset(args.preset, **changes)


# ------------------------------------------------------------------------------------ setup
@dataclass
class Data:
    """The run's batches: this process's share of the training and test sets."""

    train: BinarizedBatches
    test: BinarizedBatches
    test_images: torch.Tensor  # (N, 1, H, W), the binarized test set (for completions)
    train_size: int


def load_data(args: argparse.Namespace, rank: int, world: int) -> Data:
    """Read MNIST and binarize it as ``--binarize`` says (raises ``FileNotFoundError``)."""
    train_x, _ = load_mnist(args.data_dir, train=True, download=not args.no_download)
    test_x, _ = load_mnist(args.data_dir, train=False, download=not args.no_download)
    if args.train_images is not None:
        train_x = train_x[: args.train_images]
    if args.binarize == "threshold":
        test_bin = threshold_binarize(test_x, args.threshold)
    else:  # one fixed draw, the same for every --seed, so that runs compare
        test_bin = dynamic_binarize(test_x, torch.Generator().manual_seed(derive_seed(0, "test")))
    train = BinarizedBatches(
        train_x,
        batch_size=args.batch_size,
        binarize=args.binarize,
        threshold=args.threshold,
        shuffle=True,
        seed=args.seed,
        rank=rank,
        world_size=world,
    )
    test = BinarizedBatches(
        test_bin, batch_size=args.eval_batch_size, binarize=None, rank=rank, world_size=world
    )
    return Data(train, test, test_bin, train_x.shape[0])


def check_start(args: argparse.Namespace, data: Data) -> None:
    """Start-up checks that need the data; then create ``--out`` and check it is writable.

    Raises:
        ValueError: a run that would train or score nothing, or asks for more training images
            than there are, or an ``--out`` that cannot be written; the message names the flags.
    """
    flags = "--data-dir, --train-images"
    common.check_steps("train on", len(data.train), "the training set", flags)
    common.check_steps("score", len(data.test), "the test set", "--data-dir")
    common.check_count("--train-images", args.train_images, data.train_size, "the training set")
    common.make_out(args.out)


def build_run(
    args: argparse.Namespace, data: Data, device: torch.device, world: int, log: Any
) -> Run:
    """Model, optimizer and objective (DDP, compiled) in the chosen precision, seeded."""

    def wrap(objective: torch.nn.Module) -> torch.nn.Module:
        if world > 1:
            objective = loop.ddp(objective, data.test_images[:1].to(device), log)
        return cast(torch.nn.Module, torch.compile(objective)) if args.compile else objective

    h, w = data.test_images.shape[-2:]
    config = build_config(args, (h, w))
    return loop.new_run(config, args, device, RUN_KEYS, wrap)


# -------------------------------------------------------------------------------- outputs
@torch.no_grad()
def write_pictures(model: PixelCNN, data: Data, args: argparse.Namespace, epoch: int) -> list[str]:
    """Sample and completion grids of one epoch; returns the file names."""
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(derive_seed(args.seed, epoch, "samples"))
    samples = model.sample(args.num_samples, generator=generator)  # (S, 1, H, W)
    name, cname = f"samples_epoch{epoch:03d}.png", f"completions_epoch{epoch:03d}.png"
    title = f"{args.num_samples} samples after epoch {epoch} (seed {args.seed})"
    outputs.save_grid(samples, math.ceil(math.sqrt(args.num_samples)), args.out / name, title)
    originals = data.test_images[:8].to(device)  # (R, 1, H, W)
    grid, labels = outputs.complete_bottom_halves(model, originals, 4, generator, hidden=0.5)
    title = f"completions of test digits after epoch {epoch}"
    outputs.save_grid(grid, len(labels), args.out / cname, title, labels=labels, inches=0.9)
    return [name, cname]


def save_loss_curve(history: list[dict[str, Any]], initial: float | None, path: Path) -> None:
    """Train and test NLL (nats per image) per epoch; the untrained model's at epoch 0."""
    epochs = [m["epoch"] for m in history]
    test_x = ([0] if initial is not None else []) + epochs
    test_y = ([initial] if initial is not None else []) + [m["test_nll"] for m in history]
    train = (epochs, [m["train_nll"] for m in history])
    log_y = initial is not None and bool(history) and initial > 3 * max(test_y[1:])
    best = min(m["test_nll"] for m in history) if history else math.nan
    title = f"binarized MNIST, best test NLL {best:.2f} nats"
    lines = {"train (running mean)": train, "test": (test_x, test_y)}
    outputs.save_curves([outputs.Panel(title, "NLL (nats per image)", lines, log_y=log_y)], path)


def save_weights(run: Run, path: Path) -> None:
    """Config, weights and final test NLL: what ``examples/package_weights.py`` packages."""
    state = {k: v.detach().cpu().contiguous() for k, v in run.model.state_dict().items()}
    metrics = {k: run.history[-1][k] for k in ("epoch", "test_nll", "test_bits_per_dim")}
    data = {k: run.identity[k] for k in ("binarize", "threshold")}
    save_checkpoint(
        path, {"config": run.identity["config"], "model": state, "metrics": metrics | data}
    )


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, rank, world = loop.setup_distributed(args.device)
    chief = rank == 0
    log = print if chief else (lambda *a, **k: None)
    try:
        data = load_data(args, rank, world)
        check_start(args, data)
        run = build_run(args, data, device, world, log)
        loop.resume_run(run, args, device, log)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log(
        f"{outputs.header(device, run.precision, run.model)}; {world} process(es)\n"
        f"data: {data.train_size:,} training and {data.test_images.shape[0]:,} test images, "
        f"binarization {args.binarize}, from {args.data_dir}; out {args.out}"
    )
    if args.eval_initial and run.start == 0:
        run.initial = loop.score_test_set(run.model, data.test, device, args.limit_test_batches).nll
        log(f"untrained model: test NLL {run.initial:.2f} nats")

    def save(epoch: int, progress: EpochProgress | None) -> None:
        if chief:
            extra = {"world_size": world}
            loop.save_state(run, args, epoch, progress, device, final=FINAL, extra=extra)
            if progress is None:
                save_loss_curve(run.history, run.initial, args.out / "loss_curve.png")

    def pictures(epoch: int, record: dict[str, Any]) -> list[str]:
        return write_pictures(run.model, data, args, epoch) if chief else []

    try:
        loop.train_epochs(run, args, data, device, save=save, pictures=pictures, log=log)
    except (DivergenceError, loop.NonFiniteState) as err:
        return loop.stopped(err, args.out, "; a lower --lr needs a new --out")
    if chief and run.history:
        finish(run, args)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


def finish(run: Run, args: argparse.Namespace) -> None:
    """Loss curve, packaged weights and the closing summary."""
    save_loss_curve(run.history, run.initial, args.out / "loss_curve.png")
    if run.history[-1]["epoch"] == args.epochs:
        save_weights(run, args.out / "weights.pt")
    print(outputs.done(run, args, "loss_curve.png"))


if __name__ == "__main__":
    sys.exit(main())
