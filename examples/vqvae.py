"""The VQ-VAE of ``vqvae_prior.py``: a 28x28 grey image to a 7x7 grid of codebook entries.

van den Oord et al., 2017, *Neural Discrete Representation Learning*,
https://arxiv.org/abs/1711.00937: a convolutional encoder maps an image to a 7x7 grid of
``code_dim`` vectors, a vector quantizer replaces each by its nearest codebook entry, and a
decoder maps the quantized grid back to pixel logits.

The quantizer is ``VectorQuantize`` from lucidrains' ``vector-quantize-pytorch`` (the
``examples`` extra): EMA codebook updates, k-means initialisation of the codebook from the
first batch and restarts of dead codes (entries whose EMA usage falls below
``dead_code_threshold`` are replaced by encoder outputs of the current batch). Gradients pass
the quantizer by the straight-through estimator of the paper (``rotation_trick=False``).

Also here: its command-line flags, its training objective (binary cross-entropy on the
intensities plus the weighted commitment loss, per image, for the library's ``train_epoch``),
what is measured of it (reconstruction error, codebook use) and the two baselines a prior over
its codes must beat.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from autoregressive.data import derive_seed
from autoregressive.training import Capabilities, EpochStats, choose_precision

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
import common
from loop import Run
from outputs import save_grid


def add_flags(g: argparse._ArgumentGroup, ref: Callable[[str], str]) -> None:
    """The VQ-VAE's flags: codebook, width, optimisation, commitment weight, EMA, restarts."""
    at_least_2, positive = common.int_at_least(2), common.positive_int
    non_negative = common.non_negative_float
    entries, width = "codebook entries (prior levels)", "dimension of a codebook vector"
    g.add_argument("--codebook-size", type=at_least_2, default=64, help=entries)
    g.add_argument("--code-dim", type=positive, default=16, help=width)
    width = f"encoder/decoder width, >= 2 ({ref('vq_channels')})"
    g.add_argument("--vq-channels", type=at_least_2, help=width)
    g.add_argument("--vq-epochs", type=positive, help=f"VQ-VAE epochs ({ref('vq_epochs')})")
    lr = "Adam learning rate of the VQ-VAE"
    g.add_argument("--vq-lr", type=common.positive_float, default=2e-3, help=lr)
    g.add_argument("--vq-batch-size", type=positive, default=64, help="images per VQ-VAE step")
    beta = "commitment loss weight (beta)"
    g.add_argument("--commitment", type=non_negative, default=0.25, help=beta)
    decay = common.finite_float(above=0, below=1)
    g.add_argument("--ema-decay", type=decay, default=0.95, help="EMA decay of the codebook")
    restart = "restart codebook entries whose EMA count of assigned vectors falls below this"
    g.add_argument("--dead-code-threshold", type=non_negative, default=1.0, help=restart)


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
            commitment_weight=1.0,  # weighted by --commitment in the training loss
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


@torch.no_grad()
def encode_all(vqvae: VQVAE, x: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """Code grids of all images, ``(N, 1, 28, 28) -> (N, 1, 7, 7)`` long on the CPU."""
    vqvae.eval()
    codes = [vqvae.encode(chunk.to(device)).cpu() for chunk in x.split(batch)]
    return torch.cat(codes).unsqueeze(1)  # (N, 1, 7, 7): one data channel


def encode_sets(
    vqvae: VQVAE, train_x: torch.Tensor, test_x: torch.Tensor, batch: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Code grids ``(N, 1, 7, 7)`` of a training and a test set, and figures of them.

    The figures: the seconds encoding took, the number of images of each set (``train``,
    ``test``), the training codes' codebook use and the :func:`baselines`.
    """
    start = time.perf_counter()
    train, test = (encode_all(vqvae, x, batch, device) for x in (train_x, test_x))
    k = vqvae.quantizer.codebook_size
    figures = {"encode_seconds": time.perf_counter() - start, **baselines(train, test, k)}
    figures |= {"train_codebook": codebook_use(train, k), "train": len(train), "test": len(test)}
    return train, test, figures


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


@torch.no_grad()
def reconstruction_metrics(
    vqvae: VQVAE, x: torch.Tensor, batch: int, device: torch.device
) -> dict[str, float]:
    """Reconstruction error of images ``(N, 1, 28, 28)`` per image, and their codebook use."""
    vqvae.eval()
    bce, sse, codes = [], [], []
    for chunk in x.split(batch):
        logits, c, _ = vqvae(chunk.to(device))
        b, s = reconstruction_errors(logits, chunk.to(device))
        bce.append(b.double())
        sse.append(s.double())
        codes.append(c.cpu())
    use = codebook_use(torch.cat(codes), vqvae.quantizer.codebook_size)
    return {
        "test_bce": torch.cat(bce).mean().item(),
        "test_sse": torch.cat(sse).mean().item(),
        "test_mse_per_pixel": torch.cat(sse).mean().item() / x[0].numel(),
        "test_codes_used": use["codes_used"],
        "test_perplexity": use["perplexity"],
    }


def baselines(train_codes: torch.Tensor, test_codes: torch.Tensor, k: int) -> dict[str, float]:
    """NLL per code grid (nats) of uniform codes and of independent codes at their frequencies."""
    counts = torch.bincount(train_codes.flatten(), minlength=k).double() + 0.5  # add-1/2 smoothed
    logp = (counts / counts.sum()).log()
    cells = math.prod(test_codes.shape[1:])
    return {
        "uniform_nll": cells * math.log(k),
        "unigram_nll": -logp[test_codes.flatten()].sum().item() / test_codes.shape[0],
    }


class Loss(nn.Module):
    """The VQ-VAE's training objective per image, the form the library's ``train_epoch`` takes.

    An image's loss is its binary cross-entropy per pixel plus ``commitment`` times the batch's
    commitment loss, so a batch's mean is the paper's loss. The module also sums the epoch's
    BCE and commitment loss (``sums``) for the epoch's record; a mid-epoch checkpoint keeps
    them, so that a resumed epoch reports what an uninterrupted one does.

    Shape:
        ``x``: :math:`(B, 1, 28, 28)` intensities in ``[0, 1]``; returns :math:`(B,)`.
    """

    def __init__(self, vqvae: VQVAE, commitment: float) -> None:
        super().__init__()
        self.vqvae, self.commitment = vqvae, commitment
        self.sums = dict.fromkeys(("bce", "commitment", "images"), 0.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of each image of ``x``; the labels ``y`` are not used."""
        logits, _, commit = self.vqvae(x)  # (B, 1, 28, 28), _, ()
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        self.sums["bce"] += bce.detach().sum().item()  # nats, summed over images
        self.sums["commitment"] += commit.item() * x.shape[0]
        self.sums["images"] += x.shape[0]
        return bce / x[0].numel() + self.commitment * commit  # (B,)

    def running(self, key: str = "bce") -> float:
        """The epoch's mean of ``key`` per image so far."""
        return self.sums[key] / self.sums["images"] if self.sums["images"] else math.nan

    def postfix(self, loss: float) -> dict[str, str]:
        """What a progress bar shows: the epoch's running BCE (not ``loss``)."""
        return {"bce": f"{self.running():.1f}"}

    def epoch_record(
        self, epoch: int, stats: EpochStats, test_x: torch.Tensor, batch: int, device: torch.device
    ) -> dict[str, Any]:
        """The record of a trained epoch: its training means, then the test set's reconstruction.

        The sums start afresh for the next epoch.
        """
        train = {f"train_{key}": self.running(key) for key in ("bce", "commitment")}
        self.sums = dict.fromkeys(self.sums, 0.0)
        start = time.perf_counter()
        test = reconstruction_metrics(self.vqvae, test_x, batch, device)
        return {"epoch": epoch, **train, "train_seconds": stats.seconds,
                "train_images_per_second": stats.images_per_second, **test,
                "eval_seconds": time.perf_counter() - start}  # fmt: skip


def new_run(args: argparse.Namespace, device: torch.device, identity: dict[str, Any]) -> Run:
    """The VQ-VAE of the flags of :func:`add_flags`, Adam and :class:`Loss`, in float32.

    Its initial weights come from their own seed, ``derive_seed(--seed, "vqvae-weights")``, so
    they do not depend on what was built before it (the prior of either kind).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(args.seed, "vqvae-weights"))
        vqvae = VQVAE(args.codebook_size, args.code_dim, args.vq_channels, args.ema_decay,
                      args.dead_code_threshold).to(device)  # fmt: skip
    optimizer = torch.optim.Adam(vqvae.parameters(), lr=args.vq_lr)
    fp32 = choose_precision("fp32", Capabilities.detect(device))
    return Run(vqvae, optimizer, Loss(vqvae, args.commitment), fp32, identity)


def describe(m: dict[str, Any], codebook_size: int) -> str:
    """An epoch's record in one line."""
    return (
        f"VQ-VAE epoch {m['epoch']}: train BCE {m['train_bce']:.2f}, test BCE "
        f"{m['test_bce']:.2f} nats/image, test MSE {m['test_mse_per_pixel']:.4f}/pixel; "
        f"codes used {m['test_codes_used']}/{codebook_size}, perplexity "
        f"{m['test_perplexity']:.1f}; {m['train_seconds']:.0f} s"
    )


@torch.no_grad()
def save_reconstructions(
    vqvae: VQVAE,
    x: torch.Tensor,
    y: torch.Tensor,
    per_class: int,
    path: Path,
    device: torch.device,
) -> None:
    """Test images ``x`` (labels ``y``) of each class beside their reconstructions, as a PNG.

    Each row holds ``per_class`` images of a class, then their reconstructions; a small test
    set without every class gives one row of originals, then one of reconstructions.
    """
    originals = torch.cat([x[y == c][:per_class] for c in range(10)])  # (R, 1, 28, 28)
    recon = vqvae.eval().decode(encode_all(vqvae, originals, 500, device)[:, 0]).cpu()
    per = originals.shape[0] // 10 if originals.shape[0] % 10 == 0 else None
    if per:  # (10, 2 * per, 1, 28, 28): each class's images, then their reconstructions
        rows = torch.cat([originals.view(10, per, 1, 28, 28), recon.view(10, per, 1, 28, 28)], 1)
        grid, cols = rows.flatten(0, 1), 2 * per  # (10 * 2 per, 1, 28, 28)
    else:
        grid, cols = torch.cat([originals, recon]), max(originals.shape[0], 1)
    title = "test images (left half) and their reconstructions (right half)"
    save_grid(grid, cols, path, title, inches=0.6)
