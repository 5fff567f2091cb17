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
is projected and added to ``a`` and ``b`` of both stacks. The horizontal stack has a residual
connection (from the second block on) and a skip output that the network sums.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_cond, check_int
from .conv import MaskedConv2d
from .masks import check_kernel_size, check_mask_type

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
    if not isinstance(x, torch.Tensor) or not -x.dim() <= dim < x.dim() or x.shape[dim] % 2:
        raise ValueError(f"gate needs a tensor with an even size along dim={dim}")
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
        data_channels: colour channels of the modelled image (channel-wise masks when > 1).
        cond_channels: size of an optional conditioning vector added inside both gates.
        horizontal_output: whether to compute the horizontal output ``h``; the last block of a
            stack only needs its skip output, and without it has no parameter left unused.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: ``v`` and ``h`` :math:`(N, C_{in}, H, W)`, ``cond`` :math:`(N, C_{cond})`
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
        if cond_channels is not None:
            cond_channels = check_int("cond_channels", cond_channels, 1)
        if kh < 3:
            raise ValueError(
                f"a gated block needs a kernel at least 3 rows high (the vertical stack reaches "
                f"kh // 2 rows up), got kernel_size={(kh, kw)}"
            )
        if channels % data_channels != 0:
            raise ValueError(
                f"channels={channels} is not divisible by data_channels={data_channels}"
            )
        if mask_type == "B" and in_channels != channels:
            raise ValueError(
                f"a mask-B gated block is residual: in_channels ({in_channels}) must equal "
                f"channels ({channels})"
            )
        if cond_channels is not None and cond_channels < 1:
            raise ValueError(f"cond_channels must be None or >= 1, got {cond_channels}")
        factory = {"device": device, "dtype": dtype}
        self.in_channels = in_channels
        self.channels = channels
        self.kernel_size = (kh, kw)
        self.mask_type = mask_type
        self.data_channels = data_channels
        self.cond_channels = cond_channels
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
        if cond_channels:
            self.cond_v: nn.Linear | None = nn.Linear(
                cond_channels, 2 * channels, bias=False, **factory
            )
            self.cond_h: nn.Linear | None = nn.Linear(
                cond_channels, 2 * channels, bias=False, **factory
            )
        else:
            self.cond_v = self.cond_h = None

    def vertical_pre(self, v: torch.Tensor) -> torch.Tensor:
        """Vertical convolution before the gate, ``(N, C_in, H, W) -> (N, 2C, H, W)``.

        Output row ``i`` sees input rows ``i - kh//2 .. i - 1`` (mask A) or ``.. i`` (mask B).
        """
        kh, kw = self.kernel_size
        height = v.shape[-2]
        padded = F.pad(v, (kw // 2, kw // 2, kh // 2, 0))  # (N, C_in, H + kh//2, W + 2*(kw//2))
        return self.v_conv(padded)[:, :, :height]  # mask A yields H + 1 rows: drop the last

    def cond_biases(self, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The biases ``(N, 2C)`` that ``cond`` adds inside the vertical and horizontal gates."""
        check_cond(cond, self.cond_channels, "GatedBlock")
        if self.cond_v is None or self.cond_h is None:
            return None
        return self.cond_v(cond), self.cond_h(cond)

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        v_pre = self.vertical_pre(v)  # (N, 2C, H, W)
        h_pre = self.h_conv(h) + self.link(v_pre)  # (N, 2C, H, W)
        check_cond(cond, self.cond_channels, "GatedBlock", batch=v.shape[0])
        biases = self.cond_biases(cond)
        if biases is not None:
            v_pre = v_pre + biases[0][:, :, None, None]
            h_pre = h_pre + biases[1][:, :, None, None]
        h_gated = gate(h_pre)  # (N, C, H, W)
        h_new = None
        if self.h_out is not None:
            h_new = self.h_out(h_gated)
            if self.mask_type == "B":
                h_new = h + h_new
        return gate(v_pre), h_new, self.skip(h_gated)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.channels}, kernel_size={self.kernel_size}, "
            f"mask_type={self.mask_type!r}"
        )
        if self.data_channels != 1:
            s += f", data_channels={self.data_channels}"
        if self.cond_channels:
            s += f", cond_channels={self.cond_channels}"
        return s


class GatedStack(nn.Module):
    r"""A mask-A :class:`GatedBlock` followed by mask-B ones; returns the sum of their skips.

    Args:
        in_channels: channels of the image.
        channels: channels of every block.
        num_blocks: number of blocks, the first one included (>= 1).
        kernel_size: kernel size of the blocks after the first.
        input_kernel_size: kernel size of the first block.
        data_channels: colour channels of the modelled image (channel-wise masks when > 1).
        cond_channels: size of an optional conditioning vector.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`, ``cond`` :math:`(N, C_{cond})`
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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        num_blocks = check_int("num_blocks", num_blocks, 1)
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        common = {
            "data_channels": data_channels,
            "cond_channels": cond_channels,
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
        self.in_channels = in_channels
        self.channels = channels

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        v, h = x, x
        skips = torch.zeros((), dtype=x.dtype, device=x.device)
        for block in self.blocks:
            v, h, skip = block(v, h, cond)  # type: ignore[arg-type] (h is None after the last)
            skips = skips + skip  # (N, C, H, W)
        return skips
