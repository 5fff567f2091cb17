"""The conditioning's projection into a layer: ``V^T h`` for a vector, ``V * s`` for a map.

van den Oord et al., *Conditional Image Generation with PixelCNN Decoders*, 2016,
https://arxiv.org/abs/1606.05328 (eq. 4 and 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..conditioning import Conditioning, RowConditioning

__all__ = ["ConditionProjection", "load_renamed"]


class ConditionProjection(nn.Module):
    r"""The bias a conditioning adds to a pre-activation of ``out_channels`` channels.

    A vector ``(N, C_cond)`` goes through a bias-free linear map (``vector``), a map
    ``(N, C_map, H, W)`` through a bias-free 1x1 convolution (``spatial``); each is ``None``
    when its width is. :class:`~autoregressive.ResidualBlock` has one, a
    :class:`~autoregressive.GatedBlock` one per gate.

    Args:
        cond_channels: width of the conditioning vector, or ``None``.
        spatial_channels: channels of the conditioning map, or ``None``.
        out_channels: channels of the pre-activation the bias is added to.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Example:
        >>> from autoregressive.layers import ConditionProjection
        >>> proj = ConditionProjection(3, 2, 8)
        >>> cond = Conditioning(vector=torch.zeros(4, 3), spatial=torch.zeros(4, 2, 5, 5))
        >>> proj(cond).shape
        torch.Size([4, 8, 5, 5])
    """

    def __init__(
        self,
        cond_channels: int | None,
        spatial_channels: int | None,
        out_channels: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.vector = (
            nn.Linear(cond_channels, out_channels, bias=False, **factory) if cond_channels else None
        )
        self.spatial = (
            nn.Conv2d(spatial_channels, out_channels, 1, bias=False, **factory)
            if spatial_channels
            else None
        )

    def vector_bias(self, vector: torch.Tensor | None) -> torch.Tensor | None:
        """``V^T h``: the vector ``(N, C_cond)`` projected to ``(N, out_channels)``, or ``None``."""
        return None if self.vector is None or vector is None else self.vector(vector)

    def forward(self, cond: Conditioning | None) -> torch.Tensor | None:
        """The bias ``(N, out, 1, 1)`` or ``(N, out, H, W)`` of a checked ``cond``, or ``None``."""
        if cond is None:
            return None
        bias = self.vector_bias(cond.vector)
        bias = None if bias is None else bias[:, :, None, None]
        if self.spatial is not None and cond.spatial is not None:
            mapped = self.spatial(cond.spatial)  # (N, out, H, W): V * s
            bias = mapped if bias is None else bias + mapped
        return bias

    def spatial_matrix(self) -> torch.Tensor | None:
        """The map's 1x1 weight as a matrix ``(C_map, out_channels)`` (detached), or ``None``."""
        return None if self.spatial is None else self.spatial.weight.detach()[:, :, 0, 0].t()

    def fold(
        self, cond: RowConditioning | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """For a stepper: the vector's bias ``(N, out)``, the map's matrix, the map's row buffer.

        Each is ``None`` when absent; the row buffer ``(N, W, C_map)`` is the sampler's, which
        it refreshes before every ``begin_row``.
        """
        vector = None if cond is None else cond.vector
        row = None if cond is None or self.spatial is None else cond.spatial_row
        return self.vector_bias(vector), self.spatial_matrix(), row


def load_renamed(state_dict: dict[str, Any], prefix: str, renamed: Mapping[str, str]) -> None:
    """Move each ``prefix + old`` key of a ``state_dict`` being loaded to ``prefix + new``.

    Blocks call it from ``_load_from_state_dict`` so that checkpoints saved before their
    projections became :class:`ConditionProjection` modules still load (same tensors, new
    names). A key already under its new name is left alone.
    """
    for old, new in renamed.items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)
