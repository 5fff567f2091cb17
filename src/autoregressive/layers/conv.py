"""The masked convolution of PixelCNN (van den Oord et al., 2016, https://arxiv.org/abs/1601.06759)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..conditioning import RowConditioning
from ..sampling.conv_stepper import ConvKernel, ConvStepper
from ..sampling.memo import derived
from ..sampling.rows import bias_or_zeros, matrix_and_bias
from ..validation import check_bool, check_int, check_pair
from .masks import causal_mask, check_kernel_size, check_mask_type
from .reprs import changed_options

__all__ = ["MaskedConv2d", "pointwise_matrix"]


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
            whatever ``in_channels`` is (see :mod:`autoregressive.layers.masks`).
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
        return s + changed_options(self, data_channels=1)

    def stepper(self, batch: int, width: int, cond: RowConditioning | None = None) -> ConvStepper:
        """A :class:`ConvStepper` for cached sampling (``cond`` is unused)."""
        bias = self.bias.detach() if self.bias is not None else None
        kernel = derived(  # the same arrangement every call, until the weights change
            self, "kernel", lambda: ConvKernel(self.masked_weight().detach(), self.dilation)
        )
        return ConvStepper(kernel, bias, batch, width, reads_image=self.mask_type == "A")


def pointwise_matrix(conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution as ``[W^T; b]`` ``(C_in + 1, C_out)``, to multiply ``[x, 1]``.

    The weight is masked first if ``conv`` is a :class:`MaskedConv2d`; no bias gives zeros.
    """
    weight = conv.masked_weight() if isinstance(conv, MaskedConv2d) else conv.weight
    return matrix_and_bias(weight, bias_or_zeros(conv))
