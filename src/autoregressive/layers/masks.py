"""Causal masks for masked convolutions.

PixelCNN (van den Oord et al., 2016, https://arxiv.org/abs/1601.06759) orders the pixels of an
image in raster order (row by row, left to right) and, for colour images, the channels of a pixel
one after the other (R, then G, then B). A masked convolution may only look at what comes before
the pixel it predicts. This module builds those masks with one pure function,
:func:`~autoregressive.causal_mask`; :class:`~autoregressive.MaskedConv2d` multiplies its weight
by the result.

For a 5x5 kernel the spatial part of the masks is (``x`` kept, ``.`` zeroed, ``C`` the centre)::

    mask A          mask B
    x x x x x       x x x x x
    x x x x x       x x x x x
    x x . . .       x x C . .      C: kept by mask B, dropped by mask A
    . . . . .       . . . . .
    . . . . .       . . . . .

With ``data_channels > 1`` the channels of every layer are split into ``data_channels``
contiguous groups (group 0 belongs to R, group 1 to G, ...). At the centre, mask A lets output
group ``g`` see input groups ``< g`` and mask B input groups ``<= g``; away from the centre every
group sees every group.

**Two colour modes.** The masks above are *channel-wise* (``colour="channel"``): the channels
of a pixel are predicted one after the other, as the PixelCNN paper's per-channel softmax
needs. A likelihood that models the whole pixel at once (PixelCNN++'s discretized logistic
mixture, :class:`~autoregressive.DiscretizedLogisticMixture`) needs *pixel-wise* masks
(``colour="pixel"``): the output at a pixel depends on every channel of the earlier pixels and
on nothing at the pixel itself. Those are exactly the masks of **one** colour group: mask A
drops the centre for every channel, mask B keeps it, whatever the image's channel count. So
the layers need no extra mode: build them with ``data_channels=1`` (the number of colour
*groups* of their masks), e.g. ``MaskedConv2d(3, 64, 7, "A", data_channels=1)`` for an RGB
first layer. :func:`mask_groups` names the choice; :class:`~autoregressive.PixelCNNConfig`
takes it from the distribution's :class:`~autoregressive.DrawPlan` (its ``colour``).
"""

from __future__ import annotations

from typing import Literal

import torch

from ..distributions.base import COLOUR_MODES
from ..validation import check_choice, check_int, check_pair

MaskType = Literal["A", "B"]
MASK_TYPES: tuple[MaskType, ...] = ("A", "B")
_MASK_TYPES = "'A' (excludes the current pixel: first layer) or 'B' (includes it: later layers)"
_COLOURS = (
    "'channel' (channel-wise masks: each channel of a pixel sees the earlier ones) or 'pixel' "
    "(pixel-wise: whole pixels)"
)

__all__ = ["MaskType", "causal_mask", "channel_groups", "mask_groups"]


def mask_groups(data_channels: int, colour: str = "channel") -> int:
    """Colour groups of the masks for an image of ``data_channels`` channels.

    Args:
        data_channels: channels of the image (1 for grey, 3 for RGB).
        colour: ``"channel"`` (channel-wise: one group per image channel) or ``"pixel"``
            (pixel-wise: one group, whole pixels predicted at once).

    Returns:
        The ``data_channels`` argument to give the layers: ``data_channels`` or ``1``.

    Raises:
        TypeError: ``data_channels`` is not an int.
        ValueError: ``data_channels < 1``, or ``colour`` is neither choice.

    Example:
        >>> mask_groups(3, "channel"), mask_groups(3, "pixel")
        (3, 1)
    """
    data_channels = check_int("data_channels", data_channels, 1)
    check_choice("colour", colour, COLOUR_MODES, describe=_COLOURS)
    return data_channels if colour == "channel" else 1


def check_kernel_size(kernel_size: int | tuple[int, int]) -> tuple[int, int]:
    """``kernel_size`` as ``(kh, kw)``.

    Raises:
        TypeError: neither an int nor a pair of ints.
        ValueError: an entry that is not odd and positive.
    """
    kh, kw = check_pair("kernel_size", kernel_size)
    if kh < 1 or kw < 1 or kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd and positive in both dimensions so that the current pixel "
            f"sits at the kernel's centre, got {(kh, kw)}; use e.g. 3, 5, 7 or (3, 5)"
        )
    return kh, kw


def check_mask_type(mask_type: str) -> MaskType:
    """Return ``mask_type`` or raise ``ValueError`` unless it is ``"A"`` or ``"B"``."""
    return check_choice("mask_type", mask_type, MASK_TYPES, describe=_MASK_TYPES)


def channel_groups(channels: int, data_channels: int) -> torch.Tensor:
    """Colour group of each of ``channels`` feature channels.

    Args:
        channels: number of feature channels; must be divisible by ``data_channels``.
        data_channels: number of colour channels of the image (1 for grey, 3 for RGB).

    Returns:
        ``LongTensor`` of shape ``(channels,)``: channel ``k`` belongs to group
        ``k // (channels // data_channels)``.

    Raises:
        TypeError: a count is not an int.
        ValueError: a count below 1, or ``channels`` not divisible by ``data_channels``.

    Example:
        >>> channel_groups(6, 3).tolist()
        [0, 0, 1, 1, 2, 2]
    """
    data_channels = check_int("data_channels", data_channels, 1)
    channels = check_int("channels", channels, 1)
    if channels % data_channels != 0:
        raise ValueError(
            f"{channels} channels cannot be split into {data_channels} colour groups: use a "
            f"multiple of data_channels={data_channels}"
        )
    return torch.arange(channels) // (channels // data_channels)


def causal_mask(
    out_channels: int,
    in_channels: int,
    kernel_size: int | tuple[int, int],
    mask_type: str = "B",
    data_channels: int = 1,
) -> torch.Tensor:
    """Build the 0/1 mask of a causal convolution.

    Args:
        out_channels: output channels of the convolution.
        in_channels: input channels of the convolution.
        kernel_size: odd kernel size, ``k`` or ``(kh, kw)``.
        mask_type: ``"A"`` excludes the current pixel (the network's first layer), ``"B"``
            includes it (every later layer).
        data_channels: colour channels of the image; both channel counts must be divisible by it.

    Returns:
        Boolean tensor of shape ``(out_channels, in_channels, kh, kw)``, the same layout as a
        ``Conv2d`` weight.

    Example:
        >>> causal_mask(1, 1, 3, "A")[0, 0].int().tolist()
        [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
        >>> causal_mask(1, 1, 3, "B")[0, 0].int().tolist()
        [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    """
    kh, kw = check_kernel_size(kernel_size)
    mask_type = check_mask_type(mask_type)
    g_out = channel_groups(out_channels, data_channels)  # (O,)
    g_in = channel_groups(in_channels, data_channels)  # (I,)
    ch, cw = kh // 2, kw // 2

    rows = torch.arange(kh).view(kh, 1)
    cols = torch.arange(kw).view(1, kw)
    before = (rows < ch) | ((rows == ch) & (cols < cw))  # (kh, kw): strictly earlier pixels
    centre = (rows == ch) & (cols == cw)  # (kh, kw)

    if mask_type == "A":
        centre_ok = g_out.view(-1, 1) > g_in.view(1, -1)  # (O, I)
    else:
        centre_ok = g_out.view(-1, 1) >= g_in.view(1, -1)  # (O, I)
    return before | (centre & centre_ok[:, :, None, None])  # (O, I, kh, kw)
