"""The residual block of PixelCNN.

van den Oord et al., *Pixel Recurrent Neural Networks*, 2016, https://arxiv.org/abs/1601.06759
(figure 5).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..conditioning import ConditionalLayer, Conditioning, RowConditioning
from ..sampling.memo import derived
from ..sampling.residual_stepper import ResidualStepper
from ..sampling.stepping import Stepper, stepper_for
from ..validation import check_elementwise, check_int, check_optional_int
from .conv import MaskedConv2d, pointwise_matrix
from .masks import check_kernel_size
from .projection import ConditionProjection, load_renamed
from .reprs import changed_options

__all__ = ["ResidualBlock"]


class ResidualBlock(ConditionalLayer):
    r"""``x + 1x1(act(kxk_B(act(1x1(act(x)) + cond))))``: a bottleneck of masked convolutions.

    The three convolutions are type-B masked (the 1x1 ones only matter for colour, where they
    keep the channel groups apart), so the block is causal whenever its input is. A stack of
    these blocks has the well-known *blind spot*: pixels above and to the right of the current
    one that no path reaches (see :class:`~autoregressive.GatedBlock` for the remedy).

    Args:
        channels: input and output channels (``2h`` in the paper); must be even.
        kernel_size: odd size of the middle masked convolution.
        data_channels: colour groups of the masks: the image's channels for channel-wise
            masks, 1 for grey or pixel-wise masks (see :mod:`autoregressive.layers.masks`).
        dilation: dilation of the middle convolution.
        cond_channels: size of an optional conditioning vector, projected and added after the
            first 1x1 convolution; ``None`` for an unconditional block.
        spatial_channels: channels of an optional conditioning map aligned with the image, added
            at the same place through a 1x1 convolution; ``None`` for none.
        act_layer: activation class, instantiated three times.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: :math:`(N, C, H, W)`; ``cond`` a :class:`~autoregressive.Conditioning`
          (vector :math:`(N, C_{cond})` and/or map :math:`(N, C_{map}, H, W)`) or ``None``
        - Output: :math:`(N, C, H, W)`

    Example:
        >>> block = ResidualBlock(16, kernel_size=3)
        >>> block(torch.zeros(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    #: keys of checkpoints saved before the projections were :class:`ConditionProjection` s
    _RENAMED: ClassVar[dict[str, str]] = {
        "cond_proj.weight": "cond.vector.weight",
        "spatial_proj.weight": "cond.spatial.weight",
    }

    def __init__(
        self,
        channels: int,
        kernel_size: int | tuple[int, int] = 3,
        data_channels: int = 1,
        *,
        dilation: int | tuple[int, int] = 1,
        cond_channels: int | None = None,
        spatial_channels: int | None = None,
        act_layer: type[nn.Module] = nn.ReLU,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_kernel_size(kernel_size)
        channels = check_int("channels", channels, 2)
        data_channels = check_int("data_channels", data_channels, 1)
        cond_channels = check_optional_int("cond_channels", cond_channels, 1)
        spatial_channels = check_optional_int("spatial_channels", spatial_channels, 1)
        if channels % 2 != 0 or (channels // 2) % data_channels != 0:
            raise ValueError(
                f"ResidualBlock needs an even number of channels whose half is divisible by "
                f"data_channels={data_channels}, got channels={channels}"
            )
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        mid = channels // 2
        self.channels = channels
        self.cond_channels = cond_channels
        self.spatial_channels = spatial_channels
        self.act1 = act_layer()
        check_elementwise(self.act1, "act_layer")
        self.conv1 = MaskedConv2d(channels, mid, 1, "B", data_channels, **factory)
        self.act2 = act_layer()
        self.conv2 = MaskedConv2d(
            mid, mid, kernel_size, "B", data_channels, dilation=dilation, **factory
        )
        self.act3 = act_layer()
        self.conv3 = MaskedConv2d(mid, channels, 1, "B", data_channels, **factory)
        self.cond = ConditionProjection(cond_channels, spatial_channels, mid, **factory)

    def forward(self, x: torch.Tensor, cond: Conditioning | None = None) -> torch.Tensor:
        cond = self._check_cond(x, cond)
        h = self.conv1(self.act1(x))  # (N, C/2, H, W)
        bias = self.cond(cond)  # (N, C/2, 1, 1) or (N, C/2, H, W): V^T h + V * s
        if bias is not None:
            h = h + bias
        h = self.conv2(self.act2(h))
        h = self.conv3(self.act3(h))  # (N, C, H, W)
        return x + h

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        load_renamed(state_dict, prefix, self._RENAMED)  # checkpoints of the older layout
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        s = f"channels={self.channels}, cond_channels={self.cond_channels}"
        return s + changed_options(self, spatial_channels=None)

    def stepper(self, batch: int, width: int, cond: RowConditioning | None = None) -> Stepper:
        """A stepper computing the block one pixel at a time, for cached sampling."""
        acts = (self.act1, self.act2, self.act3)
        bias, spatial, row = self.cond.fold(cond)  # (N, C/2), (C_map, C/2), (N, W, C_map)
        return ResidualStepper(
            [stepper_for(a, batch, width, cond) for a in acts],
            self.conv1.stepper(batch, width),
            self.conv2.stepper(batch, width),
            derived(self.conv3, "matrix", lambda: pointwise_matrix(self.conv3)),
            batch=batch, width=width, cond_bias=bias, spatial_matrix=spatial, spatial_row=row,
            relu=all(type(a) is nn.ReLU for a in acts),
        )  # fmt: skip
