"""Train a PixelCNN on binarized MNIST; write samples, completions, a loss curve and the test NLL.

    python examples/mnist_pixelcnn.py --demo          # CPU-sized run (8.5 min on a 2-core Xeon)
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
``autoregressive.training``, plus torchvision (data files), tqdm and matplotlib.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

import autoregressive
from autoregressive import PRESETS, PixelCNN, PixelCNNConfig
from autoregressive.data import (
    BinarizedBatches,
    derive_seed,
    dynamic_binarize,
    load_mnist,
    threshold_binarize,
)
from autoregressive.precision import PRECISIONS, Capabilities, Precision, choose_precision
from autoregressive.training import (
    CheckpointError,
    DivergenceError,
    EpochProgress,
    NegLogLikelihood,
    atomic_write,
    evaluate,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    train_epoch,
    unused_parameters,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
from common import (
    check_config,
    check_count,
    check_device,
    check_each_in,
    check_out,
    check_steps,
    finite_float,
    make_out,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    torch_seed,
)

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
#: dynamic binarization; 508 s of training on an idle 2-core Intel Xeon (slower on AVX2-only CPUs).
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
CONFIG_FLAGS = {
    "block": "--block",
    "num_blocks": "--num-blocks",
    "hidden_channels": "--hidden-channels",
    "head_channels": "--head-channels",
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` only for flags with a fixed default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def ref(key: str) -> str:
    """Help text naming a flag's reference and ``--demo`` defaults."""
    default = REFERENCE.get(key, "the preset's")
    default = "all" if default is None else default
    return f"default: {default}; with --demo: {DEMO.get(key)}"


def _run_flags(p: argparse.ArgumentParser) -> None:
    """The "run" flags."""
    g = p.add_argument_group("run")
    g.add_argument(
        "--demo",
        action="store_true",
        help="the CPU-sized run (508 s of training on a 2-core Xeon): gated PixelCNN, 6 blocks "
        "x 32 channels, 7x7 first kernel, 1x1 head, dynamic binarization, the first 32,000 "
        "training images for 3 epochs, Adam lr 2e-3, batch 32; explicit flags still override",
    )
    g.add_argument("--out", type=Path, help=f"output folder ({ref('out')})")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue from <out>/checkpoint.pt, mid-epoch where it was saved mid-epoch "
        "(starts afresh when there is none)",
    )
    g.add_argument(
        "--checkpoint-minutes",
        type=non_negative_float,
        help="also save the whole state mid-epoch after this many minutes of training, 0 "
        f"after every step ({ref('checkpoint_minutes')})",
    )
    g.add_argument(
        "--seed", type=torch_seed, default=0, help="seed of initialisation, data and samples"
    )
    g.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto: CUDA when available",
    )
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="training precision; auto: bf16 autocast (and channels_last) where the device "
        "computes bf16 natively (CUDA >= sm80, CPUs with AMX or AVX512-BF16), fp32 elsewhere; "
        "the test NLL is always computed in fp32",
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the training objective")
    g.add_argument(
        "--threads",
        type=positive_int,
        help="torch CPU threads per process (default: torch's choice)",
    )


def _model_flags(p: argparse.ArgumentParser) -> None:
    """The "model" flags."""
    g = p.add_argument_group("model")
    g.add_argument("--preset", choices=sorted(PRESETS), help=f"model preset ({ref('preset')})")
    g.add_argument("--block", choices=["residual", "gated"], help=f"block type ({ref('block')})")
    g.add_argument("--num-blocks", type=positive_int, help=f"depth ({ref('num_blocks')})")
    g.add_argument("--hidden-channels", type=positive_int, help=f"width ({ref('hidden_channels')})")
    g.add_argument(
        "--head-channels",
        type=non_negative_int,
        help=f"width of an extra 1x1 head layer, 0 for none ({ref('head_channels')})",
    )


def _training_flags(p: argparse.ArgumentParser) -> None:
    """The "training" flags."""
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=positive_float, help=f"Adam learning rate ({ref('lr')})")
    g.add_argument("--epochs", type=positive_int, help=f"epochs ({ref('epochs')})")
    g.add_argument(
        "--batch-size",
        type=positive_int,
        help=f"images per step over all processes ({ref('batch_size')})",
    )
    g.add_argument(
        "--limit-train-batches",
        type=positive_int,
        help="at most this many steps per epoch (for tests)",
    )


def _data_flags(p: argparse.ArgumentParser) -> None:
    """The "data" flags."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data-dir",
        type=Path,
        help="folder holding MNIST/raw/ (torchvision layout); default: ../shared/data/mnist "
        "beside the checkout if it holds the files, else data/mnist in the checkout",
    )
    g.add_argument("--no-download", action="store_true", help="never try to download missing files")
    g.add_argument(
        "--binarize",
        choices=["threshold", "dynamic"],
        help="threshold: x > --threshold; dynamic: a Bernoulli draw per image and epoch, "
        f"fixed-seed draw of the test set ({ref('binarize')})",
    )
    g.add_argument(
        "--threshold",
        type=finite_float(at_least=0, below=1),
        default=0.5,
        help="cut of --binarize threshold, in [0, 1)",
    )
    g.add_argument(
        "--train-images",
        type=positive_int,
        help=f"use the first N training images ({ref('train_images')})",
    )
    g.add_argument(
        "--limit-test-batches",
        type=positive_int,
        help="score at most this many test batches (for tests)",
    )
    g.add_argument(
        "--eval-batch-size",
        type=positive_int,
        help="images per test batch (default: --batch-size; large batches are slow on CPUs)",
    )
    g.add_argument(
        "--eval-initial",
        action="store_true",
        help="also score the untrained model (epoch 0 of the loss curve)",
    )


def _samples_flags(p: argparse.ArgumentParser) -> None:
    """The "samples" flags."""
    g = p.add_argument_group("samples")
    g.add_argument(
        "--sample-epochs",
        type=positive_int,
        nargs="*",
        help=f"epochs that write sample and completion grids; the last always does "
        f"({ref('sample_epochs')})",
    )
    g.add_argument("--num-samples", type=positive_int, default=64, help="images in the sample grid")


def build_parser() -> argparse.ArgumentParser:
    """The command line; flags left unset take the ``--demo`` or reference value."""
    p = argparse.ArgumentParser(
        prog="mnist_pixelcnn.py",
        description=(
            "Train a PixelCNN on binarized MNIST and write samples, completions, a loss curve, "
            "metrics.json and a checkpoint per epoch into --out. Defaults are the reference "
            "run (preset 'reference', Adam lr 1e-3, batch 64, 30 epochs, threshold 0.5); "
            "--demo switches to the CPU-sized run. Runs under torchrun for data parallelism."
        ),
        formatter_class=_HelpFormatter,
    )

    _run_flags(p)
    _model_flags(p)
    _training_flags(p)
    _data_flags(p)
    _samples_flags(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill unset flags from the ``--demo`` or reference profile.

    Every flag is checked here (exit code 2 naming the flag) except what needs the data and
    the output folder: :func:`check_start`.
    """
    p = build_parser()
    args = p.parse_args(argv)
    sample_epochs_given = args.sample_epochs is not None

    profile = DEMO if args.demo else REFERENCE
    for key, value in profile.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.eval_batch_size is None:
        args.eval_batch_size = args.batch_size
    if args.data_dir is None:
        args.data_dir = default_data_dir()
    args.out = Path(args.out)
    try:
        check_device(args.device)
        check_out(args.out)
        if sample_epochs_given:  # a profile's sample epochs past a shorter --epochs never come
            check_each_in(
                "--sample-epochs", args.sample_epochs, 1, args.epochs, f"--epochs is {args.epochs}"
            )
        check_config(lambda: build_config(args, (28, 28)), CONFIG_FLAGS)  # MNIST is 28x28
    except ValueError as err:
        p.error(str(err))
    return args


# ------------------------------------------------------------------------------- plotting
def _pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend (imported only when plotting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG atomically and close it."""
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    _pyplot().close(fig)


def _tile(images: torch.Tensor, rows: int, cols: int, pad: int = 2) -> torch.Tensor:
    """Tile ``(N, 1, H, W)`` images in ``[0, 1]`` into one ``(rows*(H+pad)+pad, ...)`` array."""
    n, _, h, w = images.shape
    canvas = torch.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.5)
    for k in range(min(n, rows * cols)):
        r, c = divmod(k, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        canvas[top : top + h, left : left + w] = images[k, 0].float().cpu()
    return canvas


def save_sample_grid(images: torch.Tensor, path: Path, title: str) -> None:
    """A square-ish grid of binary samples ``(N, 1, H, W)`` as a PNG."""
    plt = _pyplot()
    cols = math.ceil(math.sqrt(images.shape[0]))
    rows = math.ceil(images.shape[0] / cols)
    fig, ax = plt.subplots(figsize=(cols * 0.75, rows * 0.75 + 0.5))
    ax.imshow(_tile(images, rows, cols), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    _save_figure(fig, path)


def save_completion_grid(
    originals: torch.Tensor, completions: torch.Tensor, given_rows: int, path: Path, title: str
) -> None:
    """Rows: an original, what the model was given (bottom greyed), then its completions.

    Args:
        originals: ``(R, 1, H, W)`` test images.
        completions: ``(K, R, 1, H, W)``: ``K`` completions of each.
        given_rows: the top rows that were given.
        path: the PNG to write.
        title: the figure title.
    """
    plt = _pyplot()
    k, r = completions.shape[:2]
    given = originals.clone().float()
    given[:, :, given_rows:, :] = 0.5  # hidden part shown grey
    columns = [originals.float(), given, *completions.float()]  # each (R, 1, H, W)
    grid = torch.stack(columns, dim=1).flatten(0, 1)  # (R * (K + 2), 1, H, W), row-major
    fig, ax = plt.subplots(figsize=((k + 2) * 0.9, r * 0.9 + 0.7))
    ax.imshow(_tile(grid, r, k + 2), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h = originals.shape[-2] + 2
    for c, label in enumerate(["original", "given", *[f"sample {i + 1}" for i in range(k)]]):
        ax.text(2 + c * h + h / 2 - 1, -2, label, ha="center", va="bottom", fontsize=7)
    ax.set_title(title, fontsize=9, pad=14)
    ax.axis("off")
    _save_figure(fig, path)


def save_loss_curve(history: list[dict[str, Any]], initial: float | None, path: Path) -> None:
    """Train and test NLL (nats per image) per epoch."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    epochs = [m["epoch"] for m in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [m["train_nll"] for m in history], "o-", label="train (running mean)")
    test_x = ([0] if initial is not None else []) + epochs
    test_y = ([initial] if initial is not None else []) + [m["test_nll"] for m in history]
    ax.plot(test_x, test_y, "s-", label="test")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("NLL (nats per image)")
    if initial is not None and len(history) and initial > 3 * max(test_y[1:]):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    best = min(m["test_nll"] for m in history) if history else math.nan
    ax.set_title(f"binarized MNIST, best test NLL {best:.2f} nats", fontsize=10)
    _save_figure(fig, path)


# --------------------------------------------------------------------------------- helpers
def _finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become ``None``, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(_finite(data), indent=2, allow_nan=False).encode() + b"\n")


def _plain(value: Any) -> Any:
    """CLI values as JSON / checkpoint-friendly values; paths relative to the checkout."""
    if isinstance(value, Path):
        try:
            return os.path.relpath(value, REPO)
        except ValueError:  # another drive (Windows): no relative path
            return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def setup_distributed(device_arg: str) -> tuple[torch.device, int, int]:
    """Initialise torch.distributed under torchrun; returns ``(device, rank, world_size)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but CUDA is not available")
    if world == 1:
        return torch.device("cuda" if cuda else "cpu"), 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    return device, dist.get_rank(), dist.get_world_size()


def build_config(args: argparse.Namespace, image_size: tuple[int, int]) -> PixelCNNConfig:
    changes: dict[str, Any] = {"image_size": image_size}
    for key in ("block", "num_blocks", "hidden_channels", "head_channels"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    return PixelCNNConfig.preset(args.preset, **changes)


def check_resumable(checkpoint: dict[str, Any], run: dict[str, Any]) -> None:
    """Raise ``ValueError`` when a checkpoint belongs to a different run."""
    saved = json.loads(json.dumps(checkpoint.get("run", {})))
    current = json.loads(json.dumps(run))
    diff = [k for k in current if saved.get(k) != current[k]]
    if diff:
        lines = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current[k]!r}" for k in diff)
        raise ValueError(
            f"--resume: the checkpoint belongs to a different run ({lines}); pass the same "
            "flags, or another --out to start a new run"
        )


@torch.no_grad()
def write_pictures(
    model: PixelCNN,
    test_images: torch.Tensor,
    args: argparse.Namespace,
    epoch: int,
    device: torch.device,
) -> list[str]:
    """Sample and completion grids of one epoch; returns the file names."""
    generator = torch.Generator(device).manual_seed(derive_seed(args.seed, epoch, "samples"))
    samples = model.sample(args.num_samples, generator=generator)  # (64, 1, H, W)
    name = f"samples_epoch{epoch:03d}.png"
    save_sample_grid(
        samples,
        args.out / name,
        f"{args.num_samples} samples after epoch {epoch} (seed {args.seed})",
    )
    rows, k = min(8, test_images.shape[0]), 4
    originals = test_images[:rows].to(device)  # (R, 1, H, W)
    h = originals.shape[-2]
    known = torch.zeros(1, 1, h, originals.shape[-1], dtype=torch.bool, device=device)
    known[..., : h // 2, :] = True  # the top half is given
    image = originals.repeat(k, 1, 1, 1)  # (K * R, 1, H, W)
    filled = model.sample(image=image, known=known, generator=generator)
    completions = filled.view(k, rows, *originals.shape[1:])  # (K, R, 1, H, W)
    cname = f"completions_epoch{epoch:03d}.png"
    save_completion_grid(
        originals.cpu(),
        completions.cpu(),
        h // 2,
        args.out / cname,
        f"completions of test digits after epoch {epoch}",
    )
    return [name, cname]


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
    check_steps("train on", len(data.train), "the training set", "--data-dir, --train-images")
    check_steps("score", len(data.test), "the test set", "--data-dir")
    check_count("--train-images", args.train_images, data.train_size, "the training set")
    make_out(args.out)


@dataclass
class Run:
    """Everything that trains, and what has been recorded so far."""

    model: PixelCNN
    optimizer: torch.optim.Optimizer
    objective: torch.nn.Module  # the NLL, possibly wrapped in DDP and torch.compile
    precision: Precision
    identity: dict[str, Any]  # what a checkpoint must match to be resumed (RUN_KEYS, config)
    history: list[dict[str, Any]] = field(default_factory=list)
    initial: float | None = None
    pictures: list[str] = field(default_factory=list)
    start: int = 0  # the last finished epoch
    partial: EpochProgress | None = None  # how far epoch start + 1 had come, when resumed


def build_run(
    args: argparse.Namespace, data: Data, device: torch.device, world: int, log: Any
) -> Run:
    """Model, optimizer and objective in the chosen precision, seeded by ``--seed``."""
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed shapes: pick the fastest
    config = build_config(args, tuple(data.test_images.shape[-2:]))
    precision = choose_precision(args.precision, Capabilities.detect(device))
    # The batches are binary by construction; on a GPU, skip the value checks (device syncs).
    model = PixelCNN(config, device=device, validate_args=device.type != "cuda")
    model = model.to(memory_format=precision.memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    objective: torch.nn.Module = NegLogLikelihood(model)
    if world > 1:
        # DDP must be told when some parameters never get a gradient (e.g. an output layer
        # whose result the network does not use); probe once with a single test image.
        unused = unused_parameters(objective, data.test_images[:1].to(device))
        if unused:
            log(f"note: parameters without gradient, DDP will look for them: {unused}")
        objective = torch.nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(unused),
        )
    if args.compile:
        objective = torch.compile(objective)
    identity = {"config": dataclasses.asdict(config), **{k: getattr(args, k) for k in RUN_KEYS}}
    return Run(model, optimizer, objective, precision, identity)


def resume(run: Run, args: argparse.Namespace, device: torch.device, log: Any) -> None:
    """Load ``<out>/checkpoint.pt`` into ``run`` when ``--resume`` (raises on a foreign one)."""
    path = args.out / "checkpoint.pt"
    if not args.resume:
        if path.exists():
            log(f"note: starting afresh; {path} will be replaced (pass --resume to continue)")
        return
    if not path.exists():
        log(f"--resume: no checkpoint at {path}, starting afresh")
        return
    checkpoint = load_checkpoint(path, map_location=device)
    check_resumable(checkpoint, run.identity)
    if int(checkpoint["epoch"]) > args.epochs:
        raise ValueError(
            f"--resume: {path} is after epoch {checkpoint['epoch']}, past --epochs "
            f"{args.epochs}; pass --epochs {checkpoint['epoch']} or more to continue it, or "
            "another --out to start a new run"
        )
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    set_rng_state(checkpoint["rng"])
    run.history, run.start = list(checkpoint["metrics"]), int(checkpoint["epoch"])
    run.initial, run.pictures = checkpoint.get("initial_test_nll"), list(checkpoint["pictures"])
    partial = checkpoint.get("progress")  # absent in checkpoints saved only at epoch ends
    run.partial = EpochProgress.from_dict(partial) if partial else None
    where = f"step {run.partial.steps} of epoch {run.start + 1}" if run.partial else (
        f"the end of epoch {run.start}")  # fmt: skip
    log(f"resumed from {path} at {where}")


def hardware(device: torch.device) -> dict[str, Any]:
    """What the run ran on, for metrics.json."""
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        lines = info.read_text().splitlines()
        models = [ln.partition(":")[2].strip() for ln in lines if ln.startswith("model name")]
        cpu = models[0] if models else cpu
    return {
        "device": str(device),
        "device_capabilities": Capabilities.detect(device).name,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }


# ---------------------------------------------------------------------------------- epochs
def progress_bar(
    steps: int, desc: str, chief: bool, start: EpochProgress | None
) -> tuple[tqdm, Any]:
    """A tqdm bar (from ``start`` when resumed) and the ``progress`` callback that feeds it."""
    done0, images0 = (start.steps, start.total) if start else (0, 0)
    bar = tqdm(total=steps, initial=done0, desc=desc, unit="step", disable=not chief,
               mininterval=0.5, dynamic_ncols=True)  # fmt: skip
    tick = time.perf_counter()

    def progress(done: int, images: int, running: float) -> None:
        bar.update(done - bar.n)
        rate = (images - images0) / max(time.perf_counter() - tick, 1e-9)
        bar.set_postfix(loss=f"{running:.2f}", img_s=f"{rate:.0f}", refresh=False)

    return bar, progress


class MidEpochCheckpoints:
    """``after_step`` of ``train_epoch``: saves the whole state every ``--checkpoint-minutes``.

    Only single-process runs save mid-epoch: each process of a distributed run holds its own
    share of the running sums, and saving them all would need every process to stop together.
    """

    def __init__(self, run: Run, args: argparse.Namespace, epoch: int, device: torch.device):
        self.run, self.args, self.epoch, self.device = run, args, epoch, device
        self.seconds = args.checkpoint_minutes * 60
        self.last = time.monotonic()

    def __call__(self, progress: EpochProgress) -> None:
        if time.monotonic() - self.last >= self.seconds:
            save_state(self.run, self.args, self.epoch - 1, self.device, progress)
            self.last = time.monotonic()


def run_epoch(
    run: Run, data: Data, args: argparse.Namespace, epoch: int, device: torch.device, chief: bool
) -> dict[str, Any]:
    """Train one epoch (from where a resumed run stopped), score the test set (fp32)."""
    steps = len(data.train)
    if args.limit_train_batches is not None:
        steps = min(steps, args.limit_train_batches)
    data.train.set_epoch(epoch)
    start, run.partial = run.partial, None
    bar, progress = progress_bar(steps, f"epoch {epoch}/{args.epochs}", chief, start)
    single = _world() == 1
    train = train_epoch(
        run.objective,
        run.optimizer,
        data.train,
        device=device,
        precision=run.precision,
        max_steps=args.limit_train_batches,
        progress=progress,
        log_every=1 if device.type == "cpu" else 20,
        start=start,
        after_step=MidEpochCheckpoints(run, args, epoch, device) if single else None,
    )
    bar.close()
    test = score_test_set(run.model, data, args, device, chief)
    return {
        "epoch": epoch,
        "train_nll": train.nll,
        "train_bits_per_dim": train.bits_per_dim,
        "test_nll": test.nll,
        "test_bits_per_dim": test.bits_per_dim,
        "train_images": train.images,
        "train_seconds": train.seconds,
        "train_images_per_second": train.images_per_second,
        "eval_seconds": test.seconds,
        "precision": run.precision.name,
    }


class NonFiniteState(RuntimeError):
    """The weights or the optimizer's state hold a NaN or an infinity: nothing is saved."""


def _non_finite(state: Any, where: str) -> list[str]:
    """Names of the floating-point tensors in a nested state that hold a NaN or infinity."""
    if isinstance(state, torch.Tensor):
        bad = state.is_floating_point() and not bool(torch.isfinite(state).all())
        return [where] if bad else []
    if isinstance(state, dict):
        return [n for k, v in state.items() for n in _non_finite(v, f"{where}.{k}")]
    if isinstance(state, (list, tuple)):
        return [n for i, v in enumerate(state) for n in _non_finite(v, f"{where}[{i}]")]
    return []


def score_test_set(
    model: PixelCNN, data: Data, args: argparse.Namespace, device: torch.device, chief: bool
) -> Any:
    """The test NLL in fp32 (``evaluate``), with a progress bar."""
    steps = len(data.test)
    if args.limit_test_batches is not None:
        steps = min(steps, args.limit_test_batches)
    with tqdm(total=steps, desc="test set", unit="batch", disable=not chief, mininterval=0.5,
              dynamic_ncols=True, leave=False) as bar:  # fmt: skip
        return evaluate(model, data.test, device=device, max_steps=args.limit_test_batches,
                        progress=lambda done, images: bar.update(done - bar.n))  # fmt: skip


def save_state(
    run: Run,
    args: argparse.Namespace,
    epoch: int,
    device: torch.device,
    progress: EpochProgress | None = None,
) -> None:
    """The checkpoint and metrics.json after ``epoch``, and ``progress`` into the next one.

    Raises:
        NonFiniteState: the state holds a NaN or infinity (the last checkpoint is kept).
    """
    plain_args = {k: _plain(v) for k, v in vars(args).items()}
    state = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict()}
    bad = _non_finite(state, "state")
    if bad:
        raise NonFiniteState(
            f"not saving a checkpoint: {', '.join(bad[:3])} hold NaN or infinite values; "
            f"{args.out / 'checkpoint.pt'} keeps the last good state"
        )
    save_checkpoint(
        args.out / "checkpoint.pt",
        {
            "epoch": epoch,
            "progress": progress.to_dict() if progress else None,
            **state,
            "rng": get_rng_state(),
            "metrics": run.history,
            "initial_test_nll": run.initial,
            "pictures": run.pictures,
            "run": run.identity,
            "args": plain_args,
        },
    )
    write_summary(run, args, epoch, device, progress)


def write_summary(
    run: Run,
    args: argparse.Namespace,
    epoch: int,
    device: torch.device,
    progress: EpochProgress | None,
) -> None:
    """metrics.json: the run's set-up, every finished epoch and how far the next one came."""
    plain_args = {k: _plain(v) for k, v in vars(args).items()}
    last = run.history[-1] if run.history else None
    current = None
    if progress is not None:
        running = progress.nll / max(progress.images, 1)
        current = {"epoch": epoch + 1, "steps": progress.steps, "running_train_nll": running,
                   "train_seconds": progress.seconds}  # fmt: skip
    summary = {
        "finished": epoch == args.epochs and progress is None,
        "config": run.identity["config"],
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "args": plain_args,
        "world_size": _world(),
        "precision": {"name": run.precision.name, "reason": run.precision.reason},
        "hardware": hardware(device),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "initial_test_nll": run.initial,
        "final": {k: last[k] for k in ("epoch", "train_nll", "test_nll", "test_bits_per_dim")}
        if last
        else None,
        "in_progress": current,
        "train_seconds": sum(m["train_seconds"] for m in run.history),
        "wall_seconds": sum(m["epoch_seconds"] for m in run.history),
        "pictures": run.pictures,
        "epochs": run.history,
    }
    write_json(args.out / "metrics.json", summary)


def save_weights(run: Run, path: Path) -> None:
    """Config, weights and final test NLL: what ``examples/package_weights.py`` packages."""
    last = run.history[-1]
    state = {k: v.detach().cpu().contiguous() for k, v in run.model.state_dict().items()}
    save_checkpoint(
        path,
        {
            "config": run.identity["config"],
            "model": state,
            "metrics": {k: last[k] for k in ("epoch", "test_nll", "test_bits_per_dim")}
            | {"binarize": run.identity["binarize"], "threshold": run.identity["threshold"]},
        },
    )


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, rank, world = setup_distributed(args.device)
    chief = rank == 0
    log = print if chief else (lambda *a, **k: None)
    try:
        data = load_data(args, rank, world)
        check_start(args, data)
        run = build_run(args, data, device, world, log)
        resume(run, args, device, log)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    num_params = sum(p.numel() for p in run.model.parameters())
    log(
        f"autoregressive {autoregressive.__version__}, torch {torch.__version__}, device "
        f"{device} x {world} process(es), {torch.get_num_threads()} thread(s) each\n"
        f"precision: {run.precision.name} ({run.precision.reason})\n"
        f"model: {run.model.config}\n{num_params:,} parameters; {data.train_size:,} training "
        f"and {data.test_images.shape[0]:,} test images, binarization {args.binarize}; "
        f"data {args.data_dir}; out {args.out}"
    )
    if args.eval_initial and run.start == 0:
        run.initial = score_test_set(run.model, data, args, device, chief).nll
        log(f"untrained model: test NLL {run.initial:.2f} nats")
    try:
        train_epochs(run, data, args, device, chief, log)
    except (DivergenceError, NonFiniteState) as err:
        print(
            f"error: {err}\n--resume restarts from the last checkpoint in {args.out}, if any; "
            "a lower --lr needs a new --out",
            file=sys.stderr,
        )
        return 3
    if chief and run.history:
        finish(run, args)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


def train_epochs(
    run: Run, data: Data, args: argparse.Namespace, device: torch.device, chief: bool, log: Any
) -> None:
    """The epochs from where the run stands to ``--epochs``, each saved when it ends."""
    for epoch in range(run.start + 1, args.epochs + 1):
        started = time.perf_counter() - (run.partial.seconds if run.partial else 0.0)
        record = run_epoch(run, data, args, epoch, device, chief)
        log(
            f"epoch {epoch}: train NLL {record['train_nll']:.2f} nats, test NLL "
            f"{record['test_nll']:.2f} nats ({record['test_bits_per_dim']:.4f} bits/dim); "
            f"{record['train_images_per_second']:.0f} images/s, train "
            f"{record['train_seconds']:.1f} s, eval {record['eval_seconds']:.1f} s"
        )
        if chief and epoch in set(args.sample_epochs) | {args.epochs}:
            run.pictures += write_pictures(run.model, data.test_images, args, epoch, device)
        record["epoch_seconds"] = time.perf_counter() - started
        run.history.append(record)
        if chief:
            save_state(run, args, epoch, device)
            save_loss_curve(run.history, run.initial, args.out / "loss_curve.png")
        if epoch < args.epochs:
            log(eta(run.history, args.epochs))


def eta(history: list[dict[str, Any]], epochs: int) -> str:
    """The time left, at the mean pace of the last three epochs."""
    recent = [m["epoch_seconds"] for m in history[-3:]]
    left = (epochs - history[-1]["epoch"]) * sum(recent) / len(recent)
    done = time.strftime("%a %H:%M", time.localtime(time.time() + left))
    hours, minutes = divmod(round(left / 60), 60)
    return (
        f"ETA: {hours} h {minutes:02d} min for {epochs - history[-1]['epoch']} more epochs ({done})"
    )


def finish(run: Run, args: argparse.Namespace) -> None:
    """Loss curve, packaged weights and the closing summary."""
    save_loss_curve(run.history, run.initial, args.out / "loss_curve.png")
    last = run.history[-1]
    if last["epoch"] == args.epochs:
        save_weights(run, args.out / "weights.pt")
    print(
        f"done: test NLL {last['test_nll']:.2f} nats ({last['test_bits_per_dim']:.4f} "
        f"bits/dim) after {last['epoch']} epochs; training "
        f"{sum(m['train_seconds'] for m in run.history):.0f} s, all epochs "
        f"{sum(m['epoch_seconds'] for m in run.history):.0f} s\n"
        f"pictures: {', '.join(str(args.out / p) for p in run.pictures)}; "
        f"{args.out / 'loss_curve.png'}; {args.out / 'metrics.json'}"
    )


if __name__ == "__main__":
    sys.exit(main())
