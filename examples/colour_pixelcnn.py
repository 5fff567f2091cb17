"""Train a colour PixelCNN on 32x32 RGB images; write samples, completions, a curve, bits/dim.

    python examples/colour_pixelcnn.py --demo         # CPU-sized run on the offline photo patches
    python examples/colour_pixelcnn.py --demo --distribution categorical   # the same, 256-way
    python examples/colour_pixelcnn.py --dataset cifar10 --device cuda     # CIFAR-10
    python examples/colour_pixelcnn.py --demo --resume  # continue from <out>/checkpoint.pt

Data (``--dataset``):

- ``photo-patches`` (default, offline): 32x32 patches cut from the colour photographs that ship
  in scikit-image's wheel, split by source photograph (3,858 training patches of six
  photographs, 342 test patches of two others); see
  :func:`autoregressive.data.colour.load_photo_patches`. **Not CIFAR-10**: its bits/dim do not
  compare with published CIFAR-10 figures.
- ``cifar10``: CIFAR-10 through ``torchvision.datasets.CIFAR10`` (checksums verified; downloads
  into ``--data-dir`` where the network allows; ``--no-verify`` reads the pickles of a copy
  that is not byte-identical to the official files).

Likelihood (``--distribution``): ``logistic_mixture`` (default) is PixelCNN++'s discretized
logistic mixture over whole RGB pixels (pixel-wise masks, ~100 output channels per pixel);
``categorical`` is the PixelCNN paper's 256-way softmax per sub-pixel with channel-wise masks
(768 output channels per pixel).

Into ``--out`` it writes ``checkpoint.pt`` (atomically, every ``--checkpoint-minutes`` and after
every epoch; ``--resume`` continues from the step it holds), ``samples_epoch<k>.png`` and
``completions_epoch<k>.png`` (bottom halves of test images sampled given the top halves) at the
sample epochs and the last, ``loss_curve.png`` (bits/dim per epoch) and ``metrics.json``.
Training runs in ``--precision auto`` (bf16 autocast where the device computes bf16 natively,
float32 elsewhere); test bits/dim are always computed in float32, and no checkpoint ever holds
a non-finite number. Uses only the public API of ``autoregressive``,
``autoregressive.data.colour`` and ``autoregressive.training``, plus torchvision /
scikit-image (data), tqdm and matplotlib; the scaffolding it shares with the other examples is
in ``common.py``, ``loop.py`` and ``outputs.py``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autoregressive import PixelCNN, PixelCNNConfig
from autoregressive.data import derive_seed
from autoregressive.data.colour import ImageBatches, load_cifar10, load_photo_patches, read_cifar10
from autoregressive.training import CheckpointError, DivergenceError, EpochProgress

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
import common
import loop
import outputs
from loop import Run

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10"
LOCAL_CIFAR = REPO / "data" / "cifar10"  # git-ignored
#: Dimensions of one image, to turn nats per image into bits per dimension.
DIMS = 3 * 32 * 32

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
    "checkpoint_minutes": 10.0,
}

#: The CPU-sized demo (``make colour-demo``): 968 steps.
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
    "checkpoint_minutes": 10.0,
}

#: Arguments that define the run: a checkpoint resumes only a run with the same values.
RUN_KEYS = ("dataset", "seed", "lr", "batch_size", "train_images", "limit_train_batches")
#: The flag that sets each field of the model's config.
CONFIG_FLAGS = common.MODEL_FLAGS | {"mixtures": "--mixtures"}


# ---------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """The command line; model and training flags left unset take the demo or reference value."""
    p = argparse.ArgumentParser(
        prog="colour_pixelcnn.py",
        description=f"{__doc__.splitlines()[0]} Defaults: the full run; --demo: the CPU-sized run.",
        formatter_class=common.HelpFormatter,
    )
    ref = common.profile_help(REFERENCE, DEMO)
    demo = (
        "the CPU-sized run: gated 4 x 36, batch 16, 4 epochs; 5.4-17 min on a 2-core AMD EPYC "
        "(idle to one thread beside other jobs); explicit flags still override"
    )
    common.add_run_flags(p, demo, ref("out"), checkpoint_minutes=ref("checkpoint_minutes"))
    g = common.add_model_flags(p, ref)
    g.add_argument(
        "--distribution",
        choices=["logistic_mixture", "categorical"],
        default="logistic_mixture",
        help="output likelihood",
    )
    mixtures = "logistic mixture components"
    g.add_argument("--mixtures", type=common.positive_int, default=10, help=mixtures)
    common.add_training_flags(p, ref)
    where = "CIFAR-10's root (holds cifar-10-batches-py/); default: ../shared/data/cifar10 "
    where += "beside the checkout if it is there, else data/cifar10 in the checkout"
    g = common.add_data_flags(p, ref, where, "never download CIFAR-10")
    g.add_argument(
        "--dataset",
        choices=["photo-patches", "cifar10"],
        default="photo-patches",
        help="the offline photo patches (not CIFAR-10) or CIFAR-10",
    )
    no_verify = "read CIFAR-10's pickles without torchvision's MD5 checks"
    g.add_argument("--no-verify", action="store_true", help=no_verify)
    limit = "score at most this many test batches (for tests)"
    g.add_argument("--limit-test-batches", type=common.positive_int, help=limit)
    size = "images per test batch"
    g.add_argument("--eval-batch-size", type=common.positive_int, default=64, help=size)
    g = common.add_sample_flags(p, ref, num_samples=36)
    completions = "test images to complete"
    g.add_argument("--completions", type=common.positive_int, default=6, help=completions)
    temperature = "sampling temperature"
    g.add_argument("--temperature", type=common.positive_float, default=1.0, help=temperature)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill unset flags from the demo or reference profile.

    Every flag is checked here (exit code 2 naming the flag) except what needs the data and
    the output folder: :func:`check_start`.
    """

    def finish(args: argparse.Namespace) -> None:
        if args.data_dir is None:
            args.data_dir = SHARED_CIFAR if SHARED_CIFAR.is_dir() else LOCAL_CIFAR
        common.check_config(lambda: build_config(args), CONFIG_FLAGS)

    return common.parse_profiled(build_parser(), argv, REFERENCE, DEMO, finish)


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
    flags = "--dataset, --data-dir, --train-images"
    common.check_steps("train on", len(data.train), "the training set", flags)
    common.check_steps("score", len(data.test), "the test set", "--dataset, --data-dir")
    common.check_count("--train-images", args.train_images, data.train_size, "the training set")
    common.check_count("--completions", args.completions, len(data.test_images), "the test set")
    common.make_out(args.out)


# -------------------------------------------------------------------------------- outputs
@torch.no_grad()
def write_pictures(
    model: PixelCNN, data: Data, args: argparse.Namespace, epoch: int, record: dict[str, Any]
) -> list[str]:
    """Sample and completion grids of one epoch; returns the file names."""
    start, device, t = time.perf_counter(), next(model.parameters()).device, args.temperature
    generator = torch.Generator(device).manual_seed(derive_seed(args.seed, epoch, "samples"))
    samples = model.sample(args.num_samples, size=(32, 32), generator=generator, temperature=t)
    name, cname = f"samples_epoch{epoch:03d}.png", f"completions_epoch{epoch:03d}.png"
    title = f"{args.num_samples} samples after epoch {epoch} ({args.distribution}, T={t:g})"
    cols = math.ceil(math.sqrt(args.num_samples))
    outputs.save_grid(samples / 255, cols, args.out / name, title, inches=1.0, background=1.0)
    n = data.test_images.shape[0]
    spread = torch.linspace(0, n - 1, min(args.completions, n)).long()  # across the test set
    originals = data.test_images[spread].long().to(device)  # (R, 3, 32, 32)
    grid, labels = outputs.complete_bottom_halves(
        model, originals, 3, generator, hidden=128, temperature=t
    )
    title = f"bottom halves of test images completed, epoch {epoch}"
    path, cols = args.out / cname, len(labels)
    outputs.save_grid(grid / 255, cols, path, title, labels=labels, inches=1.0, background=1.0)
    record["sampling_seconds"] = time.perf_counter() - start
    return [name, cname]


def trained(history: list[dict[str, Any]]) -> bool:
    """Whether every epoch has a finite training and test loss (NaN: no image seen)."""
    return bool(history) and all(
        math.isfinite(m["train_bits_per_dim"]) and math.isfinite(m["test_bits_per_dim"])
        for m in history
    )


def save_state(
    run: Run,
    data: Data,
    args: argparse.Namespace,
    epoch: int,
    device: torch.device,
    progress: EpochProgress | None = None,
) -> None:
    """The checkpoint and metrics.json after ``epoch``, and ``progress`` into the next one."""
    extra = {
        "finished": epoch == args.epochs and progress is None and trained(run.history),
        "data": data.description,
        "train_images": data.train_size,
        "test_images": int(data.test_images.shape[0]),
        "distribution": args.distribution,
    }
    final = ("epoch", "train_bits_per_dim", "test_bits_per_dim")
    loop.save_state(run, args, epoch, progress, device, final=final, extra=extra)


def save_curve(run: Run, args: argparse.Namespace) -> None:
    """Train and test bits/dim per epoch: ``loss_curve.png``."""
    epochs = [m["epoch"] for m in run.history]
    lines = {
        key.split("_")[0]: (epochs, [m[key] for m in run.history])
        for key in ("train_bits_per_dim", "test_bits_per_dim")
    }
    last = run.history[-1]["test_bits_per_dim"]
    title = f"{args.dataset}, {args.distribution}: test {last:.3f} bits/dim"
    outputs.save_curves([outputs.Panel(title, "bits / dim", lines)], args.out / "loss_curve.png")


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.pick_device(args.device)
    try:
        data = load_data(args)
        check_start(args, data)
        run = loop.new_run(build_config(args), args, device, RUN_KEYS)
        loop.resume_run(run, args, device, print)
    except (FileNotFoundError, ImportError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{outputs.header(device, run.precision, run.model)}\ndata: {data.description}, "
        f"{data.train_size:,} training and {data.test_images.shape[0]:,} test images; out "
        f"{args.out}",
        flush=True,
    )

    def save(epoch: int, progress: EpochProgress | None) -> None:
        save_state(run, data, args, epoch, device, progress)
        if progress is None:
            save_curve(run, args)

    def pictures(epoch: int, record: dict[str, Any]) -> list[str]:
        return write_pictures(run.model, data, args, epoch, record)

    def bits_per_dim(nll: float) -> dict[str, str]:
        return {"bpd": f"{nll / DIMS / math.log(2):.3f}"}

    try:
        loop.train_epochs(
            run, args, data, device, save=save, pictures=pictures, postfix=bits_per_dim
        )
    except (DivergenceError, loop.NonFiniteState) as err:
        return loop.stopped(err, args.out)
    if run.history:
        print(outputs.done(run, args, "loss_curve.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
