"""A VQ-VAE on MNIST and a class-conditional Gated PixelCNN prior over its 7x7 code grid.

    python examples/vqvae_prior.py --demo          # CPU-sized run (8.0-24.5 min on 2 cores)
    python examples/vqvae_prior.py                 # the longer full run
    python examples/vqvae_prior.py --resume        # continue from <out>/checkpoint.pt

Three phases, timed separately:

1. **VQ-VAE** (``vqvae.py``; van den Oord et al., 2017, https://arxiv.org/abs/1711.00937):
   28x28 grey images to 7x7 grids of ``--codebook-size`` codes and back, trained on the
   intensities in ``[0, 1]`` with binary cross-entropy plus the commitment loss, in float32.
2. **Prior**: :class:`autoregressive.PixelCNN` with ``block="gated"``,
   ``distribution="categorical"``, ``levels=--codebook-size``, ``num_classes=10`` and
   ``image_size=(7, 7)``, trained on the code grids of the training images with their labels
   (the VQ-VAE's encoder is frozen then) in ``--precision auto`` (bf16 autocast where the
   device computes bf16 natively, float32 elsewhere; the test NLL always in float32). It reads
   the codes through the input embedding chosen by ``--input-embedding``.
3. **Samples**: ``model.sample(n, y, size=(7, 7))`` (the cached sampler) draws code grids per
   class, the decoder turns them into images.

Into ``--out`` it writes ``checkpoint.pt`` (after every epoch of either phase, atomically; never
a non-finite number), ``metrics.json`` (updated with it), ``loss_curves.png``,
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
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from autoregressive import PixelCNN, PixelCNNConfig
from autoregressive.data import SeededBatches, derive_seed, load_mnist
from autoregressive.training import (
    Capabilities,
    CheckpointError,
    DivergenceError,
    NegLogLikelihood,
    Precision,
    choose_precision,
    get_rng_state,
    save_checkpoint,
    set_rng_state,
    train_epoch,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
import common
import loop
import outputs
from vqvae import (
    VQVAE,
    baselines,
    codebook_use,
    encode_all,
    reconstruction_metrics,
    save_reconstructions,
)
from vqvae import train_epoch as train_vqvae_epoch

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
}

#: Arguments that define the run: a checkpoint resumes only a run with the same values.
RUN_KEYS = (
    *("seed", "codebook_size", "code_dim", "vq_channels", "vq_lr", "vq_batch_size"),
    *("commitment", "ema_decay", "dead_code_threshold", "prior_lr", "prior_batch_size"),
    *("train_images", "limit_train_batches"),
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
        "the CPU-sized run: VQ-VAE (32 channels) 2 epochs, prior (4 gated blocks x 48 "
        "channels, head 96) 3 epochs, on the whole training set; 8.0-24.5 min on a 2-core AMD "
        "EPYC (idle to one thread beside other jobs); explicit flags still override"
    )
    precision = "training precision of the prior (the VQ-VAE trains in fp32)"
    common.add_run_flags(p, demo, ref("out"), precision=precision)
    _vqvae_flags(p.add_argument_group("VQ-VAE"), ref)
    _prior_flags(p.add_argument_group("prior"), ref)
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


def _vqvae_flags(g: argparse._ArgumentGroup, ref: Callable[[str], str]) -> None:
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


def _prior_flags(g: argparse._ArgumentGroup, ref: Callable[[str], str]) -> None:
    positive = common.positive_int
    g.add_argument("--prior-blocks", type=positive, help=f"gated blocks ({ref('prior_blocks')})")
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill unset flags from the ``--demo`` or full profile.

    Every flag is checked here (exit code 2 naming the flag) except what needs the data, the
    checkpoint and the output folder: :func:`check_start` and :func:`check_phases`.
    """

    def finish(args: argparse.Namespace) -> None:
        if args.data_dir is None:
            args.data_dir = default_data_dir()
        common.check_config(lambda: prior_config(args), CONFIG_FLAGS)

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
    precision: Precision  # the prior's; the VQ-VAE trains in float32
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
    precision = choose_precision(args.precision, Capabilities.detect(device))
    config = prior_config(args)
    prior = PixelCNN(config, device=device, validate_args=device.type != "cuda")
    prior = prior.to(memory_format=precision.memory_format)
    identity = {"prior": dataclasses.asdict(config), **{k: getattr(args, k) for k in RUN_KEYS}}
    vq_optimizer = torch.optim.Adam(vqvae.parameters(), lr=args.vq_lr)
    prior_optimizer = torch.optim.Adam(prior.parameters(), lr=args.prior_lr)
    return Run(vqvae, prior, vq_optimizer, prior_optimizer, precision, identity)


# ---------------------------------------------------------------------------------- phases
def vqvae_epoch(
    run: Run, data: Data, args: argparse.Namespace, epoch: int, device: torch.device
) -> dict[str, Any]:
    """Train the VQ-VAE for one epoch; score the test set; return the epoch's record."""
    seed = derive_seed(args.seed, "vqvae")
    batches = SeededBatches(
        data.train_x, data.train_y, batch_size=args.vq_batch_size, shuffle=True, seed=seed
    )
    batches.set_epoch(epoch)
    steps, desc = loop.steps_of(batches, args.limit_train_batches), f"VQ-VAE epoch {epoch}"
    record = {"epoch": epoch} | train_vqvae_epoch(
        run.vqvae,
        run.vq_optimizer,
        batches,
        steps=steps,
        commitment=args.commitment,
        device=device,
        desc=f"{desc}/{args.vq_epochs}",
    )
    start = time.perf_counter()
    record |= reconstruction_metrics(run.vqvae, data.test_x, args.eval_batch_size, device)
    return record | {"eval_seconds": time.perf_counter() - start}


def prior_epoch(
    run: Run, codes: dict[str, Any], args: argparse.Namespace, epoch: int, device: torch.device
) -> dict[str, Any]:
    """Train the prior one epoch on the training code grids; score the test code grids."""
    codes["train"].set_epoch(epoch)
    steps = loop.steps_of(codes["train"], args.limit_train_batches)
    bar, progress = loop.progress_bar(steps, f"prior epoch {epoch}/{args.prior_epochs}")
    train = train_epoch(
        NegLogLikelihood(run.prior),
        run.prior_optimizer,
        codes["train"],
        device=device,
        precision=run.precision,
        max_steps=steps,
        progress=progress,
        log_every=10,
    )
    bar.close()
    test = loop.score_test_set(run.prior, codes["test"], device)
    return {
        "epoch": epoch,
        "train_nll": train.nll,
        "test_nll": test.nll,
        "test_bits_per_code": test.bits_per_dim,
        "train_seconds": train.seconds,
        "train_grids_per_second": train.images_per_second,
        "eval_seconds": test.seconds,
        "precision": run.precision.name,
    }


def prepare_codes(
    run: Run, data: Data, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """Encode both sets (the frozen encoder); batches of code grids and baselines."""
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
        "train": SeededBatches(
            train, data.train_y, batch_size=args.prior_batch_size, shuffle=True, seed=seed
        ),
        "test": SeededBatches(test, data.test_y, batch_size=args.eval_batch_size),
    }


def train_phases(run: Run, data: Data, args: argparse.Namespace, device: torch.device) -> None:
    """The VQ-VAE's and then the prior's remaining epochs, a checkpoint after each."""
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
    codes = prepare_codes(run, data, args, device)
    for epoch in range(len(run.history["prior"]) + 1, args.prior_epochs + 1):
        m = prior_epoch(run, codes, args, epoch, device)
        print(
            f"prior epoch {epoch}: train NLL {m['train_nll']:.2f}, test NLL "
            f"{m['test_nll']:.2f} nats per code grid ({m['test_bits_per_code']:.3f} "
            f"bits/code); {m['train_seconds']:.0f} s"
        )
        run.history["prior"].append(m)
        save_state(run, args, device)


# -------------------------------------------------------------------------------- outputs
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
    outputs.save_grid(images, k, args.out / "samples.png", title, inches=0.6)
    path = args.out / "reconstructions.png"
    save_reconstructions(run.vqvae, data.test_x, data.test_y, k // 2, path, device)
    return seconds


def save_loss_curves(run: Run, path: Path) -> None:
    """VQ-VAE reconstruction BCE and prior NLL per epoch, train and test."""
    panels = []
    for key, metric, title, label in (
        ("vqvae", "bce", "VQ-VAE reconstruction", "BCE (nats per image)"),
        ("prior", "nll", "class-conditional prior", "NLL (nats per 7x7 code grid)"),
    ):
        epochs = [m["epoch"] for m in run.history[key]]
        lines = {
            s: (epochs, [m[f"{s}_{metric}"] for m in run.history[key]]) for s in ("train", "test")
        }
        panels.append(outputs.Panel(title, label, lines))
    if "unigram_nll" in run.extra:
        panels[1].baseline = ("independent codes", run.extra["unigram_nll"])
    outputs.save_curves(panels, path)


def trained(history: dict[str, list[dict[str, Any]]]) -> bool:
    """Whether both phases have epochs with finite training and test losses (NaN: no image)."""
    losses = [(m["train_bce"], m["test_bce"]) for m in history["vqvae"]]
    losses += [(m["train_nll"], m["test_nll"]) for m in history["prior"]]
    return bool(history["vqvae"] and history["prior"]) and all(
        math.isfinite(x) for pair in losses for x in pair
    )


def save_state(run: Run, args: argparse.Namespace, device: torch.device) -> None:
    """The checkpoint and metrics.json after an epoch of either phase (``NonFiniteState``)."""
    path = args.out / "checkpoint.pt"
    state = {
        "vqvae": run.vqvae.state_dict(),
        "prior": run.prior.state_dict(),
        "vq_optimizer": run.vq_optimizer.state_dict(),
        "prior_optimizer": run.prior_optimizer.state_dict(),
    }
    loop.check_finite(state, path)
    save_checkpoint(
        path,
        {
            **state,
            "history": run.history,
            "extra": run.extra,
            "rng": get_rng_state(),
            "run": run.identity,
            "args": outputs.plain_args(args),
        },
    )
    outputs.write_json(args.out / "metrics.json", summary(run, args, device))


def summary(run: Run, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """What metrics.json holds: the last epoch of each phase, codebook use, baselines, times."""
    vq, prior = run.history["vqvae"], run.history["prior"]
    seconds = {
        f"{name}_{kind}": sum(m[f"{kind}_seconds"] for m in history)
        for name, history in (("vqvae", vq), ("prior", prior))
        for kind in ("train", "eval")
    }
    seconds |= {k: v for k, v in run.extra.items() if k.endswith("_seconds")}
    return {
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
        "seconds": seconds | {"total": sum(seconds.values())},
        "precision": {"name": run.precision.name, "reason": run.precision.reason},
        "hardware": outputs.hardware(device),
        "args": outputs.plain_args(args),
        "history": run.history,
    }


# ---------------------------------------------------------------------------------- resume
def check_phases(history: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    """Refuse ``--vq-epochs`` / ``--prior-epochs`` that a checkpoint's progress contradicts."""
    vq, prior = len(history["vqvae"]), len(history["prior"])
    where = args.out / "checkpoint.pt"
    if prior and vq != args.vq_epochs:
        raise ValueError(
            f"--resume: the prior in {where} trained on the codes of a VQ-VAE after {vq} "
            f"epoch(s); pass --vq-epochs {vq}, or another --out to start a new run"
        )
    loop.check_not_past(where, vq, "--vq-epochs", args.vq_epochs, "VQ-VAE epoch")
    loop.check_not_past(where, prior, "--prior-epochs", args.prior_epochs, "prior epoch")


def check_resumable(checkpoint: dict[str, Any], identity: dict[str, Any]) -> None:
    """Raise ``ValueError`` when a checkpoint belongs to a different run."""
    loop.check_resumable(checkpoint, identity, configs=("prior",))


def resume(run: Run, args: argparse.Namespace, device: torch.device) -> None:
    """Load ``<out>/checkpoint.pt`` into ``run`` when ``--resume``."""
    ckpt = loop.checkpoint_to_resume(args, device, print)
    if ckpt is None:
        return
    check_resumable(ckpt, run.identity)
    check_phases(ckpt["history"], args)
    run.vqvae.load_state_dict(ckpt["vqvae"])
    run.prior.load_state_dict(ckpt["prior"])
    run.vq_optimizer.load_state_dict(ckpt["vq_optimizer"])
    run.prior_optimizer.load_state_dict(ckpt["prior_optimizer"])
    run.history, run.extra = ckpt["history"], ckpt["extra"]
    set_rng_state(ckpt["rng"])
    print(
        f"resumed from {args.out / 'checkpoint.pt'}: VQ-VAE epoch {len(run.history['vqvae'])}, "
        f"prior epoch {len(run.history['prior'])}"
    )


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.pick_device(args.device)
    try:
        data = load_data(args)
        check_start(args, data)
        run = build_run(args, device)
        resume(run, args, device)
    except (FileNotFoundError, CheckpointError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{outputs.header(device, run.precision, run.prior)} (the prior; the VQ-VAE trains in "
        f"fp32)\ndata: {data.train_x.shape[0]:,} training and {data.test_x.shape[0]:,} test "
        f"images from {args.data_dir}; out {args.out}"
    )
    try:
        train_phases(run, data, args, device)
        run.extra["sample_seconds"] = write_pictures(run, data, args, device)
        save_state(run, args, device)
    except (DivergenceError, loop.NonFiniteState) as err:
        return loop.stopped(err, args.out)
    save_loss_curves(run, args.out / "loss_curves.png")
    vq, prior = run.history["vqvae"][-1], run.history["prior"][-1]
    print(
        f"done: reconstruction BCE {vq['test_bce']:.2f} nats/image, MSE "
        f"{vq['test_mse_per_pixel']:.4f}/pixel; codebook {vq['test_codes_used']}/"
        f"{args.codebook_size} used, perplexity {vq['test_perplexity']:.1f}; prior test NLL "
        f"{prior['test_nll']:.2f} nats per code grid (independent codes "
        f"{run.extra['unigram_nll']:.2f}); sampling {10 * args.samples_per_class} grids took "
        f"{run.extra['sample_seconds']:.2f} s\nfiles: {args.out}/samples.png, "
        "reconstructions.png, loss_curves.png, metrics.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
