"""Causal layers: masks, the masked convolution, residual and gated blocks, attention, embedding.

Each layer owns its module (``forward``), its weight folding and a short ``stepper()`` hook that
builds its stepper from :mod:`autoregressive.sampling`, which never imports a layer.

- :mod:`~autoregressive.layers.masks`: the causal masks (:func:`causal_mask`).
- :mod:`~autoregressive.layers.conv`: :class:`MaskedConv2d`.
- :mod:`~autoregressive.layers.residual`: PixelCNN's :class:`ResidualBlock`.
- :mod:`~autoregressive.layers.gated`: Gated PixelCNN's :class:`GatedBlock` and
  :class:`GatedStack`.
- :mod:`~autoregressive.layers.gated_residual`: PixelSNAIL's :class:`GatedResidualBlock`.
- :mod:`~autoregressive.layers.attention`: :class:`CausalSelfAttention2d`, PixelSNAIL's causal
  self-attention.
- :mod:`~autoregressive.layers.snail`: :class:`SnailStack`, PixelSNAIL's body.
- :mod:`~autoregressive.layers.projection`: :class:`ConditionProjection`, the conditioning's
  projection into a block.
- :mod:`~autoregressive.layers.embedding`: :class:`CategoricalEmbedding`.
- :mod:`~autoregressive.layers.sequential`: :class:`CausalSequential`.
- ``autoregressive.layers.reprs``: the layers' shared ``extra_repr`` text.
"""

from .attention import CausalSelfAttention2d
from .conv import MaskedConv2d
from .embedding import CategoricalEmbedding
from .gated import GatedBlock, GatedStack, gate
from .gated_residual import GatedResidualBlock
from .masks import causal_mask, channel_groups, mask_groups
from .projection import ConditionProjection
from .residual import ResidualBlock
from .sequential import CausalSequential
from .snail import SnailStack

__all__ = [
    "CategoricalEmbedding",
    "CausalSelfAttention2d",
    "CausalSequential",
    "ConditionProjection",
    "GatedBlock",
    "GatedResidualBlock",
    "GatedStack",
    "MaskedConv2d",
    "ResidualBlock",
    "SnailStack",
    "causal_mask",
    "channel_groups",
    "gate",
    "mask_groups",
]
