"""Ring buffers of input rows and the products over them: the row machinery of the steppers.

A stepper keeps the input rows its kernel still reads in a column-major *ring*
``(R, W + pad, N, C_in)`` and computes a whole row of a convolution over it as one product
(:func:`ring_product`), or as one ``addmm`` per kernel tap. The helpers here know tensors and
torch's convolutions only, never a layer of this package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import nn

__all__ = [
    "TAP_PRODUCTS_FROM",
    "TAP_PRODUCTS_FROM_ROWS",
    "bias_or_zeros",
    "gathered_windows",
    "matrix_and_bias",
    "ring_product",
    "row_seed",
    "row_seeds",
    "shift_up",
    "tap_products",
]


def shift_up(ring: torch.Tensor) -> None:
    """Move the rows ``(R, ...)`` of a ring buffer up by one, in place (the last is kept)."""
    if ring.shape[0] == 2:
        ring[0].copy_(ring[1])
    elif ring.shape[0] > 2:  # overlapping source and target: through a copy
        ring[:-1] = ring[1:].clone()


#: from this many input channels and output rows (``W * N``) on, :func:`ring_product`
#: multiplies tap by tap; below, a tap's product is too thin or too short to pay for its call
TAP_PRODUCTS_FROM = 16
TAP_PRODUCTS_FROM_ROWS = 1024

#: how :func:`ring_product` multiplies while a sampler runs: ``None`` by the sizes above
_TAPS: ContextVar[bool | None] = ContextVar("tap_products", default=None)


@contextlib.contextmanager
def tap_products(taps: bool | None) -> Iterator[None]:
    """Choose how :func:`ring_product` multiplies within the block.

    Tap by tap (``True``), over gathered windows (``False``) or as the sizes say (``None``):
    how ``CachedSampler(tap_products=...)`` reaches the steppers, for the duration of one call,
    without a change to the stepping protocol.

    Example:
        >>> ring, matrix = torch.ones(1, 4, 2, 3), torch.ones(6, 5)
        >>> with tap_products(True):
        ...     ring_product(ring, matrix, None, width=3).shape
        torch.Size([6, 5])
    """
    token = _TAPS.set(taps)
    try:
        yield
    finally:
        _TAPS.reset(token)


def ring_product(
    ring: torch.Tensor,
    matrix: torch.Tensor,
    seed: torch.Tensor | None,
    *,
    width: int,
    dw: int = 1,
    out: torch.Tensor | None = None,
    taps: bool | None = None,
) -> torch.Tensor:
    """``seed + windows @ matrix`` for a whole row: a convolution over a ring of input rows.

    The ring is column-major, so that the inputs of one kernel tap for the whole row are one
    contiguous ``(W * N, C_in)`` slab (``ring[a, t * dw : t * dw + W]``): from
    ``TAP_PRODUCTS_FROM`` input channels and ``TAP_PRODUCTS_FROM_ROWS`` output rows on, the
    product is one ``addmm`` per tap, accumulated in place, with no copy of the overlapping
    windows (a copy that is a large part of a row's time at large batches). Below, a
    tap's product is too thin (``K = C_in``) or its call costs more than the copy, and the
    windows are gathered into one ``(W * N, R * kw * C_in)`` matrix first (the slow twin:
    :func:`gathered_windows`).

    Args:
        ring: the input rows the kernel reads, ``(R, W + (kw - 1) * dw, N, C_in)``; kernel row
            ``a`` reads ``ring[a]``.
        matrix: ``(R * kw * C_in, C_out)``, rows ordered by kernel row, tap, input channel.
        seed: what the outputs start from: ``None``, ``(C_out,)`` or ``(W * N, C_out)``.
        width: ``W``.
        dw: the horizontal dilation.
        out: ``(W * N, C_out)`` to write to.
        taps: multiply tap by tap (``True``) or over gathered windows (``False``); ``None``
            (default): as :func:`tap_products` says, else by the sizes above.

    Returns:
        ``(W * N, C_out)``, column-major: row ``w * N + n`` is image ``n`` at column ``w``.
    """
    rows, _, n, c_in = ring.shape
    by_tap = _TAPS.get() if taps is None else taps
    if by_tap is None:
        by_tap = c_in >= TAP_PRODUCTS_FROM and width * n >= TAP_PRODUCTS_FROM_ROWS
    if not by_tap:
        windows = gathered_windows(ring, width, matrix.shape[0] // (rows * c_in), dw)
        return _product(windows, matrix, seed, out)
    per_tap = matrix.split(c_in)  # (C_in, C_out) per tap, in the matrix's order
    kw = len(per_tap) // rows
    slabs = [
        ring[a, t * dw : t * dw + width].view(-1, c_in) for a in range(rows) for t in range(kw)
    ]
    result = _product(slabs[0], per_tap[0], seed, out)
    for slab, tap in zip(slabs[1:], per_tap[1:], strict=True):
        result.addmm_(slab, tap)
    return result


def gathered_windows(ring: torch.Tensor, width: int, kw: int, dw: int = 1) -> torch.Tensor:
    """The overlapping windows of a ring ``(R, W + (kw - 1) * dw, N, C_in)``, as one copy.

    Returns ``(W * N, R * kw * C_in)``: row ``w * N + n`` holds image ``n``'s inputs to column
    ``w``, ordered by kernel row, tap, input channel.
    """
    rows, _, n, c_in = ring.shape
    s = ring.stride()
    windows = ring.as_strided(  # (W, N, R, kw, C_in): overlapping, a view
        (width, n, rows, kw, c_in), (s[1], s[2], s[0], dw * s[1], s[3]), ring.storage_offset()
    )
    return windows.reshape(width * n, -1)


def _product(
    x: torch.Tensor, matrix: torch.Tensor, seed: torch.Tensor | None, out: torch.Tensor | None
) -> torch.Tensor:
    """``seed + x @ matrix`` (``x @ matrix`` without a seed), into ``out`` if given."""
    if seed is None:
        return torch.mm(x, matrix, out=out)
    return torch.addmm(seed, x, matrix, out=out)


def bias_or_zeros(conv: nn.Conv2d) -> torch.Tensor:
    """The convolution's bias ``(C_out,)``, detached; zeros if it has none."""
    return conv.bias.detach() if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)


def matrix_and_bias(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution as ``[W^T; b]`` ``(C_in + 1, C_out)``, to multiply ``[x, 1]``.

    Args:
        weight: ``(C_out, C_in, 1, 1)``, masked already if the convolution is masked.
        bias: ``(C_out,)`` (zeros for none: :func:`bias_or_zeros`).
    """
    w = weight.detach()[:, :, 0, 0].t()  # (C_in, C_out)
    return torch.cat([w, bias[None]]).contiguous()


def row_seed(
    seed: torch.Tensor | None, start: int, width: int, images: torch.Tensor | None = None
) -> torch.Tensor | None:
    """What the outputs at columns ``start .. W - 1`` of a row start from, for :func:`torch.addmm`.

    Args:
        seed: ``None``, a bias ``(C,)``, a bias per image ``(N, C)`` or a seed per image and
            column ``(N, W, C)``.
        start: the first column.
        width: ``W``.
        images: the batch indices ``(N',)`` of the images computed, or ``None`` for all.

    Returns:
        ``None`` or ``(C,)`` as they are; otherwise ``(N' * (W - start), C)``.
    """
    seeds = row_seeds(seed, start, width, images)
    return seeds if seeds is None or seeds.dim() == 1 else seeds.reshape(-1, seeds.shape[-1])


def row_seeds(
    seed: torch.Tensor | None, start: int, width: int, images: torch.Tensor | None = None
) -> torch.Tensor | None:
    """:func:`row_seed` by image and column: ``(N', W - start, C)``, a view where it can be.

    ``None`` and a bias ``(C,)`` are returned as they are.
    """
    if seed is None or seed.dim() == 1:
        return seed
    if seed.dim() == 2:  # (N, C): the same for every column
        seed = seed[:, None].expand(-1, width, -1)
    seed = seed[:, start:]  # (N, M, C)
    return seed if images is None else seed.index_select(0, images)
