"""Causal layers: masks, the masked convolution, residual and gated blocks, an embedding.

Each layer owns its module (``forward``), its weight folding and a short ``stepper()`` hook that
builds its stepper from :mod:`autoregressive.sampling`, which never imports a layer.

- :mod:`~autoregressive.layers.masks`: the causal masks (:func:`causal_mask`).
- :mod:`~autoregressive.layers.conv`: :class:`MaskedConv2d`.
- :mod:`~autoregressive.layers.residual`: PixelCNN's :class:`ResidualBlock`.
- :mod:`~autoregressive.layers.gated`: Gated PixelCNN's :class:`GatedBlock` and
  :class:`GatedStack`.
- :mod:`~autoregressive.layers.projection`: :class:`ConditionProjection`, the conditioning's
  projection into a block.
- :mod:`~autoregressive.layers.embedding`: :class:`CategoricalEmbedding`.
- :mod:`~autoregressive.layers.sequential`: :class:`CausalSequential`.
"""

from .conv import MaskedConv2d
from .embedding import CategoricalEmbedding
from .gated import GatedBlock, GatedStack, gate
from .masks import causal_mask, channel_groups, mask_groups
from .projection import ConditionProjection
from .residual import ResidualBlock
from .sequential import CausalSequential

__all__ = [
    "CategoricalEmbedding",
    "CausalSequential",
    "ConditionProjection",
    "GatedBlock",
    "GatedStack",
    "MaskedConv2d",
    "ResidualBlock",
    "causal_mask",
    "channel_groups",
    "gate",
    "mask_groups",
]
