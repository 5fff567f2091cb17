"""Draw the figures of the concept pages from the library's own code.

Run by ``conf.py`` at the start of every Sphinx build, or by hand::

    .venv/bin/python docs/figures.py [OUTPUT_DIR]

Nothing here is drawn by hand: the masks come from :func:`autoregressive.causal_mask`, the
receptive fields from the gradients of real :class:`autoregressive.PixelCNN` networks, and the
ring-buffer diagram from the masks and the cache geometry of the cached sampler, the attention
mask from the one :class:`autoregressive.CausalSelfAttention2d` passes to its attention.
The PNGs go to ``docs/_generated/figures/`` (git-ignored) unless told otherwise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch, Rectangle

from autoregressive import PixelCNN, PixelCNNConfig, causal_mask
from autoregressive.sampling.attention_stepper import earlier_positions

DEFAULT_OUT = Path(__file__).resolve().parent / "_generated" / "figures"

# one palette for every figure
KEPT = "#3b6ea8"  # a weight / input pixel that is used
DROPPED = "#eef1f5"  # masked out / not seen
CENTRE = "#f2a541"  # the pixel being predicted
BLIND = "#d1495b"  # blind spot
FUTURE = "#ffffff"
GRID = "#9aa5b1"
COLOURS = ("R", "G", "B")


def _grid(ax: plt.Axes, values: np.ndarray, colours: list[str], title: str = "") -> None:
    """Draw an integer-valued ``(H, W)`` array as coloured cells with grid lines."""
    h, w = values.shape
    ax.imshow(values, cmap=ListedColormap(colours), vmin=0, vmax=len(colours) - 1)
    ax.set_xticks(np.arange(-0.5, w, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, h, 1), minor=True)
    ax.grid(which="minor", color=GRID, linewidth=0.6)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    if title:
        ax.set_title(title, fontsize=10)


def _legend_and_save(fig: plt.Figure, handles: list[Patch], out: Path, name: str) -> Path:
    """Put the legend under the panels and write the figure to ``out / name``."""
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=len(handles),
        fontsize=9,
        frameon=False,
    )
    path = out / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def masks_figure(out: Path) -> Path:
    """Masks A and B of a 5x5 kernel, and the channel-wise RGB masks, from ``causal_mask``."""
    k = 5
    c = k // 2
    fig = plt.figure(figsize=(10.5, 6.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.25])

    axes = top.subplots(1, 2)
    for ax, mask_type in zip(axes, "AB", strict=True):
        mask = causal_mask(1, 1, k, mask_type)[0, 0].numpy().astype(int)  # (k, k)
        cells = mask.copy()
        cells[c, c] = 2 if mask[c, c] else 0
        _grid(ax, cells, [DROPPED, KEPT, CENTRE], f"mask {mask_type}, 5x5, one channel")
        ax.add_patch(Rectangle((c - 0.5, c - 0.5), 1, 1, fill=False, ec=CENTRE, lw=2.5))
    top.legend(
        handles=[
            Patch(color=KEPT, label="weight kept"),
            Patch(color=DROPPED, label="weight zeroed"),
            Patch(facecolor=CENTRE, label="centre (current pixel) kept"),
            Patch(facecolor="none", ec=CENTRE, lw=2, label="centre outline (empty: zeroed)"),
        ],
        loc="outside right center",
        fontsize=9,
        frameon=False,
    )

    # channel-wise masks: out channel rows (R, G, B) x in channel columns (R, G, B), each 5x5
    sub = bottom.subfigures(1, 2)
    for sf, mask_type in zip(sub, "AB", strict=True):
        mask = causal_mask(3, 3, k, mask_type, data_channels=3).numpy().astype(int)  # (3, 3, k, k)
        grids = sf.subplots(3, 3)
        for o in range(3):
            for i in range(3):
                cells = mask[o, i].copy()
                cells[c, c] = 2 if mask[o, i, c, c] else 0
                ax = grids[o, i]
                _grid(ax, cells, [DROPPED, KEPT, CENTRE])
                ax.add_patch(Rectangle((c - 0.5, c - 0.5), 1, 1, fill=False, ec=CENTRE, lw=1.5))
                if o == 0:
                    ax.set_title(f"in {COLOURS[i]}", fontsize=9)
                if i == 0:
                    ax.set_ylabel(f"out {COLOURS[o]}", fontsize=9)
        sf.suptitle(f"mask {mask_type}, 3 colour channels", fontsize=10)

    path = out / "masks.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def dependency_set(config: PixelCNNConfig, size: int, pixel: tuple[int, int]) -> np.ndarray:
    """Input pixels whose gradient w.r.t. one output logit is non-zero, a bool ``(H, W)`` array.

    All weights are made small and positive, so that no ReLU zeroes a path and no gate
    saturates, and the result is OR-ed over a few random inputs.
    """
    torch.manual_seed(0)
    model = PixelCNN(config, dtype=torch.float64)
    for p in model.parameters():
        p.data = p.data.abs() * 0.1 + 0.001  # small: no tanh saturates to exactly 1
    seen = torch.zeros(size, size, dtype=torch.bool)
    for _ in range(3):
        x = torch.rand(1, 1, size, size, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(model.network(x)[0, 0, pixel[0], pixel[1]], x)
        seen |= grad[0, 0] != 0  # (H, W)
    return seen.numpy()


def receptive_field_figure(out: Path) -> Path:
    """Residual stack (with its blind spot) next to a gated stack of the same depth and kernels."""
    size, pixel = 13, (9, 6)
    # the same depth of 3x3 masked layers: a residual net has an input layer before its blocks,
    # a gated stack counts its first (mask-A) block among num_blocks
    common = {"hidden_channels": 16, "input_kernel_size": 3, "kernel_size": 3}
    residual = dependency_set(PixelCNNConfig(block="residual", num_blocks=4, **common), size, pixel)
    gated = dependency_set(PixelCNNConfig(block="gated", num_blocks=5, **common), size, pixel)
    blind = gated & ~residual

    rows, cols = np.indices((size, size))
    past = (rows < pixel[0]) | ((rows == pixel[0]) & (cols < pixel[1]))
    assert not (residual & ~past).any() and not (gated & ~past).any(), "a network is not causal"

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 5.0), layout="constrained")
    palette = [FUTURE, DROPPED, KEPT, BLIND, CENTRE]
    for ax, field, name in (
        (axes[0], residual, "residual: input layer + 4 blocks"),
        (axes[1], gated, "gated: 5 blocks"),
    ):
        cells = np.where(past, 1, 0)  # 0: future, 1: past but not seen
        cells[field] = 2
        if field is residual:
            cells[blind] = 3
        cells[pixel] = 4
        _grid(ax, cells, palette)
        ax.set_title(f"{name}: {int(field.sum())} input pixels", fontsize=10)
    fig.suptitle(
        "Input pixels that reach the output at the orange pixel (non-zero gradient); "
        "five 3x3 masked layers deep",
        fontsize=10,
    )
    handles = [
        Patch(color=KEPT, label="reaches the output"),
        Patch(color=BLIND, label=f"blind spot ({int(blind.sum())} pixels)"),
        Patch(color=DROPPED, ec=GRID, label="earlier pixel, out of reach"),
        Patch(facecolor=FUTURE, ec=GRID, label="later pixel (never seen)"),
        Patch(color=CENTRE, label="output pixel"),
    ]
    return _legend_and_save(fig, handles, out, "receptive_field.png")


def ring_buffer_figure(out: Path) -> Path:
    """One 5x5 mask-B layer of the cached sampler: the rows it keeps and the taps it reads."""
    k, width, height = 5, 10, 7
    pixel = (4, 6)  # (row, column) being computed
    mask = causal_mask(1, 1, k, "B")[0, 0].numpy()  # (k, k)
    reach = np.flatnonzero(mask.any(1))  # kernel rows with a tap: those above and the centre
    rows = int(reach.max() - reach.min() + 1)  # the ring: kh // 2 + 1 rows
    pad = k // 2

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 4.4), layout="constrained", width_ratios=[width, width + 2 * pad]
    )
    # left: the layer's input over the whole image, in raster order
    i0, j0 = pixel
    r, c = np.indices((height, width))
    done = (r < i0) | ((r == i0) & (c <= j0))
    cells = np.where(done, 1, 0)
    ring_rows = (r > i0 - rows) & (r <= i0)
    cells[ring_rows & done] = 2
    _grid(left, cells, [FUTURE, DROPPED, KEPT])
    left.add_patch(
        Rectangle((-0.5, i0 - rows + 0.5), width, rows, fill=False, ec=CENTRE, lw=2.5, ls="--")
    )
    left.set_title("layer input over the image (computed so far)", fontsize=10)

    # right: the ring buffer, (rows, W + 2 pad), with the kernel taps at the current pixel
    buf = np.zeros((rows, width + 2 * pad), dtype=int)
    for slot in range(rows):
        image_row = i0 - (rows - 1) + slot
        for col in range(width):
            if image_row >= 0 and (image_row < i0 or col <= j0):
                buf[slot, col + pad] = 1
    buf[:, :pad] = 3
    buf[:, pad + width :] = 3
    _grid(right, buf, [FUTURE, KEPT, KEPT, DROPPED])
    for a in range(rows):
        for b in range(k):
            if mask[k // 2 - (rows - 1) + a, b]:
                x = j0 + b  # padded column of tap b
                right.add_patch(Rectangle((x - 0.5, a - 0.5), 1, 1, fill=False, ec=CENTRE, lw=2.5))
    labels = [f"row i-{rows - 1 - a}" if a < rows - 1 else "row i" for a in range(rows)]
    right.set_yticks(range(rows), labels)
    right.tick_params(labelleft=True)
    right.set_title(
        f"ring buffer: {rows} rows x (W + 2*{pad}) columns; outlined: the taps of mask B",
        fontsize=10,
    )
    handles = [
        Patch(color=KEPT, label="input already computed"),
        Patch(facecolor=FUTURE, ec=GRID, label="not computed yet"),
        Patch(color=DROPPED, label="zero padding"),
        Patch(facecolor="none", ec=CENTRE, lw=2, label="rows kept / taps read"),
    ]
    return _legend_and_save(fig, handles, out, "ring_buffer.png")


def attention_figure(out: Path) -> Path:
    """The attention mask of a 4x4 image, and a PixelSNAIL's field next to a gated stack's."""
    side = 4
    allowed = earlier_positions(torch.arange(side * side), side * side).numpy()  # (L, L)
    size, pixel = 13, (9, 6)
    common = {"hidden_channels": 16, "input_kernel_size": 3, "kernel_size": 3}
    gated = dependency_set(PixelCNNConfig(block="gated", num_blocks=3, **common), size, pixel)
    snail = dependency_set(
        PixelCNNConfig(block="snail", num_blocks=1, attention_every=1, **common), size, pixel
    )
    rows, cols = np.indices((size, size))
    past = (rows < pixel[0]) | ((rows == pixel[0]) & (cols < pixel[1]))
    assert not (snail & ~past).any() and (snail == past).all(), "attention misses a pixel"

    fig, axes = plt.subplots(
        1, 3, figsize=(13, 4.8), layout="constrained", width_ratios=[side * side, size, size]
    )
    _grid(axes[0], allowed.astype(int), [DROPPED, KEPT])
    labels = [f"({i},{j})" for i in range(side) for j in range(side)]
    axes[0].set_xticks(range(side * side), labels, rotation=90, fontsize=7)
    axes[0].set_yticks(range(side * side), labels, fontsize=7)
    axes[0].tick_params(labelbottom=True, labelleft=True)
    axes[0].set_xlabel("key pixel", fontsize=9)
    axes[0].set_ylabel("query pixel", fontsize=9)
    axes[0].set_title("attention mask of a 4x4 image: strictly earlier pixels", fontsize=10)
    for ax, field, name in (
        (axes[1], gated, "gated: 3 blocks"),
        (axes[2], snail, "snail: 1 block (conv + attention)"),
    ):
        cells = np.where(past, 1, 0)
        cells[field] = 2
        cells[pixel] = 3
        _grid(ax, cells, [FUTURE, DROPPED, KEPT, CENTRE])
        ax.set_title(f"{name}: {int(field.sum())} input pixels", fontsize=10)
    handles = [
        Patch(color=KEPT, label="attended / reaches the output"),
        Patch(color=DROPPED, ec=GRID, label="masked / earlier pixel out of reach"),
        Patch(facecolor=FUTURE, ec=GRID, label="later pixel (never seen)"),
        Patch(color=CENTRE, label="output pixel"),
    ]
    return _legend_and_save(fig, handles, out, "attention.png")


def main(out: Path = DEFAULT_OUT) -> list[Path]:
    """Write every figure into ``out`` and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    return [
        masks_figure(out),
        receptive_field_figure(out),
        ring_buffer_figure(out),
        attention_figure(out),
    ]


if __name__ == "__main__":
    start = time.perf_counter()
    paths = main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
    print(f"wrote {len(paths)} figures in {time.perf_counter() - start:.1f} s:")
    for p in paths:
        print(f"  {p}")
