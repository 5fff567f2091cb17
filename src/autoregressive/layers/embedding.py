"""An input embedding for images whose values are categories, not intensities.

A PixelCNN prior over the codes of a VQ-VAE (van den Oord et al., *Neural Discrete
Representation Learning*, 2017, https://arxiv.org/abs/1711.00937) models code indices that have
no order: code 7 is no closer to code 8 than to code 300. Rescaling them to ``[-1, 1]``, as
intensities are, invents an order; :class:`CategoricalEmbedding` instead maps each data
channel's code to a vector, a learned one (an ``nn.Embedding(levels, d)`` per data channel) or
its one-hot encoding.

The ``d`` channels of data channel ``c`` are the contiguous block ``[c * d, (c + 1) * d)``, so
they form colour group ``c`` of :func:`~autoregressive.channel_groups` and the channel-wise
masks of the layers above keep their meaning. The layer maps each sub-pixel on its own, so its
cached-sampling stepper is pixelwise (:attr:`~autoregressive.Stepper.pixelwise`): the sampler
passes each drawn pixel through it before the first masked layer stores it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..conditioning import RowConditioning
from ..sampling.stepping import Stepper
from ..validation import check_bool, check_int, check_optional_int
from .reprs import changed_options

__all__ = ["CategoricalEmbedding"]


class CategoricalEmbedding(nn.Module):
    r"""Embed integer codes per data channel: a learned table per channel, or one-hot.

    Args:
        levels: number of codes per data channel, ``L``; inputs hold integers in ``[0, L)``.
        embedding_dim: width ``d`` of one code's vector. Default (``None``): ``levels``. A
            one-hot embedding (``learned=False``) has width ``levels`` and accepts no other.
        data_channels: channels ``C`` of the input, each with its own table.
        learned: a learned table (initialised :math:`\mathcal{N}(0, 1)`, as ``nn.Embedding``)
            or a fixed one-hot encoding (no parameters).
        device: device of the table.
        dtype: dtype of the table (and of the output).

    The codes are read with ``.long()`` and not checked (reading values would cost a device
    sync on every call): :class:`~autoregressive.PixelCNN` validates its inputs before.

    Shape:
        - Input: :math:`(N, C, H, W)`, integer codes (any dtype, e.g. float as the samplers pass
          them)
        - Output: :math:`(N, C \cdot d, H, W)`, data channel ``c`` in channels
          ``[c * d, (c + 1) * d)``

    Example:
        >>> embed = CategoricalEmbedding(levels=512, embedding_dim=16, data_channels=1)
        >>> codes = torch.randint(0, 512, (2, 1, 8, 8))
        >>> embed(codes).shape
        torch.Size([2, 16, 8, 8])
        >>> CategoricalEmbedding(3, learned=False)(torch.tensor([[[[2.0]]]])).flatten().tolist()
        [0.0, 0.0, 1.0]
    """

    weight: torch.Tensor
    offsets: torch.Tensor

    def __init__(
        self,
        levels: int,
        embedding_dim: int | None = None,
        data_channels: int = 1,
        *,
        learned: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        levels = check_int("levels", levels, 2)
        data_channels = check_int("data_channels", data_channels, 1)
        learned = check_bool("learned", learned)
        dim = check_optional_int("embedding_dim", embedding_dim, 1) or levels
        if not learned and dim != levels:
            raise ValueError(
                f"a one-hot embedding has width levels={levels}, got embedding_dim={dim}: leave "
                "embedding_dim at None, or use learned=True for another width"
            )
        self.levels, self.embedding_dim, self.data_channels = levels, dim, data_channels
        self.learned = learned
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        table = torch.empty(data_channels, levels, dim, **factory)  # (C, L, d)
        if learned:
            self.weight = nn.Parameter(table)
        else:  # fixed: rebuilt by reset_parameters, so not saved in the state_dict
            self.register_buffer("weight", table, persistent=False)
        self.register_buffer(  # (C,): where channel c's rows start in the flat (C * L, d) table
            "offsets", torch.arange(data_channels, device=device) * levels, persistent=False
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Draw a learned table from :math:`\mathcal{N}(0, 1)`; set a one-hot table to ``I``."""
        with torch.no_grad():
            if self.learned:
                nn.init.normal_(self.weight)
            else:
                self.weight.copy_(torch.eye(self.levels).expand_as(self.weight))

    @property
    def out_channels(self) -> int:
        """Channels of the output, ``data_channels * embedding_dim``."""
        return self.data_channels * self.embedding_dim

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """The vectors of ``codes`` ``(..., C)`` (channels last): ``(..., C * d)``."""
        index = codes.long() + self.offsets  # (..., C): rows of the flat table
        vectors = F.embedding(index, self.weight.flatten(0, 1))  # (..., C, d)
        return vectors.flatten(-2)  # (..., C * d)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() != 4 or input.shape[1] != self.data_channels:
            raise ValueError(
                f"CategoricalEmbedding expects codes of shape (N, {self.data_channels}, H, W), "
                f"got {tuple(input.shape)}"
            )
        vectors = self.lookup(rearrange(input, "n c h w -> n h w c"))  # (N, H, W, C * d)
        return rearrange(vectors, "n h w k -> n k h w")  # (N, C * d, H, W)

    def extra_repr(self) -> str:
        s = f"{self.levels}, {self.embedding_dim}"
        return s + changed_options(self, data_channels=1, learned=True)

    def stepper(self, batch: int, width: int, cond: RowConditioning | None = None) -> Stepper:
        """A pixelwise stepper for cached sampling: ``(N, C)`` codes to ``(N, C * d)``.

        Example:
            >>> s = CategoricalEmbedding(4, learned=False).stepper(batch=2, width=5)
            >>> s.pixelwise, s.step(0, torch.tensor([[1.0], [3.0]])).tolist()
            (True, [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
        """
        return _EmbeddingStepper(self)


class _EmbeddingStepper(Stepper):
    """:meth:`CategoricalEmbedding.lookup` at one pixel, ``(N, C) -> (N, C * d)``.

    The flat table is taken once, and one data channel has no offsets to add: the lookup runs
    twice per pixel (for the step and for the write), so its calls count.
    """

    pixelwise = True
    steps_rows = True

    def __init__(self, embedding: CategoricalEmbedding) -> None:
        self.table = embedding.weight.detach().flatten(0, 1)  # (C * L, d)
        self.offsets = embedding.offsets if embedding.data_channels > 1 else None  # (C,)

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        index = x.long()  # (N, C)
        if self.offsets is not None:
            index = index + self.offsets
        return F.embedding(index, self.table).flatten(1)  # (N, C * d)

    steps_subsets = True  # it keeps nothing of any image

    def step_row(
        self, x: torch.Tensor, start: int = 0, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        n, w, c = x.shape
        return self.step(0, x.reshape(n * w, c)).view(n, w, -1)  # (N, W, C * d)
