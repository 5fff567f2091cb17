"""A VQ-VAE on MNIST and a class-conditional PixelCNN prior over its 7x7 code grid.

    python examples/vqvae_prior.py --demo          # CPU-sized run (8.0-24.5 min on 2 cores)
    python examples/vqvae_prior.py --demo --prior snail   # the prior a PixelSNAIL
    python examples/vqvae_prior.py                 # the longer full run
    python examples/vqvae_prior.py --resume        # continue from <out>/checkpoint.pt

Three phases, timed separately:

1. **VQ-VAE** (``vqvae.py``; van den Oord et al., 2017, https://arxiv.org/abs/1711.00937):
   28x28 grey images to 7x7 grids of ``--codebook-size`` codes and back, trained on the
   intensities in ``[0, 1]`` with binary cross-entropy plus the commitment loss, in float32.
2. **Prior** (``prior.py``): :class:`autoregressive.PixelCNN` with ``block="gated"`` (or
   ``block="snail"``, PixelSNAIL, with ``--prior snail``), ``distribution="categorical"``,
   ``levels=--codebook-size``, ``num_classes=10`` and ``image_size=(7, 7)``, trained on the
   code grids of the training images with their labels (the VQ-VAE's encoder is frozen then)
   in ``--precision auto`` (bf16 autocast where the device computes bf16 natively, float32
   elsewhere; the test NLL always in float32). It reads the codes through the input embedding
   chosen by ``--input-embedding``.
3. **Samples**: ``model.sample(n, y, size=(7, 7))`` (the cached sampler) draws code grids per
   class, the decoder turns them into images.

Into ``--out`` it writes ``checkpoint.pt`` (atomically, every ``--checkpoint-minutes`` and after
every epoch of either phase; ``--resume`` continues from the step it holds; never a non-finite
number), ``metrics.json`` (updated with it), ``loss_curves.png``,
``reconstructions.png`` (test images of each class beside their reconstructions) and
``samples.png`` (one row of decoded prior samples per class). Reported: the reconstruction
error (BCE in nats and squared error per image), the codebook size and use (codes used,
perplexity), the prior's test NLL in nats per code grid (beside two baselines: uniform codes
and independent codes at their training frequencies) and the time of every phase.

Uses only the public API of ``autoregressive`` (``PixelCNN``, ``PixelCNNConfig``,
``autoregressive.data``, ``autoregressive.training``) plus torchvision (data files), tqdm,
matplotlib and vector-quantize-pytorch; the scaffolding it shares with the other examples is in
``common.py``, ``loop.py`` and ``outputs.py``.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from autoregressive.data import SeededBatches, derive_seed, load_mnist
from autoregressive.training import (
    CheckpointError,
    DivergenceError,
    EpochProgress,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
import common
import loop
import outputs
import prior
import vqvae as vq
from vqvae import VQVAE, baselines, codebook_use  # noqa: F401 (the tests)

#: ``--data-dir`` by default: ``../shared/data/mnist`` when it holds MNIST, else ``data/mnist``.
default_data_dir = common.default_mnist_dir


#: The full run: the whole training set, a wider VQ-VAE, a deeper prior, longer training.
FULL: dict[str, Any] = {
    "vq_channels": 64,
    "vq_epochs": 10,
    "prior_epochs": 20,
    "prior_blocks": 8,
    "prior_channels": 96,
    "prior_head": 256,
    "train_images": None,
    "out": "runs/prior",
    "checkpoint_minutes": 10.0,
}

#: The CPU-sized demo (``make prior-demo``).
DEMO: dict[str, Any] = {
    "vq_channels": 32,
    "vq_epochs": 2,
    "prior_epochs": 3,
    "prior_blocks": 4,
    "prior_channels": 48,
    "prior_head": 96,
    "train_images": None,
    "out": "runs/prior-demo",
    "checkpoint_minutes": 10.0,
}

#: Arguments that define the run: a checkpoint resumes only a run with the same values.
RUN_KEYS = (
    *("seed", "codebook_size", "code_dim", "vq_channels", "vq_lr", "vq_batch_size"),
    *("commitment", "ema_decay", "dead_code_threshold", "prior_kind", "prior_lr"),
    *("prior_batch_size", "train_images", "limit_train_batches"),
)


# ---------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """The command line; flags left unset take the ``--demo`` or full-run value."""
    p = argparse.ArgumentParser(
        prog="vqvae_prior.py",
        description=f"{__doc__.splitlines()[0]} Defaults: the full run; --demo: the CPU-sized run.",
        formatter_class=common.HelpFormatter,
    )
    ref = common.profile_help(FULL, DEMO)
    demo = (
        "the CPU-sized run: VQ-VAE (32 channels) 2 epochs, prior (4 gated or snail blocks x "
        "48 channels, head 96) 3 epochs, on the whole training set; gated: 8.0-24.5 min on a "
        "2-core AMD EPYC (idle to one thread beside other jobs); explicit flags still override"
    )
    precision = "training precision of the prior (the VQ-VAE trains in fp32)"
    minutes = ref("checkpoint_minutes")
    common.add_run_flags(p, demo, ref("out"), checkpoint_minutes=minutes, precision=precision)
    vq.add_flags(p.add_argument_group("VQ-VAE"), ref)
    prior.add_flags(p.add_argument_group("prior"), ref)
    g = common.add_data_flags(p, ref, common.MNIST_DIR_HELP, "never try to download missing files")
    limit = "at most this many steps per epoch (for tests)"
    g.add_argument("--limit-train-batches", type=common.positive_int, help=limit)
    limit = "score only the first N test images (for tests)"
    g.add_argument("--limit-test-images", type=common.positive_int, help=limit)
    size = "images per test batch"
    g.add_argument("--eval-batch-size", type=common.positive_int, default=500, help=size)
    g = p.add_argument_group("samples")
    columns = "columns of samples.png"
    g.add_argument("--samples-per-class", type=common.positive_int, default=10, help=columns)
    temperature = "divide the prior's logits by it"
    g.add_argument("--temperature", type=common.positive_float, default=1.0, help=temperature)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill unset flags from the ``--demo`` or full profile.

    Every flag is checked here (exit code 2 naming the flag) except what needs the data, the
    checkpoint and the output folder: :func:`check_start` and :func:`prior.check_phases`.
    """

    def finish(args: argparse.Namespace) -> None:
        if args.data_dir is None:
            args.data_dir = default_data_dir()
        common.check_config(lambda: prior.config(args), prior.CONFIG_FLAGS)

    return common.parse_profiled(build_parser(), argv, FULL, DEMO, finish)


# ------------------------------------------------------------------------------------ setup
@dataclass
class Data:
    """MNIST intensities in ``[0, 1]`` ``(N, 1, 28, 28)`` and labels ``(N,)``."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_data(args: argparse.Namespace) -> Data:
    """Read MNIST (raises ``FileNotFoundError`` naming the files when they are missing)."""
    train_x, train_y = load_mnist(args.data_dir, train=True, download=not args.no_download)
    test_x, test_y = load_mnist(args.data_dir, train=False, download=not args.no_download)
    if tuple(train_x.shape[-2:]) != (28, 28):
        raise ValueError(f"the VQ-VAE needs 28x28 images, got {tuple(train_x.shape[-2:])}")
    n, m = args.train_images, args.limit_test_images
    return Data(train_x[:n], train_y[:n], test_x[:m], test_y[:m])


def check_start(args: argparse.Namespace, data: Data) -> None:
    """Start-up checks that need the data; then create ``--out`` and check it is writable.

    Raises:
        ValueError: a run that would train or score nothing, or asks for more images than
            there are, or an ``--out`` that cannot be written; the message names the flags.
    """
    flags = "--data-dir, --train-images"
    common.check_steps("train on", len(data.train_x), "the training set", flags)
    flags = "--data-dir, --limit-test-images"
    common.check_steps("score", len(data.test_x), "the test set", flags)
    common.check_count("--train-images", args.train_images, len(data.train_x), "the training set")
    common.check_count(
        "--limit-test-images", args.limit_test_images, len(data.test_x), "the test set"
    )
    common.make_out(args.out)


def build_phases(args: argparse.Namespace, device: torch.device) -> loop.Phases:
    """The VQ-VAE's run (float32) and then the prior's, seeded by ``--seed``.

    The random stream is seeded again once both are built, so the VQ-VAE's phase (its
    weights, its quantizer's k-means and restarts) is the same whichever prior is built.
    """
    run = loop.new_run(prior.config(args), args, device, RUN_KEYS, lr=args.prior_lr, name="prior")
    phases = loop.Phases({"vqvae": vq.new_run(args, device, run.identity), "prior": run})
    torch.manual_seed(derive_seed(args.seed, "phases"))
    return phases


def vq_loss(phases: loop.Phases) -> vq.Loss:
    """The VQ-VAE's objective, which sums its epoch's BCE and commitment loss."""
    return cast(vq.Loss, phases.runs["vqvae"].objective)


# ---------------------------------------------------------------------------------- phases
def train_phases(
    phases: loop.Phases, data: Data, args: argparse.Namespace, device: torch.device
) -> None:
    """The VQ-VAE's and then the prior's remaining epochs, saved after every epoch and every
    ``--checkpoint-minutes`` within one."""

    def save(name: str) -> Callable[[int, EpochProgress | None], None]:
        return lambda _, progress: save_state(phases, args, device, progress and (name, progress))

    loss, seed = vq_loss(phases), derive_seed(args.seed, "vqvae")
    images = SeededBatches(
        data.train_x, data.train_y, batch_size=args.vq_batch_size, shuffle=True, seed=seed
    )
    record = functools.partial(
        loss.epoch_record, test_x=data.test_x, batch=args.eval_batch_size, device=device
    )
    describe = functools.partial(vq.describe, codebook_size=args.codebook_size)
    phase = loop.Phase(args.vq_epochs, "VQ-VAE epoch", record, describe)
    loop.train_epochs(phases.runs["vqvae"], args, types.SimpleNamespace(train=images), device,
                      save=save("vqvae"), postfix=loss.postfix, phase=phase)  # fmt: skip
    x, y = (data.train_x, data.test_x), (data.train_y, data.test_y)
    codes = prior.code_batches(phases, x, y, args, device)
    record = functools.partial(prior.record, phases.runs["prior"], codes.test, device)
    phase = loop.Phase(args.prior_epochs, "prior epoch", record, prior.describe)
    loop.train_epochs(phases.runs["prior"], args, codes, device, save=save("prior"), phase=phase)


# -------------------------------------------------------------------------------- outputs
def write_pictures(
    phases: loop.Phases, data: Data, args: argparse.Namespace, device: torch.device
) -> float:
    """``samples.png`` and ``reconstructions.png``; returns the seconds sampling took."""
    k, model = args.samples_per_class, phases.runs["vqvae"].model
    seconds = prior.save_samples(phases.runs["prior"].model, model, args, device)
    path = args.out / "reconstructions.png"
    vq.save_reconstructions(model, data.test_x, data.test_y, k // 2, path, device)
    return seconds


def trained(history: dict[str, list[dict[str, Any]]]) -> bool:
    """Whether both phases have epochs with finite training and test losses (NaN: no image)."""
    losses = [(m["train_bce"], m["test_bce"]) for m in history["vqvae"]]
    losses += [(m["train_nll"], m["test_nll"]) for m in history["prior"]]
    return bool(history["vqvae"] and history["prior"]) and all(
        math.isfinite(x) for pair in losses for x in pair
    )


def save_state(
    phases: loop.Phases,
    args: argparse.Namespace,
    device: torch.device,
    progress: tuple[str, EpochProgress] | None = None,
) -> None:
    """The checkpoint (``loop.save_phases``) and metrics.json; ``progress``: mid-epoch, where.

    The VQ-VAE's objective's sums go with it (``extra``): a resumed epoch continues them.
    """
    phases.extra["vqvae_sums"] = dict(vq_loss(phases).sums)
    loop.save_phases(phases, args, progress)
    run, extra = phases.runs["prior"], phases.extra
    summary = outputs.phases_summary(phases, args, device, progress) | {
        "finished": len(run.history) == args.prior_epochs
        and "sample_seconds" in extra and trained(phases.history),
        "codebook_size": args.codebook_size,
        "prior_config": run.identity["prior"],
        "images": {k: extra[k] for k in ("train", "test") if k in extra},
        "baselines": {k: extra[k] for k in ("uniform_nll", "unigram_nll") if k in extra},
        "train_codebook": extra.get("train_codebook"),
        "precision": {"name": run.precision.name, "reason": run.precision.reason},
    }  # fmt: skip
    outputs.write_json(args.out / "metrics.json", summary)


# ---------------------------------------------------------------------------------- resume
def check_resumable(checkpoint: dict[str, Any], identity: dict[str, Any]) -> None:
    """Raise ``ValueError`` when a checkpoint belongs to a different run.

    A prior of the other ``--prior`` kind is named first; a checkpoint that does not record the
    kind holds a gated prior.
    """
    run = checkpoint.get("run", {})
    saved, kind = run.get("prior_kind", "gated"), identity["prior_kind"]
    if saved != kind:
        raise ValueError(
            f"--resume: the checkpoint holds a {saved} prior, not a {kind} one; pass --prior "
            f"{saved} to resume it, or another --out to train a {kind} prior"
        )
    checkpoint = {**checkpoint, "run": {**run, "prior_kind": saved}}
    loop.check_resumable(checkpoint, identity, configs=("prior",))


def resume(phases: loop.Phases, args: argparse.Namespace, device: torch.device) -> None:
    """Load ``<out>/checkpoint.pt`` into ``phases`` when ``--resume``.

    A checkpoint saved only at epoch ends (no ``progress``; the VQ-VAE's optimizer under
    ``vq_optimizer``) continues after its last epoch.
    """
    ckpt = loop.checkpoint_to_resume(args, device, print)
    if ckpt is None:
        return
    check_resumable(ckpt, phases.runs["prior"].identity)
    prior.check_phases(ckpt["history"], args, ckpt.get("progress"))
    if "vq_optimizer" in ckpt:
        ckpt["vqvae_optimizer"] = ckpt.pop("vq_optimizer")
    where = loop.load_phases(ckpt, phases)
    vq_loss(phases).sums |= phases.extra.get("vqvae_sums", {})
    print(f"resumed from {args.out / 'checkpoint.pt'} at {where}")


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.pick_device(args.device)
    try:
        data = load_data(args)
        check_start(args, data)
        phases = build_phases(args, device)
        resume(phases, args, device)
    except (FileNotFoundError, CheckpointError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run = phases.runs["prior"]
    print(
        f"{outputs.header(device, run.precision, run.model)} (the prior; the VQ-VAE trains "
        f"in fp32)\ndata: {data.train_x.shape[0]:,} training and {data.test_x.shape[0]:,} test "
        f"images from {args.data_dir}; out {args.out}"
    )
    try:
        train_phases(phases, data, args, device)
        phases.extra["sample_seconds"] = write_pictures(phases, data, args, device)
        save_state(phases, args, device)
    except (DivergenceError, loop.NonFiniteState) as err:
        return loop.stopped(err, args.out)
    prior.save_loss_curves(phases, args.out / "loss_curves.png")
    vq_last, last, extra = phases.history["vqvae"][-1], run.history[-1], phases.extra
    print(
        f"done: reconstruction BCE {vq_last['test_bce']:.2f} nats/image, MSE "
        f"{vq_last['test_mse_per_pixel']:.4f}/pixel; codebook {vq_last['test_codes_used']}/"
        f"{args.codebook_size} used, perplexity {vq_last['test_perplexity']:.1f}; prior test NLL "
        f"{last['test_nll']:.2f} nats per code grid (independent codes "
        f"{extra['unigram_nll']:.2f}); sampling {10 * args.samples_per_class} grids took "
        f"{extra['sample_seconds']:.2f} s\nfiles: {args.out}/samples.png, "
        "reconstructions.png, loss_curves.png, metrics.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
