"""Cached sampling of a causal convolution: its weight arranged as matrices, and its stepper.

The stepping counterpart of :class:`~autoregressive.MaskedConv2d`, which builds its
:class:`ConvStepper` with ``stepper()``; as torch keeps ``F.conv2d`` apart from ``nn.Conv2d``,
this module knows tensors only.
"""

from __future__ import annotations

import functools

import torch

from ..validation import check_pair, check_tensor
from .rows import ring_product, row_seeds, shift_up
from .stepping import Stepper

__all__ = ["ConvKernel", "ConvStepper"]

#: a seed replaces the bias and the rows above: only a one-row, bias-free stepper takes one
_SEEDED = (
    "a seed replaces the bias and the rows above, so only a stepper of a one-row, bias-free "
    "convolution takes one; leave seed=None"
)


class ConvKernel:
    """A masked weight arranged as the matrices a :class:`ConvStepper` multiplies.

    Made once from the weight (checking its mask), it serves any number of steppers: a
    :class:`~autoregressive.MaskedConv2d` keeps its own while its weights are unchanged
    (``autoregressive.sampling.memo.derived``).

    Args:
        weight: the masked weight ``(C_out, C_in, kh, kw)``; taps after the centre must be zero.
        dilation: ``(dh, dw)``, or one int for both.

    Raises:
        TypeError: ``weight`` is not a tensor, or ``dilation`` not an int or a pair of ints.
        ValueError: ``weight`` is not a floating-point ``(C_out, C_in, kh, kw)`` tensor, has
            nonzero taps after the centre, or ``dilation`` is below 1.

    Attributes:
        matrix: the current row's taps up to the centre, ``((pad + 1) * C_in, C_out)`` with
            ``pad = kw // 2 * dw`` (zeros between dilated taps).
        above_matrix: the rows above, ``(kh // 2 * kw * C_in, C_out)``; ``None`` for one row.
        reads_centre: whether the centre tap is not all zero (mask B, or colour groups).

    Example:
        >>> ConvKernel(MaskedConv2d(2, 4, 3, "A").masked_weight().detach()).matrix.shape
        torch.Size([4, 4])
    """

    def __init__(self, weight: torch.Tensor, dilation: int | tuple[int, ...] = (1, 1)) -> None:
        weight = check_tensor("weight", weight, ndim=4, floating=True, owner="ConvKernel")
        dh, dw = check_pair("dilation", dilation, 1, owner="ConvKernel")
        out_ch, in_ch, kh, kw = weight.shape
        ch, cw = kh // 2, kw // 2
        after = weight.flatten(2)[:, :, ch * kw + cw + 1 :]  # the taps after the centre
        if bool(after.any()):
            raise ValueError(
                "ConvKernel: the weight has nonzero taps after the centre (in raster order), so "
                "the layer would see future pixels; pass the masked weight, e.g. "
                "MaskedConv2d.masked_weight().detach()"
            )
        self.in_channels, self.out_channels = in_ch, out_ch
        self.kernel_size, self.dilation = (kh, kw), (dh, dw)
        self.pad = cw * dw  # inputs left of the centre that the current row's taps span
        self.pointwise = kh == 1 and kw == 1  # no neighbours: multiply the input directly
        self.reads_centre = bool(weight[:, :, ch, cw].any())  # else only write() stores it
        taps = weight[:, :, ch, : cw + 1].permute(2, 1, 0)  # (cw + 1, I, O): the current row
        if dw > 1:  # dilated: taps every dw inputs, zeros between them
            taps = weight.new_zeros(self.pad + 1, in_ch, out_ch).index_copy_(
                0, torch.arange(0, self.pad + 1, dw, device=weight.device), taps
            )
        self.matrix = taps.reshape(-1, out_ch)
        self.above_matrix: torch.Tensor | None = None
        if ch > 0:
            self.above_matrix = weight[:, :, :ch].permute(2, 3, 1, 0).reshape(-1, out_ch)


class ConvStepper(Stepper):
    """A causal convolution one pixel (or one row) at a time: one matrix product per step.

    The kernel's rows above the current one only read finished rows, so their part of every
    output of a row is computed once, at :meth:`begin_row` (``seeds``, bias included), by
    :func:`ring_product` over a column-major ring of the last ``kh // 2 * dh`` input rows,
    ``(kh // 2 * dh, pad + W + pad, N, C_in)``. Per pixel only the current row's taps are
    left: the current row is kept as ``(N, pad + W, C_in)``, so that the taps of column ``j``
    are one contiguous ``(N, (pad + 1) * C_in)`` view (prepared once per column), multiplied by
    a ``(K, C_out)`` matrix. The view also covers the current pixel, whose weight is zero unless
    the mask keeps it; a value not yet written there is stale but finite, so it adds exactly 0.

    Args:
        weight: the masked weight ``(C_out, C_in, kh, kw)``; taps after the centre must be zero.
            Or a :class:`ConvKernel` made from it (which carries its own dilation).
        bias: ``(C_out,)``, ``(N, C_out)`` or ``None``.
        batch: images sampled at once, ``N``.
        width: image width ``W``.
        dilation: ``(dh, dw)``.
        reads_image: whether this is a mask-A first layer.

    :meth:`step_row` computes a whole row the same way, as one product of ``(N * W, K)``
    overlapping windows.

    Shape:
        - :meth:`step`: ``(N, C_in) -> (N, C_out)``; :meth:`step_row`:
          ``(N, W, C_in) -> (N, W, C_out)``

    Example:
        >>> stepper = MaskedConv2d(1, 4, 3, "A").stepper(batch=2, width=5)
        >>> stepper.begin_row(0)
        >>> stepper.step(0, torch.zeros(2, 1)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        weight: torch.Tensor | ConvKernel,
        bias: torch.Tensor | None,
        batch: int,
        width: int,
        *,
        dilation: tuple[int, ...] = (1, 1),
        reads_image: bool = False,
    ) -> None:
        kernel = weight if isinstance(weight, ConvKernel) else ConvKernel(weight, dilation)
        (kh, kw), (dh, _) = kernel.kernel_size, kernel.dilation
        in_ch, pad, like = kernel.in_channels, kernel.pad, kernel.matrix
        self.bias, self.reads_image, self.width = bias, reads_image, width
        self.dilation, self.kernel_width = kernel.dilation, kw
        self.pointwise, self.reads_centre = kernel.pointwise, kernel.reads_centre
        self.matrix = kernel.matrix  # (K, O), K = (pad + 1) * I
        self.row = like.new_zeros(batch, pad + width, in_ch)  # (N, pad + W, I)
        self.ring: torch.Tensor | None = None
        self.row_seeds = bias  # what a whole row starts from: the bias, or the rows above
        if kernel.above_matrix is not None:  # rows above: a ring (ch * dh, W + 2 pad, N, I)
            self.ring = like.new_zeros(kh // 2 * dh, width + 2 * pad, batch, in_ch)
            self.above_ring = self.ring[::dh]  # kernel row a: the row a * dh up from the oldest
            self.above_matrix = kernel.above_matrix  # (ch * kw * I, O)
            self.above_seed = bias  # (O,), or a bias per image (N, O) as (W * N, O)
            if bias is not None and bias.dim() == 2:
                self.above_seed = bias.repeat(width, 1)
            self.seed_rows = like.new_zeros(width, batch, kernel.out_channels)  # (W, N, O)
            self.row_seeds = self.seed_rows.transpose(0, 1)  # (N, W, O), for row_seed

    # per-column views, made on first use (sampling by whole rows needs none of them)
    @functools.cached_property
    def windows(self) -> list[torch.Tensor]:
        """Column ``j``'s taps in the current row, ``(N, (pad + 1) * C_in)``, for every ``j``."""
        n, k, in_ch = self.row.shape[0], self.matrix.shape[0], self.row.shape[2]
        flat = self.row.view(n, -1)
        return [flat[:, j * in_ch : j * in_ch + k] for j in range(self.width)]

    @functools.cached_property
    def inputs(self) -> list[torch.Tensor]:
        """Column ``j``'s input in the current row, ``(N, C_in)``, for every ``j``."""
        pad = self.row.shape[1] - self.width
        return [self.row[:, pad + j] for j in range(self.width)]

    @functools.cached_property
    def seeds(self) -> list[torch.Tensor | None]:
        """What column ``j``'s output starts from: the bias, or the rows above with it."""
        if self.ring is None:
            return [self.bias] * self.width
        return list(self.seed_rows.unbind(0))

    def input_slot(self, j: int) -> torch.Tensor:
        """Where column ``j``'s input is kept, ``(N, C_in)``, for the layer that produces it.

        The stepper of a block that owns this convolution may write the input there directly
        (as the ``out=`` of the product that makes it) and then call :meth:`compute`, instead
        of handing it to :meth:`step`, which would copy it.
        """
        return self.inputs[j]

    def begin_row(self, i: int) -> None:
        if self.ring is None:
            return
        ring, row = self.ring, self.row
        shift_up(ring)  # then append the row just finished
        ring[-1, : row.shape[1]] = row.transpose(0, 1)
        self._above()

    def _above(self) -> None:
        """``seed_rows``: bias plus the rows above, for every column of the new row."""
        out = self.seed_rows.view(-1, self.seed_rows.shape[2])  # (W * N, O)
        ring, matrix, seed = self.above_ring, self.above_matrix, self.above_seed
        ring_product(ring, matrix, seed, width=self.width, dw=self.dilation[1], out=out)

    def write(self, j: int, x: torch.Tensor) -> None:
        self.inputs[j].copy_(x)

    steps_rows = True
    steps_subsets = True

    def step_row(
        self, x: torch.Tensor, start: int = 0, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        n, w, _ = x.shape
        return self.row_product(x, start=start, images=images).view(n, w, -1)

    def row_product(
        self,
        x: torch.Tensor,
        seed: torch.Tensor | None = None,
        *,
        start: int = 0,
        out: torch.Tensor | None = None,
        relu: bool = False,
        images: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Outputs ``(N * M, C_out)`` at columns ``start ..``, after storing their inputs ``x``.

        ``x`` is ``(N, M, C_in)``, ``M = W - start``; ``seed`` ``(N * M, C_out)`` replaces the
        bias (one-row, bias-free convolutions only); ``out`` and ``relu`` as for :meth:`product`;
        ``images`` as for :meth:`Stepper.step_row` (``x`` then holds ``N'`` images).
        """
        n, m, _ = x.shape
        if seed is not None:
            if self.ring is not None or self.bias is not None:  # two identity tests per step
                raise ValueError(_SEEDED)
            return self._product_of(x, seed, start, out, relu, images)
        seeds = row_seeds(self.row_seeds, start, self.width, images)
        if seeds is None or seeds.dim() == 1:
            return self._product_of(x, seeds, start, out, relu, images)
        y = self._product_of(x, None, start, out, False, images)  # (N' * M, C_out)
        y.view(n, m, -1).add_(seeds)  # seeds (N', M, C_out): added, not copied into y first
        return y.clamp_min_(0) if relu else y

    def _product_of(
        self,
        x: torch.Tensor,
        seed: torch.Tensor | None,
        start: int,
        out: torch.Tensor | None,
        relu: bool,
        images: torch.Tensor | None,
    ) -> torch.Tensor:
        """:meth:`row_product` with its seed ``None``, ``(C_out,)`` or ``(N' * M, C_out)``."""
        n, m, in_ch = x.shape
        if self.pointwise:
            return self.product(x.reshape(n * m, in_ch), seed, out=out, relu=relu)
        row = self.row[:, start:]  # (N, pad + M, C_in): the inputs the columns read
        if images is None:
            row[:, -m:].copy_(x)
        else:  # store the images' inputs, then read their rows alone
            self.row[images, self.row.shape[1] - m :] = x
            row = row.index_select(0, images)  # (N', pad + M, C_in)
        k = self.matrix.shape[0]  # (pad + 1) * C_in: column j's window starts at input j
        flat = row.flatten(1)  # (N', (pad + M) * C_in)
        windows = flat.as_strided((n, m, k), (flat.stride(0), in_ch, 1), flat.storage_offset())
        return self.product(windows.reshape(n * m, k), seed, out=out, relu=relu)

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        if self.pointwise:
            return self.product(x, self.bias)
        if self.reads_centre:
            self.inputs[j].copy_(x)
        return self.compute(j)

    def compute(
        self,
        j: int,
        seed: torch.Tensor | None = None,
        *,
        out: torch.Tensor | None = None,
        relu: bool = False,
    ) -> torch.Tensor:
        """Output ``(N, C_out)`` at column ``j`` (inputs written beforehand); see :meth:`product`.

        ``seed`` ``(N, C_out)`` replaces the bias; it is only for convolutions of one row.
        """
        if seed is None:
            seed = self.seeds[j]
        elif self.ring is not None or self.bias is not None:  # two identity tests per step
            raise ValueError(_SEEDED)
        return self.product(self.windows[j], seed, out=out, relu=relu)

    def product(
        self,
        x: torch.Tensor,
        seed: torch.Tensor | None,
        *,
        out: torch.Tensor | None = None,
        relu: bool = False,
    ) -> torch.Tensor:
        """``seed + x @ matrix`` ``(N, C_out)``, then ``relu`` if asked, into ``out`` if given."""
        if seed is None:
            y = torch.mm(x, self.matrix, out=out)
            return y.clamp_min_(0) if relu else y
        y = torch.addmm(seed, x, self.matrix, out=out)
        return y.clamp_min_(0) if relu else y

    def cache_nbytes(self) -> int:
        tensors = [self.row] + ([self.ring, self.seed_rows] if self.ring is not None else [])
        return sum(t.numel() * t.element_size() for t in tensors)
