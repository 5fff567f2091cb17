"""The discretized logistic mixture likelihood of PixelCNN++.

Salimans et al., *PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture
Likelihood and Other Modifications*, 2017, https://arxiv.org/abs/1701.05517.

A whole pixel of ``C`` channels is one draw. Each of ``K`` mixture components holds, per
channel, a logistic distribution over the intensity rescaled to ``[-1, 1]``, discretized into
``levels`` bins of width ``2 / (levels - 1)`` (the outermost bins reach to infinity). Inside a
component the channels are linearly dependent: the mean of channel ``c`` is shifted by
``tanh``-bounded coefficients times the values of channels ``0 .. c - 1`` of the same pixel
(G on R, B on R and G for RGB). The network's output at a pixel therefore depends on earlier
*pixels* only (pixel-wise masks, see :mod:`autoregressive.layers.masks`).

Raw parameters per pixel, ``P = K * (1 + 2C + C(C-1)/2)`` of them (100 for ``K = 10``, RGB),
laid out in this order along the channel dimension, component index fastest::

    [ logits (K) | means (C, K) | log-scales (C, K) | coefficients (C(C-1)/2, K) ]

with the coefficient pairs ordered ``(1, 0), (2, 0), (2, 1), (3, 0), ...`` (``(c, d)``: channel
``d``'s effect on channel ``c``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from ..validation import check_int
from .base import (
    _LEVELS,
    Distribution,
    DrawPlan,
    _check_scored,
    _check_temperature,
    check_integer_levels,
)

__all__ = ["DiscretizedLogisticMixture"]

#: log-scales are clamped below at this value (a scale of ~1e-3, far below one bin)
MIN_LOG_SCALE = -7.0


def _pairs(channels: int) -> int:
    """Number of coefficients per component, ``C(C-1)/2``."""
    return channels * (channels - 1) // 2


def _pair_index(c: int, d: int) -> int:
    """Position of the coefficient of channel ``d`` on channel ``c > d``."""
    return c * (c - 1) // 2 + d


@dataclass(frozen=True)
class DiscretizedLogisticMixture(Distribution):
    r"""A mixture of ``mixtures`` discretized logistics per pixel, PixelCNN++'s likelihood.

    Models the ``C`` channels of a pixel jointly (``joint``): its :meth:`draw_plan` draws a
    whole pixel per step, so the network needs pixel-wise masks. Edge bins extend to
    :math:`\pm\infty` (the CDF itself at ``0``, one minus it at ``levels - 1``); an interior bin
    whose probability falls below :math:`64\epsilon` of the working dtype (``7.6e-6`` in
    float32, the paper's ``1e-5``) is scored by the density at its centre times its width. The
    difference of the two CDF values is taken on the side of the mean where both are small, so
    it keeps its digits far in either tail. Half-precision inputs are scored in float32.

    Args:
        mixtures: number of mixture components ``K``.
        levels: intensity values per channel (``2 ** bits``: 256 for 8-bit images).
        temperature: divides the mixture logits and multiplies every logistic's scale (1: the
            model as trained; below 1 sharpens both).

    Shape:
        - raw parameters: :math:`(N, P, H, W)` with ``P = num_params(C)``
        - ``x``: :math:`(N, C, H, W)` integers in ``[0, levels)``
        - :meth:`log_prob`: :math:`(N,)`; :meth:`sample_pixel`: ``(N, P), (N, C + 1) -> (N, C)``

    Example:
        >>> d = DiscretizedLogisticMixture(mixtures=2, levels=256)
        >>> d.num_params(3), d.noise_channels(3)
        (20, 4)
        >>> raw = torch.zeros(1, 20, 1, 1)  # one RGB pixel, both components at mean 0, scale 1
        >>> d.log_prob(raw, torch.tensor([[[[127]], [[128]], [[128]]]])).shape
        torch.Size([1])
    """

    mixtures: int = 10
    levels: int = 256
    temperature: float = 1.0

    def __post_init__(self) -> None:
        name = type(self).__name__
        mixtures = check_int("mixtures", self.mixtures, 1, owner=name, hint=" (PixelCNN++: 10)")
        levels = check_int("levels", self.levels, 2, owner=name, hint=_LEVELS)
        object.__setattr__(self, "mixtures", mixtures)  # a numpy int as an int: one hash
        object.__setattr__(self, "levels", levels)
        _check_temperature(name, self.temperature)

    # ------------------------------------------------------------------ layout
    def num_params(self, data_channels: int) -> int:
        """Raw parameters per pixel, ``K * (1 + 2C + C(C-1)/2)``."""
        return self.mixtures * (1 + 2 * data_channels + _pairs(data_channels))

    def noise_channels(self, data_channels: int) -> int:
        """One uniform for the component, one per channel: ``C + 1``."""
        return data_channels + 1

    def image_channels(self, noise_channels: int) -> int:
        if noise_channels < 2:
            raise ValueError(
                "noise for a DiscretizedLogisticMixture has C + 1 channels (one for the "
                f"component, one per image channel), got {noise_channels}; draw it with "
                "draw_noise((N, distribution.noise_channels(C), H, W))"
            )
        return noise_channels - 1

    def split(
        self, raw: torch.Tensor, channels: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The parameters of each component, tempered, log-scales clamped.

        Args:
            raw: raw parameters along the last dimension, ``(..., P)``.
            channels: the image's channels ``C``.

        Returns:
            ``(logits (..., K), means (..., C, K), log_scales (..., C, K),
            coefficients (..., C(C-1)/2, K))``; see :meth:`constrain`.
        """
        k, c = self.mixtures, channels
        logits, means, log_scales, coeffs = raw.split([k, c * k, c * k, _pairs(c) * k], dim=-1)
        split = "... (c k) -> ... c k"
        means, log_scales, coeffs = (rearrange(t, split, k=k) for t in (means, log_scales, coeffs))
        return (self.tempered(logits), means, *self.constrain(log_scales, coeffs))

    def constrain(
        self, log_scales: torch.Tensor, coeffs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw log-scales and coefficients to the values the likelihood uses (any shapes).

        The log-scales are clamped below at ``-7``, plus ``log(temperature)``; the
        coefficients pass through ``tanh``.
        """
        log_scales = log_scales.clamp(min=MIN_LOG_SCALE)
        if self.temperature != 1.0:
            log_scales = log_scales + math.log(self.temperature)
        return log_scales, torch.tanh(coeffs)

    def rescale(self, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Intensities ``0 .. levels - 1`` to bin centres in ``[-1, 1]``, in ``dtype``."""
        return v.to(dtype) * (2.0 / (self.levels - 1)) - 1.0

    @staticmethod
    def channel_mean(
        c: int, means: torch.Tensor, coeffs: torch.Tensor, earlier: list[torch.Tensor]
    ) -> torch.Tensor:
        """Mean of channel ``c`` in every component, ``(..., K)``.

        Args:
            c: the channel.
            means: ``(..., C, K)``.
            coeffs: ``(..., C(C-1)/2, K)``.
            earlier: the values of channels ``0 .. c - 1`` in ``[-1, 1]``, each ``(..., 1)``.
        """
        mean = means[..., c, :]
        for d, value in enumerate(earlier[:c]):
            mean = mean + coeffs[..., _pair_index(c, d), :] * value
        return mean

    # -------------------------------------------------------------- likelihood
    def bin_log_prob(
        self, v: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
    ) -> torch.Tensor:
        """Log-probability of bin ``v`` under a discretized logistic, elementwise.

        Args:
            v: integer intensities (broadcastable against ``mean``).
            mean: means in the ``[-1, 1]`` scale.
            log_scale: log-scales (already clamped).

        Returns:
            The broadcast shape of the arguments, in ``mean``'s dtype.
        """
        dtype = mean.dtype
        half = 1.0 / (self.levels - 1)  # half a bin's width
        centred = self.rescale(v, dtype) - mean
        inv_scale = torch.exp(-log_scale)
        upper, lower = inv_scale * (centred + half), inv_scale * (centred - half)
        mid = inv_scale * centred
        # sigma(upper) - sigma(lower), mirrored where both are close to 1 to keep the digits
        delta = torch.where(
            mid > 0,
            torch.sigmoid(-lower) - torch.sigmoid(-upper),
            torch.sigmoid(upper) - torch.sigmoid(lower),
        )
        tiny = 64 * torch.finfo(dtype).eps
        log_pdf_mid = mid - log_scale - 2.0 * F.softplus(mid)  # log density at the centre
        interior = torch.where(
            delta > tiny,
            torch.log(delta.clamp(min=tiny)),
            log_pdf_mid + math.log(2.0 * half),  # tiny bin: density times width
        )
        first = F.logsigmoid(upper)  # log CDF(upper): bin 0 reaches to -inf
        last = F.logsigmoid(-lower)  # log(1 - CDF(lower)): the top bin reaches to +inf
        return torch.where(v == 0, first, torch.where(v == self.levels - 1, last, interior))

    def log_prob(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Log-likelihood in nats per image, ``(N, P, H, W)``, ``(N, C, H, W)`` -> ``(N,)``."""
        channels = x.shape[1] if isinstance(x, torch.Tensor) and x.dim() == 4 else 1
        _check_scored(raw, x, self.num_params(channels), per_channel=False)
        dtype = torch.promote_types(raw.dtype, torch.float32)
        params = rearrange(raw.to(dtype), "n p h w -> n h w p")
        logits, means, log_scales, coeffs = self.split(params, channels)
        v = rearrange(x, "n c h w -> n h w c").long().unsqueeze(-1)  # (N, H, W, C, 1)
        values = self.rescale(v, dtype).unbind(-2)  # C tensors (N, H, W, 1)
        logp = torch.log_softmax(logits, dim=-1)  # (N, H, W, K): the component weights
        for c in range(channels):
            mean = self.channel_mean(c, means, coeffs, list(values))  # (N, H, W, K)
            logp = logp + self.bin_log_prob(v[..., c, :], mean, log_scales[..., c, :])
        return torch.logsumexp(logp, dim=-1).flatten(1).sum(1)  # (N,)

    # ---------------------------------------------------------------- sampling
    def draw_plan(self, data_channels: int) -> DrawPlan:
        """One sub-step per pixel: all ``num_params(C)`` parameters, ``C + 1`` uniforms."""
        return DrawPlan(
            data_channels,
            "pixel",
            params=self.num_params(data_channels),
            noise_shape=(self.noise_channels(data_channels),),
        )

    def draw(self, raw: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The plan's one sub-step: :meth:`sample_pixel`, ``(N, P), (N, C + 1) -> (N, C)``."""
        return self.sample_pixel(raw, noise)

    def sample_pixel(self, raw: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Inverse-CDF draw of whole pixels.

        ``noise[:, 0]`` picks the component by the inverse CDF of ``softmax(logits / T)``;
        ``noise[:, 1 + c]`` draws channel ``c`` by the inverse CDF of its discretized logistic,
        whose mean depends on the channels already drawn (their bin centres). Worked in units
        of bins, so that each channel after the component's costs a few tensor operations.

        Args:
            raw: the pixel's raw parameters ``(N, P)``.
            noise: uniforms in ``[0, 1)``, ``(N, C + 1)``.

        Returns:
            Intensities ``(N, C)``, ``long``.
        """
        channels, k = noise.shape[1] - 1, self.mixtures
        raw = raw.to(noise.dtype)
        cdf = torch.softmax(self.tempered(raw[:, :k]), dim=-1).cumsum(-1)  # (N, K)
        pick = (noise[:, :1] >= cdf).sum(-1, keepdim=True).clamp_(max=k - 1)  # (N, 1)
        per_component = raw[:, k:].unflatten(1, (-1, k))  # (N, 2C + C(C-1)/2, K)
        index = pick[:, None].expand(-1, per_component.shape[1], 1)  # (N, 2C + C(C-1)/2, 1)
        chosen = per_component.gather(2, index).squeeze(2)  # the picked component's
        mean, log_scale, coeffs = chosen.split([channels, channels, _pairs(channels)], dim=1)
        log_scale, coeffs = self.constrain(log_scale, coeffs)
        u = noise[:, 1:]
        half = (self.levels - 1) / 2.0  # bins per unit of the [-1, 1] scale
        logistic = mean + 1.0 + log_scale.exp() * (torch.log(u) - torch.log1p(-u))  # (N, C)
        bins = logistic * half  # each channel's draw in bins, before the shifts
        centred: list[torch.Tensor] = []  # bin centre times half, v - half, of drawn channels
        drawn: list[torch.Tensor] = []
        for c in range(channels):
            b = bins[:, c]
            for d in range(c):  # the shift by earlier channels: coefficient * centre * half
                b = torch.addcmul(b, coeffs[:, _pair_index(c, d)], centred[d])
            v = b.round().clamp_(0, self.levels - 1)  # (N,): the bin holding the draw
            drawn.append(v)
            centred.append(v - half)
        return torch.stack(drawn, dim=1).long()  # (N, C)

    # ------------------------------------------------------------------ coding
    def pick_channels(
        self, raw: torch.Tensor, pick: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        r"""A whole pixel chosen channel by channel from each channel's conditional table.

        Channel ``c``'s table is :math:`p(x_c \mid x_{<c}) = \sum_k w_k\, p_k(x_c \mid
        x_{<c})`, where the weights :math:`w_k \propto \pi_k \prod_{d<c} p_k(x_d \mid x_{<d})`
        are the components' posterior given the channels already chosen (each channel's mean
        shifted by them, as in :meth:`log_prob`). Their product over the channels is the
        pixel's probability under :meth:`log_prob`. Worked in float64.

        Args:
            raw: the pixel's raw parameters ``(N, P)``.
            pick: ``(N, L) -> (N,)``, called once per channel (see
                :meth:`~autoregressive.Distribution.pick_channels`).

        Returns:
            Intensities ``(N, C)``, ``long``.

        Example:
            >>> d = DiscretizedLogisticMixture(mixtures=2, levels=4)
            >>> tables = []
            >>> pick = lambda p: tables.append(p) or torch.full((1,), 2)  # always the value 2
            >>> d.pick_channels(torch.zeros(1, d.num_params(3)), pick), len(tables)
            (tensor([[2, 2, 2]]), 3)
        """
        channels = self._channels_of(raw.shape[1])
        logits, means, log_scales, coeffs = self.split(raw.to(torch.float64), channels)
        log_weights = torch.log_softmax(logits, dim=-1)  # (N, K): the components' posterior
        earlier: list[torch.Tensor] = []  # chosen channels in [-1, 1], each (N, 1)
        chosen: list[torch.Tensor] = []
        for c in range(channels):
            mean = self.channel_mean(c, means, coeffs, earlier)  # (N, K)
            bins = self._bin_probabilities(mean, log_scales[:, c])  # (N, L, K)
            weights = torch.softmax(log_weights, dim=-1)[:, None, :]  # (N, 1, K)
            v = pick((bins * weights).sum(-1)).long()  # (N,)
            log_weights = log_weights + self.bin_log_prob(v[:, None], mean, log_scales[:, c])
            earlier.append(self.rescale(v[:, None], torch.float64))
            chosen.append(v)
        return torch.stack(chosen, dim=1)  # (N, C)

    def _bin_probabilities(self, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """Every bin's probability under each component, ``(N, K), (N, K) -> (N, L, K)``.

        Differences of the CDF below the mean and of one minus it above, so that both tails
        keep their digits; the edge bins reach to infinity.
        """
        inner = torch.arange(1, self.levels, dtype=mean.dtype, device=mean.device)
        edges = (2 * inner - 1) / (self.levels - 1) - 1.0  # (L - 1,): the inner bin edges
        z = (edges[None, :, None] - mean[:, None, :]) * torch.exp(-log_scale)[:, None, :]
        n, k = mean.shape
        zero, one = z.new_zeros(n, 1, k), z.new_ones(n, 1, k)
        below = torch.cat([zero, torch.sigmoid(z), one], dim=1)  # (N, L + 1, K): CDF
        above = torch.cat([one, torch.sigmoid(-z), zero], dim=1)  # 1 - CDF
        centres = self.rescale(torch.arange(self.levels, device=mean.device), mean.dtype)
        right = centres[None, :, None] > mean[:, None, :]  # (N, L, K): bins above the mean
        return torch.where(right, above[:, :-1] - above[:, 1:], below[:, 1:] - below[:, :-1])

    def _channels_of(self, params: int) -> int:
        """The channels ``C`` whose pixel has ``params`` raw parameters."""
        for c in range(1, params + 1):
            if self.num_params(c) == params:
                return c
        raise ValueError(
            f"{params} raw parameters fit no number of channels for {self.mixtures} mixtures: "
            "pass a pixel's num_params(C) parameters"
        )

    # ------------------------------------------------------------------ inputs
    def validate(self, x: torch.Tensor) -> None:
        check_integer_levels(x, self.levels, "DiscretizedLogisticMixture")

    def preprocess(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.rescale(x, dtype)

    def shape_params(self, raw: torch.Tensor, data_channels: int) -> torch.Tensor:
        """The raw parameters ``(N, P, H, W)`` unchanged, in the layout of the module docstring."""
        return raw

    def output_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return torch.long
