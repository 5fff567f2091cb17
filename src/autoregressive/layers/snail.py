"""The PixelSNAIL stack: gated residual blocks of masked convolutions, and attention.

Chen et al., *PixelSNAIL: An Improved Autoregressive Generative Model*, 2018,
https://arxiv.org/abs/1712.09763 (figure 2).

A mask-A convolution reads the image; then each block runs its gated residual blocks of masked
convolutions (local, precise) and a residual causal self-attention (global: every earlier
pixel, at any distance), whose keys and values also read the image itself and the positional
background::

    h = conv_A(x)
    for each block:
        h = res(... res(h, cond) ..., cond)        # GatedResidualBlock s
        h = h + attention(h, extra=x)              # CausalSelfAttention2d, mask B

The convolutions leave a blind spot; the attention closes it, since its keys cover every
earlier pixel.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from ..conditioning import ConditionalLayer, Conditioning, RowConditioning
from ..sampling.snail_stepper import SnailBlockSteppers, SnailStepper
from ..sampling.stepping import Stepper
from ..validation import check_int
from .attention import CausalSelfAttention2d
from .conv import MaskedConv2d
from .gated_residual import GatedResidualBlock
from .reprs import changed_options

__all__ = ["SnailStack"]


class SnailStack(ConditionalLayer):
    r"""PixelSNAIL's body: a mask-A convolution, then blocks of gated residual blocks + attention.

    Args:
        in_channels: channels of the image (or of its embedding).
        channels: channels of every block.
        num_blocks: attention blocks (>= 1), each after ``residual_blocks`` residual blocks.
        kernel_size: kernel size of the residual blocks.
        input_kernel_size: kernel size of the mask-A input convolution.
        data_channels: colour groups of the masks: the image's channels for channel-wise
            masks, 1 for grey or pixel-wise masks (see :mod:`autoregressive.layers.masks`).
        cond_channels: size of an optional conditioning vector (taken by the residual blocks).
        spatial_channels: channels of an optional conditioning map aligned with the image.
        residual_blocks: :class:`~autoregressive.GatedResidualBlock` s before each attention.
        heads: heads of each :class:`~autoregressive.CausalSelfAttention2d`.
        key_channels: query and key channels per head.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        As for :class:`~autoregressive.GatedStack`: :math:`(N, C_{in}, H, W)` in,
        :math:`(N, C, H, W)` out; ``cond`` as for :class:`~autoregressive.ResidualBlock`.

    Example:
        >>> stack = SnailStack(1, 16, num_blocks=2, heads=2)
        >>> stack(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
        >>> len(stack.attention), len(stack.residual[0])  # blocks, residual blocks in each
        (2, 2)
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_blocks: int,
        kernel_size: int = 3,
        input_kernel_size: int = 7,
        data_channels: int = 1,
        *,
        cond_channels: int | None = None,
        spatial_channels: int | None = None,
        residual_blocks: int = 2,
        heads: int = 1,
        key_channels: int = 16,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        num_blocks = check_int("num_blocks", num_blocks, 1, owner="SnailStack")
        residual_blocks = check_int("residual_blocks", residual_blocks, 0, owner="SnailStack")
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        cond: dict[str, Any] = {"cond_channels": cond_channels}
        cond["spatial_channels"] = spatial_channels
        self.input = MaskedConv2d(
            in_channels, channels, input_kernel_size, "A", data_channels, **factory
        )
        self.residual = nn.ModuleList(
            nn.ModuleList(
                GatedResidualBlock(channels, kernel_size, data_channels, **cond, **factory)
                for _ in range(residual_blocks)
            )
            for _ in range(num_blocks)
        )
        attention: dict[str, Any] = {"key_channels": key_channels, "positional": True}
        attention.update(data_channels=data_channels, extra_channels=in_channels, **factory)
        self.attention = nn.ModuleList(
            CausalSelfAttention2d(channels, heads, **attention) for _ in range(num_blocks)
        )
        self.in_channels, self.channels = in_channels, channels
        self.residual_blocks, self.heads = residual_blocks, heads
        self.cond_channels, self.spatial_channels = cond_channels, spatial_channels

    def forward(self, x: torch.Tensor, cond: Conditioning | None = None) -> torch.Tensor:
        cond = self._check_cond(x, cond)
        h = self.input(x)  # (N, C, H, W)
        for convs, attention in zip(self.residual, self.attention, strict=True):
            for conv in cast(nn.ModuleList, convs):
                h = conv(h, cond)
            h = h + attention(h, x)
        return h

    def extra_repr(self) -> str:
        s = (
            f"in_channels={self.in_channels}, channels={self.channels}, "
            f"residual_blocks={self.residual_blocks}, heads={self.heads}"
        )
        return s + changed_options(self, cond_channels=None, spatial_channels=None)

    def stepper(self, batch: int, width: int, cond: RowConditioning | None = None) -> Stepper:
        """A :class:`SnailStepper` for cached sampling."""
        blocks = [
            SnailBlockSteppers(
                [
                    cast(GatedResidualBlock, c).stepper(batch, width, cond)
                    for c in cast(nn.ModuleList, convs)
                ],
                cast(CausalSelfAttention2d, attention).stepper(batch, width),
            )
            for convs, attention in zip(self.residual, self.attention, strict=True)
        ]
        return SnailStepper(self.input.stepper(batch, width), blocks)
