"""The masked convolution of PixelCNN (van den Oord et al., 2016, https://arxiv.org/abs/1601.06759)."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from .masks import causal_mask, check_kernel_size, check_mask_type
from .memo import derived
from .stepping import Stepper
from .validation import check_bool, check_int, check_pair, check_tensor

__all__ = ["ConvKernel", "ConvStepper", "MaskedConv2d"]


class MaskedConv2d(nn.Conv2d):
    r"""A 2D convolution that only sees earlier pixels (and, for mask B, the current one).

    The weight used in every call is ``weight * mask`` (the stored weight is never changed), where
    ``mask`` is the buffer built by :func:`~autoregressive.causal_mask`. Padding is chosen so
    that the output has the input's height and width; the stride is always 1.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: odd kernel size, ``k`` or ``(kh, kw)``.
        mask_type: ``"A"`` (excludes the current pixel: use for the first layer) or ``"B"``
            (includes it: every later layer).
        data_channels: colour channels of the modelled image. With ``data_channels > 1`` both
            channel counts must be divisible by it and the channel-wise masks of the PixelCNN paper
            are used (R sees earlier pixels, G also the current R, B also the current R and G).
            Pixel-wise masks (a likelihood over whole pixels) are those of ``data_channels=1``
            whatever ``in_channels`` is (see :mod:`autoregressive.masks`).
        dilation: spacing between kernel taps, ``d`` or ``(dh, dw)``.
        bias: whether to add a learnable bias.
        device: device of the parameters and the mask.
        dtype: dtype of the parameters and the mask.

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`
        - Output: :math:`(N, C_{out}, H, W)`

    Example:
        >>> conv = MaskedConv2d(1, 8, 7, mask_type="A")
        >>> conv(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 8, 28, 28])
        >>> conv
        MaskedConv2d(1, 8, kernel_size=(7, 7), stride=(1, 1), padding=(3, 3), mask_type='A')
    """

    mask: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: str = "B",
        data_channels: int = 1,
        *,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        kh, kw = check_kernel_size(kernel_size)
        mask_type = check_mask_type(mask_type)
        dh, dw = check_pair("dilation", dilation, 1)
        data_channels = check_int("data_channels", data_channels, 1)
        bias = check_bool("bias", bias)
        for name, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
            channels = check_int(name, channels, 1)
            if channels % data_channels != 0:
                raise ValueError(
                    f"{name}={channels} is not divisible by data_channels={data_channels}: "
                    f"channel-wise masks split the channels into {data_channels} equal colour "
                    f"groups, so use a multiple of {data_channels}"
                )
        super().__init__(
            in_channels,
            out_channels,
            (kh, kw),
            stride=1,
            padding=((kh // 2) * dh, (kw // 2) * dw),
            dilation=(dh, dw),
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.mask_type = mask_type
        self.data_channels = data_channels
        factory: dict[str, Any] = {"device": self.weight.device, "dtype": self.weight.dtype}
        mask = causal_mask(out_channels, in_channels, (kh, kw), mask_type, data_channels)
        self.register_buffer("mask", mask.to(**factory), persistent=False)
        self._settings = self._current_settings()
        self.check_settings()

    def _current_settings(self) -> tuple:
        return (self.stride, self.padding, self.dilation, self.groups, self.padding_mode)

    def check_settings(self) -> None:
        """Refuse settings changed after construction that would break the mask's causality.

        Stride 1, the padding chosen at construction, its dilation, ``groups=1`` and zero
        padding are what the mask assumes. One comparison of plain attributes (no tensor is
        read), run by every ``forward``.

        Raises:
            ValueError: ``stride``, ``padding``, ``dilation``, ``groups`` or ``padding_mode``
                differs from construction.
        """
        if (
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.padding_mode,
        ) != self._settings:
            raise ValueError(
                "MaskedConv2d settings changed after construction: stride, padding, dilation, "
                f"groups, padding_mode must stay {self._settings} (now "
                f"{self._current_settings()}), or the layer would see future pixels; build a "
                "new MaskedConv2d instead"
            )

    def masked_weight(self) -> torch.Tensor:
        """The weight the convolution uses, ``weight * mask``: ``(C_out, C_in, kh, kw)``."""
        return self.weight * self.mask

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() != 4 or input.shape[1] != self.in_channels:
            raise ValueError(
                f"MaskedConv2d expects input of shape (N, {self.in_channels}, H, W), "
                f"got {tuple(input.shape)}"
            )
        self.check_settings()
        return self._conv_forward(input, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        s = super().extra_repr() + f", mask_type={self.mask_type!r}"
        if self.data_channels != 1:
            s += f", data_channels={self.data_channels}"
        return s

    def stepper(self, batch: int, width: int, cond: object = None) -> ConvStepper:
        """A :class:`ConvStepper` for cached sampling (``cond`` is unused)."""
        bias = self.bias.detach() if self.bias is not None else None
        kernel = derived(  # the same arrangement every call, until the weights change
            self, "kernel", lambda: ConvKernel(self.masked_weight().detach(), self.dilation)
        )
        return ConvStepper(kernel, bias, batch, width, reads_image=self.mask_type == "A")


def shift_up(ring: torch.Tensor) -> None:
    """Move the rows ``(R, ...)`` of a ring buffer up by one, in place (the last is kept)."""
    if ring.shape[0] == 2:
        ring[0].copy_(ring[1])
    elif ring.shape[0] > 2:  # overlapping source and target: through a copy
        ring[:-1] = ring[1:].clone()


#: a seed replaces the bias and the rows above: only a one-row, bias-free stepper takes one
_SEEDED = (
    "a seed replaces the bias and the rows above, so only a stepper of a one-row, bias-free "
    "convolution takes one; leave seed=None"
)
#: from this many input channels and output rows (``W * N``) on, :func:`ring_product`
#: multiplies tap by tap; below, a tap's product is too thin or too short to pay for its call
TAP_PRODUCTS_FROM = 16
TAP_PRODUCTS_FROM_ROWS = 1024


def ring_product(
    ring: torch.Tensor,
    matrix: torch.Tensor,
    seed: torch.Tensor | None,
    *,
    width: int,
    dw: int = 1,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``seed + windows @ matrix`` for a whole row: a convolution over a ring of input rows.

    The ring is column-major, so that the inputs of one kernel tap for the whole row are one
    contiguous ``(W * N, C_in)`` slab (``ring[a, t * dw : t * dw + W]``): from
    ``TAP_PRODUCTS_FROM`` input channels and ``TAP_PRODUCTS_FROM_ROWS`` output rows on, the
    product is one ``addmm`` per tap, accumulated in place, with no copy of the overlapping
    windows (on a 2-core CPU, 13-15% of the gated model's sampling time at batch 64). Below, a
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

    Returns:
        ``(W * N, C_out)``, column-major: row ``w * N + n`` is image ``n`` at column ``w``.
    """
    rows, _, n, c_in = ring.shape
    if c_in < TAP_PRODUCTS_FROM or width * n < TAP_PRODUCTS_FROM_ROWS:
        windows = gathered_windows(ring, width, matrix.shape[0] // (rows * c_in), dw)
        return _product(windows, matrix, seed, out)
    taps = matrix.split(c_in)  # (C_in, C_out) per tap, in the matrix's order
    kw = len(taps) // rows
    slabs = [
        ring[a, t * dw : t * dw + width].view(-1, c_in) for a in range(rows) for t in range(kw)
    ]
    result = _product(slabs[0], taps[0], seed, out)
    for slab, tap in zip(slabs[1:], taps[1:], strict=True):
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


def matrix_and_bias(conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution as ``[W^T; b]`` ``(C_in + 1, C_out)``, to multiply ``[x, 1]``.

    The weight is masked first if ``conv`` is a :class:`MaskedConv2d`; no bias gives zeros.
    """
    weight = conv.masked_weight() if isinstance(conv, MaskedConv2d) else conv.weight
    w = weight.detach()[:, :, 0, 0].t()  # (C_in, C_out)
    return torch.cat([w, bias_or_zeros(conv)[None]]).contiguous()


def row_seed(seed: torch.Tensor | None, start: int, width: int) -> torch.Tensor | None:
    """What the outputs at columns ``start .. W - 1`` of a row start from, for :func:`torch.addmm`.

    Args:
        seed: ``None``, a bias ``(C,)``, a bias per image ``(N, C)`` or a seed per image and
            column ``(N, W, C)``.
        start: the first column.
        width: ``W``.

    Returns:
        ``None`` or ``(C,)`` as they are; otherwise ``(N * (W - start), C)``.
    """
    if seed is None or seed.dim() == 1:
        return seed
    if seed.dim() == 2:  # (N, C): the same for every column
        seed = seed[:, None].expand(-1, width, -1)
    return seed[:, start:].reshape(-1, seed.shape[-1])


class ConvKernel:
    """A masked weight arranged as the matrices a :class:`ConvStepper` multiplies.

    Made once from the weight (checking its mask), it serves any number of steppers: a
    :class:`MaskedConv2d` keeps its own while its weights are unchanged
    (``autoregressive.memo.derived``).

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

    def step_row(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        n, w, _ = x.shape
        return self.row_product(x, start=start).view(n, w, -1)

    def row_product(
        self,
        x: torch.Tensor,
        seed: torch.Tensor | None = None,
        *,
        start: int = 0,
        out: torch.Tensor | None = None,
        relu: bool = False,
    ) -> torch.Tensor:
        """Outputs ``(N * M, C_out)`` at columns ``start ..``, after storing their inputs ``x``.

        ``x`` is ``(N, M, C_in)``, ``M = W - start``; ``seed`` ``(N * M, C_out)`` replaces the
        bias (one-row, bias-free convolutions only); ``out`` and ``relu`` as for :meth:`product`.
        """
        n, m, in_ch = x.shape
        if seed is None:
            seed = row_seed(self.row_seeds, start, self.width)
        elif self.ring is not None or self.bias is not None:  # two identity tests per step
            raise ValueError(_SEEDED)
        if self.pointwise:
            return self.product(x.reshape(n * m, in_ch), seed, out=out, relu=relu)
        self.row[:, self.row.shape[1] - m :].copy_(x)
        k = self.matrix.shape[0]  # (pad + 1) * C_in: column j's window starts at input j
        flat = self.row.view(n, -1)[:, start * in_ch :]
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
        if relu:  # one call: relu(addmm), bitwise the same as the two calls
            return torch._addmm_activation(seed, x, self.matrix, out=out)
        return torch.addmm(seed, x, self.matrix, out=out)

    def cache_nbytes(self) -> int:
        tensors = [self.row] + ([self.ring, self.seed_rows] if self.ring is not None else [])
        return sum(t.numel() * t.element_size() for t in tensors)
