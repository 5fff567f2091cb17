"""The prior of ``vqvae_prior.py``: a class-conditional PixelCNN over 7x7 code grids.

:class:`autoregressive.PixelCNN` with ``block="gated"`` (Gated PixelCNN) or, with
``--prior snail``, ``block="snail"`` (PixelSNAIL: each block a gated residual block and a
causal self-attention layer), ``distribution="categorical"``, ``levels=--codebook-size``,
``num_classes=10`` and ``image_size=(7, 7)``, trained on the code grids that the frozen VQ-VAE
(``vqvae.py``) gives the training images, with their labels.

Also here: its command-line flags, the batches of code grids it trains on, its epoch's record
in the prior's names (a code grid's dimensions are codes), the decoded samples it draws, the
loss curves of both phases, and the check that a resumed prior follows the VQ-VAE it was
trained after.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from autoregressive import PixelCNN, PixelCNNConfig
from autoregressive.data import SeededBatches, derive_seed
from autoregressive.training import EpochStats

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
import common
import loop
import outputs
import vqvae as vq

CLASSES = 10
EMBEDDINGS = ("learned", "onehot", "scaled")
#: The prior's block, by ``--prior``.
KINDS = ("gated", "snail")
#: ``--prior snail``: each of the ``--prior-blocks`` blocks is one gated residual block and a
#: causal self-attention layer, as deep in convolutions as the gated prior of the same flags.
SNAIL = {"attention_every": 1, "attention_heads": 2, "attention_key_channels": 16}
#: The flag that sets each field of the prior's config.
CONFIG_FLAGS = {
    "levels": "--codebook-size",
    "block": "--prior",
    "num_blocks": "--prior-blocks",
    "hidden_channels": "--prior-channels",
    "head_channels": "--prior-head",
    "input_embedding": "--input-embedding",
    "embedding_dim": "--embedding-dim",
}
#: The prior's names for numbers of ``loop.nll_record``: the dimensions of a code grid are codes.
NAMES = {
    "train_bits_per_dim": "train_bits_per_code",
    "test_bits_per_dim": "test_bits_per_code",
    "train_images_per_second": "train_grids_per_second",
}


def add_flags(g: argparse._ArgumentGroup, ref: Callable[[str], str]) -> None:
    """The prior's flags: kind, depth, width, head, input embedding, epochs, optimisation."""
    positive = common.positive_int
    kind = (
        "the prior's blocks: Gated PixelCNN blocks, or PixelSNAIL blocks (each a gated "
        "residual block and a causal self-attention layer of 2 heads x 16 key channels)"
    )
    g.add_argument("--prior", choices=KINDS, default="gated", dest="prior_kind", help=kind)
    blocks = f"gated or snail blocks ({ref('prior_blocks')})"
    g.add_argument("--prior-blocks", type=positive, help=blocks)
    width = f"hidden channels ({ref('prior_channels')})"
    g.add_argument("--prior-channels", type=positive, help=width)
    head = f"1x1 head width, 0: none ({ref('prior_head')})"
    g.add_argument("--prior-head", type=common.non_negative_int, help=head)
    embedding = (
        "how the prior reads a code: a learned embedding, one-hot, or the index scaled to "
        "[-1, 1] (an order that means nothing for codes)"
    )
    g.add_argument("--input-embedding", choices=EMBEDDINGS, default="learned", help=embedding)
    width = "width of --input-embedding learned"
    g.add_argument("--embedding-dim", type=positive, default=16, help=width)
    g.add_argument("--prior-epochs", type=positive, help=f"prior epochs ({ref('prior_epochs')})")
    lr = "Adam learning rate of the prior"
    g.add_argument("--prior-lr", type=common.positive_float, default=2e-3, help=lr)
    size = "code grids per prior step"
    g.add_argument("--prior-batch-size", type=positive, default=64, help=size)


def config(args: argparse.Namespace, grid: tuple[int, int] = (7, 7)) -> PixelCNNConfig:
    """The class-conditional prior over code grids that ``args`` describe (``--prior``)."""
    snail = SNAIL if args.prior_kind == "snail" else {}
    return PixelCNNConfig(
        block=args.prior_kind,
        distribution="categorical",
        levels=args.codebook_size,
        num_blocks=args.prior_blocks,
        hidden_channels=args.prior_channels,
        input_kernel_size=7,
        kernel_size=3,
        head_channels=args.prior_head,
        num_classes=CLASSES,
        image_size=grid,
        input_embedding=args.input_embedding,
        embedding_dim=args.embedding_dim,
        **snail,
    )


def code_batches(
    phases: loop.Phases,
    x: tuple[torch.Tensor, torch.Tensor],
    y: tuple[torch.Tensor, torch.Tensor],
    args: argparse.Namespace,
    device: torch.device,
) -> types.SimpleNamespace:
    """Encode the training and test images ``x`` (the frozen encoder): baselines, and batches
    of code grids with their labels ``y``."""
    extra, model = phases.extra, phases.runs["vqvae"].model
    train, test, figures = vq.encode_sets(model, x[0], x[1], args.eval_batch_size, device)
    extra |= figures
    print(
        f"encoded {train.shape[0]:,} + {test.shape[0]:,} images in "
        f"{extra['encode_seconds']:.1f} s; training codes use "
        f"{extra['train_codebook']['codes_used']}/{args.codebook_size} entries; NLL of "
        f"uniform codes {extra['uniform_nll']:.1f}, of independent codes "
        f"{extra['unigram_nll']:.1f} nats per grid"
    )
    seed, size = derive_seed(args.seed, "prior"), args.prior_batch_size
    return types.SimpleNamespace(
        train=SeededBatches(train, y[0], batch_size=size, shuffle=True, seed=seed),
        test=SeededBatches(test, y[1], batch_size=args.eval_batch_size),
    )


def record(
    run: loop.Run, test: SeededBatches, device: torch.device, epoch: int, stats: EpochStats
) -> dict[str, Any]:
    """The record of a trained prior epoch: ``loop.nll_record`` in the prior's names."""
    numbers = loop.nll_record(run, test, None, device, epoch, stats)
    return {NAMES.get(k, k): v for k, v in numbers.items()}


def describe(m: dict[str, Any]) -> str:
    """A prior epoch's record in one line."""
    return (
        f"prior epoch {m['epoch']}: train NLL {m['train_nll']:.2f}, test NLL "
        f"{m['test_nll']:.2f} nats per code grid ({m['test_bits_per_code']:.3f} "
        f"bits/code); {m['train_seconds']:.0f} s"
    )


@torch.no_grad()
def save_samples(
    prior: PixelCNN, vqvae: vq.VQVAE, args: argparse.Namespace, device: torch.device
) -> float:
    """``samples.png``: ``--samples-per-class`` decoded samples of each class, a row per class;
    returns the seconds sampling took."""
    k = args.samples_per_class
    g = torch.Generator(device).manual_seed(derive_seed(args.seed, "samples"))
    y = torch.arange(CLASSES, device=device).repeat_interleave(k)  # (10 * k,) row = class
    start = time.perf_counter()
    codes = prior.sample(len(y), y, size=(7, 7), generator=g, temperature=args.temperature)
    seconds = time.perf_counter() - start  # (10 * k, 1, 7, 7) long
    images = vqvae.eval().decode(codes[:, 0]).cpu()  # (10 * k, 1, 28, 28)
    title = f"prior samples, one row per class 0-9 (temperature {args.temperature:g})"
    outputs.save_grid(images, k, args.out / "samples.png", title, inches=0.6)
    return seconds


def save_loss_curves(phases: loop.Phases, path: Path) -> None:
    """VQ-VAE reconstruction BCE and prior NLL per epoch, train and test."""
    panels = []
    for key, metric, title, label in (
        ("vqvae", "bce", "VQ-VAE reconstruction", "BCE (nats per image)"),
        ("prior", "nll", "class-conditional prior", "NLL (nats per 7x7 code grid)"),
    ):
        history = phases.history[key]
        epochs = [m["epoch"] for m in history]
        lines = {s: (epochs, [m[f"{s}_{metric}"] for m in history]) for s in ("train", "test")}
        panels.append(outputs.Panel(title, label, lines))
    if "unigram_nll" in phases.extra:
        panels[1].baseline = ("independent codes", phases.extra["unigram_nll"])
    outputs.save_curves(panels, path)


def check_phases(
    history: dict[str, list[dict[str, Any]]],
    args: argparse.Namespace,
    progress: dict[str, Any] | None = None,
) -> None:
    """Refuse ``--vq-epochs`` / ``--prior-epochs`` that a checkpoint's progress contradicts.

    ``progress``: where the checkpoint stands within an epoch (an epoch begun counts).
    """
    phase = progress["phase"] if progress else None
    vq_done, prior = len(history["vqvae"]), len(history["prior"])
    where = args.out / "checkpoint.pt"
    if (prior or phase == "prior") and vq_done != args.vq_epochs:
        raise ValueError(
            f"--resume: the prior in {where} trained on the codes of a VQ-VAE after {vq_done} "
            f"epoch(s); pass --vq-epochs {vq_done}, or another --out to start a new run"
        )
    partial = phase == "vqvae"
    loop.check_not_past(where, vq_done, "--vq-epochs", args.vq_epochs, "VQ-VAE epoch", partial)
    partial = phase == "prior"
    loop.check_not_past(where, prior, "--prior-epochs", args.prior_epochs, "prior epoch", partial)
