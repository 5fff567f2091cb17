"""Out-of-distribution detection on MNIST: the raw likelihood against the likelihood ratio.

A PixelCNN trained on digits gives a blank image a *higher* likelihood than the digits
themselves (Nalisnick et al., 2019). The likelihood ratio of Ren et al. (2019) is meant to
correct for it: a background model of the same architecture is trained on digits whose pixels
were each replaced, with probability ``--rate``, by a random value
(:func:`autoregressive.perturb`), and the score is ``log p_model(x) - log p_background(x)``
(:func:`autoregressive.likelihood_ratio`). On the committed run (``examples/results/ood-mnist``)
it lifts the blank image off the top but ranks inverted digits and a white image above every
digit.

This script takes the shipped model (``--model``, trained on binarized MNIST as its registry
entry says), trains the background model on perturbed training digits binarized the same way,
scores the test digits (in-distribution) and out-of-distribution sets made from them and from
nothing (inverted, upside-down and rotated digits, Bernoulli noise of the digits' ink density,
a blank and an all-white image), and reports for each set the AUROC of telling the test
digits from it by each score (1: every test digit scores above every image of the set; 0.5:
chance; below 0.5: the score prefers the outliers).

Run it with ``make ood-demo``, or::

    .venv/bin/python examples/ood_mnist.py --train-images 2000 --out runs/ood-mnist

Into ``--out`` it writes ``background/`` (the background model, :meth:`PixelCNN.save_pretrained`;
``--resume`` scores with it instead of training again), ``results.json``, ``results.md`` (the
table) and ``scores.png`` (histograms of both scores).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from autoregressive import PixelCNN, log_likelihood, perturb
from autoregressive.data import (
    Batch,
    BinarizedBatches,
    derive_seed,
    dynamic_binarize,
    load_mnist,
    threshold_binarize,
)
from autoregressive.models.pretrained import available
from autoregressive.training import NegLogLikelihood, train_epoch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
import common
import loop
import outputs

#: the training digits
TRAIN_IMAGES = 60_000
#: the test digits
TEST_IMAGES = 10_000
#: the flags that make a background model: ``--resume`` reuses a saved one only if they match
TRAINING_FLAGS = (
    "model", "rate", "train_images", "epochs", "batch_size", "lr", "weight_decay",
    "limit_train_batches", "seed",
)  # fmt: skip


def add_background_flags(p: argparse.ArgumentParser) -> None:
    """The "background model" group: the perturbation and the training of the model."""
    g = p.add_argument_group("background model")
    rate = "probability of replacing each training pixel by a random one (Ren et al.: 0.1-0.3)"
    g.add_argument("--rate", type=common.finite_float(above=0, below=1), default=0.2, help=rate)
    g.add_argument(
        "--train-images",
        type=common.positive_int,
        default=6000,
        help="train on the first N training digits",
    )
    g.add_argument("--epochs", type=common.positive_int, default=2, help="epochs")
    g.add_argument("--batch-size", type=common.positive_int, default=32, help="images per step")
    g.add_argument("--lr", type=common.positive_float, default=1e-3, help="Adam learning rate")
    g.add_argument(
        "--weight-decay",
        type=common.non_negative_float,
        default=0.0,
        help="Adam's L2 penalty (Ren et al. regularise the background model)",
    )
    limit = "at most this many steps per epoch (for tests)"
    g.add_argument("--limit-train-batches", type=common.positive_int, help=limit)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter)
    p.add_argument("--model", default="mnist-demo", help="the shipped model to test")
    p.add_argument("--data-dir", type=Path, help=common.MNIST_DIR_HELP)
    p.add_argument("--no-download", action="store_true", help="never fetch MNIST")
    add_background_flags(p)
    g = p.add_argument_group("scoring")
    g.add_argument(
        "--test-images",
        type=common.positive_int,
        default=2000,
        help="score the first N test digits (in-distribution)",
    )
    g.add_argument(
        "--ood-images",
        type=common.positive_int,
        default=500,
        help="images in each out-of-distribution set made from digits or noise",
    )
    g.add_argument("--chunk-size", type=common.positive_int, default=250, help="images a pass")
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, default=Path("runs/ood-mnist"), help="output folder")
    g.add_argument(
        "--resume",
        action="store_true",
        help="score with <out>/background when a run saved it, instead of training",
    )
    g.add_argument("--seed", type=common.torch_seed, default=0, help="seed of all draws")
    g.add_argument("--threads", type=common.positive_int, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.model not in available():
        p.error(f"--model {args.model}: not a shipped model; choose one of {sorted(available())}")
    try:
        common.check_out(args.out)
        common.check_count(
            "--train-images", args.train_images, TRAIN_IMAGES, "MNIST's training set"
        )
        common.check_count("--test-images", args.test_images, TEST_IMAGES, "MNIST's test set")
        common.check_count("--ood-images", args.ood_images, args.test_images, "--test-images")
    except ValueError as err:
        p.error(str(err))
    args.data_dir = args.data_dir or common.default_mnist_dir()
    return args


# ------------------------------------------------------------------------------------ data
def binarizer(model: str) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The binarization the shipped model trained on (its registry entry's ``data``)."""
    data = available()[model].get("data", {})
    if data.get("binarize") == "dynamic":
        return dynamic_binarize
    return lambda x, _: threshold_binarize(x, data.get("threshold", 0.5))


def digits(args: argparse.Namespace, train: bool) -> torch.Tensor:
    """The first ``--train-images`` / ``--test-images`` intensities ``(N, 1, 28, 28)``."""
    images, _ = load_mnist(args.data_dir, train=train, download=not args.no_download)
    have = images.shape[0]
    wanted = args.train_images if train else args.test_images
    common.check_count(
        "--train-images" if train else "--test-images", wanted, have, f"{args.data_dir}"
    )
    return images[:wanted]


def ood_sets(test: torch.Tensor, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """The out-of-distribution sets ``(n, 1, 28, 28)`` in ``{0, 1}``, made from ``test``."""
    some = test[: args.ood_images]
    ink = float(test.mean())
    g = torch.Generator().manual_seed(derive_seed(args.seed, "noise"))
    noise = (torch.rand(some.shape, generator=g) < ink).to(test.dtype)
    return {
        "inverted digits": 1 - some,
        "upside-down digits": some.flip(-2),
        "digits rotated 90°": some.rot90(1, (-2, -1)),
        f"Bernoulli noise (p = {ink:.2f})": noise,
        "blank (all black)": torch.zeros_like(test[:1]),
        "all white": torch.ones_like(test[:1]),
    }


class Perturbed:
    """Batches of binarized digits, each pixel perturbed (``perturb``) with a seeded draw."""

    def __init__(self, batches: BinarizedBatches, rate: float, seed: int) -> None:
        self.batches, self.rate, self.seed = batches, rate, seed
        self.generator = torch.Generator()

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)
        self.generator.manual_seed(derive_seed(self.seed, epoch, "perturb"))

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        for b in self.batches:
            yield Batch(perturb(b.images, self.rate, 2, self.generator), b.labels, b.total)


# ----------------------------------------------------------------------------- background
def train_background(
    config: Any, train: torch.Tensor, args: argparse.Namespace
) -> tuple[PixelCNN, dict[str, Any]]:
    """A model of ``config`` trained on ``train`` digits perturbed; its per-epoch figures."""
    torch.manual_seed(derive_seed(args.seed, "init"))
    background = PixelCNN(config)
    data = available()[args.model].get("data", {})
    binarize = "dynamic" if data.get("binarize") == "dynamic" else "threshold"
    batches = BinarizedBatches(
        train, batch_size=args.batch_size, binarize=binarize,
        threshold=data.get("threshold", 0.5), shuffle=True, seed=args.seed,
    )  # fmt: skip
    perturbed = Perturbed(batches, args.rate, args.seed)
    optimizer = torch.optim.Adam(background.parameters(), args.lr, weight_decay=args.weight_decay)
    objective, device = NegLogLikelihood(background), torch.device("cpu")
    history = []
    for epoch in range(1, args.epochs + 1):
        perturbed.set_epoch(epoch)
        bar, progress = loop.progress_bar(
            loop.steps_of(perturbed, args.limit_train_batches), f"background epoch {epoch}"
        )
        with bar:
            stats = train_epoch(objective, optimizer, perturbed, device=device,
                                max_steps=args.limit_train_batches, progress=progress)  # fmt: skip
        history.append({"epoch": epoch, "train_nll": stats.nll, "images": stats.images,
                        "seconds": stats.seconds})  # fmt: skip
        print(f"epoch {epoch}: training NLL of perturbed digits {stats.nll:.2f} nats "
              f"({stats.images:,} images, {stats.seconds:.0f} s)", flush=True)  # fmt: skip
    return background, {"epochs": history}


def background_model(
    config: Any, train: torch.Tensor, args: argparse.Namespace
) -> tuple[PixelCNN, dict[str, Any]]:
    """The saved background model when resuming and one is saved, else a new one trained."""
    folder = args.out / "background"
    settings = {k: getattr(args, k) for k in TRAINING_FLAGS}
    if args.resume and (folder / "config.json").is_file():
        print(f"background model from {folder} (--resume)", flush=True)
        background = PixelCNN.from_pretrained(folder)
        training = json.loads((folder / "training.json").read_text())
        if background.config != config or training.get("settings") != settings:
            raise ValueError(
                f"{folder} holds a background model of other settings ({training.get('settings')}"
                f"); pass the flags it was trained with, or a new --out"
            )
        return background, training
    background, training = train_background(config, train, args)
    training["settings"] = settings
    background.save_pretrained(folder)
    outputs.write_json(folder / "training.json", training)
    return background, training


# -------------------------------------------------------------------------------- scoring
def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an in-distribution score > an outlier's), ties counting a half (Mann-Whitney U).

    From ranks: the scores of both sets are ranked together (tied scores share their mean
    rank), and the in-distribution ranks' sum, less its least possible value, counts the pairs
    won. Shapes: ``(n,)``, ``(m,)``.
    """
    values = np.concatenate([inside, outside]).astype(np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based, ties averaged
    ranks = mean_rank[inverse]
    n, m = len(inside), len(outside)
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * m))


def score_sets(
    model: PixelCNN, background: PixelCNN, sets: dict[str, torch.Tensor], chunk: int
) -> dict[str, dict[str, np.ndarray]]:
    """Each set's raw log-likelihood and likelihood ratio ``(n,)``, nats, with a progress bar.

    The ratio is what :func:`autoregressive.likelihood_ratio` computes; the model's
    log-likelihood is computed once and kept for the raw score.
    """
    total = sum(math.ceil(x.shape[0] / chunk) for x in sets.values())
    scores = {}
    with tqdm(total=total, desc="scoring", unit="chunk", dynamic_ncols=True) as bar:
        for name, x in sets.items():
            raw, base = [], []
            for part in x.split(chunk):
                raw.append(log_likelihood(model, part, chunk_size=chunk))
                base.append(log_likelihood(background, part, chunk_size=chunk))
                bar.update()
            ll, bg = torch.cat(raw).double().numpy(), torch.cat(base).double().numpy()
            scores[name] = {"log_likelihood": ll, "ratio": ll - bg}
    return scores


def summary(scores: dict[str, dict[str, np.ndarray]], inside: str) -> dict[str, Any]:
    """Per set: images, mean scores, and each score's AUROC against the ``inside`` set."""
    rows = {}
    for name, s in scores.items():
        row: dict[str, Any] = {"images": len(s["ratio"])}
        for key in ("log_likelihood", "ratio"):
            row[f"mean_{key}"] = float(s[key].mean())
            if name != inside:
                row[f"auroc_{key}"] = auroc(scores[inside][key], s[key])
        rows[name] = row
    return rows


def table(rows: dict[str, Any], inside: str) -> str:
    """The markdown table: each set's mean scores and the AUROC of each score."""
    lines = [
        "| set | images | mean log p(x), nats | mean ratio, nats | AUROC log p(x) | AUROC ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        aurocs = ("", "") if name == inside else (f"{r['auroc_log_likelihood']:.3f}",
                                                   f"{r['auroc_ratio']:.3f}")  # fmt: skip
        lines.append(f"| {name} | {r['images']:,} | {r['mean_log_likelihood']:.1f} | "
                     f"{r['mean_ratio']:.1f} | {aurocs[0]} | {aurocs[1]} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def figure(scores: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """Histograms of both scores per set; a set of one image is a vertical line.

    The first set (the test digits) sets the scale: scores further below it than three times
    its own spread are drawn in the leftmost bin, and the height is that of its histogram, so
    that far outliers do not squash it.
    """
    plt = outputs.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    titles = {"log_likelihood": "raw log-likelihood log p(x), nats",
              "ratio": "likelihood ratio log p(x) - log p_background(x), nats"}  # fmt: skip
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        inside = next(iter(scores.values()))[key]
        low, high = np.percentile(inside, [0.5, 99.5])
        everything = np.concatenate([s[key] for s in scores.values()])
        left = max(everything.min(), low - 3 * (high - low))
        bins = np.linspace(left, everything.max(), 70)
        for i, (name, s) in enumerate(scores.items()):
            shown = np.clip(s[key], left, None)  # (n,)
            if len(shown) == 1:
                ax.axvline(shown[0], color=f"C{i}", lw=2, ls="--", label=name)
            else:
                ax.hist(shown, bins=bins, density=True, alpha=0.45, color=f"C{i}", label=name)
        peak = np.histogram(inside, bins=bins, density=True)[0].max()
        ax.set_ylim(0, 1.5 * peak)
        clipped = " (leftmost bin: all scores below it)" if left > everything.min() else ""
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"higher = more like the training digits{clipped}", fontsize=9)
        ax.set_yticks([])
    axes[0].legend(fontsize=8, loc="upper left", framealpha=0.9)
    outputs.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = PixelCNN.from_pretrained(args.model)
    g = torch.Generator().manual_seed(derive_seed(0, "test"))  # the training run's test draw
    try:
        common.make_out(args.out)
        test = binarizer(args.model)(digits(args, train=False), g)
        print(f"{args.model}: {test.shape[0]:,} test digits from {args.data_dir}; out {args.out}")
        background, training = background_model(model.config, digits(args, train=True), args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    inside = "MNIST test digits"
    scores = score_sets(model, background, {inside: test, **ood_sets(test, args)},
                        args.chunk_size)  # fmt: skip
    rows = summary(scores, inside)
    results = {"model": args.model, "args": outputs.plain_args(args), "background": training,
               "sets": rows, "hardware": outputs.hardware(torch.device("cpu")),
               "seconds": time.perf_counter() - start}  # fmt: skip
    outputs.write_json(args.out / "results.json", results)
    text = table(rows, inside)
    (args.out / "results.md").write_text(text)
    figure(scores, args.out / "scores.png")
    print(text + f"\nwrote results.json, results.md, scores.png to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
