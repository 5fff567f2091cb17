"""The masked convolution of PixelCNN (van den Oord et al., 2016, https://arxiv.org/abs/1601.06759)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .masks import causal_mask, check_kernel_size, check_mask_type
from .stepping import Stepper

__all__ = ["ConvStepper", "MaskedConv2d"]


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
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
        if dh < 1 or dw < 1:
            raise ValueError(f"dilation must be >= 1, got {dilation!r}")
        for name, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
            if channels < 1:
                raise ValueError(f"{name} must be >= 1, got {channels}")
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

    def masked_weight(self) -> torch.Tensor:
        """The weight the convolution uses, ``weight * mask``: ``(C_out, C_in, kh, kw)``."""
        return self.weight * self.mask

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() != 4 or input.shape[1] != self.in_channels:
            raise ValueError(
                f"MaskedConv2d expects input of shape (N, {self.in_channels}, H, W), "
                f"got {tuple(input.shape)}"
            )
        return self._conv_forward(input, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        s = super().extra_repr() + f", mask_type={self.mask_type!r}"
        if self.data_channels != 1:
            s += f", data_channels={self.data_channels}"
        return s

    def stepper(self, batch: int, width: int, cond: torch.Tensor | None = None) -> ConvStepper:
        """A :class:`ConvStepper` for cached sampling (``cond`` is unused)."""
        bias = self.bias.detach() if self.bias is not None else None
        return ConvStepper(
            self.masked_weight().detach(),
            bias,
            batch,
            width,
            dilation=self.dilation,
            reads_image=self.mask_type == "A",
        )


class ConvStepper(Stepper):
    """A causal convolution one pixel at a time: one matrix product per step.

    The cache holds the input rows the kernel can reach, ``kh // 2 * dh + 1`` of them with the
    current row last, laid out ``(N, W + 2 pad, rows, C_in)`` (column-major), so that the whole
    kernel window of a pixel is one contiguous run of ``span * rows * C_in`` numbers per image:
    a strided ``(N, K)`` view, prepared once per column, that multiplies a ``(K, C_out)`` matrix
    holding the weight (zeros where the window covers a not-yet-computed pixel of the current
    row: those cached values are stale but finite, so they add exactly zero).

    Args:
        weight: the masked weight ``(C_out, C_in, kh, kw)``; taps after the centre must be zero.
        bias: ``(C_out,)``, ``(N, C_out)`` or ``None``.
        batch: images sampled at once, ``N``.
        width: image width ``W``.
        dilation: ``(dh, dw)``.
        reads_image: whether this is a mask-A first layer.

    Shape:
        - :meth:`step`: ``(N, C_in) -> (N, C_out)``
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        batch: int,
        width: int,
        *,
        dilation: tuple[int, ...] = (1, 1),
        reads_image: bool = False,
    ) -> None:
        out_ch, in_ch, kh, kw = weight.shape
        dh, dw = dilation
        ch, cw = kh // 2, kw // 2
        assert not bool(weight[:, :, ch + 1 :].any()), "rows below the centre must be masked"
        assert not bool(weight[:, :, ch, cw + 1 :].any()), "taps after the centre must be masked"
        self.bias = bias
        self.reads_image = reads_image
        self.rows = ch * dh + 1  # the current row is the last
        self.pad = cw * dw
        # columns the window spans: the whole kernel width when rows above are read, else only
        # up to the current pixel
        span = (kw - 1) * dw + 1 if self.rows > 1 else cw * dw + 1
        dense = weight.new_zeros(span, self.rows, in_ch, out_ch)  # (span, rows, I, O)
        for a in range(ch + 1):
            for b in range(kw if a < ch else cw + 1):
                dense[b * dw, a * dh] = weight[:, :, a, b].t()
        self.matrix = dense.reshape(span * self.rows * in_ch, out_ch)  # (K, O)
        # (N, W + 2 pad, rows, I)
        self.cache = weight.new_zeros(batch, width + 2 * self.pad, self.rows, in_ch)
        flat = self.cache.view(batch, -1)
        block = self.rows * in_ch
        self.windows = [flat[:, j * block : (j + span) * block] for j in range(width)]  # (N, K)
        self.inputs = [self.cache[:, j + self.pad, -1] for j in range(width)]  # (N, I)
        self.pointwise = kh == 1 and kw == 1  # no neighbours: multiply the input directly

    def begin_row(self, i: int) -> None:
        if self.rows > 1:  # shift the rows up; the last slot becomes the current row
            self.cache[:, :, :-1] = self.cache[:, :, 1:].clone()

    def write(self, j: int, x: torch.Tensor) -> None:
        self.inputs[j].copy_(x)

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        if self.pointwise:
            return self.product(x)
        self.inputs[j].copy_(x)
        return self.compute(j)

    def product(self, x: torch.Tensor, seed: torch.Tensor | None = None) -> torch.Tensor:
        """``seed + x @ matrix`` ``(N, C_out)``, with the bias if there is no ``seed``."""
        seed = self.bias if seed is None else seed
        return torch.mm(x, self.matrix) if seed is None else torch.addmm(seed, x, self.matrix)

    def compute(self, j: int, seed: torch.Tensor | None = None) -> torch.Tensor:
        """Output ``(N, C_out)`` at column ``j`` from the cache (inputs written beforehand)."""
        return self.product(self.windows[j], seed)

    def cache_nbytes(self) -> int:
        return self.cache.numel() * self.cache.element_size()
