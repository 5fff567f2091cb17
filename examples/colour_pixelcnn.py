"""Train a colour PixelCNN on 32x32 RGB images; write samples, completions, a curve, bits/dim.

    python examples/colour_pixelcnn.py --demo         # CPU-sized run on the offline photo patches
    python examples/colour_pixelcnn.py --demo --distribution categorical   # the same, 256-way
    python examples/colour_pixelcnn.py --dataset cifar10 --device cuda     # CIFAR-10
    python examples/colour_pixelcnn.py --demo --resume  # continue from <out>/checkpoint.pt

Data (``--dataset``):

- ``photo-patches`` (default, offline): 32x32 patches cut from the colour photographs that ship
  in scikit-image's wheel, split by source photograph (3,858 training patches of six
  photographs, 342 test patches of two others); see
  :func:`autoregressive.colour_data.load_photo_patches`. **Not CIFAR-10**: its bits/dim do not
  compare with published CIFAR-10 figures.
- ``cifar10``: CIFAR-10 through ``torchvision.datasets.CIFAR10`` (checksums verified; downloads
  into ``--data-dir`` where the network allows; ``--no-verify`` reads the pickles of a copy
  that is not byte-identical to the official files).

Likelihood (``--distribution``): ``logistic_mixture`` (default) is PixelCNN++'s discretized
logistic mixture over whole RGB pixels (pixel-wise masks, ~100 output channels per pixel);
``categorical`` is the PixelCNN paper's 256-way softmax per sub-pixel with channel-wise masks
(768 output channels per pixel).

Into ``--out`` it writes ``checkpoint.pt`` (every epoch, atomically), ``samples_epoch<k>.png``
and ``completions_epoch<k>.png`` (bottom halves of test images sampled given the top halves) at
the sample epochs and the last, ``loss_curve.png`` (bits/dim per epoch) and ``metrics.json``.
Uses only the public API of ``autoregressive``, ``autoregressive.colour_data`` and
``autoregressive.training``, plus torchvision / scikit-image (data), tqdm and matplotlib.
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
from tqdm import tqdm

import autoregressive
from autoregressive import PixelCNN, PixelCNNConfig
from autoregressive.colour_data import ImageBatches, load_cifar10, load_photo_patches, read_cifar10
from autoregressive.data import derive_seed
from autoregressive.precision import PRECISIONS, Capabilities, Precision, choose_precision
from autoregressive.training import (
    CheckpointError,
    DivergenceError,
    NegLogLikelihood,
    atomic_write,
    evaluate,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    train_epoch,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
from common import (
    check_config,
    check_count,
    check_device,
    check_each_in,
    check_out,
    check_steps,
    make_out,
    non_negative_int,
    positive_float,
    positive_int,
    torch_seed,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10"
LOCAL_CIFAR = REPO / "data" / "cifar10"  # git-ignored

#: The full run (a GPU run on CIFAR-10 or the patches): a Gated PixelCNN of 12 x 96 channels.
REFERENCE: dict[str, Any] = {
    "block": "gated",
    "num_blocks": 12,
    "hidden_channels": 96,
    "head_channels": 0,
    "lr": 1e-3,
    "batch_size": 32,
    "epochs": 30,
    "train_images": None,
    "sample_epochs": [10, 20, 30],
    "out": "runs/colour",
}

#: The CPU-sized demo (``make colour-demo``): 968 steps; 0.60 s/step (DLM) on an idle core of
#: the 2-core AMD EPYC, about 10 minutes in all (1.1-1.2 s/step beside other jobs).
DEMO: dict[str, Any] = {
    "block": "gated",
    "num_blocks": 4,
    "hidden_channels": 36,
    "head_channels": 0,
    "lr": 2e-3,
    "batch_size": 16,
    "epochs": 4,
    "train_images": None,
    "sample_epochs": [],
    "out": "runs/colour-demo",
}

#: Arguments that define the run: a checkpoint resumes only a run with the same values.
RUN_KEYS = ("dataset", "seed", "lr", "batch_size", "train_images", "limit_train_batches")
#: The flag that sets each field of the model's config.
CONFIG_FLAGS = {
    "block": "--block",
    "num_blocks": "--num-blocks",
    "hidden_channels": "--hidden-channels",
    "head_channels": "--head-channels",
    "mixtures": "--mixtures",
}


# ---------------------------------------------------------------------------- command line
def _help(key: str) -> str:
    default = REFERENCE.get(key)
    return f"default: {'all' if default is None else default}; with --demo: {DEMO.get(key)}"


def build_parser() -> argparse.ArgumentParser:
    """The command line; model and training flags left unset take the demo or reference value."""
    p = argparse.ArgumentParser(
        prog="colour_pixelcnn.py",
        description="Train a colour PixelCNN (discretized logistic mixture or 256-way "
        "categorical) on 32x32 RGB images; write test bits/dim per epoch, sample and "
        "completion grids, a curve, metrics.json and a checkpoint per epoch into --out.",
    )
    g = p.add_argument_group("run")
    g.add_argument(
        "--demo",
        action="store_true",
        help="the CPU-sized run: gated 4 x 36, batch 16, 4 epochs (about 10 minutes on an "
        "idle 2-core CPU)",
    )
    g.add_argument("--out", type=Path, help=f"output folder ({_help('out')})")
    g.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    g.add_argument(
        "--seed", type=torch_seed, default=0, help="seed of initialisation, data, samples"
    )
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    g.add_argument("--precision", choices=PRECISIONS, default="fp32", help="training precision")
    g.add_argument(
        "--threads", type=positive_int, help="torch CPU threads (default: torch's choice)"
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=["photo-patches", "cifar10"], default="photo-patches")
    g.add_argument("--data-dir", type=Path, help="CIFAR-10 root (holds cifar-10-batches-py/)")
    g.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    g.add_argument(
        "--no-verify",
        action="store_true",
        help="read CIFAR-10's pickles without torchvision's MD5 checks",
    )
    g.add_argument(
        "--train-images",
        type=positive_int,
        help=f"first N training images ({_help('train_images')})",
    )
    g.add_argument(
        "--limit-test-batches", type=positive_int, help="score at most this many test batches"
    )
    g.add_argument("--eval-batch-size", type=positive_int, default=64, help="images per test batch")
    g = p.add_argument_group("model")
    g.add_argument(
        "--distribution",
        choices=["logistic_mixture", "categorical"],
        default="logistic_mixture",
        help="output likelihood",
    )
    g.add_argument("--mixtures", type=positive_int, default=10, help="logistic mixture components")
    g.add_argument("--block", choices=["residual", "gated"], help=f"block ({_help('block')})")
    g.add_argument("--num-blocks", type=positive_int, help=f"depth ({_help('num_blocks')})")
    g.add_argument(
        "--hidden-channels", type=positive_int, help=f"width ({_help('hidden_channels')})"
    )
    g.add_argument(
        "--head-channels",
        type=non_negative_int,
        help=f"extra 1x1 layer, 0: none ({_help('head_channels')})",
    )
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=positive_float, help=f"Adam learning rate ({_help('lr')})")
    g.add_argument("--epochs", type=positive_int, help=f"epochs ({_help('epochs')})")
    g.add_argument(
        "--batch-size", type=positive_int, help=f"images per step ({_help('batch_size')})"
    )
    g.add_argument(
        "--limit-train-batches", type=positive_int, help="at most this many steps per epoch"
    )
    g = p.add_argument_group("samples")
    g.add_argument(
        "--sample-epochs",
        type=positive_int,
        nargs="*",
        help="epochs that write grids (and the last)",
    )
    g.add_argument("--num-samples", type=positive_int, default=36, help="images in the sample grid")
    g.add_argument("--completions", type=positive_int, default=6, help="test images to complete")
    g.add_argument("--temperature", type=positive_float, default=1.0, help="sampling temperature")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill unset flags from the demo or reference profile.

    Every flag is checked here (exit code 2 naming the flag) except what needs the data and
    the output folder: :func:`check_start`.
    """
    p = build_parser()
    args = p.parse_args(argv)
    sample_epochs_given = args.sample_epochs is not None
    for key, value in (DEMO if args.demo else REFERENCE).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.out = Path(args.out)
    if args.data_dir is None:
        args.data_dir = SHARED_CIFAR if SHARED_CIFAR.is_dir() else LOCAL_CIFAR
    try:
        check_device(args.device)
        check_out(args.out)
        if sample_epochs_given:  # a profile's sample epochs past a shorter --epochs never come
            check_each_in(
                "--sample-epochs", args.sample_epochs, 1, args.epochs, f"--epochs is {args.epochs}"
            )
        check_config(lambda: build_config(args), CONFIG_FLAGS)
    except ValueError as err:
        p.error(str(err))
    return args


# ------------------------------------------------------------------------------- pictures
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    _pyplot().close(fig)


def tile(images: torch.Tensor, cols: int, pad: int = 2) -> torch.Tensor:
    """Tile ``(N, 3, H, W)`` images in ``[0, 255]`` into one ``uint8`` RGB array ``(h, w, 3)``."""
    n, _, h, w = images.shape
    rows = math.ceil(n / cols)
    canvas = torch.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=torch.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        canvas[top : top + h, left : left + w] = images[k].permute(1, 2, 0).to(torch.uint8).cpu()
    return canvas


def save_grid(
    images: torch.Tensor, cols: int, path: Path, title: str, labels: list[str] = ()
) -> None:  # type: ignore[assignment]
    """A grid of colour images ``(N, 3, H, W)`` as a PNG, with optional column labels."""
    plt = _pyplot()
    canvas = tile(images, cols)
    height, width = canvas.shape[:2]
    fig, ax = plt.subplots(figsize=(max(width / 34 + 0.3, 4.5), height / 34 + 0.7))
    ax.imshow(canvas.numpy(), interpolation="nearest")
    step = images.shape[-1] + 2
    for c, label in enumerate(labels):
        ax.text(2 + c * step + step / 2 - 1, -2, label, ha="center", va="bottom", fontsize=7)
    ax.set_title(title, fontsize=9, pad=14 if labels else 6)
    ax.axis("off")
    _save_figure(fig, path)


def save_curve(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Train and test bits/dim per epoch."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    epochs = [m["epoch"] for m in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [m["train_bits_per_dim"] for m in history], "o-", label="train (running)")
    ax.plot(epochs, [m["test_bits_per_dim"] for m in history], "s-", label="test")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("bits / dim")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=10)
    _save_figure(fig, path)


@torch.no_grad()
def write_pictures(
    model: PixelCNN, test: torch.Tensor, args: argparse.Namespace, epoch: int, device: torch.device
) -> tuple[list[str], float]:
    """Sample and completion grids of one epoch; returns the file names and the seconds taken."""
    start = time.perf_counter()
    generator = torch.Generator(device).manual_seed(derive_seed(args.seed, epoch, "samples"))
    t = args.temperature
    samples = model.sample(args.num_samples, size=(32, 32), generator=generator, temperature=t)
    name = f"samples_epoch{epoch:03d}.png"
    title = f"{args.num_samples} samples after epoch {epoch} ({args.distribution}, T={t:g})"
    save_grid(samples, math.ceil(math.sqrt(args.num_samples)), args.out / name, title)
    rows, k = min(args.completions, test.shape[0]), 3
    spread = torch.linspace(0, test.shape[0] - 1, rows).long()  # from across the test set
    originals = test[spread].long().to(device)  # (R, 3, 32, 32)
    known = torch.zeros(1, 1, 32, 32, dtype=torch.bool, device=device)
    known[..., :16, :] = True  # the top half is given
    image = originals.repeat(k, 1, 1, 1)  # (K * R, 3, 32, 32)
    filled = model.sample(image=image, known=known, generator=generator, temperature=t)
    given = originals.clone()
    given[..., 16:, :] = 128  # hidden part shown grey
    grid = torch.stack([originals, given, *filled.view(k, rows, 3, 32, 32)], dim=1)
    cname = f"completions_epoch{epoch:03d}.png"
    labels = ["original", "given", *(f"sample {i + 1}" for i in range(k))]
    save_grid(
        grid.flatten(0, 1),
        k + 2,
        args.out / cname,
        f"bottom halves of test images completed, epoch {epoch}",
        labels,
    )
    return [name, cname], time.perf_counter() - start


# ------------------------------------------------------------------------------------ setup
@dataclass
class Data:
    train: ImageBatches
    test: ImageBatches
    test_images: torch.Tensor  # (N, 3, 32, 32) uint8, for completions
    train_size: int
    description: str


def load_data(args: argparse.Namespace) -> Data:
    """The chosen data set as batches (raises ``FileNotFoundError`` / ``ImportError``)."""
    if args.dataset == "photo-patches":
        train_x, _ = load_photo_patches(train=True)
        test_x, _ = load_photo_patches(train=False)
        what = "photo patches from scikit-image's sample photographs (not CIFAR-10)"
    elif args.no_verify:
        (train_x, _), (test_x, _) = (read_cifar10(args.data_dir, train=t) for t in (True, False))
        what = f"CIFAR-10 from {args.data_dir} (pickles read without checksums)"
    else:
        download = not args.no_download
        train_x, _ = load_cifar10(args.data_dir, train=True, download=download)
        test_x, _ = load_cifar10(args.data_dir, train=False, download=download)
        what = f"CIFAR-10 from {args.data_dir}"
    if args.train_images is not None:
        train_x = train_x[: args.train_images]
    train = ImageBatches(train_x, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    test = ImageBatches(test_x, batch_size=args.eval_batch_size)
    return Data(train, test, test_x, train_x.shape[0], what)


def check_start(args: argparse.Namespace, data: Data) -> None:
    """Start-up checks that need the data; then create ``--out`` and check it is writable.

    Raises:
        ValueError: a run that would train or score nothing, or asks for more images than
            there are, or an ``--out`` that cannot be written; the message names the flags.
    """
    check_steps(
        "train on", len(data.train), "the training set", "--dataset, --data-dir, --train-images"
    )
    check_steps("score", len(data.test), "the test set", "--dataset, --data-dir")
    check_count("--train-images", args.train_images, data.train_size, "the training set")
    check_count("--completions", args.completions, len(data.test_images), "the test set")
    make_out(args.out)


def build_config(args: argparse.Namespace) -> PixelCNNConfig:
    """The model: 3 channels of 256 levels, the chosen likelihood and architecture."""
    extra = {"mixtures": args.mixtures} if args.distribution == "logistic_mixture" else {}
    return PixelCNNConfig(
        data_channels=3,
        distribution=args.distribution,
        levels=256,
        block=args.block,
        num_blocks=args.num_blocks,
        hidden_channels=args.hidden_channels,
        head_channels=args.head_channels,
        image_size=(32, 32),
        **extra,
    )


@dataclass
class Run:
    model: PixelCNN
    optimizer: torch.optim.Optimizer
    objective: torch.nn.Module
    precision: Precision
    identity: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    pictures: list[str] = field(default_factory=list)
    start: int = 0  # the last finished epoch


def build_run(args: argparse.Namespace, device: torch.device) -> Run:
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    config = build_config(args)
    precision = choose_precision(args.precision, Capabilities.detect(device))
    model = PixelCNN(config, device=device, validate_args=device.type != "cuda")
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    identity = {"config": dataclasses.asdict(config), **{k: getattr(args, k) for k in RUN_KEYS}}
    return Run(model, optimizer, NegLogLikelihood(model), precision, identity)


def resume(run: Run, args: argparse.Namespace, device: torch.device) -> None:
    """Load ``<out>/checkpoint.pt`` when ``--resume`` (``ValueError`` on another run's)."""
    path = args.out / "checkpoint.pt"
    if not args.resume or not path.exists():
        print(f"starting afresh{' (no checkpoint)' if args.resume else ''}; out {args.out}")
        return
    checkpoint = load_checkpoint(path, map_location=device)
    saved, now = (json.loads(json.dumps(d)) for d in (checkpoint.get("run", {}), run.identity))
    diff = [k for k in now if saved.get(k) != now[k]]
    if diff:
        raise ValueError(
            f"--resume: {path} belongs to another run (differs in {diff}); pass "
            "the same flags or another --out"
        )
    if int(checkpoint["epoch"]) > args.epochs:
        raise ValueError(
            f"--resume: {path} is after epoch {checkpoint['epoch']}, past --epochs "
            f"{args.epochs}; pass --epochs {checkpoint['epoch']} or more, or another --out"
        )
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    set_rng_state(checkpoint["rng"])
    run.history, run.start = list(checkpoint["metrics"]), int(checkpoint["epoch"])
    run.pictures = list(checkpoint["pictures"])
    print(f"resumed from {path} after epoch {run.start}")


# ---------------------------------------------------------------------------------- epochs
def run_epoch(
    run: Run, data: Data, args: argparse.Namespace, epoch: int, device: torch.device
) -> dict[str, Any]:
    """Train one epoch and score the test set (fp32); the epoch's record."""
    steps = (
        len(data.train)
        if args.limit_train_batches is None
        else min(len(data.train), args.limit_train_batches)
    )
    data.train.set_epoch(epoch)
    bar = tqdm(total=steps, desc=f"epoch {epoch}/{args.epochs}", unit="step", mininterval=1.0)
    dims = 3 * 32 * 32 * math.log(2)

    def progress(done: int, images: int, running: float) -> None:
        bar.update(done - bar.n)
        bar.set_postfix(bpd=f"{running / dims:.3f}", refresh=False)

    train = train_epoch(
        run.objective,
        run.optimizer,
        data.train,
        device=device,
        precision=run.precision,
        max_steps=args.limit_train_batches,
        progress=progress,
        log_every=1 if device.type == "cpu" else 20,
    )
    bar.close()
    test = evaluate(run.model, data.test, device=device, max_steps=args.limit_test_batches)
    return {
        "epoch": epoch,
        "train_bits_per_dim": train.bits_per_dim,
        "test_bits_per_dim": test.bits_per_dim,
        "test_nll": test.nll,
        "train_images": train.images,
        "train_seconds": train.seconds,
        "seconds_per_step": train.seconds / max(steps, 1),
        "eval_seconds": test.seconds,
    }


def trained(history: list[dict[str, Any]]) -> bool:
    """Whether every epoch has a finite training and test loss (NaN: no image seen)."""
    return bool(history) and all(
        math.isfinite(m["train_bits_per_dim"]) and math.isfinite(m["test_bits_per_dim"])
        for m in history
    )


def write_json(path: Path, data: dict[str, Any]) -> None:
    def finite(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        return [finite(x) for x in v] if isinstance(v, (list, tuple)) else v

    with atomic_write(path) as f:
        f.write(json.dumps(finite(data), indent=2, allow_nan=False).encode() + b"\n")


def hardware(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        models = [
            ln.partition(":")[2].strip()
            for ln in info.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    return {
        "device": str(device),
        "name": name,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def save_state(
    run: Run, data: Data, args: argparse.Namespace, epoch: int, device: torch.device
) -> None:
    plain = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    save_checkpoint(
        args.out / "checkpoint.pt",
        {
            "epoch": epoch,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "rng": get_rng_state(),
            "metrics": run.history,
            "pictures": run.pictures,
            "run": run.identity,
            "args": plain,
        },
    )
    last = run.history[-1]
    write_json(
        args.out / "metrics.json",
        {
            "finished": epoch == args.epochs and trained(run.history),
            "data": data.description,
            "train_images": data.train_size,
            "test_images": int(data.test_images.shape[0]),
            "distribution": args.distribution,
            "config": run.identity["config"],
            "parameters": sum(p.numel() for p in run.model.parameters()),
            "args": plain,
            "precision": run.precision.name,
            "hardware": hardware(device),
            "autoregressive": autoregressive.__version__,
            "final": {k: last[k] for k in ("epoch", "train_bits_per_dim", "test_bits_per_dim")},
            "train_seconds": sum(m["train_seconds"] for m in run.history),
            "wall_seconds": sum(m["epoch_seconds"] for m in run.history),
            "pictures": run.pictures,
            "epochs": run.history,
        },
    )


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    try:
        data = load_data(args)
        check_start(args, data)
        run = build_run(args, device)
        resume(run, args, device)
    except (FileNotFoundError, ImportError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    params = sum(p.numel() for p in run.model.parameters())
    print(
        f"autoregressive {autoregressive.__version__}, torch {torch.__version__}, {device}, "
        f"{torch.get_num_threads()} thread(s), {run.precision.name}\nmodel: "
        f"{run.model.config}\n{params:,} parameters; data: {data.description}, "
        f"{data.train_size:,} training and {data.test_images.shape[0]:,} test images"
    )
    for epoch in range(run.start + 1, args.epochs + 1):
        started = time.perf_counter()
        try:
            record = run_epoch(run, data, args, epoch, device)
        except DivergenceError as err:
            print(f"error: {err}\n--resume restarts from the last checkpoint in {args.out}",
                  file=sys.stderr)  # fmt: skip
            return 3
        print(
            f"epoch {epoch}: train {record['train_bits_per_dim']:.4f} bits/dim, test "
            f"{record['test_bits_per_dim']:.4f} bits/dim; {record['seconds_per_step']:.3f} "
            f"s/step, train {record['train_seconds']:.0f} s, eval "
            f"{record['eval_seconds']:.1f} s",
            flush=True,
        )
        if epoch in set(args.sample_epochs) | {args.epochs}:
            names, seconds = write_pictures(run.model, data.test_images, args, epoch, device)
            run.pictures += names
            record["sampling_seconds"] = seconds
            print(f"pictures: {', '.join(names)} ({seconds:.0f} s)", flush=True)
        record["epoch_seconds"] = time.perf_counter() - started
        run.history.append(record)
        save_state(run, data, args, epoch, device)
    if run.history:
        last = run.history[-1]
        title = (
            f"{args.dataset}, {args.distribution}: test {last['test_bits_per_dim']:.3f} bits/dim"
        )
        save_curve(run.history, args.out / "loss_curve.png", title)
        print(
            f"done: test {last['test_bits_per_dim']:.4f} bits/dim after {last['epoch']} "
            f"epochs; training {sum(m['train_seconds'] for m in run.history):.0f} s, all "
            f"{sum(m['epoch_seconds'] for m in run.history):.0f} s; out {args.out}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
