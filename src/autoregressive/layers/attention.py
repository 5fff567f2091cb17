r"""Causal self-attention over the pixels of an image, as in PixelSNAIL.

Chen et al., *PixelSNAIL: An Improved Autoregressive Generative Model*, 2018,
https://arxiv.org/abs/1712.09763.

Each pixel attends to every pixel before it in raster order, at any distance: no blind spot and
no receptive field to grow. The attention mask over the ``L = H * W`` positions (``x``
attended, ``.`` not; a 2x2 image)::

    query \\ key   (0,0) (0,1) (1,0) (1,1)
    (0,0)           .     .     .     .      nothing before the first pixel: output 0
    (0,1)           x     .     .     .
    (1,0)           x     x     .     .
    (1,1)           x     x     x     .

A key is never the query's own position, so keys and values may read the image itself (the
extra input PixelSNAIL adds); the current position reaches the output through the query alone.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..conditioning import RowConditioning
from ..sampling.attention_stepper import (
    AttentionStepper,
    AttentionWeights,
    attend,
    background,
    earlier_positions,
)
from ..sampling.memo import derived
from ..validation import check_bool, check_int, check_tensor
from .masks import causal_mask, check_mask_type
from .reprs import changed_options

__all__ = ["CausalSelfAttention2d"]

#: channels of the positional background (row, column)
POSITIONAL = 2


def _check_channels(channels: int, heads: int, out_channels: int, data_channels: int) -> None:
    """The colour groups must split the channels, the heads and the outputs evenly."""
    for name, count in (("channels", channels), ("heads", heads), ("out_channels", out_channels)):
        if count % data_channels != 0:
            raise ValueError(
                f"CausalSelfAttention2d: {name}={count} is not divisible by "
                f"data_channels={data_channels}: channel-wise masks give each colour group an "
                f"equal share of the channels and heads, so use a multiple of {data_channels}"
            )


class CausalSelfAttention2d(nn.Module):
    r"""Multi-head attention of each pixel over the pixels before it in raster order.

    Queries come from the features at the pixel (through a 1x1 projection masked like a
    ``mask_type`` convolution's centre tap); keys and values from the features at earlier pixels,
    optionally concatenated with ``extra`` inputs (PixelSNAIL: the image) and, with
    ``positional``, both from PixelSNAIL's positional background (each pixel's row and column).
    The heads' outputs are projected back by a mask-B 1x1 projection. The attention mask (see
    :mod:`autoregressive.layers.attention`) lets a query attend to strictly earlier positions;
    it is passed to ``F.scaled_dot_product_attention`` as an explicit boolean mask.

    So the output at a pixel depends on the features and extras at every earlier pixel and, for
    mask ``"B"``, on the features at the pixel itself; mask ``"A"`` (a first layer, whose
    features are the image) drops them. With ``data_channels > 1`` (channel-wise masks) the heads
    are split into colour groups: the queries of group ``g`` read feature groups ``<= g`` (mask
    B) or ``< g`` (mask A) at the pixel, output group ``g`` reads the heads of groups ``<= g``,
    and keys and values, which only earlier pixels use, read every group.

    Args:
        channels: channels ``C`` of the features.
        heads: attention heads.
        key_channels: ``d_k``, query and key channels per head.
        value_channels: ``d_v``, value channels per head (default ``channels // heads``).
        out_channels: output channels (default ``channels``).
        mask_type: ``"B"`` (the current pixel's features reach the output) or ``"A"`` (they do
            not: the layer may read the image first).
        data_channels: colour groups of the masks: the image's channels for channel-wise
            masks, 1 for grey or pixel-wise masks (see :mod:`autoregressive.layers.masks`).
        extra_channels: channels ``E`` of an extra input of the keys and values (0: none).
        positional: feed the positional background to queries, keys and values.
        device: device of the parameters and masks.
        dtype: dtype of the parameters and masks.

    Shape:
        - Input: ``x`` :math:`(N, C, H, W)`; ``extra`` :math:`(N, E, H, W)` or ``None``
        - Output: :math:`(N, C_{out}, H, W)`
        - Attention: :math:`L = H W` positions; queries :math:`(N, heads, L, d_k)`, mask
          :math:`(L, L)`

    Example:
        >>> attn = CausalSelfAttention2d(16, heads=2, extra_channels=1, positional=True)
        >>> x, image = torch.zeros(2, 16, 8, 8), torch.zeros(2, 1, 8, 8)
        >>> attn(x, image).shape
        torch.Size([2, 16, 8, 8])
    """

    query_mask: torch.Tensor
    out_mask: torch.Tensor
    conditional: ClassVar[bool] = False

    def __init__(
        self,
        channels: int,
        heads: int = 1,
        *,
        key_channels: int = 16,
        value_channels: int | None = None,
        out_channels: int | None = None,
        mask_type: str = "B",
        data_channels: int = 1,
        extra_channels: int = 0,
        positional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        owner = "CausalSelfAttention2d"
        channels = check_int("channels", channels, 1, owner=owner)
        heads = check_int("heads", heads, 1, owner=owner)
        self.key_channels = check_int("key_channels", key_channels, 1, owner=owner)
        value_channels = max(channels // heads, 1) if value_channels is None else value_channels
        self.value_channels = check_int("value_channels", value_channels, 1, owner=owner)
        out_channels = channels if out_channels is None else out_channels
        self.out_channels = check_int("out_channels", out_channels, 1, owner=owner)
        self.mask_type = check_mask_type(mask_type)
        self.data_channels = check_int("data_channels", data_channels, 1, owner=owner)
        self.extra_channels = check_int("extra_channels", extra_channels, 0, owner=owner)
        self.positional = check_bool("positional", positional)
        _check_channels(channels, heads, self.out_channels, self.data_channels)
        self.channels, self.heads = channels, heads
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        pos = POSITIONAL if self.positional else 0
        self.query = nn.Linear(channels + pos, heads * self.key_channels, **factory)
        kv = heads * (self.key_channels + self.value_channels)
        self.key_value = nn.Linear(channels + self.extra_channels + pos, kv, **factory)
        self.out = nn.Linear(heads * self.value_channels, self.out_channels, **factory)
        self.register_buffer("query_mask", self._masks(pos)[0].to(**factory), persistent=False)
        self.register_buffer("out_mask", self._masks(pos)[1].to(**factory), persistent=False)

    def _masks(self, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The 0/1 masks of the query ``(heads * d_k, C + P)`` and output projections.

        A 1x1 causal mask's centre tap: query channels of head group ``g`` read feature groups
        ``<= g`` (B) or ``< g`` (A), the background always; outputs of group ``g`` read the
        values of head groups ``<= g``.
        """
        dc = self.data_channels
        hk, hv = self.heads * self.key_channels, self.heads * self.value_channels
        query = causal_mask(hk, self.channels, 1, self.mask_type, dc)[:, :, 0, 0]  # (hk, C)
        query = torch.cat([query, query.new_ones(hk, pos)], 1)  # (hk, C + P)
        out = causal_mask(self.out_channels, hv, 1, "B", dc)[:, :, 0, 0]  # (C_out, hv)
        return query, out

    def reset_parameters(self) -> None:
        """Initialise the projections as ``nn.Linear`` does."""
        for layer in (self.query, self.key_value, self.out):
            layer.reset_parameters()

    def _inputs(
        self, x: torch.Tensor, extra: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs of queries ``(N, L, C + P)`` and keys ``(N, L, C + E + P)``, raster order."""
        n, _, h, w = x.shape
        seq = rearrange(x, "n c h w -> n (h w) c")  # (N, L, C)
        parts = [seq] if extra is None else [seq, rearrange(extra, "n e h w -> n (h w) e")]
        if not self.positional:
            return seq, torch.cat(parts, 2)
        pos = background(h, w, device=x.device, dtype=x.dtype).expand(n, -1, -1)  # (N, L, 2)
        return torch.cat([seq, pos], 2), torch.cat([*parts, pos], 2)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        self._check_input(x, extra)
        h, w = x.shape[2:]
        q_in, kv_in = self._inputs(x, extra)
        q = F.linear(q_in, self.query.weight * self.query_mask, self.query.bias)  # (N, L, hk)
        kv = F.linear(kv_in, self.key_value.weight, self.key_value.bias)  # (N, L, h(dk+dv))
        q = rearrange(q, "n l (h d) -> n h l d", h=self.heads)  # (N, heads, L, d_k)
        kv = rearrange(kv, "n l (h d) -> n h l d", h=self.heads)
        k, v = kv.split([self.key_channels, self.value_channels], dim=3)
        allowed = earlier_positions(torch.arange(h * w, device=x.device), h * w)  # (L, L)
        o = rearrange(attend(q, k, v, allowed), "n h l d -> n l (h d)")  # (N, L, heads * d_v)
        out = F.linear(o, self.out.weight * self.out_mask, self.out.bias)  # (N, L, C_out)
        return rearrange(out, "n (h w) c -> n c h w", h=h, w=w)

    def _check_input(self, x: torch.Tensor, extra: torch.Tensor | None) -> None:
        check_tensor("x", x, floating=True, like=f" (N, {self.channels}, H, W)")
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"CausalSelfAttention2d expects x of shape (N, {self.channels}, H, W), got "
                f"{tuple(x.shape)}"
            )
        e = self.extra_channels
        if (extra is None) != (e == 0):
            raise ValueError(
                f"CausalSelfAttention2d built with extra_channels={e} "
                + ("takes no extra input: leave it out" if e == 0 else "needs extra (N, E, H, W)")
            )
        if extra is not None and (
            extra.dim() != 4 or extra.shape[1] != e or extra.shape[2:] != x.shape[2:]
        ):
            raise ValueError(
                f"extra must have shape ({x.shape[0]}, {e}, {x.shape[2]}, {x.shape[3]}), got "
                f"{tuple(extra.shape)}"
            )

    def extra_repr(self) -> str:
        s = (
            f"{self.channels}, heads={self.heads}, key_channels={self.key_channels}, "
            f"value_channels={self.value_channels}, out_channels={self.out_channels}, "
            f"mask_type={self.mask_type!r}"
        )
        return s + changed_options(self, data_channels=1, extra_channels=0, positional=False)

    def fold(self) -> AttentionWeights:
        """The weights as the stepper multiplies them (masked, transposed), detached."""
        c = self.channels
        q = (self.query.weight * self.query_mask).detach().t()  # (C + P, heads * d_k)
        kv = self.key_value.weight.detach().t()  # (C + E + P, heads * (d_k + d_v))
        out = (self.out.weight * self.out_mask).detach().t()  # (heads * d_v, C_out)
        e = c + self.extra_channels
        return AttentionWeights(
            q[:c].contiguous(), q[c:].contiguous(), self.query.bias.detach(),
            kv[:e].contiguous(), kv[e:].contiguous(), self.key_value.bias.detach(),
            out.contiguous(), self.out.bias.detach(),
            self.heads, self.key_channels, self.value_channels,
        )  # fmt: skip

    def stepper(
        self, batch: int, width: int, cond: RowConditioning | None = None
    ) -> AttentionStepper:
        """An :class:`AttentionStepper` with a cache of keys and values (``cond`` is unused)."""
        weights = derived(self, "weights", self.fold)
        return AttentionStepper(
            weights, batch, width, extra_channels=self.extra_channels,
            reads_image=self.mask_type == "A",
        )  # fmt: skip
