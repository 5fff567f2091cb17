"""The pictures the example scripts write: image grids, completions and loss curves.

Every figure is a PNG written atomically (a crash never leaves half a picture); matplotlib is
imported only when something is drawn, on its non-interactive Agg backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from autoregressive.training import atomic_write


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
