"""What every sampler is: an object that holds its options and samples any network.

As diffusers keeps a scheduler apart from the model, a sampler here is an object of its own:
its constructor takes its options, and :meth:`Sampler.sample` takes the network, the output
distribution and the noise that fixes the result.
:meth:`PixelCNN.sample <autoregressive.PixelCNN.sample>` takes one
(``sampler=CachedSampler(rows_at_once=False)``, ``sampler=NaiveSampler()``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import nn

from ..conditioning import Conditioning, check_conditioning
from ..distributions.base import Distribution

__all__ = ["SampleRequest", "Sampler"]


@dataclass(frozen=True)
class SampleRequest:
    """The arguments of one :meth:`Sampler.sample` call, as its hook ``_draw`` receives them.

    Built once by :meth:`Sampler.sample` after checking the kind of ``cond``; see there for
    each field.
    """

    network: nn.Module
    distribution: Distribution
    noise: torch.Tensor
    cond: Conditioning | None
    image: torch.Tensor | None
    known: torch.Tensor | None
    return_params: bool


class Sampler(ABC):
    """A way of drawing images from a causal network and its output distribution.

    A sampler keeps no state of a network between calls, so one object may serve several
    networks; :attr:`last_passes` reports on the most recent call.

    Example:
        >>> from autoregressive import PixelCNN, PixelCNNConfig, CachedSampler, NaiveSampler
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8))
        >>> noise = draw_noise((2, 1, 4, 4), torch.Generator().manual_seed(0))
        >>> images = [s.sample(model.network, model.distribution, noise)
        ...           for s in (CachedSampler(), NaiveSampler())]
        >>> torch.equal(*images)
        True
    """

    #: network passes of the most recent call (steps, or whole-row passes)
    last_passes: int = 0

    @overload
    def sample(
        self,
        network: nn.Module,
        distribution: Distribution,
        noise: torch.Tensor,
        *,
        cond: Conditioning | None = ...,
        image: torch.Tensor | None = ...,
        known: torch.Tensor | None = ...,
        return_params: Literal[False] = ...,
    ) -> torch.Tensor: ...

    @overload
    def sample(
        self,
        network: nn.Module,
        distribution: Distribution,
        noise: torch.Tensor,
        *,
        cond: Conditioning | None = ...,
        image: torch.Tensor | None = ...,
        known: torch.Tensor | None = ...,
        return_params: Literal[True],
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def sample(
        self,
        network: nn.Module,
        distribution: Distribution,
        noise: torch.Tensor,
        *,
        cond: Conditioning | None = None,
        image: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        return_params: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw images ``(N, C, H, W)`` from ``noise`` ``(N, C', H, W)``.

        Args:
            network: a causal network, ``(N, C, H, W) -> (N, C * P, H, W)``.
            distribution: the output distribution.
            noise: uniform noise from :func:`~autoregressive.draw_noise`, with
                ``C' = distribution.noise_channels(C)``; fixes the result.
            cond: a layer-level :class:`~autoregressive.Conditioning` (vectors ``(N, C_cond)``
                and/or maps ``(N, C_map, H, W)``) or ``None``; a bare tensor is refused (wrap a
                vector as ``Conditioning(vector=v)``).
            image: with ``known``, an image ``(N, C, H, W)`` whose known pixels are kept.
            known: bool mask broadcastable to ``(N, C, H, W)``, ``True`` where ``image`` is
                given.
            return_params: also return the raw parameters ``(N, C * P, H, W)`` computed for
                each sub-pixel (teacher forcing, when every pixel is known).

        Returns:
            The images in the network's dtype, and with ``return_params`` the parameters.
        """
        cond = check_conditioning(cond, type(self).__name__)
        return self._draw(
            SampleRequest(network, distribution, noise, cond, image, known, return_params)
        )

    @abstractmethod
    def _draw(self, request: SampleRequest) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """What a sampler implements: :meth:`sample` with its arguments in one request."""
