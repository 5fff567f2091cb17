"""PixelSNAIL's gated residual block, with masked convolutions.

Chen et al., *PixelSNAIL: An Improved Autoregressive Generative Model*, 2018,
https://arxiv.org/abs/1712.09763 (the "gated residual block" of figure 2), after the gated
activation of van den Oord et al., 2016, https://arxiv.org/abs/1606.05328.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..conditioning import ConditionalLayer, Conditioning, RowConditioning
from ..sampling.conv_stepper import ConvKernel, ConvStepper
from ..sampling.gated_residual_stepper import GatedResidualStepper
from ..sampling.memo import derived
from ..sampling.stepping import Stepper, stepper_for
from ..validation import check_elementwise, check_int, check_optional_int
from .conv import MaskedConv2d
from .gated import gate
from .masks import check_kernel_size
from .projection import ConditionProjection
from .reprs import changed_options

__all__ = ["GatedResidualBlock"]


class GatedResidualBlock(ConditionalLayer):
    r"""``x + gate(kxk_B(act(kxk_B(act(x)))) + cond)``: two masked convolutions and a gate.

    The second convolution gives ``2C`` channels, taken in interleaved pairs ``(a, b)`` by
    :func:`~autoregressive.gate`, ``tanh(a) * sigmoid(b)``; a conditioning vector's projection
    and a conditioning map's 1x1 convolution are added before the gate. Both convolutions are
    type-B masked, so the block is causal whenever its input is; like
    :class:`~autoregressive.ResidualBlock` it has a blind spot, which the attention of a
    :class:`~autoregressive.SnailStack` closes.

    Args:
        channels: input and output channels ``C``.
        kernel_size: odd size of both masked convolutions.
        data_channels: colour groups of the masks: the image's channels for channel-wise
            masks, 1 for grey or pixel-wise masks (see :mod:`autoregressive.layers.masks`).
        cond_channels: size of an optional conditioning vector; ``None`` for none.
        spatial_channels: channels of an optional conditioning map aligned with the image.
        act_layer: activation class, instantiated twice (PixelSNAIL: an ELU).
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        As for :class:`~autoregressive.ResidualBlock`: :math:`(N, C, H, W)` in and out, the same
        ``cond``.

    Example:
        >>> block = GatedResidualBlock(16, kernel_size=3, cond_channels=10)
        >>> cond = Conditioning(vector=torch.zeros(2, 10))
        >>> block(torch.zeros(2, 16, 8, 8), cond).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int | tuple[int, int] = 3,
        data_channels: int = 1,
        *,
        cond_channels: int | None = None,
        spatial_channels: int | None = None,
        act_layer: type[nn.Module] = nn.ELU,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        owner = "GatedResidualBlock"
        check_kernel_size(kernel_size)
        self.channels = check_int("channels", channels, 1, owner=owner)
        data_channels = check_int("data_channels", data_channels, 1, owner=owner)
        self.cond_channels = check_optional_int("cond_channels", cond_channels, 1, owner=owner)
        self.spatial_channels = check_optional_int(
            "spatial_channels", spatial_channels, 1, owner=owner
        )
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.act1, self.act2 = act_layer(), act_layer()
        check_elementwise(self.act1, "act_layer")
        self.conv1 = MaskedConv2d(channels, channels, kernel_size, "B", data_channels, **factory)
        self.conv2 = MaskedConv2d(
            channels, 2 * channels, kernel_size, "B", data_channels, **factory
        )
        self.cond = ConditionProjection(
            self.cond_channels, self.spatial_channels, 2 * channels, **factory
        )

    def forward(self, x: torch.Tensor, cond: Conditioning | None = None) -> torch.Tensor:
        cond = self._check_cond(x, cond)
        p = self.conv2(self.act2(self.conv1(self.act1(x))))  # (N, 2C, H, W)
        bias = self.cond(cond)  # (N, 2C, 1, 1) or (N, 2C, H, W), or None
        if bias is not None:
            p = p + bias
        return x + gate(p)

    def extra_repr(self) -> str:
        s = f"channels={self.channels}, cond_channels={self.cond_channels}"
        return s + changed_options(self, spatial_channels=None)

    def stepper(self, batch: int, width: int, cond: RowConditioning | None = None) -> Stepper:
        """A :class:`GatedResidualStepper` for cached sampling.

        Its second convolution's outputs, and the conditioning's, come in two halves ``[a | b]``
        instead of the gate's interleaved pairs: the same numbers, each half one block of
        memory per pixel.
        """
        halves = torch.arange(2 * self.channels, device=self.conv2.weight.device)
        halves = halves.view(-1, 2).t().flatten()  # a's channels (even), then b's (odd)
        bias, spatial, row = self.cond.fold(cond)  # (N, 2C), (C_map, 2C), (N, W, C_map)
        conv2 = self.conv2
        kernel = derived(  # as MaskedConv2d.stepper's, its outputs reordered
            conv2,
            "kernel-halves",
            lambda: ConvKernel(conv2.masked_weight().detach()[halves], conv2.dilation),
        )
        bias2 = None if conv2.bias is None else conv2.bias.detach()[halves]
        return GatedResidualStepper(
            [stepper_for(a, batch, width, cond) for a in (self.act1, self.act2)],
            self.conv1.stepper(batch, width),
            ConvStepper(kernel, bias2, batch, width),
            batch=batch, width=width, spatial_row=row,
            cond_bias=None if bias is None else bias[:, halves],
            spatial_matrix=None if spatial is None else spatial[:, halves],
        )  # fmt: skip
