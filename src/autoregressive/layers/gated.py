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

from ..conditioning import ConditionalLayer, Conditioning, RowConditioning
from ..sampling.conv_stepper import ConvKernel
from ..sampling.gated_stepper import GatedBlockWeights, GatedStackStepper
from ..sampling.memo import derived
from ..sampling.rows import bias_or_zeros
from ..sampling.stepping import Stepper
from ..validation import check_bool, check_int, check_optional_int, check_tensor
from .conv import MaskedConv2d, pointwise_matrix
from .masks import check_kernel_size, check_mask_type
from .projection import ConditionProjection, load_renamed
from .reprs import changed_options

__all__ = ["GatedBlock", "GatedStack", "fold_gated_block", "gate"]


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


class GatedBlock(ConditionalLayer):
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
            masks, 1 for grey or pixel-wise masks (see :mod:`autoregressive.layers.masks`).
        cond_channels: size of an optional conditioning vector added inside both gates.
        spatial_channels: channels of an optional conditioning map ``(N, C_map, H, W)``, added
            inside both gates through 1x1 convolutions.
        horizontal_output: whether to compute the horizontal output ``h``; the last block of a
            stack only needs its skip output, and without it has no parameter left unused.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``v`` and ``h`` :math:`(N, C_{in}, H, W)`; ``cond`` a
          :class:`~autoregressive.Conditioning` (vector :math:`(N, C_{cond})` and/or map
          :math:`(N, C_{map}, H, W)`) or ``None``
        - Output: ``(v, h, skip)``, each :math:`(N, C, H, W)`; ``h`` is ``None`` when
          ``horizontal_output=False``

    Example:
        >>> block = GatedBlock(1, 16, 7, mask_type="A")
        >>> x = torch.zeros(2, 1, 28, 28)
        >>> [t.shape[1] for t in block(x, x)]
        [16, 16, 16]
    """

    #: keys of checkpoints saved before the projections were :class:`ConditionProjection` s
    _RENAMED: ClassVar[dict[str, str]] = {
        f"{old}_{gate}.weight": f"cond_{gate}.{new}.weight"
        for old, new in (("cond", "vector"), ("spatial", "spatial"))
        for gate in "vh"
    }

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
        # V^T h + V * s of the paper, into the vertical and the horizontal gate
        self.cond_v = ConditionProjection(cond_channels, spatial_channels, 2 * channels, **factory)
        self.cond_h = ConditionProjection(cond_channels, spatial_channels, 2 * channels, **factory)

    def vertical_pre(self, v: torch.Tensor) -> torch.Tensor:
        """Vertical convolution before the gate, ``(N, C_in, H, W) -> (N, 2C, H, W)``.

        Output row ``i`` sees input rows ``i - kh//2 .. i - 1`` (mask A) or ``.. i`` (mask B).
        """
        kh, kw = self.kernel_size
        height = v.shape[-2]
        padded = F.pad(v, (kw // 2, kw // 2, kh // 2, 0))  # (N, C_in, H + kh//2, W + 2*(kw//2))
        return self.v_conv(padded)[:, :, :height]  # mask A yields H + 1 rows: drop the last

    def cond_biases(self, cond: RowConditioning | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The biases ``(N, 2C)`` that the vector adds inside both gates, for a stepper."""
        vector = None if cond is None else cond.vector
        v_bias, h_bias = self.cond_v.vector_bias(vector), self.cond_h.vector_bias(vector)
        return None if v_bias is None or h_bias is None else (v_bias, h_bias)

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, cond: Conditioning | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        cond = self._check_cond(v, cond)
        return self._forward(v, h, cond)

    def _forward(
        self, v: torch.Tensor, h: torch.Tensor, cond: Conditioning | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """:meth:`forward` with the conditioning checked (by the block or its stack)."""
        v_pre = self.vertical_pre(v)  # (N, 2C, H, W)
        h_pre = self.h_conv(h) + self.link(v_pre)  # (N, 2C, H, W)
        v_bias, h_bias = self.cond_v(cond), self.cond_h(cond)  # V^T h + V * s, or None
        if v_bias is not None and h_bias is not None:
            v_pre = v_pre + v_bias
            h_pre = h_pre + h_bias
        h_gated = _gate(h_pre)  # (N, C, H, W)
        h_new = None
        if self.h_out is not None:
            h_new = self.h_out(h_gated)
            if self.mask_type == "B":
                h_new = h + h_new
        return _gate(v_pre), h_new, self.skip(h_gated)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        load_renamed(state_dict, prefix, self._RENAMED)  # checkpoints of the older layout
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.channels}, kernel_size={self.kernel_size}, "
            f"mask_type={self.mask_type!r}"
        )
        options = {"data_channels": 1, "cond_channels": None, "spatial_channels": None}
        return s + changed_options(self, **options)


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


class GatedStack(ConditionalLayer):
    r"""A mask-A :class:`GatedBlock` followed by mask-B ones; returns the sum of their skips.

    Args:
        in_channels: channels of the image.
        channels: channels of every block.
        num_blocks: number of blocks, the first one included (>= 1).
        kernel_size: kernel size of the blocks after the first.
        input_kernel_size: kernel size of the first block.
        data_channels: colour groups of the masks: the image's channels for channel-wise
            masks, 1 for grey or pixel-wise masks (see :mod:`autoregressive.layers.masks`).
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

    def forward(self, x: torch.Tensor, cond: Conditioning | None = None) -> torch.Tensor:
        cond = self._check_cond(x, cond)  # once for all the blocks
        v, h = x, x
        skips = torch.zeros((), dtype=x.dtype, device=x.device)
        for block in self.blocks:  # h is None after the last block only
            v, h_out, skip = cast(GatedBlock, block)._forward(v, h, cond)
            h = cast(torch.Tensor, h_out)
            skips = skips + skip  # (N, C, H, W)
        return skips

    def stepper(self, batch: int, width: int, cond: RowConditioning | None = None) -> Stepper:
        """The stack's stepper for cached sampling: its blocks' weights folded, once per weights."""
        blocks = [cast(GatedBlock, b) for b in self.blocks]
        weights = [derived(b, "stepper", functools.partial(fold_gated_block, b)) for b in blocks]
        kw = blocks[0].kernel_size[1]  # colour: does the first block see earlier channels?
        centre = bool(blocks[0].h_conv.mask[:, :, 0, kw // 2].any())
        biases = [b.cond_biases(cond) for b in blocks]
        row = None if cond is None or self.spatial_channels is None else cond.spatial_row
        return GatedStackStepper(weights, biases, batch, width, row, centre=centre)


def _gate_order(channels: int) -> torch.Tensor:
    """Permutation taking gate inputs ``(a0, b0, a1, b1, ...)`` to ``(a0, a1, .., b0, b1, ..)``."""
    return torch.cat([torch.arange(0, 2 * channels, 2), torch.arange(1, 2 * channels, 2)])


def fold_gated_block(block: GatedBlock) -> GatedBlockWeights:
    """A :class:`GatedBlock`'s weights folded for its stepper, made once per weights.

    Gate inputs reordered to halves ``[a | b]`` (:func:`_gate_order`) and scaled to ``[2a | b]``;
    see :class:`~autoregressive.sampling.gated_stepper.GatedBlockWeights` for where each matrix
    is used.
    """
    c = block.channels
    w = block.v_conv.weight.detach()
    order = _gate_order(c).to(w.device)
    two_a = torch.cat([w.new_full((c,), 2.0), w.new_ones(c)])  # (2C,): [a | b] -> [2a | b]

    def fold(t: torch.Tensor) -> torch.Tensor:  # gate inputs (a0, b0, a1, ..) to [2a | b]
        return t[..., order] * two_a

    h_weight = block.h_conv.masked_weight().detach()[order] * two_a[:, None, None, None]
    h_conv = ConvKernel(h_weight)
    v_weight = w[order]  # (2C, C_in, rows, kw)
    # all kernel rows as one matrix ((rows kw C_in), 2C), to multiply the ring's windows
    v_matrix = (rearrange(v_weight, "o i r t -> (r t i) o") * two_a).contiguous()
    v_bias = fold(bias_or_zeros(block.v_conv))  # v_pre is kept as [2a | b] too
    link = block.link.weight.detach()[:, :, 0, 0][order][:, order]  # (2C out, 2C in)
    link_matrix = (link.t() / two_a[:, None] * two_a).contiguous()  # (2C in, 2C out)
    biases = bias_or_zeros(block.link) + bias_or_zeros(block.h_conv)
    link_seed = fold(biases)  # (2C,)
    v_link: torch.Tensor | None = None  # the last block: v_pre only through the link
    if block.h_out is None:  # so vertical and link are one matrix (K, 2C), one product
        v_link = v_matrix @ link_matrix
        link_seed = link_seed + v_bias @ link_matrix
    spatial: tuple[torch.Tensor, torch.Tensor] | None = None  # (C_map, 2C) each
    v_map, h_map = block.cond_v.spatial_matrix(), block.cond_h.spatial_matrix()
    if v_map is not None and h_map is not None:
        spatial = (fold(v_map).contiguous(), fold(h_map).contiguous())
    out_matrix = pointwise_matrix(block.h_out) if block.h_out is not None else None
    skip_rows = pointwise_matrix(block.skip)  # (C + 1, C)
    return GatedBlockWeights(
        order=order, two_a=two_a, h_conv=h_conv, v_matrix=v_matrix, v_bias=v_bias,
        link_matrix=link_matrix, link_seed=link_seed, v_link=v_link, spatial=spatial,
        out_matrix=out_matrix, skip_rows=skip_rows, channels=c, in_channels=block.in_channels,
        kernel_size=block.kernel_size, residual=block.mask_type == "B",
    )  # fmt: skip
