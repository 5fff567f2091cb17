"""Gated PixelCNN blocks without a blind spot.

van den Oord et al., *Conditional Image Generation with PixelCNN Decoders*, 2016,
https://arxiv.org/abs/1606.05328.

Two stacks run side by side. The **vertical** stack sees every pixel in the rows strictly above
the current one (within the receptive field, all columns); it uses unmasked convolutions whose
kernel is cropped to the rows above, so there is nothing to mask and nothing wasted. The
**horizontal** stack sees the pixels to the left in the current row (a ``1 x k`` masked
convolution) and receives the vertical stack's features through a 1x1 *link*. Together they
cover the whole causal past, with no blind spot::

    receptive field of one output after two 3x3 layers (o = output pixel, x = seen)
    x x x x x
    x x x x x
    x x o . .

Both stacks use the gated activation ``tanh(a) * sigmoid(b)``; an optional conditioning vector
(``V^T h``) and an optional conditioning map aligned with the image (``V * s``, a 1x1
convolution) are added to ``a`` and ``b`` of both stacks. The horizontal stack has a residual
connection (from the second block on) and a skip output that the network sums.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .conditioning import check_cond, row_parts
from .conv import (
    ConvKernel,
    ConvStepper,
    MaskedConv2d,
    bias_or_zeros,
    matrix_and_bias,
    ring_product,
    row_seed,
    shift_up,
)
from .masks import check_kernel_size, check_mask_type
from .memo import derived
from .stepping import Stepper
from .validation import check_bool, check_int, check_optional_int, check_tensor

__all__ = ["GatedBlock", "GatedStack", "gate"]


def gate(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Gated activation ``tanh(a) * sigmoid(b)``.

    The channels along ``dim`` are taken in interleaved pairs ``(a_0, b_0, a_1, b_1, ...)``, so
    that channel ``c`` of the result comes from neighbouring channels ``2c`` and ``2c + 1``; this
    keeps the colour groups of a channel-wise masked input contiguous.

    Args:
        x: tensor with an even size ``2C`` along ``dim``.
        dim: the channel dimension.

    Returns:
        Tensor of the same shape as ``x`` but with size ``C`` along ``dim``.

    Example:
        >>> gate(torch.zeros(2, 8, 4, 4)).shape
        torch.Size([2, 4, 4, 4])
    """
    check_tensor("x", x, owner="gate")
    dim = check_int("dim", dim, owner="gate")
    if not -x.dim() <= dim < x.dim() or x.shape[dim] % 2:
        raise ValueError(
            f"gate needs a tensor with an even size along dim={dim}, got shape {tuple(x.shape)}"
        )
    return _gate(x, dim)


def _gate(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """:func:`gate` without its checks, for the blocks (whose widths are even by construction)."""
    pairs = x.unflatten(dim, (-1, 2))  # (..., C, 2, ...)
    a, b = pairs.unbind(dim + 1 if dim >= 0 else dim)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedBlock(nn.Module):
    r"""One layer of a Gated PixelCNN: a vertical and a horizontal stack with a link.

    With ``mask_type="A"`` the block is the network's first layer: both stacks read the image,
    the vertical convolution covers only the rows above, the horizontal one only the pixels to the
    left (and, for colour, the earlier channels of the current pixel), and there is no residual
    connection. With ``mask_type="B"`` the vertical convolution covers the rows above *and* the
    current row of the previous vertical features (which themselves only see rows above), the
    horizontal one includes the current pixel, and the horizontal stack is residual.

    Args:
        in_channels: channels of the inputs ``v`` and ``h`` (the image's channels for mask A).
        channels: channels of the outputs.
        kernel_size: odd kernel size ``k`` or ``(kh, kw)`` with ``kh >= 3``; the vertical stack
            reaches ``kh // 2`` rows up and ``kw // 2`` columns either side, the horizontal stack
            ``kw // 2`` columns to the left.
        mask_type: ``"A"`` for the first layer, ``"B"`` for the others.
        data_channels: colour groups of the masks: the image's channels for channel-wise
            masks, 1 for grey or pixel-wise masks (see :mod:`autoregressive.masks`).
        cond_channels: size of an optional conditioning vector added inside both gates.
        spatial_channels: channels of an optional conditioning map ``(N, C_map, H, W)``, added
            inside both gates through 1x1 convolutions.
        horizontal_output: whether to compute the horizontal output ``h``; the last block of a
            stack only needs its skip output, and without it has no parameter left unused.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``v`` and ``h`` :math:`(N, C_{in}, H, W)`; ``cond`` a vector
          :math:`(N, C_{cond})` or a :class:`~autoregressive.Conditioning` (vector and/or map
          :math:`(N, C_{map}, H, W)`)
        - Output: ``(v, h, skip)``, each :math:`(N, C, H, W)`; ``h`` is ``None`` when
          ``horizontal_output=False``

    Example:
        >>> block = GatedBlock(1, 16, 7, mask_type="A")
        >>> x = torch.zeros(2, 1, 28, 28)
        >>> [t.shape[1] for t in block(x, x)]
        [16, 16, 16]
    """

    conditional: ClassVar[bool] = True

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int | tuple[int, int] = 3,
        mask_type: str = "B",
        data_channels: int = 1,
        *,
        cond_channels: int | None = None,
        spatial_channels: int | None = None,
        horizontal_output: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kh, kw = check_kernel_size(kernel_size)
        mask_type = check_mask_type(mask_type)
        in_channels = check_int("in_channels", in_channels, 1)
        channels = check_int("channels", channels, 1)
        data_channels = check_int("data_channels", data_channels, 1)
        cond_channels = check_optional_int("cond_channels", cond_channels, 1)
        spatial_channels = check_optional_int("spatial_channels", spatial_channels, 1)
        horizontal_output = check_bool("horizontal_output", horizontal_output)
        _check_block(in_channels, channels, (kh, kw), mask_type, data_channels)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.in_channels = in_channels
        self.channels = channels
        self.kernel_size = (kh, kw)
        self.mask_type = mask_type
        self.data_channels = data_channels
        self.cond_channels = cond_channels
        self.spatial_channels = spatial_channels
        rows = kh // 2 if mask_type == "A" else kh // 2 + 1
        self.v_conv = nn.Conv2d(in_channels, 2 * channels, (rows, kw), **factory)
        self.h_conv = MaskedConv2d(
            in_channels, 2 * channels, (1, kw), mask_type, data_channels, **factory
        )
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1, **factory)
        self.h_out = (
            MaskedConv2d(channels, channels, 1, "B", data_channels, **factory)
            if horizontal_output
            else None
        )
        self.skip = MaskedConv2d(channels, channels, 1, "B", data_channels, **factory)
        # V^T h and V * s of the paper, into the vertical and the horizontal gate
        self.cond_v: nn.Linear | None
        self.cond_h: nn.Linear | None
        self.spatial_v: nn.Conv2d | None
        self.spatial_h: nn.Conv2d | None
        self.cond_v, self.cond_h = _linears(cond_channels, 2 * channels, factory)
        self.spatial_v, self.spatial_h = _pointwise_convs(spatial_channels, 2 * channels, factory)

    def vertical_pre(self, v: torch.Tensor) -> torch.Tensor:
        """Vertical convolution before the gate, ``(N, C_in, H, W) -> (N, 2C, H, W)``.

        Output row ``i`` sees input rows ``i - kh//2 .. i - 1`` (mask A) or ``.. i`` (mask B).
        """
        kh, kw = self.kernel_size
        height = v.shape[-2]
        padded = F.pad(v, (kw // 2, kw // 2, kh // 2, 0))  # (N, C_in, H + kh//2, W + 2*(kw//2))
        return self.v_conv(padded)[:, :, :height]  # mask A yields H + 1 rows: drop the last

    def cond_biases(self, vector: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The biases ``(N, 2C)`` that the vector ``(N, C_cond)`` adds inside both gates."""
        if self.cond_v is None or self.cond_h is None or vector is None:
            return None
        return self.cond_v(vector), self.cond_h(vector)

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, cond: object = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        vector, spatial = check_cond(
            cond, self.cond_channels, "GatedBlock", v.shape[0],
            spatial_channels=self.spatial_channels, size=tuple(v.shape[2:]),
        )  # fmt: skip
        return self._forward(v, h, vector, spatial)

    def _forward(
        self,
        v: torch.Tensor,
        h: torch.Tensor,
        vector: torch.Tensor | None,
        spatial: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """:meth:`forward` with the conditioning checked and split (by the block or its stack)."""
        v_pre = self.vertical_pre(v)  # (N, 2C, H, W)
        h_pre = self.h_conv(h) + self.link(v_pre)  # (N, 2C, H, W)
        biases = self.cond_biases(vector)
        if biases is not None:
            v_pre = v_pre + biases[0][:, :, None, None]
            h_pre = h_pre + biases[1][:, :, None, None]
        if self.spatial_v is not None and self.spatial_h is not None:
            v_pre = v_pre + self.spatial_v(spatial)  # (N, 2C, H, W): V * s
            h_pre = h_pre + self.spatial_h(spatial)
        h_gated = _gate(h_pre)  # (N, C, H, W)
        h_new = None
        if self.h_out is not None:
            h_new = self.h_out(h_gated)
            if self.mask_type == "B":
                h_new = h + h_new
        return _gate(v_pre), h_new, self.skip(h_gated)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.channels}, kernel_size={self.kernel_size}, "
            f"mask_type={self.mask_type!r}"
        )
        if self.data_channels != 1:
            s += f", data_channels={self.data_channels}"
        if self.cond_channels:
            s += f", cond_channels={self.cond_channels}"
        if self.spatial_channels:
            s += f", spatial_channels={self.spatial_channels}"
        return s


def _check_block(
    in_channels: int, channels: int, kernel: tuple[int, int], mask_type: str, data_channels: int
) -> None:
    """The constraints between a :class:`GatedBlock`'s arguments."""
    if kernel[0] < 3:
        raise ValueError(
            f"a gated block needs a kernel at least 3 rows high (the vertical stack reaches "
            f"kh // 2 rows up), got kernel_size={kernel}"
        )
    if channels % data_channels != 0:
        raise ValueError(f"channels={channels} is not divisible by data_channels={data_channels}")
    if mask_type == "B" and in_channels != channels:
        raise ValueError(
            f"a mask-B gated block is residual: in_channels ({in_channels}) must equal "
            f"channels ({channels})"
        )


def _linears(
    width: int | None, out: int, factory: dict[str, Any]
) -> tuple[nn.Linear, nn.Linear] | tuple[None, None]:
    """Two bias-free projections ``(N, width) -> (N, out)``, or none when ``width`` is None."""
    if not width:
        return None, None
    return (nn.Linear(width, out, bias=False, **factory),
            nn.Linear(width, out, bias=False, **factory))  # fmt: skip


def _pointwise_convs(
    width: int | None, out: int, factory: dict[str, Any]
) -> tuple[nn.Conv2d, nn.Conv2d] | tuple[None, None]:
    """Two bias-free 1x1 convolutions ``(N, width, H, W) -> (N, out, H, W)``, or none."""
    if not width:
        return None, None
    return (nn.Conv2d(width, out, 1, bias=False, **factory),
            nn.Conv2d(width, out, 1, bias=False, **factory))  # fmt: skip


class GatedStack(nn.Module):
    r"""A mask-A :class:`GatedBlock` followed by mask-B ones; returns the sum of their skips.

    Args:
        in_channels: channels of the image.
        channels: channels of every block.
        num_blocks: number of blocks, the first one included (>= 1).
        kernel_size: kernel size of the blocks after the first.
        input_kernel_size: kernel size of the first block.
        data_channels: colour groups of the masks: the image's channels for channel-wise
            masks, 1 for grey or pixel-wise masks (see :mod:`autoregressive.masks`).
        cond_channels: size of an optional conditioning vector.
        spatial_channels: channels of an optional conditioning map aligned with the image.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`; ``cond`` as for :class:`GatedBlock`
        - Output: :math:`(N, C, H, W)`, the summed skip connections

    Example:
        >>> stack = GatedStack(1, 16, num_blocks=3)
        >>> stack(torch.zeros(2, 1, 10, 10)).shape
        torch.Size([2, 16, 10, 10])
    """

    conditional: ClassVar[bool] = True

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_blocks: int,
        kernel_size: int | tuple[int, int] = 3,
        input_kernel_size: int | tuple[int, int] = 7,
        data_channels: int = 1,
        *,
        cond_channels: int | None = None,
        spatial_channels: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        num_blocks = check_int("num_blocks", num_blocks, 1)
        common: dict[str, Any] = {
            "data_channels": data_channels,
            "cond_channels": cond_channels,
            "spatial_channels": spatial_channels,
            "device": device,
            "dtype": dtype,
        }
        last = num_blocks - 1
        self.blocks = nn.ModuleList(
            GatedBlock(
                in_channels if k == 0 else channels,
                channels,
                input_kernel_size if k == 0 else kernel_size,
                "A" if k == 0 else "B",
                horizontal_output=k != last,  # the last block's h would be unused
                **common,
            )
            for k in range(num_blocks)
        )
        first = cast(GatedBlock, self.blocks[0])  # every block takes the same conditioning
        self.in_channels, self.channels = first.in_channels, first.channels
        self.cond_channels, self.spatial_channels = first.cond_channels, first.spatial_channels

    def forward(self, x: torch.Tensor, cond: object = None) -> torch.Tensor:
        vector, spatial = check_cond(  # once for all the blocks
            cond, self.cond_channels, "GatedStack", x.shape[0],
            spatial_channels=self.spatial_channels, size=tuple(x.shape[2:]),
        )  # fmt: skip
        v, h = x, x
        skips = torch.zeros((), dtype=x.dtype, device=x.device)
        for block in self.blocks:  # h is None after the last block only
            v, h_out, skip = cast(GatedBlock, block)._forward(v, h, vector, spatial)
            h = cast(torch.Tensor, h_out)
            skips = skips + skip  # (N, C, H, W)
        return skips

    def stepper(self, batch: int, width: int, cond: object = None) -> Stepper:
        """A stepper computing the stack for cached sampling: see :class:`_GatedStackStepper`."""
        return _GatedStackStepper(self, batch, width, cond)


def _gate_order(channels: int) -> torch.Tensor:
    """Permutation taking gate inputs ``(a0, b0, a1, b1, ...)`` to ``(a0, a1, .., b0, b1, ..)``."""
    return torch.cat([torch.arange(0, 2 * channels, 2), torch.arange(1, 2 * channels, 2)])


class _GatedWeights:
    """A :class:`GatedBlock`'s weights folded for :class:`_GatedBlockStepper`, made once.

    Gate inputs reordered to halves ``[a | b]`` (:func:`_gate_order`) and scaled to
    ``[2a | b]``; see :class:`_GatedBlockStepper` for where each matrix is used.

    Attributes:
        h_conv: the horizontal convolution's :class:`~autoregressive.ConvKernel` (one row).
        v_matrix: ``(rows * kw * C_in, 2C)``; ``v_bias``, ``link_seed``: ``(2C,)``.
        link_matrix: ``(2C, 2C)``; ``spatial``: two ``(C_map, 2C)`` or ``None``.
        v_link: ``v_matrix @ link_matrix`` for the stack's last block (no ``h_out``, and its
            vertical output unused), whose ``link_seed`` then includes ``v_bias @ link_matrix``;
            else ``None``.
        out_matrix: ``(C + 1, C)`` or ``None`` (last block); ``skip_rows``: ``(C + 1, C)``.
    """

    def __init__(self, block: GatedBlock) -> None:
        c = block.channels
        w = block.v_conv.weight.detach()
        order = _gate_order(c).to(w.device)
        two_a = torch.cat([w.new_full((c,), 2.0), w.new_ones(c)])  # (2C,): [a | b] -> [2a | b]
        self.order, self.two_a = order, two_a
        h_weight = block.h_conv.masked_weight().detach()[order] * two_a[:, None, None, None]
        self.h_conv = ConvKernel(h_weight)
        v_weight = w[order]  # (2C, C_in, rows, kw)
        # all kernel rows as one matrix ((rows kw C_in), 2C), to multiply the ring's windows
        self.v_matrix = (rearrange(v_weight, "o i r t -> (r t i) o") * two_a).contiguous()
        self.v_bias = self.fold(bias_or_zeros(block.v_conv))  # v_pre is kept as [2a | b] too
        link = block.link.weight.detach()[:, :, 0, 0][order][:, order]  # (2C out, 2C in)
        self.link_matrix = (link.t() / two_a[:, None] * two_a).contiguous()  # (2C in, 2C out)
        biases = bias_or_zeros(block.link) + bias_or_zeros(block.h_conv)
        self.link_seed = self.fold(biases)  # (2C,)
        self.v_link: torch.Tensor | None = None  # the last block: v_pre only through the link
        if block.h_out is None:  # so vertical and link are one matrix (K, 2C), one product
            self.v_link = self.v_matrix @ self.link_matrix
            self.link_seed = self.link_seed + self.v_bias @ self.link_matrix
        self.spatial: tuple[torch.Tensor, torch.Tensor] | None = None  # (C_map, 2C) each
        if block.spatial_v is not None and block.spatial_h is not None:
            maps = (block.spatial_v.weight, block.spatial_h.weight)  # (2C, C_map, 1, 1)
            v_map, h_map = (self.fold(m.detach()[:, :, 0, 0].t()).contiguous() for m in maps)
            self.spatial = (v_map, h_map)
        self.out_matrix = matrix_and_bias(block.h_out) if block.h_out is not None else None
        self.skip_rows = matrix_and_bias(block.skip)  # (C + 1, C)

    def fold(self, t: torch.Tensor) -> torch.Tensor:
        """Gate inputs ``(..., 2C)`` as ``(a0, b0, a1, ..)`` to ``[2a | b]``."""
        return t[..., self.order] * self.two_a


class _GatedBlockStepper:
    """One :class:`GatedBlock` folded: vertical stack a row at a time, horizontal per pixel.

    Gate inputs are reordered to halves ``[a | b]`` (:func:`_gate_order`) and computed as
    ``[2a | b]``, so that one ``sigmoid`` (on this CPU about 3x cheaper than ``tanh``) serves
    both halves: ``tanh(a) = 2 * sigmoid(2a) - 1``, so the gate is ``2 * sigmoid(2a) * sigmoid(b)
    - sigmoid(b)``: a ``sigmoid``, an in-place ``neg_`` and an ``addcmul``, with no scalar
    operand to wrap. The factor 2 of ``2a`` lives in the matrices. Each term against the line of
    :meth:`GatedBlock.forward` it reproduces:

    - ``v_pre = self.vertical_pre(v)``: :meth:`begin_row`, the ring of input rows times
      ``v_matrix``, plus ``v_bias`` (:meth:`_vertical`);
    - ``self.link(v_pre)``, ``h_conv``'s bias and the ``cond`` bias of ``h_pre``: ``link_row``,
      once per row, the seed of each pixel's ``addmm`` (``a`` half scaled by 2); for the
      stack's last block, whose ``gate(v_pre)`` is unused, ``vertical_pre`` and ``link`` are
      one product (``v_link``);
    - ``h_pre = self.h_conv(h) + ...``: :meth:`step`, ``addmm(link_row[j], window, h_conv)``;
    - ``h_gated = gate(h_pre)``: ``sigmoid``, ``neg_`` and ``addcmul`` into ``features``;
    - ``h_new = h + self.h_out(h_gated)``: ``addmm(h, [features, 1], [W_out; b_out])``,
      written straight into the next block's cache;
    - ``self.skip(h_gated)``: ``skip_rows = [W_skip; b_skip]``, summed over blocks by the
      stack's one product;
    - ``gate(v_pre)`` with the ``cond`` bias of ``v_pre``: the next block's vertical row;
    - a conditioning map's ``spatial_h(s)`` and ``spatial_v(s)``: :meth:`_add_spatial`, once per
      row from the sampler's buffer of the map's current row, into the seed and into ``v_pre``.

    The per-row tensors are column-major, ``(W, N, ...)``: the ring ``(rows, pad + W + pad, N,
    C_in)``, so that one kernel tap's inputs for the whole row are one contiguous slab
    (:func:`~autoregressive.conv.ring_product`), and ``link_row`` ``(W, N, 2C)``, so that column
    ``j``'s seed is contiguous.
    """

    def __init__(
        self,
        block: GatedBlock,
        batch: int,
        width: int,
        cond: object,
        features: torch.Tensor,
    ) -> None:
        f = derived(block, "stepper", lambda: _GatedWeights(block))  # folded once per weights
        c, (kh, kw), c_in = block.channels, block.kernel_size, block.in_channels
        self.width, self.channels, self.kw, self.c_in = width, c, kw, c_in
        self.residual = block.mask_type == "B"
        self.h_conv = ConvStepper(f.h_conv, None, batch, width)  # (1, kw): one row, no bias
        self.v_matrix, self.v_bias, self.link_matrix = f.v_matrix, f.v_bias, f.link_matrix
        self.v_link = f.v_link  # the stack's last block: link(v_pre) in one product
        self.out_matrix, self.skip_rows, self.spatial_mats = f.out_matrix, f.skip_rows, f.spatial
        vector, self.spatial_row = row_parts(cond)
        biases = block.cond_biases(vector)
        seed, like = f.link_seed, f.v_bias  # seed: (2C,)
        self.v_cond = None if biases is None else f.fold(biases[0])  # (N, 2C)
        if biases is not None:  # (W * N, 2C): the cond bias of h_pre, per column and image
            seed = (seed + f.fold(biases[1]))[None].expand(width, -1, -1)
            seed = seed.reshape(width * batch, 2 * c)
        self.link_seed = seed
        self.seed_row: torch.Tensor | None = None  # (W * N, 2C) with a map: the row's seed
        if self.spatial_mats is not None:
            self.seed_row = like.new_zeros(width * batch, 2 * c)
        self.link_row = like.new_zeros(width, batch, 2 * c)  # (W, N, 2C), set by begin_row
        self.links = list(self.link_row.unbind(0))  # (N, 2C) per column
        self.link_cols = self.link_row.transpose(0, 1)  # (N, W, 2C), for row_seed
        self.pre = like.new_zeros(batch, 2 * c)  # (N, 2C): the horizontal gate's input [2a | b]
        self.pre_a, self.pre_b = self.pre[:, :c], self.pre[:, c:]
        self.ring = like.new_zeros(kh // 2 + 1, width + kw - 1, batch, c_in)  # rows of v
        self.features = features  # (N, C + 1): h_gated, then a column of ones
        self.gated = features[:, :c]  # (N, C)
        self.next_conv: ConvStepper | None = None  # the next block's h_conv: h_new goes there

    def _vertical(
        self, matrix: torch.Tensor, seed: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``seed + windows @ matrix`` ``(W * N, 2C)``: the row's vertical convolution.

        ``matrix`` is ``v_matrix`` or ``v_link``, ``(rows * kw * C_in, 2C)``; see
        :func:`~autoregressive.conv.ring_product`.
        """
        ring = self.ring if self.residual else self.ring[:-1]  # mask A: the rows above only
        return ring_product(ring, matrix, seed, width=self.width, out=out)

    def begin_row(self, v_row: torch.Tensor | None) -> torch.Tensor | None:
        """Compute the row's vertical stack; return ``gate(v_pre)`` ``(W, N, C)``.

        ``v_row`` is the previous block's vertical output of this row (``None`` for mask A,
        whose current row :meth:`write` fills pixel by pixel). The stack's last block
        returns ``None``: its vertical output is unused.
        """
        ring = self.ring
        shift_up(ring)  # the last slot is the current row
        if v_row is not None:
            pad = self.kw // 2
            ring[-1, pad : pad + self.width] = v_row
        link_row = self.link_row.view(-1, 2 * self.channels)  # (W * N, 2C)
        seed = self._add_spatial(1, self.link_seed, out=self.seed_row)
        if self.v_link is not None:  # link(vertical_pre(v)) as one product
            self._vertical(self.v_link, seed, out=link_row)
            return None
        v_pre = self._vertical(self.v_matrix, self.v_bias)  # (W * N, 2C)
        torch.addmm(seed, v_pre, self.link_matrix, out=link_row)
        v_pre = self._add_spatial(0, v_pre)
        v_pre = v_pre.view(self.width, -1, 2 * self.channels)  # (W, N, 2C)
        if self.v_cond is not None:
            v_pre = v_pre + self.v_cond
        c = self.channels
        s = torch.sigmoid(v_pre)  # (W, N, 2C): [sigmoid(2a) | sigmoid(b)]
        s_b = s[..., c:].neg_()
        return torch.addcmul(s_b, s[..., :c], s_b, value=-2)  # tanh(a) * sigmoid(b)

    def _add_spatial(
        self, which: int, t: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``t`` plus the map's current row through ``spatial_v`` (0) or ``spatial_h`` (1)."""
        if self.spatial_mats is None or self.spatial_row is None:
            return t
        row = self.spatial_row.transpose(0, 1).reshape(-1, self.spatial_row.shape[2])
        return torch.addmm(t, row, self.spatial_mats[which], out=out)  # (W * N, 2C)

    def step(self, j: int) -> None:
        """The horizontal stack at column ``j``: fills ``features`` and the next block's input."""
        self.h_conv.compute(j, seed=self.links[j], out=self.pre).sigmoid_()  # sigmoid([2a | b])
        s_b = self.pre_b.neg_()  # -sigmoid(b); s_b - 2 sigmoid(2a) s_b is the gate
        torch.addcmul(s_b, self.pre_a, s_b, value=-2, out=self.gated)  # tanh(a) sigmoid(b)
        if self.out_matrix is None or self.next_conv is None:
            return
        target = self.next_conv.inputs[j]  # (N, C) in the next block's cache
        if self.residual:  # h + h_out(h_gated)
            torch.addmm(self.h_conv.inputs[j], self.features, self.out_matrix, out=target)
        else:
            torch.mm(self.features, self.out_matrix, out=target)

    def step_row(self, h: torch.Tensor, features: torch.Tensor, start: int) -> torch.Tensor | None:
        """:meth:`step` at columns ``start ..``: ``h`` ``(N, M, C_in)`` to ``h_new`` ``(N, M, C)``.

        Writes ``h_gated`` into ``features`` ``(N * M, C + 1)``; returns ``None`` for the
        last block (no horizontal output).
        """
        n, m, _ = h.shape
        c = self.channels
        seed = row_seed(self.link_cols, start, self.width)  # (N * M, 2C)
        s = self.h_conv.row_product(h, seed, start=start).sigmoid_()  # sigmoid([2a | b])
        s_b = s[:, c:].neg_()
        torch.addcmul(s_b, s[:, :c], s_b, value=-2, out=features[:, :c])  # as in step
        if self.out_matrix is None:
            return None
        if self.residual:  # h + h_out(h_gated)
            return torch.addmm(h.reshape(n * m, -1), features, self.out_matrix).view(n, m, -1)
        return torch.mm(features, self.out_matrix).view(n, m, -1)

    def write_row(self, x: torch.Tensor, start: int) -> None:
        """Store pixels ``(N, M, C_in)`` at columns ``start ..`` for the vertical stack."""
        first = self.kw // 2 + start
        self.ring[-1, first : first + x.shape[1]] = x.transpose(0, 1)

    def write(self, j: int, x: torch.Tensor) -> None:
        """Store the drawn pixel ``(N, C_in)`` for both stacks (mask-A block only)."""
        self.h_conv.write(j, x)
        self.ring[-1, self.kw // 2 + j] = x

    def cache_nbytes(self) -> int:
        return self.ring.numel() * self.ring.element_size() + self.h_conv.cache_nbytes()


class _GatedStackStepper(Stepper):
    """A :class:`GatedStack` for cached sampling: its blocks' steppers, and one skip product.

    Every block writes ``h_gated`` and a column of ones into its slice of one buffer
    ``(N, blocks * (C + 1))``, so the summed skip outputs (biases included) are one ``mm``.
    """

    reads_image = True
    steps_rows = True

    def __init__(self, stack: GatedStack, batch: int, width: int, cond: object) -> None:
        blocks = [cast(GatedBlock, b) for b in stack.blocks]
        c, count = stack.channels, len(blocks)
        like = blocks[0].skip.weight
        features = like.new_zeros(batch, count, c + 1)  # (N, blocks, C + 1)
        features[:, :, -1] = 1
        self.features = features.view(batch, count * (c + 1))
        self.blocks = [
            _GatedBlockStepper(b, batch, width, cond, features[:, k]) for k, b in enumerate(blocks)
        ]
        for block, following in zip(self.blocks[:-1], self.blocks[1:], strict=True):
            block.next_conv = following.h_conv
        self.skip_matrix = torch.cat([b.skip_rows for b in self.blocks])  # (blocks * (C+1), C)
        first = blocks[0]  # colour: does it see earlier channels of the current pixel?
        self.centre = bool(first.h_conv.mask[:, :, 0, first.kernel_size[1] // 2].any())
        self.batch, self.width, self.channels = batch, width, c

    @functools.cached_property
    def features_rows(self) -> torch.Tensor:
        """``features`` for a whole row, ``(N * W, blocks * (C + 1))`` (made on first use)."""
        like, count = self.skip_matrix, len(self.blocks)
        rows = like.new_zeros(self.batch * self.width, count, self.channels + 1)
        rows[:, :, -1] = 1
        return rows.view(self.batch * self.width, -1)

    def step_row(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        n, m, _ = x.shape  # columns start .. W - 1
        self.blocks[0].write_row(x, start)
        rows = self.features_rows[: n * m]  # (N * M, blocks * (C + 1))
        features = rows.view(n * m, len(self.blocks), -1)
        h: torch.Tensor | None = x
        for k, block in enumerate(self.blocks):
            assert h is not None  # only the last block has no horizontal output
            h = block.step_row(h, features[:, k], start)
        return torch.mm(rows, self.skip_matrix).view(n, m, -1)  # (N, M, C)

    def begin_row(self, i: int) -> None:
        v_row = None  # (W, N, C): the previous block's vertical output
        for block in self.blocks:
            v_row = block.begin_row(v_row)

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        if self.centre:  # colour: the first block sees earlier channels of this pixel
            self.blocks[0].h_conv.inputs[j].copy_(x)
        for block in self.blocks:
            block.step(j)
        return torch.mm(self.features, self.skip_matrix)  # (N, C): the summed skip outputs

    def write(self, j: int, x: torch.Tensor) -> None:
        self.blocks[0].write(j, x)

    def cache_nbytes(self) -> int:
        return sum(b.cache_nbytes() for b in self.blocks)
