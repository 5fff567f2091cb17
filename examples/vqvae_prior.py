"""A VQ-VAE on MNIST and a class-conditional Gated PixelCNN prior over its 7x7 code grid.

    python examples/vqvae_prior.py --demo          # CPU-sized run (see DEMO below)
    python examples/vqvae_prior.py                 # the longer full run
    python examples/vqvae_prior.py --resume        # continue from <out>/checkpoint.pt

Three phases, timed separately:

1. **VQ-VAE** (van den Oord et al., 2017, https://arxiv.org/abs/1711.00937): a convolutional
   encoder maps a 28x28 grey image to a 7x7 grid of ``--code-dim`` vectors, a vector quantizer
   replaces each by its nearest codebook entry, and a decoder maps the quantized grid back to
   pixel logits. Trained on the intensities in ``[0, 1]`` with binary cross-entropy plus the
   commitment loss.
2. **Prior**: :class:`autoregressive.PixelCNN` with ``block="gated"``,
   ``distribution="categorical"``, ``levels=--codebook-size``, ``num_classes=10`` and
   ``image_size=(7, 7)``, trained on the code grids of the training images with their labels
   (the VQ-VAE's encoder is frozen then). The prior reads the codes through the input
   embedding chosen by ``--input-embedding``.
3. **Samples**: ``model.sample(n, y, size=(7, 7))`` (the cached sampler) draws code grids per
   class, the decoder turns them into images.

The quantizer is ``VectorQuantize`` from lucidrains' ``vector-quantize-pytorch`` (the
``examples`` extra): it installs from PyPI here with four small pure-Python dependencies
(einx, frozendict, loguru, torch-einops-utils), is widely used and tested, and gives what a
small VQ-VAE needs in one layer: EMA codebook updates, k-means initialisation of the codebook
from the first batch and restarts of dead codes (entries whose EMA usage falls below
``--dead-code-threshold`` are replaced by encoder outputs of the current batch). Gradients pass
the quantizer by the straight-through estimator of the paper (``rotation_trick=False``).

Into ``--out`` it writes ``checkpoint.pt`` (after every epoch of either phase, atomically),
``metrics.json`` (updated with it), ``loss_curves.png``, ``reconstructions.png`` (test images
of each class beside their reconstructions) and ``samples.png`` (one row of decoded prior
samples per class). Reported: the reconstruction error (BCE in nats and squared error per
image), the codebook size and use (codes used, perplexity), the prior's test NLL in nats per
code grid (beside two baselines: uniform codes and independent codes at their training
frequencies) and the time of every phase. Training runs in float32.

Uses only the public API of ``autoregressive`` (``PixelCNN``, ``PixelCNNConfig``,
``autoregressive.data``, ``autoregressive.training``) plus torchvision (data files), tqdm,
matplotlib and vector-quantize-pytorch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

import autoregressive
from autoregressive import PixelCNN, PixelCNNConfig
from autoregressive.data import Batch, derive_seed, load_mnist
from autoregressive.training import (
    CheckpointError,
    DivergenceError,
    NegLogLikelihood,
    atomic_write,
    check_step,
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
    check_out,
    check_steps,
    finite_float,
    int_at_least,
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
CLASSES = 10
EMBEDDINGS = ("learned", "onehot", "scaled")
#: The flag that sets each field of the prior's config.
CONFIG_FLAGS = {
    "levels": "--codebook-size",
    "num_blocks": "--prior-blocks",
    "hidden_channels": "--prior-channels",
    "head_channels": "--prior-head",
    "input_embedding": "--input-embedding",
    "embedding_dim": "--embedding-dim",
}


def default_data_dir() -> Path:
    """``../shared/data/mnist`` when it holds MNIST's raw files, else ``data/mnist``."""
    return SHARED_DATA_DIR if (SHARED_DATA_DIR / "MNIST" / "raw").is_dir() else LOCAL_DATA_DIR


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
}

#: The CPU-sized demo (``make prior-demo``). Per-step times measured alone on one thread of this
#: project's 2-core AMD EPYC (a VQ-VAE step of 64 images 0.08 s, a prior step of 64 code grids
#: 0.21 s) put it at about 13 minutes on one idle thread; the recorded run took 25 minutes on
#: one thread of that CPU shared with other jobs (VQ-VAE 377 s, prior 1,017 s).
DEMO: dict[str, Any] = {
    "vq_channels": 32,
    "vq_epochs": 2,
    "prior_epochs": 3,
    "prior_blocks": 4,
    "prior_channels": 48,
    "prior_head": 96,
    "train_images": None,
    "out": "runs/prior-demo",
}

#: Arguments that define the run: a checkpoint resumes only a run with the same values.
RUN_KEYS = (
    "seed",
    "codebook_size",
    "code_dim",
    "vq_channels",
    "vq_lr",
    "vq_batch_size",
    "commitment",
    "ema_decay",
    "dead_code_threshold",
    "prior_lr",
    "prior_batch_size",
    "train_images",
    "limit_train_batches",
)


# ---------------------------------------------------------------------------- command line
def profile_help(key: str) -> str:
    """Help text naming a flag's full-run and ``--demo`` defaults."""
    full = "all" if FULL[key] is None else FULL[key]
    return f"default: {full}; with --demo: {DEMO[key]}"


def _run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument(
        "--demo",
        action="store_true",
        help="the CPU-sized run: VQ-VAE (32 channels) 2 epochs, prior (4 gated blocks x 48 "
        "channels, head 96) 3 epochs, on the whole training set; explicit flags still override",
    )
    g.add_argument("--out", type=Path, help=f"output folder ({profile_help('out')})")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue from <out>/checkpoint.pt (starts afresh when there is none)",
    )
    g.add_argument(
        "--seed", type=torch_seed, default=0, help="seed of initialisation, data and samples"
    )
    g.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA if any"
    )
    g.add_argument(
        "--threads", type=positive_int, help="torch CPU threads (default: torch's choice)"
    )


def _vqvae_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("VQ-VAE")
    g.add_argument(
        "--codebook-size", type=int_at_least(2), default=64, help="codebook entries (prior levels)"
    )
    g.add_argument(
        "--code-dim", type=positive_int, default=16, help="dimension of a codebook vector"
    )
    g.add_argument(
        "--vq-channels",
        type=int_at_least(2),
        help=f"encoder/decoder width, >= 2 ({profile_help('vq_channels')})",
    )
    g.add_argument(
        "--vq-epochs", type=positive_int, help=f"VQ-VAE epochs ({profile_help('vq_epochs')})"
    )
    g.add_argument(
        "--vq-lr", type=positive_float, default=2e-3, help="Adam learning rate of the VQ-VAE"
    )
    g.add_argument("--vq-batch-size", type=positive_int, default=64, help="images per VQ-VAE step")
    g.add_argument(
        "--commitment", type=non_negative_float, default=0.25, help="commitment loss weight (beta)"
    )
    g.add_argument(
        "--ema-decay",
        type=finite_float(above=0, below=1),
        default=0.95,
        help="EMA decay of the codebook",
    )
    g.add_argument(
        "--dead-code-threshold",
        type=non_negative_float,
        default=1.0,
        help="restart codebook entries whose EMA count of assigned vectors falls below this",
    )


def _prior_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("prior")
    g.add_argument(
        "--prior-blocks", type=positive_int, help=f"gated blocks ({profile_help('prior_blocks')})"
    )
    g.add_argument(
        "--prior-channels",
        type=positive_int,
        help=f"hidden channels ({profile_help('prior_channels')})",
    )
    g.add_argument(
        "--prior-head",
        type=non_negative_int,
        help=f"1x1 head width, 0: none ({profile_help('prior_head')})",
    )
    g.add_argument(
        "--input-embedding",
        choices=EMBEDDINGS,
        default="learned",
        help="how the prior reads a code: a learned embedding, one-hot, or the index scaled "
        "to [-1, 1] (an order that means nothing for codes; the library's old behaviour)",
    )
    g.add_argument(
        "--embedding-dim", type=positive_int, default=16, help="width of --input-embedding learned"
    )
    g.add_argument(
        "--prior-epochs", type=positive_int, help=f"prior epochs ({profile_help('prior_epochs')})"
    )
    g.add_argument(
        "--prior-lr", type=positive_float, default=2e-3, help="Adam learning rate of the prior"
    )
    g.add_argument(
        "--prior-batch-size", type=positive_int, default=64, help="code grids per prior step"
    )


def _data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data-dir",
        type=Path,
        help="folder holding MNIST/raw/ (torchvision layout); default: ../shared/data/mnist "
        "beside the checkout if it holds the files, else data/mnist in the checkout",
    )
    g.add_argument("--no-download", action="store_true", help="never try to download missing files")
    g.add_argument(
        "--train-images",
        type=positive_int,
        help=f"use the first N training images ({profile_help('train_images')})",
    )
    g.add_argument(
        "--limit-train-batches",
        type=positive_int,
        help="at most this many steps per epoch (for tests)",
    )
    g.add_argument(
        "--limit-test-images",
        type=positive_int,
        help="score only the first N test images (for tests)",
    )
    g.add_argument(
        "--eval-batch-size", type=positive_int, default=500, help="images per test batch"
    )


def _sample_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("samples")
    g.add_argument(
        "--samples-per-class", type=positive_int, default=10, help="columns of samples.png"
    )
    g.add_argument(
        "--temperature", type=positive_float, default=1.0, help="divide the prior's logits by it"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line; flags left unset take the ``--demo`` or full-run value."""
    p = argparse.ArgumentParser(
        prog="vqvae_prior.py",
        description="Train a VQ-VAE on MNIST, then a class-conditional Gated PixelCNN prior "
        "over its 7x7 codes; write reconstructions, samples per class, loss curves, "
        "metrics.json and a checkpoint per epoch into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for add in (_run_flags, _vqvae_flags, _prior_flags, _data_flags, _sample_flags):
        add(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill unset flags from the ``--demo`` or full profile.

    Every flag is checked here (exit code 2 naming the flag) except what needs the data, the
    checkpoint and the output folder: :func:`check_start` and :func:`check_phases`.
    """
    p = build_parser()
    args = p.parse_args(argv)
    for key, value in (DEMO if args.demo else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.data_dir is None:
        args.data_dir = default_data_dir()
    args.out = Path(args.out)
    try:
        check_device(args.device)
        check_out(args.out)
        check_config(lambda: prior_config(args), CONFIG_FLAGS)
    except ValueError as err:
        p.error(str(err))
    return args


# ---------------------------------------------------------------------------------- VQ-VAE
class ResBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))``, the VQ-VAE paper's residual block.

    Shape:
        :math:`(N, C, H, W) \\to (N, C, H, W)`.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def encoder(channels: int, code_dim: int) -> nn.Sequential:
    """``(N, 1, 28, 28) -> (N, code_dim, 7, 7)``: two stride-2 convolutions, two res blocks."""
    return nn.Sequential(
        nn.Conv2d(1, channels // 2, 4, stride=2, padding=1),  # (N, C/2, 14, 14)
        nn.ReLU(),
        nn.Conv2d(channels // 2, channels, 4, stride=2, padding=1),  # (N, C, 7, 7)
        ResBlock(channels),
        ResBlock(channels),
        nn.ReLU(),
        nn.Conv2d(channels, code_dim, 1),  # (N, D, 7, 7)
    )


def decoder(channels: int, code_dim: int) -> nn.Sequential:
    """``(N, code_dim, 7, 7) -> (N, 1, 28, 28)`` pixel logits, the encoder mirrored."""
    return nn.Sequential(
        nn.Conv2d(code_dim, channels, 3, padding=1),  # (N, C, 7, 7)
        ResBlock(channels),
        ResBlock(channels),
        nn.ReLU(),
        nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1),  # (N, C/2, 14, 14)
        nn.ReLU(),
        nn.ConvTranspose2d(channels // 2, 1, 4, stride=2, padding=1),  # (N, 1, 28, 28)
    )


class VQVAE(nn.Module):
    """Encoder, vector quantizer and decoder of 28x28 grey images over a 7x7 code grid.

    Args:
        codebook_size: number of codebook entries ``K``.
        code_dim: dimension ``D`` of an entry.
        channels: width of encoder and decoder.
        decay: EMA decay of the codebook.
        dead_code_threshold: restart entries whose EMA usage falls below it.

    Shape:
        - ``x``: :math:`(N, 1, 28, 28)` intensities in ``[0, 1]``.
        - codes: :math:`(N, 7, 7)` long in ``[0, K)``; logits: :math:`(N, 1, 28, 28)`.
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        channels: int,
        decay: float,
        dead_code_threshold: float,
    ) -> None:
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize  # the `examples` extra

        self.encoder = encoder(channels, code_dim)
        self.quantizer = VectorQuantize(
            dim=code_dim,
            codebook_size=codebook_size,
            decay=decay,
            commitment_weight=1.0,  # weighted by --commitment in vqvae_loss
            kmeans_init=True,
            threshold_ema_dead_code=dead_code_threshold,
            accept_image_fmap=True,
            rotation_trick=False,  # the straight-through estimator of the VQ-VAE paper
        )
        self.decoder = decoder(channels, code_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits (N, 1, 28, 28), codes (N, 7, 7), commitment loss ())``."""
        z = self.encoder(x * 2 - 1)  # (N, D, 7, 7)
        quantized, codes, commitment = self.quantizer(z)  # (N, D, 7, 7), (N, 7, 7), ()
        return self.decoder(quantized), codes, commitment

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code grid of each image, ``(N, 1, 28, 28) -> (N, 7, 7)``."""
        return self.quantizer(self.encoder(x * 2 - 1))[1]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images in ``[0, 1]`` from code grids, ``(N, 7, 7) -> (N, 1, 28, 28)``."""
        quantized = self.quantizer.get_output_from_indices(codes)  # (N, D, 7, 7)
        return torch.sigmoid(self.decoder(quantized))


def reconstruction_errors(logits: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per image: binary cross-entropy (nats) and squared error, ``(N,)`` each."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    sse = (torch.sigmoid(logits) - x).square().flatten(1).sum(1)
    return bce, sse


def codebook_use(codes: torch.Tensor, size: int) -> dict[str, float]:
    """Entries used at least once and the perplexity ``exp(H)`` of their frequencies."""
    p = torch.bincount(codes.flatten(), minlength=size).double()
    p /= p.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return {"codes_used": int((p > 0).sum()), "perplexity": math.exp(entropy)}


# ------------------------------------------------------------------------------------ data
class ImageBatches:
    """Seeded batches ``Batch(images, labels, total)``: the order depends on ``(seed, epoch)``.

    Args:
        images: ``(N, C, H, W)`` images or code grids.
        labels: ``(N,)`` labels.
        batch_size: images per batch.
        shuffle: a new order every epoch.
        seed: base seed of the order.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.images.shape[0] // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = self.images.shape[0]
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, "batches"))
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for index in order.split(self.batch_size):
            yield Batch(self.images[index], self.labels[index], total=len(index))


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
    check_steps("train on", len(data.train_x), "the training set", "--data-dir, --train-images")
    check_steps("score", len(data.test_x), "the test set", "--data-dir, --limit-test-images")
    check_count("--train-images", args.train_images, len(data.train_x), "the training set")
    check_count("--limit-test-images", args.limit_test_images, len(data.test_x), "the test set")
    make_out(args.out)


# ----------------------------------------------------------------------------------- model
def prior_config(args: argparse.Namespace, grid: tuple[int, int] = (7, 7)) -> PixelCNNConfig:
    """The class-conditional Gated PixelCNN over code grids that ``args`` describe."""
    return PixelCNNConfig(
        block="gated",
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
    )


@dataclass
class Run:
    """Both models, their optimizers and what has been recorded so far."""

    vqvae: VQVAE
    prior: PixelCNN
    vq_optimizer: torch.optim.Optimizer
    prior_optimizer: torch.optim.Optimizer
    identity: dict[str, Any]
    history: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"vqvae": [], "prior": []}
    )
    extra: dict[str, Any] = field(default_factory=dict)  # the last phase's figures


def build_run(args: argparse.Namespace, device: torch.device) -> Run:
    """Both models and optimizers, seeded by ``--seed``."""
    torch.manual_seed(args.seed)
    vqvae = VQVAE(
        args.codebook_size,
        args.code_dim,
        args.vq_channels,
        args.ema_decay,
        args.dead_code_threshold,
    ).to(device)
    config = prior_config(args)
    prior = PixelCNN(config, device=device, validate_args=device.type != "cuda")
    identity = {"prior": dataclasses.asdict(config), **{k: getattr(args, k) for k in RUN_KEYS}}
    return Run(
        vqvae,
        prior,
        torch.optim.Adam(vqvae.parameters(), lr=args.vq_lr),
        torch.optim.Adam(prior.parameters(), lr=args.prior_lr),
        identity,
    )


# ---------------------------------------------------------------------------------- phases
def bar(steps: int, desc: str) -> tqdm:
    return tqdm(total=steps, desc=desc, unit="step", mininterval=0.5, dynamic_ncols=True)


def vqvae_epoch(
    run: Run, data: Data, args: argparse.Namespace, epoch: int, device: torch.device
) -> dict[str, Any]:
    """Train the VQ-VAE for one epoch; score the test set; return the epoch's record."""
    batches = ImageBatches(
        data.train_x,
        data.train_y,
        args.vq_batch_size,
        shuffle=True,
        seed=derive_seed(args.seed, "vqvae"),
    )
    batches.set_epoch(epoch)
    steps = min(len(batches), args.limit_train_batches or len(batches))
    progress, sums = bar(steps, f"VQ-VAE epoch {epoch}/{args.vq_epochs}"), [0.0, 0.0]
    start = time.perf_counter()
    run.vqvae.train()
    for step, batch in enumerate(batches):
        if step == steps:
            break
        x = batch.images.to(device)  # (B, 1, 28, 28)
        logits, _, commitment = run.vqvae(x)
        bce = F.binary_cross_entropy_with_logits(logits, x)  # mean per pixel
        loss = bce + args.commitment * commitment
        run.vq_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        check_step(loss, run.vq_optimizer, step + 1)  # no step on a NaN: DivergenceError
        run.vq_optimizer.step()
        sums[0] += bce.item() * x[0].numel()
        sums[1] += commitment.item()
        progress.update()
        progress.set_postfix(bce=f"{sums[0] / (step + 1):.1f}", refresh=False)
    progress.close()
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    test = vqvae_test(run.vqvae, data, args, device)
    test["eval_seconds"] = time.perf_counter() - start
    return {
        "epoch": epoch,
        "train_bce": sums[0] / steps,
        "train_commitment": sums[1] / steps,
        "train_seconds": seconds,
        "train_images_per_second": steps * args.vq_batch_size / seconds,
        **test,
    }


@torch.no_grad()
def vqvae_test(
    vqvae: VQVAE, data: Data, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """Reconstruction error of the test set per image, and its codebook use."""
    vqvae.eval()
    bce, sse, codes = [], [], []
    for x in data.test_x.split(args.eval_batch_size):
        logits, c, _ = vqvae(x.to(device))
        b, s = reconstruction_errors(logits, x.to(device))
        bce.append(b.double())
        sse.append(s.double())
        codes.append(c.cpu())
    use = codebook_use(torch.cat(codes), args.codebook_size)
    return {
        "test_bce": torch.cat(bce).mean().item(),
        "test_sse": torch.cat(sse).mean().item(),
        "test_mse_per_pixel": torch.cat(sse).mean().item() / 784,
        "test_codes_used": use["codes_used"],
        "test_perplexity": use["perplexity"],
    }


@torch.no_grad()
def encode_all(vqvae: VQVAE, x: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """Code grids of all images, ``(N, 1, 28, 28) -> (N, 1, 7, 7)`` long on the CPU."""
    vqvae.eval()
    codes = [vqvae.encode(chunk.to(device)).cpu() for chunk in x.split(batch)]
    return torch.cat(codes).unsqueeze(1)  # (N, 1, 7, 7): one data channel


def baselines(train_codes: torch.Tensor, test_codes: torch.Tensor, k: int) -> dict[str, float]:
    """NLL per code grid (nats) of uniform codes and of independent codes at their frequencies."""
    counts = torch.bincount(train_codes.flatten(), minlength=k).double() + 0.5  # add-1/2 smoothed
    logp = (counts / counts.sum()).log()
    cells = math.prod(test_codes.shape[1:])
    return {
        "uniform_nll": cells * math.log(k),
        "unigram_nll": -logp[test_codes.flatten()].sum().item() / test_codes.shape[0],
    }


def prior_epoch(
    run: Run, codes: dict[str, Any], args: argparse.Namespace, epoch: int, device: torch.device
) -> dict[str, Any]:
    """Train the prior one epoch on the training code grids; score the test code grids."""
    codes["train"].set_epoch(epoch)
    steps = min(len(codes["train"]), args.limit_train_batches or len(codes["train"]))
    progress = bar(steps, f"prior epoch {epoch}/{args.prior_epochs}")

    def report(done: int, images: int, running: float) -> None:
        progress.update(done - progress.n)
        progress.set_postfix(nll=f"{running:.2f}", refresh=False)

    train = train_epoch(
        NegLogLikelihood(run.prior),
        run.prior_optimizer,
        codes["train"],
        device=device,
        max_steps=steps,
        progress=report,
        log_every=10,
    )
    progress.close()
    test = evaluate(run.prior, codes["test"], device=device)
    return {
        "epoch": epoch,
        "train_nll": train.nll,
        "test_nll": test.nll,
        "test_bits_per_code": test.bits_per_dim,
        "train_seconds": train.seconds,
        "train_grids_per_second": train.images_per_second,
        "eval_seconds": test.seconds,
    }


@torch.no_grad()
def write_pictures(run: Run, data: Data, args: argparse.Namespace, device: torch.device) -> float:
    """``samples.png`` and ``reconstructions.png``; returns the seconds sampling took."""
    k = args.samples_per_class
    g = torch.Generator(device).manual_seed(derive_seed(args.seed, "samples"))
    y = torch.arange(CLASSES, device=device).repeat_interleave(k)  # (10 * k,) row = class
    start = time.perf_counter()
    codes = run.prior.sample(len(y), y, size=(7, 7), generator=g, temperature=args.temperature)
    seconds = time.perf_counter() - start  # (10 * k, 1, 7, 7) long
    images = run.vqvae.eval().decode(codes[:, 0]).cpu()  # (10 * k, 1, 28, 28)
    title = f"prior samples, one row per class 0-9 (temperature {args.temperature:g})"
    save_grid(images, CLASSES, k, args.out / "samples.png", title)
    originals = torch.cat([data.test_x[data.test_y == c][: k // 2] for c in range(CLASSES)])
    recon = run.vqvae.decode(encode_all(run.vqvae, originals, 500, device)[:, 0]).cpu()
    per = originals.shape[0] // CLASSES if originals.shape[0] % CLASSES == 0 else None
    if per:  # each row: the class's test images, then their reconstructions
        rows = torch.cat(
            [originals.view(CLASSES, per, 1, 28, 28), recon.view(CLASSES, per, 1, 28, 28)], dim=1
        )
        grid, cols = rows.flatten(0, 1), 2 * per  # (10 * 2 per, 1, 28, 28)
    else:  # a small test set without every class: originals, then reconstructions
        grid, cols = torch.cat([originals, recon]), max(originals.shape[0], 1)
    save_grid(
        grid,
        math.ceil(grid.shape[0] / cols),
        cols,
        args.out / "reconstructions.png",
        "test images (left half) and their reconstructions (right half)",
    )
    return seconds


# -------------------------------------------------------------------------------- pictures
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


def save_grid(images: torch.Tensor, rows: int, cols: int, path: Path, title: str) -> None:
    """Tile ``(N, 1, H, W)`` images in ``[0, 1]`` row by row into a PNG."""
    n, _, h, w = images.shape
    pad = 2
    canvas = torch.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.5)
    for i in range(min(n, rows * cols)):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        canvas[top : top + h, left : left + w] = images[i, 0].float()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(cols * 0.6 + 0.4, rows * 0.6 + 0.6))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    _save_figure(fig, path)


def save_loss_curves(history: dict[str, list[dict[str, Any]]], extra: dict, path: Path) -> None:
    """VQ-VAE reconstruction BCE and prior NLL per epoch, train and test."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, metric, label in (
        (left, "vqvae", "bce", "BCE (nats per image)"),
        (right, "prior", "nll", "NLL (nats per 7x7 code grid)"),
    ):
        epochs = [m["epoch"] for m in history[key]]
        ax.plot(epochs, [m[f"train_{metric}"] for m in history[key]], "o-", label="train")
        ax.plot(epochs, [m[f"test_{metric}"] for m in history[key]], "s-", label="test")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if "unigram_nll" in extra:
        right.axhline(extra["unigram_nll"], color="grey", ls="--", label="independent codes")
    left.set_title("VQ-VAE reconstruction", fontsize=10)
    right.set_title("class-conditional prior", fontsize=10)
    left.legend()
    right.legend()
    _save_figure(fig, path)


# ------------------------------------------------------------------------ state and metrics
def _finite(value: Any) -> Any:
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


def _plain(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


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
    return {
        "device": str(device),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def save_state(run: Run, args: argparse.Namespace, device: torch.device) -> None:
    """The checkpoint and metrics.json after an epoch of either phase."""
    save_checkpoint(
        args.out / "checkpoint.pt",
        {
            "vqvae": run.vqvae.state_dict(),
            "prior": run.prior.state_dict(),
            "vq_optimizer": run.vq_optimizer.state_dict(),
            "prior_optimizer": run.prior_optimizer.state_dict(),
            "history": run.history,
            "extra": run.extra,
            "rng": get_rng_state(),
            "run": run.identity,
            "args": _plain(args),
        },
    )
    vq, prior = run.history["vqvae"], run.history["prior"]
    phase_seconds = {
        "vqvae_train": sum(m["train_seconds"] for m in vq),
        "vqvae_eval": sum(m["eval_seconds"] for m in vq),
        "prior_train": sum(m["train_seconds"] for m in prior),
        "prior_eval": sum(m["eval_seconds"] for m in prior),
        **{k: v for k, v in run.extra.items() if k.endswith("_seconds")},
    }
    phase_seconds["total"] = sum(phase_seconds.values())
    summary = {
        "finished": len(prior) == args.prior_epochs
        and "sample_seconds" in run.extra
        and trained(run.history),
        "codebook_size": args.codebook_size,
        "vqvae": vq[-1] if vq else None,
        "prior": prior[-1] if prior else None,
        "prior_config": run.identity["prior"],
        "parameters": {
            "vqvae": sum(p.numel() for p in run.vqvae.parameters()),
            "prior": sum(p.numel() for p in run.prior.parameters()),
        },
        "images": {k: run.extra[k] for k in ("train", "test") if k in run.extra},
        "baselines": {k: run.extra[k] for k in ("uniform_nll", "unigram_nll") if k in run.extra},
        "train_codebook": run.extra.get("train_codebook"),
        "seconds": phase_seconds,
        "hardware": hardware(device),
        "args": _plain(args),
        "history": run.history,
    }
    write_json(args.out / "metrics.json", summary)


def trained(history: dict[str, list[dict[str, Any]]]) -> bool:
    """Whether both phases have epochs with finite training and test losses (NaN: no image)."""
    losses = [(m["train_bce"], m["test_bce"]) for m in history["vqvae"]]
    losses += [(m["train_nll"], m["test_nll"]) for m in history["prior"]]
    return bool(history["vqvae"] and history["prior"]) and all(
        math.isfinite(x) for pair in losses for x in pair
    )


def check_phases(history: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    """Refuse ``--vq-epochs`` / ``--prior-epochs`` that a checkpoint's progress contradicts."""
    vq, prior = len(history["vqvae"]), len(history["prior"])
    where = args.out / "checkpoint.pt"
    if prior and vq != args.vq_epochs:
        raise ValueError(
            f"--resume: the prior in {where} trained on the codes of a VQ-VAE after {vq} "
            f"epoch(s); pass --vq-epochs {vq}, or another --out to start a new run"
        )
    if vq > args.vq_epochs:
        raise ValueError(
            f"--resume: {where} is after VQ-VAE epoch {vq}, past --vq-epochs {args.vq_epochs}; "
            f"pass --vq-epochs {vq} or more, or another --out"
        )
    if prior > args.prior_epochs:
        raise ValueError(
            f"--resume: {where} is after prior epoch {prior}, past --prior-epochs "
            f"{args.prior_epochs}; pass --prior-epochs {prior} or more, or another --out"
        )


def check_resumable(checkpoint: dict[str, Any], run: dict[str, Any]) -> None:
    """Raise ``ValueError`` when a checkpoint belongs to a different run."""
    saved = json.loads(json.dumps(checkpoint.get("run", {})))
    if isinstance(saved.get("prior"), dict):  # config fields added since take their defaults
        with contextlib.suppress(TypeError, ValueError):
            saved["prior"] = dataclasses.asdict(PixelCNNConfig(**saved["prior"]))
        saved = json.loads(json.dumps(saved))
    current = json.loads(json.dumps(run))
    diff = [k for k in current if saved.get(k) != current[k]]
    if diff:
        lines = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current[k]!r}" for k in diff)
        raise ValueError(
            f"--resume: the checkpoint belongs to a different run ({lines}); pass the same "
            "flags, or another --out to start a new run"
        )


def resume(run: Run, args: argparse.Namespace, device: torch.device) -> None:
    """Load ``<out>/checkpoint.pt`` into ``run`` when ``--resume``."""
    path = args.out / "checkpoint.pt"
    if not args.resume or not path.exists():
        if args.resume:
            print(f"--resume: no checkpoint at {path}, starting afresh")
        return
    ckpt = load_checkpoint(path, map_location=device)
    check_resumable(ckpt, run.identity)
    check_phases(ckpt["history"], args)
    run.vqvae.load_state_dict(ckpt["vqvae"])
    run.prior.load_state_dict(ckpt["prior"])
    run.vq_optimizer.load_state_dict(ckpt["vq_optimizer"])
    run.prior_optimizer.load_state_dict(ckpt["prior_optimizer"])
    run.history, run.extra = ckpt["history"], ckpt["extra"]
    set_rng_state(ckpt["rng"])
    print(
        f"resumed from {path}: VQ-VAE epoch {len(run.history['vqvae'])}, prior epoch "
        f"{len(run.history['prior'])}"
    )


# ------------------------------------------------------------------------------------ main
def train_vqvae(run: Run, data: Data, args: argparse.Namespace, device: torch.device) -> None:
    """Phase 1: the VQ-VAE's remaining epochs, a checkpoint after each."""
    for epoch in range(len(run.history["vqvae"]) + 1, args.vq_epochs + 1):
        m = vqvae_epoch(run, data, args, epoch, device)
        print(
            f"VQ-VAE epoch {epoch}: train BCE {m['train_bce']:.2f}, test BCE "
            f"{m['test_bce']:.2f} nats/image, test MSE {m['test_mse_per_pixel']:.4f}/pixel; "
            f"codes used {m['test_codes_used']}/{args.codebook_size}, perplexity "
            f"{m['test_perplexity']:.1f}; {m['train_seconds']:.0f} s"
        )
        run.history["vqvae"].append(m)
        save_state(run, args, device)


def prepare_codes(
    run: Run, data: Data, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """Phase 2: encode both sets (the frozen encoder); batches of code grids and baselines."""
    start = time.perf_counter()
    train = encode_all(run.vqvae, data.train_x, args.eval_batch_size, device)  # (N, 1, 7, 7)
    test = encode_all(run.vqvae, data.test_x, args.eval_batch_size, device)
    run.extra["encode_seconds"] = time.perf_counter() - start
    run.extra |= baselines(train, test, args.codebook_size)
    run.extra["train_codebook"] = codebook_use(train, args.codebook_size)
    run.extra |= {"train": train.shape[0], "test": test.shape[0]}
    print(
        f"encoded {train.shape[0]:,} + {test.shape[0]:,} images in "
        f"{run.extra['encode_seconds']:.1f} s; training codes use "
        f"{run.extra['train_codebook']['codes_used']}/{args.codebook_size} entries; NLL of "
        f"uniform codes {run.extra['uniform_nll']:.1f}, of independent codes "
        f"{run.extra['unigram_nll']:.1f} nats per grid"
    )
    seed = derive_seed(args.seed, "prior")
    return {
        "train": ImageBatches(train, data.train_y, args.prior_batch_size, shuffle=True, seed=seed),
        "test": ImageBatches(test, data.test_y, args.eval_batch_size),
    }


def train_prior(
    run: Run, codes: dict[str, Any], args: argparse.Namespace, device: torch.device
) -> None:
    """Phase 3: the prior's remaining epochs, a checkpoint after each."""
    for epoch in range(len(run.history["prior"]) + 1, args.prior_epochs + 1):
        m = prior_epoch(run, codes, args, epoch, device)
        print(
            f"prior epoch {epoch}: train NLL {m['train_nll']:.2f}, test NLL "
            f"{m['test_nll']:.2f} nats per code grid ({m['test_bits_per_code']:.3f} "
            f"bits/code); {m['train_seconds']:.0f} s"
        )
        run.history["prior"].append(m)
        save_state(run, args, device)


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
    except (FileNotFoundError, CheckpointError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"autoregressive {autoregressive.__version__}, torch {torch.__version__}, {device}, "
        f"{torch.get_num_threads()} thread(s); {data.train_x.shape[0]:,} training and "
        f"{data.test_x.shape[0]:,} test images from {args.data_dir}; out {args.out}\n"
        f"prior: {run.prior.config}"
    )
    try:
        train_vqvae(run, data, args, device)
        codes = prepare_codes(run, data, args, device)
        train_prior(run, codes, args, device)
    except DivergenceError as err:
        print(f"error: {err}\n--resume restarts from the last checkpoint in {args.out}",
              file=sys.stderr)  # fmt: skip
        return 3
    run.extra["sample_seconds"] = write_pictures(run, data, args, device)
    save_state(run, args, device)
    save_loss_curves(run.history, run.extra, args.out / "loss_curves.png")
    finish(run, args)
    return 0


def finish(run: Run, args: argparse.Namespace) -> None:
    vq, prior = run.history["vqvae"][-1], run.history["prior"][-1]
    print(
        f"done: reconstruction BCE {vq['test_bce']:.2f} nats/image, MSE "
        f"{vq['test_mse_per_pixel']:.4f}/pixel; codebook {vq['test_codes_used']}/"
        f"{args.codebook_size} used, perplexity {vq['test_perplexity']:.1f}; prior test NLL "
        f"{prior['test_nll']:.2f} nats per code grid (independent codes "
        f"{run.extra['unigram_nll']:.2f}); sampling {10 * args.samples_per_class} grids "
        f"took {run.extra['sample_seconds']:.2f} s\nfiles: {args.out}/samples.png, "
        f"reconstructions.png, loss_curves.png, metrics.json"
    )


if __name__ == "__main__":
    sys.exit(main())
