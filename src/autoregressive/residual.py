"""The residual block of PixelCNN.

van den Oord et al., *Pixel Recurrent Neural Networks*, 2016, https://arxiv.org/abs/1601.06759
(figure 5).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
from torch import nn

from .conditioning import check_cond, row_parts
from .conv import MaskedConv2d, matrix_and_bias, row_seed
from .masks import check_kernel_size
from .memo import derived
from .stepping import Stepper, stepper_for
from .validation import check_elementwise, check_int, check_optional_int

__all__ = ["ResidualBlock"]


class ResidualBlock(nn.Module):
    r"""``x + 1x1(act(kxk_B(act(1x1(act(x)) + cond))))``: a bottleneck of masked convolutions.

    The three convolutions are type-B masked (the 1x1 ones only matter for colour, where they
    keep the channel groups apart), so the block is causal whenever its input is. A stack of
    these blocks has the well-known *blind spot*: pixels above and to the right of the current
    one that no path reaches (see :class:`~autoregressive.GatedBlock` for the remedy).

    Args:
        channels: input and output channels (``2h`` in the paper); must be even.
        kernel_size: odd size of the middle masked convolution.
        data_channels: colour groups of the masks: the image's channels for channel-wise
            masks, 1 for grey or pixel-wise masks (see :mod:`autoregressive.masks`).
        dilation: dilation of the middle convolution.
        cond_channels: size of an optional conditioning vector, projected and added after the
            first 1x1 convolution; ``None`` for an unconditional block.
        spatial_channels: channels of an optional conditioning map aligned with the image, added
            at the same place through a 1x1 convolution; ``None`` for none.
        act_layer: activation class, instantiated three times.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: :math:`(N, C, H, W)`; ``cond`` a vector :math:`(N, C_{cond})` or a
          :class:`~autoregressive.Conditioning` (vector and/or map :math:`(N, C_{map}, H, W)`)
        - Output: :math:`(N, C, H, W)`

    Example:
        >>> block = ResidualBlock(16, kernel_size=3)
        >>> block(torch.zeros(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    conditional: ClassVar[bool] = True

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
        self.cond_proj = (
            nn.Linear(cond_channels, mid, bias=False, **factory) if cond_channels else None
        )
        self.spatial_proj = (
            nn.Conv2d(spatial_channels, mid, 1, bias=False, **factory) if spatial_channels else None
        )

    def cond_bias(self, vector: torch.Tensor | None) -> torch.Tensor | None:
        """Project the vector ``(N, C_cond)`` to the bias ``(N, C // 2)`` added inside."""
        return None if self.cond_proj is None or vector is None else self.cond_proj(vector)

    def forward(self, x: torch.Tensor, cond: object = None) -> torch.Tensor:
        vector, spatial = check_cond(
            cond, self.cond_channels, "ResidualBlock", x.shape[0],
            spatial_channels=self.spatial_channels, size=tuple(x.shape[2:]),
        )  # fmt: skip
        h = self.conv1(self.act1(x))  # (N, C/2, H, W)
        bias = self.cond_bias(vector)
        if bias is not None:
            h = h + bias[:, :, None, None]
        if self.spatial_proj is not None:
            h = h + self.spatial_proj(spatial)  # (N, C/2, H, W): V * s
        h = self.conv2(self.act2(h))
        h = self.conv3(self.act3(h))  # (N, C, H, W)
        return x + h

    def extra_repr(self) -> str:
        s = f"channels={self.channels}, cond_channels={self.cond_channels}"
        return s + (f", spatial_channels={self.spatial_channels}" if self.spatial_channels else "")

    def stepper(self, batch: int, width: int, cond: object = None) -> Stepper:
        """A stepper computing the block one pixel at a time, for cached sampling."""
        return _ResidualStepper(self, batch, width, cond)


def _with_ones_column(batch: int, channels: int, like: torch.Tensor) -> torch.Tensor:
    """A ``(N, channels + 1)`` buffer whose last column is 1, so ``buf @ [W; b]`` adds a bias."""
    buf = like.new_zeros(batch, channels + 1)
    buf[:, -1] = 1
    return buf


class _ResidualStepper(Stepper):
    """A :class:`ResidualBlock` per pixel: six tensor operations, whatever the kernel.

    The conditioning vector's bias is folded into the first convolution's bias (``seeds``); a
    conditioning map adds its 1x1 convolution of the current row to that, once per row in
    :meth:`begin_row`. The middle activation writes straight into the kxk convolution's cache,
    and the last convolution's bias rides on a column of ones so that ``x + conv3(act(h))`` is a
    single ``addmm``. :meth:`step_row` runs the same operations over ``(N * M)`` pixels.
    """

    def __init__(self, block: ResidualBlock, batch: int, width: int, cond: object) -> None:
        acts = (block.act1, block.act2, block.act3)
        self.acts = [stepper_for(a, batch, width, cond) for a in acts]
        self.conv1 = block.conv1.stepper(batch, width)
        self.conv2 = block.conv2.stepper(batch, width)
        vector, self.spatial_row = row_parts(cond)
        bias = block.cond_bias(vector)  # (N, C/2) or None
        b1 = self.conv1.bias  # forward's `h = h + bias`, folded into conv1's bias
        bias = b1 if bias is None else (bias if b1 is None else bias + b1)
        self.seeds: list[torch.Tensor | None] = [bias] * width
        self.spatial_matrix = None
        if block.spatial_proj is not None:  # per row: seed_rows = bias + s_row @ V
            self.spatial_matrix = block.spatial_proj.weight.detach()[:, :, 0, 0].t()  # (Cm, C/2)
            mid = self.spatial_matrix.shape[1]
            self.base = (
                self.spatial_matrix.new_zeros(batch * width, mid)
                if bias is None
                else bias.expand(batch, mid).repeat_interleave(width, 0)
            )  # (N * W, C/2)
            self.seed_rows = self.spatial_matrix.new_zeros(batch, width, mid)  # (N, W, C/2)
            self.seeds = [self.seed_rows[:, j] for j in range(width)]
        self.matrix3 = derived(block.conv3, "matrix", lambda: matrix_and_bias(block.conv3))
        self.hidden = _with_ones_column(batch, block.conv3.in_channels, self.matrix3)
        self.hidden_values = self.hidden[:, :-1]  # (N, C/2)
        self.relu = all(type(a) is nn.ReLU for a in acts)
        # whole rows (step_row): conv1's seed at every pixel, (N, W, C/2), (N, C/2), (C/2,) or None
        self.row_seeds = self.seed_rows if self.spatial_matrix is not None else bias
        self.steps_rows = all(a.steps_rows for a in self.acts)
        self.width = width

    def begin_row(self, i: int) -> None:
        self.conv2.begin_row(i)
        if self.spatial_matrix is not None and self.spatial_row is not None:
            n, w, c_map = self.spatial_row.shape
            s = self.spatial_row.reshape(n * w, c_map)  # (N * W, C_map): row i of the map
            torch.addmm(self.base, s, self.spatial_matrix, out=self.seed_rows.view(n * w, -1))

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        view = self.conv2.inputs[j]  # (N, C/2) in the kxk convolution's cache
        if self.relu:  # matrix product and ReLU in one call, into the buffer that reads them
            self.conv1.product(torch.relu(x), self.seeds[j], out=view, relu=True)
            self.conv2.compute(j, out=self.hidden_values, relu=True)
        else:
            a = self.acts[0].step(j, x)  # (N, C)
            view.copy_(self.acts[1].step(j, self.conv1.product(a, self.seeds[j])))
            self.hidden_values.copy_(self.acts[2].step(j, self.conv2.compute(j)))
        return torch.addmm(x, self.hidden, self.matrix3)  # (N, C): x + conv3(act(h)) + bias

    @functools.cached_property
    def hidden_row(self) -> torch.Tensor:
        """``hidden`` for a whole row, ``(N * W, C/2 + 1)`` (made on first use)."""
        return _with_ones_column(
            self.hidden.shape[0] * self.width, self.hidden.shape[1] - 1, self.hidden
        )

    def step_row(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        n, m, c = x.shape  # columns start .. W - 1
        flat = x.reshape(n * m, c)  # (N * M, C)
        seed = row_seed(self.row_seeds, start, self.width)
        hidden = self.hidden_row[: n * m]  # (N * M, C/2 + 1)
        values = hidden[:, :-1]  # (N * M, C/2)
        if self.relu:
            h = self.conv1.product(torch.relu(flat), seed, relu=True)  # (N * M, C/2)
            self.conv2.row_product(h.view(n, m, -1), start=start, out=values, relu=True)
        else:
            a = self.acts[0].step_row(x, start).reshape(n * m, c)
            h = self.acts[1].step_row(self.conv1.product(a, seed).view(n, m, -1), start)
            values.copy_(self.acts[2].step_row(self.conv2.step_row(h, start), start).flatten(0, 1))
        return torch.addmm(flat, hidden, self.matrix3).view(n, m, c)

    def cache_nbytes(self) -> int:
        return self.conv2.cache_nbytes()
