"""What the example scripts write besides their checkpoints: pictures, metrics, log lines.

- pictures: image grids (:func:`save_grid`), completions of test images
  (:func:`complete_bottom_halves`) and per-epoch curves (:func:`save_curves`), each a PNG
  written atomically (a crash never leaves half a picture); matplotlib is imported only when
  something is drawn, on its non-interactive Agg backend;
- ``metrics.json``: :func:`run_summary` (what every run reports; :func:`phases_summary` for runs
  in phases), :func:`write_json` (atomic,
  non-finite numbers as ``null``), :func:`plain_args` and :func:`hardware`;
- log lines: how a run starts (:func:`header`), each epoch (:func:`describe`) with the time
  left (:func:`eta`), and how it ends (:func:`done`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import autoregressive
from autoregressive.training import Capabilities, EpochProgress, Precision, atomic_write

if TYPE_CHECKING:
    from loop import Phases, Run

#: The checkout: paths in ``metrics.json`` and checkpoints are written relative to it.
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------- pictures
def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend (imported only when plotting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG atomically and close it."""
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    pyplot().close(fig)


def tile(images: torch.Tensor, cols: int, pad: int = 2, background: float = 0.5) -> torch.Tensor:
    """Tile ``(N, C, H, W)`` images in ``[0, 1]`` row by row into one ``(h, w, C)`` array."""
    n, c, h, w = images.shape
    rows = max(math.ceil(n / cols), 1)
    canvas = torch.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), background)
    for k in range(n):
        r, col = divmod(k, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top : top + h, left : left + w] = images[k].permute(1, 2, 0).float().cpu()
    return canvas


def save_grid(
    images: torch.Tensor,
    cols: int,
    path: Path,
    title: str,
    *,
    labels: Sequence[str] = (),
    inches: float = 0.75,
    background: float = 0.5,
) -> None:
    """A grid of grey (``C = 1``) or RGB (``C = 3``) images ``(N, C, H, W)`` in ``[0, 1]``.

    Args:
        images: the images, row by row.
        cols: images per row.
        path: the PNG to write.
        title: the figure's title.
        labels: a label over each column.
        inches: the size of one image in the figure.
        background: the grey level between the images.
    """
    plt = pyplot()
    canvas = tile(images, cols, background=background)  # (h, w, C)
    rows = max(math.ceil(images.shape[0] / cols), 1)
    fig, ax = plt.subplots(
        figsize=(max(cols * inches + 0.4, 4), rows * inches + (0.9 if labels else 0.6))
    )
    if canvas.shape[-1] == 1:
        ax.imshow(canvas[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(canvas.numpy(), interpolation="nearest")
    step = images.shape[-1] + 2
    for c, label in enumerate(labels):
        ax.text(2 + c * step + step / 2 - 1, -2, label, ha="center", va="bottom", fontsize=7)
    ax.set_title(title, fontsize=9, pad=14 if labels else 6)
    ax.axis("off")
    save_figure(fig, path)


@torch.no_grad()
def complete_bottom_halves(
    model: Any,
    originals: torch.Tensor,
    k: int,
    generator: torch.Generator,
    hidden: float,
    **sample_kwargs: Any,
) -> tuple[torch.Tensor, list[str]]:
    """Sample ``k`` bottom halves of each image given its top half.

    Args:
        model: a :class:`autoregressive.PixelCNN`.
        originals: ``(R, C, H, W)`` images on the model's device.
        k: completions of each.
        generator: the source of the samples.
        hidden: the value that shows the hidden half of the "given" column.
        **sample_kwargs: more arguments of ``model.sample`` (e.g. ``temperature``).

    Returns:
        The grid, ``(R * (k + 2), C, H, W)`` row by row (original, given, ``k`` completions),
        and the label of each column.
    """
    r, _, h, w = originals.shape
    known = torch.zeros(1, 1, h, w, dtype=torch.bool, device=originals.device)
    known[..., : h // 2, :] = True  # the top half is given
    image = originals.repeat(k, 1, 1, 1)  # (K * R, C, H, W)
    filled = model.sample(image=image, known=known, generator=generator, **sample_kwargs)
    given = originals.clone()
    given[..., h // 2 :, :] = hidden  # the hidden part shown grey
    columns = [originals, given, *filled.view(k, r, *originals.shape[1:])]  # each (R, C, H, W)
    grid = torch.stack(columns, dim=1).flatten(0, 1)  # (R * (K + 2), C, H, W), row-major
    return grid, ["original", "given", *(f"sample {i + 1}" for i in range(k))]


@dataclass
class Panel:
    """One plot of per-epoch numbers.

    Attributes:
        title: the plot's title.
        ylabel: what the numbers are.
        lines: label -> ``(epochs, values)``, one line each.
        baseline: a label and a value drawn as a dashed horizontal line.
        log_y: a logarithmic y axis.
    """

    title: str
    ylabel: str
    lines: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    baseline: tuple[str, float] | None = None
    log_y: bool = False


def save_curves(panels: Sequence[Panel], path: Path) -> None:
    """The panels side by side as a PNG."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 + 4 * (len(panels) - 1), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for (label, (x, y)), style in zip(
            panel.lines.items(), ("o-", "s-", "^-", "v-"), strict=False
        ):
            ax.plot(x, y, style, label=label)
        if panel.baseline is not None:
            ax.axhline(panel.baseline[1], color="grey", ls="--", label=panel.baseline[0])
        if panel.log_y:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(panel.title, fontsize=10)
    save_figure(fig, path)


# ------------------------------------------------------------------------------ metrics.json
def finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become ``None``, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically, non-finite numbers as ``null``."""
    with atomic_write(path) as f:
        f.write(json.dumps(finite(data), indent=2, allow_nan=False).encode() + b"\n")


def plain(value: Any) -> Any:
    """CLI values as JSON / checkpoint-friendly values; paths relative to the checkout."""
    if isinstance(value, Path):
        try:
            return os.path.relpath(value, REPO)
        except ValueError:  # another drive (Windows): no relative path
            return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def plain_args(args: argparse.Namespace) -> dict[str, Any]:
    """Every flag's value, :func:`plain`."""
    return {k: plain(v) for k, v in vars(args).items()}


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> dict[str, Any]:
    """What the run ran on, for metrics.json."""
    return {
        "device": str(device),
        "name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "device_capabilities": Capabilities.detect(device).name,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }


def run_summary(
    run: Run,
    args: argparse.Namespace,
    epoch: int,
    progress: EpochProgress | None,
    device: torch.device,
    final: tuple[str, ...],
) -> dict[str, Any]:
    """What every run's ``metrics.json`` holds: set-up, finished epochs, the next one's progress.

    ``final`` names the numbers of the last epoch that it repeats under ``final``.
    """
    last, current = (run.history[-1] if run.history else None), None
    if progress is not None:
        running = progress.nll / max(progress.images, 1)
        current = {"epoch": epoch + 1, "steps": progress.steps, "running_train_nll": running,
                   "train_seconds": progress.seconds}  # fmt: skip
    return {
        "finished": epoch == args.epochs and progress is None,
        "config": run.identity["config"],
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "args": plain_args(args),
        "precision": {"name": run.precision.name, "reason": run.precision.reason},
        "hardware": hardware(device),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "autoregressive": autoregressive.__version__,
        "initial_test_nll": run.initial,
        "final": {k: last[k] for k in final} if last else None,
        "in_progress": current,
        "train_seconds": sum(m["train_seconds"] for m in run.history),
        "wall_seconds": sum(m["epoch_seconds"] for m in run.history),
        "pictures": run.pictures,
        "epochs": run.history,
    }


def phases_summary(
    phases: Phases,
    args: argparse.Namespace,
    device: torch.device,
    progress: tuple[str, EpochProgress] | None,
) -> dict[str, Any]:
    """What ``metrics.json`` of runs in phases holds: each run's last record and history, its
    parameters and seconds (with ``phases.extra``'s ``*_seconds``), how far the epoch in
    progress came, and the set-up."""
    runs = phases.runs
    seconds = {f"{name}_{kind}": sum(m[f"{kind}_seconds"] for m in run.history)
               for name, run in runs.items() for kind in ("train", "eval")}  # fmt: skip
    seconds |= {k: v for k, v in phases.extra.items() if k.endswith("_seconds")}
    current = None
    if progress is not None:
        name, p = progress
        current = {"phase": name, "epoch": len(runs[name].history) + 1, "steps": p.steps,
                   "train_seconds": p.seconds}  # fmt: skip
    return {
        **{name: run.history[-1] if run.history else None for name, run in runs.items()},
        "in_progress": current,
        "parameters": {
            name: sum(p.numel() for p in run.model.parameters()) for name, run in runs.items()
        },
        "seconds": seconds | {"total": sum(seconds.values())},
        "hardware": hardware(device),
        "autoregressive": autoregressive.__version__,
        "args": plain_args(args),
        "history": phases.history,
    }


# --------------------------------------------------------------------------------- log lines
def describe(m: dict[str, Any]) -> str:
    """An epoch's record in one line."""
    return (
        f"epoch {m['epoch']}: train NLL {m['train_nll']:.2f} nats ({m['train_bits_per_dim']:.4f}"
        f" bits/dim), test NLL {m['test_nll']:.2f} nats ({m['test_bits_per_dim']:.4f} bits/dim);"
        f" {m['train_images_per_second']:.0f} images/s, train {m['train_seconds']:.1f} s, eval "
        f"{m['eval_seconds']:.1f} s"
    )


def eta(history: list[dict[str, Any]], epochs: int) -> str:
    """The time left, at the mean pace of the last three epochs (their training and scoring time
    where a record lacks its wall time)."""
    recent = [m.get("epoch_seconds", m["train_seconds"] + m["eval_seconds"]) for m in history[-3:]]
    left = (epochs - history[-1]["epoch"]) * sum(recent) / len(recent)
    done = time.strftime("%a %H:%M", time.localtime(time.time() + left))
    hours, minutes = divmod(round(left / 60), 60)
    more = epochs - history[-1]["epoch"]
    return f"ETA: {hours} h {minutes:02d} min for {more} more epochs ({done})"


def header(device: torch.device, precision: Precision, model: torch.nn.Module) -> str:
    """What the run starts with: versions, device and threads, the precision, the model."""
    params = sum(p.numel() for p in model.parameters())
    config = getattr(model, "config", type(model).__name__)
    return (
        f"autoregressive {autoregressive.__version__}, torch {torch.__version__}, device "
        f"{device}, {torch.get_num_threads()} thread(s) per process\n"
        f"precision: {precision.name} ({precision.reason})\nmodel: {config}, {params:,} parameters"
    )


def done(run: Run, args: argparse.Namespace, *files: str) -> str:
    """The closing line: the last test NLL, the time taken, the files written."""
    last = run.history[-1]
    return (
        f"done: test NLL {last['test_nll']:.2f} nats ({last['test_bits_per_dim']:.4f} bits/dim)"
        f" after {last['epoch']} epochs; training "
        f"{sum(m['train_seconds'] for m in run.history):.0f} s, all epochs "
        f"{sum(m['epoch_seconds'] for m in run.history):.0f} s\n"
        f"files in {args.out}: {', '.join([*run.pictures, *files, 'metrics.json'])}"
    )
