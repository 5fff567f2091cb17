"""Exact cached sampling: every layer's activation at every pixel is computed once.

Fast PixelCNN++ (Ramachandran et al., 2017, https://arxiv.org/abs/1704.06001) observed that in a
masked-convolution network a layer's activation at pixel ``p`` depends only on earlier pixels, so
once ``p``'s inputs are known it can be computed from cached activations and never again.
Generating an image then costs the arithmetic of **one** forward pass, spread over ``H * W``
steps, instead of ``H * W`` forward passes.

This module is only the driver: each layer computes itself one pixel at a time through the
stepping protocol of :mod:`autoregressive.stepping` (``layer.stepper(batch, width, cond)``),
implemented next to the layer's ``forward``. The sampler draws from the same uniform noise as
:func:`~autoregressive.naive_sample`, so with the same generator it returns the same images.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from einops import rearrange
from torch import nn

from .checks import check_sampling
from .distributions import Distribution
from .sampling import check_completion
from .stepping import Stepper, stepper_for

__all__ = ["CachedSampler", "cached_sample"]

#: rows run eagerly before one row is recorded as a CUDA graph (kernels and handles warm up)
WARMUP_ROWS = 2


@dataclass
class _Rows:
    """The sampler's state, one entry per row; ``rows[i]`` is row ``i``'s views."""

    x: torch.Tensor  # (H, W, N, C): the images being drawn
    u: torch.Tensor  # (H, W, C, N) prepared noise; joint distributions: (H, W, N, C + 1)
    given: torch.Tensor | None  # (H, W, C, N) bool, True where known; joint: (H, W, N, C)
    params: torch.Tensor | None  # (H, W, N, C * P): raw parameters, when asked for

    def _map(self, f: Callable[[torch.Tensor], torch.Tensor]) -> _Rows:
        values = (getattr(self, field.name) for field in fields(self))
        return _Rows(*(None if t is None else f(t) for t in values))  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> _Rows:
        return self._map(lambda t: t[i])

    def empty_like(self) -> _Rows:
        return self._map(torch.empty_like)

    def copy_(self, src: _Rows) -> None:
        for field in fields(self):
            dst = getattr(self, field.name)
            if dst is not None:
                dst.copy_(getattr(src, field.name))


def _record_cuda_graph(row: Callable[[], None]) -> Callable[[], None]:
    """Record ``row`` as a CUDA graph (without running it); return its replay."""
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        row()
    return graph.replay


class CachedSampler:
    """Samples from a causal network with per-layer row caches; see :func:`cached_sample`.

    Every module of the network must implement the stepping protocol
    (:func:`~autoregressive.stepper_for`): :class:`~autoregressive.CausalSequential`,
    :class:`~autoregressive.MaskedConv2d`, :class:`~autoregressive.ResidualBlock`,
    :class:`~autoregressive.GatedStack`, blocks of your own with a ``stepper`` method, and
    elementwise activations. The first layer must read the image causally: a mask-A
    ``MaskedConv2d`` or a ``GatedStack``, as :class:`~autoregressive.PixelCNN` builds.

    On CUDA the per-step work is a few hundred small kernels whose launch overhead would
    dominate, so by default the sampler records one image row (``W`` steps, sampling included)
    as a CUDA graph after a few eager warm-up rows, and replays it for every further
    row: the same kernels on the same buffers, launched at once. ``cuda_graphs=False`` opts out.

    Args:
        network: the causal network, ``(N, C, H, W) -> (N, C * P, H, W)``.
        distribution: the output distribution.
        cuda_graphs: replay rows as CUDA graphs: ``None`` (default) on CUDA devices, ``False``
            never, ``True`` always (a ``ValueError`` if the network is not on a CUDA device).

    Example:
        >>> from autoregressive import PixelCNN, PixelCNNConfig, Bernoulli, draw_noise
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=16))
        >>> sampler = CachedSampler(model.network, Bernoulli())
        >>> sampler.sample(draw_noise((3, 1, 5, 5))).shape
        torch.Size([3, 1, 5, 5])
    """

    def __init__(
        self, network: nn.Module, distribution: Distribution, *, cuda_graphs: bool | None = None
    ) -> None:
        self.network = network
        self.distribution = distribution
        self.cuda_graphs = cuda_graphs
        self.last_cache_nbytes = 0  #: cache bytes of the most recent call
        self.last_used_graph = False  #: whether the most recent call replayed a CUDA graph

    def _stepper(self, batch: int, width: int, cond: torch.Tensor | None) -> Stepper:
        stepper = stepper_for(self.network, batch, width, cond)
        if not stepper.reads_image:
            first = next(iter(self.network.children()), self.network)
            raise ValueError(
                "cached sampling needs a causal network whose first layer is a mask-A "
                "MaskedConv2d or a GatedStack (its stepper sets reads_image); this one starts "
                f"with {type(first).__name__}"
            )
        self.last_cache_nbytes = stepper.cache_nbytes()
        return stepper

    def _row(self, stepper: Stepper, i: int, row: _Rows) -> None:
        """Sample row ``i`` in place; ``row`` holds its views (see :class:`_Rows`)."""
        if self.distribution.joint:
            self._row_of_pixels(stepper, i, row)
        else:
            self._row_of_channels(stepper, i, row)

    def _row_of_pixels(self, stepper: Stepper, i: int, row: _Rows) -> None:
        """Row ``i`` for a distribution that draws whole pixels: one step per pixel."""
        dist = self.distribution
        dtype = row.x.dtype
        stepper.begin_row(i)
        for j, xp in enumerate(row.x.unbind(0)):  # xp: (N, C), the pixel
            raw = stepper.step(j, dist.preprocess(xp, dtype))  # (N, P): ignores xp's values
            if row.params is not None:
                row.params[j] = raw
            value = dist.sample_pixel(raw, row.u[j]).to(dtype)  # (N, C)
            if row.given is not None:
                value = torch.where(row.given[j], xp, value)
            xp.copy_(value)
            stepper.write(j, dist.preprocess(xp, dtype))

    def _row_of_channels(self, stepper: Stepper, i: int, row: _Rows) -> None:
        """Row ``i`` channel by channel: ``C`` steps per pixel (channel-wise masks)."""
        dist = self.distribution
        dtype, p, channels = row.x.dtype, dist.params_per_channel, row.x.shape[2]
        noise = row.u.flatten(0, 1).unbind(0)  # W * C views (N,), one per sub-pixel
        given = None if row.given is None else row.given.flatten(0, 1).unbind(0)
        stepper.begin_row(i)
        for j, xp in enumerate(row.x.unbind(0)):  # xp: (N, C), the pixel
            for c in range(channels):
                raw = stepper.step(j, dist.preprocess(xp, dtype))  # (N, C * P)
                raw_c = raw[:, c * p : (c + 1) * p] if channels > 1 else raw  # (N, P)
                if row.params is not None:
                    row.params[j, :, c * p : (c + 1) * p] = raw_c
                value = dist.sample(raw_c, noise[j * channels + c])  # (N,)
                sub = xp.select(1, c)  # (N,)
                if given is not None:
                    value = torch.where(given[j * channels + c], sub, value)
                sub.copy_(value)
            stepper.write(j, dist.preprocess(xp, dtype))

    def _sample_eager(self, stepper: Stepper, rows: _Rows) -> None:
        """Every row in turn, in place."""
        for i in range(rows.x.shape[0]):
            self._row(stepper, i, rows[i])

    def _sample_replayed(
        self,
        stepper: Stepper,
        rows: _Rows,
        record: Callable[[Callable[[], None]], Callable[[], None]] = _record_cuda_graph,
    ) -> None:
        """Warm-up rows eagerly, then one row recorded on fixed buffers and replayed for the rest.

        Every row runs the same operations on the same buffers (steppers are built so), so the
        recording of one row, fed each row's noise and known pixels, samples any row.
        """
        for i in range(WARMUP_ROWS):
            self._row(stepper, i, rows[i])
        static = rows[0].empty_like()  # the buffers the recording reads and writes
        replay = None
        for i in range(WARMUP_ROWS, rows.x.shape[0]):
            static.copy_(rows[i])
            if replay is None:
                replay = record(functools.partial(self._row, stepper, i, static))
            replay()
            rows[i].copy_(static)

    @torch.no_grad()
    def sample(
        self,
        noise: torch.Tensor,
        *,
        cond: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        return_params: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw images from ``noise``; the arguments are those of :func:`cached_sample`.

        With ``return_params=True`` also returns the raw parameters ``(N, C * P, H, W)`` the
        sampler computed for each sub-pixel (teacher forcing, when every pixel is known).
        """
        check_sampling(self.network, self.distribution, noise, cond)
        n, _, height, width = noise.shape
        shape = (n, self.distribution.image_channels(noise.shape[1]), height, width)
        device = next(self.network.parameters()).device
        graphs = self.cuda_graphs if self.cuda_graphs is not None else device.type == "cuda"
        if graphs and device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs a network on a CUDA device, not {device}")
        completion = check_completion(image, known, shape, whole_pixels=self.distribution.joint)
        stepper = self._stepper(n, width, cond)
        rows = self._prepare(noise, completion, return_params)
        self.last_used_graph = graphs and height > WARMUP_ROWS
        if self.last_used_graph:
            self._sample_replayed(stepper, rows)
        else:
            self._sample_eager(stepper, rows)
        images = rearrange(rows.x, "h w n c -> n c h w").contiguous()
        if rows.params is not None:
            return images, rearrange(rows.params, "h w n k -> n k h w").contiguous()
        return images

    def _prepare(
        self,
        noise: torch.Tensor,
        completion: tuple[torch.Tensor, torch.Tensor] | None,
        return_params: bool,
    ) -> _Rows:
        """The sampling state in row-major layouts, known pixels filled in."""
        param = next(self.network.parameters())
        dist = self.distribution
        n, _, height, width = noise.shape
        channels = dist.image_channels(noise.shape[1])
        # per channel: (H, W, C, N), one (N,) view per sub-pixel; joint: (H, W, N, C + 1)
        layout = "n c h w -> h w n c" if dist.joint else "n c h w -> h w c n"
        u = rearrange(dist.prepare_noise(noise.to(param.device)), layout).contiguous()
        x = param.new_zeros(height, width, n, channels)  # (H, W, N, C)
        given = None
        if completion is not None:
            image_hw = rearrange(completion[0].to(param), "n c h w -> h w n c")
            given = rearrange(completion[1], layout).contiguous()
            x.copy_(torch.where(rearrange(completion[1], "n c h w -> h w n c"), image_hw, x))
        size = dist.num_params(channels)
        params = x.new_zeros(height, width, n, size) if return_params else None
        return _Rows(x, u, given, params)


def cached_sample(
    network: nn.Module,
    distribution: Distribution,
    noise: torch.Tensor,
    *,
    cond: torch.Tensor | None = None,
    image: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
    cuda_graphs: bool | None = None,
) -> torch.Tensor:
    """Sample with per-layer caches: the naive sampler's images at about one forward pass's cost.

    Args:
        network: a causal network (see :class:`CachedSampler` for what it may contain).
        distribution: the output distribution.
        noise: uniform noise ``(N, C', H, W)`` from :func:`~autoregressive.draw_noise`, with
            ``C' = distribution.noise_channels(C)`` (``C``, or ``C + 1`` for a mixture).
        cond: conditioning vectors ``(N, C_cond)`` or ``None``.
        image: with ``known``, an image ``(N, C, H, W)`` whose known pixels are kept.
        known: bool mask broadcastable to ``(N, C, H, W)``, ``True`` where ``image`` is given.
        cuda_graphs: replay rows as CUDA graphs (default: on CUDA devices); see
            :class:`CachedSampler`.

    Returns:
        Images ``(N, C, H, W)`` in the network's dtype, equal to
        :func:`~autoregressive.naive_sample`'s for the same noise.

    Shape:
        - ``noise``: :math:`(N, C', H, W)`; ``cond``: :math:`(N, C_{cond})`
        - Output: :math:`(N, C, H, W)`

    Example:
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8), dtype=torch.float64)
        >>> noise = draw_noise((4, 1, 6, 6), torch.Generator().manual_seed(0))
        >>> fast = cached_sample(model.network, model.distribution, noise)
        >>> torch.equal(fast, naive_sample(model.network, model.distribution, noise))
        True
    """
    sampler = CachedSampler(network, distribution, cuda_graphs=cuda_graphs)
    out = sampler.sample(noise, cond=cond, image=image, known=known)
    assert isinstance(out, torch.Tensor)
    return out
