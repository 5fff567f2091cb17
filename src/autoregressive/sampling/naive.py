"""Noise and the naive reference sampler, :class:`NaiveSampler`.

Every sampler in this library draws all of its randomness up front as one tensor of uniform
numbers, one per sub-pixel (plus one per pixel for the component of a mixture:
``distribution.noise_channels(C)`` channels), and turns it into pixels by the inverse CDF of the
predicted distribution. Two samplers fed the same noise therefore return the same images: the
naive sampler below is the reference the fast :func:`~autoregressive.cached_sample` is tested
against.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..distributions.base import Distribution
from .checks import check_noise_request, check_sampling
from .sampler import Progress, SampleInputs, Sampler, SampleRequest, check_progress

if TYPE_CHECKING:  # annotations only: typing.Unpack is Python 3.11+
    from typing_extensions import Unpack

__all__ = ["NaiveSampler", "draw_noise", "naive_sample"]


def draw_noise(
    shape: tuple[int, int, int, int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniform noise in ``[0, 1)`` for sampling, drawn in ``float64`` in one call.

    Args:
        shape: ``(N, C, H, W)`` of the images to sample.
        generator: source of randomness; the noise is drawn on its device.
        device: where to return the noise (default: the generator's device, else CPU).

    Returns:
        ``float64`` tensor of ``shape``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> draw_noise((2, 1, 4, 4), g).shape
        torch.Size([2, 1, 4, 4])
    """
    shape = check_noise_request(shape, generator)  # type: ignore[assignment]
    source = generator.device if generator is not None else (device or "cpu")
    noise = torch.rand(shape, generator=generator, device=source, dtype=torch.float64)
    return noise.to(device) if device is not None else noise


class NaiveSampler(Sampler):
    """Samples by running the whole network once per sub-step of every pixel (the reference).

    The sub-steps are those of ``distribution.draw_plan(C)``: one per channel, or one per pixel
    for a distribution that draws a pixel's channels together (a logistic mixture).
    :attr:`last_passes` counts the network passes of the most recent call. See
    :meth:`~autoregressive.sampling.sampler.Sampler.sample` for the arguments: the network is
    called as ``network(x, cond)`` on preprocessed images; it must be causal (checked on a few
    probes before sampling).

    Args:
        progress: report the rows drawn: ``True`` a tqdm bar, a function
            ``progress(rows_done, rows)`` called after each row, ``False`` (default) nothing
            (see :data:`~autoregressive.sampling.sampler.Progress`).

    Example:
        >>> net = CausalSequential(MaskedConv2d(1, 8, 3, "A"), nn.ReLU(), MaskedConv2d(8, 1, 1))
        >>> noise = draw_noise((2, 1, 4, 4), torch.Generator().manual_seed(0))
        >>> sampler = NaiveSampler(progress=lambda done, rows: print(f"row {done}/{rows}"))
        >>> x = sampler.sample(net, Bernoulli(), noise)
        row 1/4
        row 2/4
        row 3/4
        row 4/4
        >>> x.shape, sampler.last_passes
        (torch.Size([2, 1, 4, 4]), 16)
    """

    def __init__(self, *, progress: Progress = False) -> None:
        self.progress = check_progress(progress, type(self).__name__)

    def __repr__(self) -> str:
        shown = "" if self.progress is False else f"progress={self.progress!r}"
        return f"{type(self).__name__}({shown})"

    @torch.no_grad()
    def _draw(self, request: SampleRequest) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Draw images from ``noise``, and the parameters if asked (see ``Sampler._draw``).

        With the parameters asked for, every sub-step runs the network, known ones included.
        """
        completion = check_sampling(request)
        network, distribution, noise = request.network, request.distribution, request.noise
        cond, return_params = request.cond, request.return_params
        n, _, height, width = noise.shape
        channels = distribution.image_channels(noise.shape[1])
        shape = (n, channels, height, width)
        param = next(network.parameters())
        plan = distribution.draw_plan(channels)
        x = torch.zeros(shape, dtype=param.dtype, device=param.device)  # (N, C, H, W)
        size = distribution.num_params(channels)
        params = x.new_zeros(n, size, height, width) if return_params else None
        if completion is not None:
            x = torch.where(completion[1], completion[0].to(x.dtype), x)
        noise = distribution.prepare_noise(noise)
        choose = request.choose or distribution.draw
        every_step = return_params or request.choose is not None  # known sub-steps too
        self.last_passes = 0
        with self._row_progress(height) as report:
            for i in range(height):
                for j, s in itertools.product(range(width), range(plan.steps)):
                    out = plan.channel_slice(s)  # the channels this sub-step writes
                    given = None if completion is None else completion[1][:, out, i, j]
                    if given is not None and not every_step and bool(given.all()):
                        continue
                    raw = network(distribution.preprocess(x, param.dtype), cond)  # (N, C*P, H, W)
                    self.last_passes += 1
                    raw_s = raw[:, plan.param_slice(s), i, j]  # (N, P)
                    if params is not None:
                        params[:, plan.param_slice(s), i, j] = raw_s
                    u = noise[:, plan.noise_slice(s), i, j].reshape(n, *plan.noise_shape)
                    value = choose(raw_s, u).reshape(n, -1)
                    if given is not None:
                        value = torch.where(given, x[:, out, i, j], value)
                    x[:, out, i, j] = value  # (N, C / S)
                report(i + 1)
        return x, params


def naive_sample(
    network: nn.Module,
    distribution: Distribution,
    noise: torch.Tensor,
    **inputs: Unpack[SampleInputs],
) -> torch.Tensor:
    """Sample by running the whole network once per sub-step of every pixel (the slow reference).

    A convenience for ``NaiveSampler().sample(...)``.

    Args:
        network: a causal network, called as ``network(x, cond)`` on preprocessed images, that
            returns raw parameters ``(N, C * P, H, W)`` (e.g. ``PixelCNN.network``).
        distribution: the output distribution.
        noise: uniform noise ``(N, C', H, W)`` from :func:`draw_noise`, with
            ``C' = distribution.noise_channels(C)``; fixes the result.
        inputs: ``cond``, ``image`` and ``known``
            (:class:`~autoregressive.sampling.SampleInputs`), as for
            :meth:`~autoregressive.sampling.Sampler.sample`.

    Returns:
        The images ``(N, C, H, W)`` in the network's dtype (integer values for categorical).

    Example:
        >>> net = CausalSequential(MaskedConv2d(1, 8, 3, "A"), nn.ReLU(), MaskedConv2d(8, 1, 1))
        >>> noise = draw_noise((2, 1, 4, 4), torch.Generator().manual_seed(0))
        >>> x = naive_sample(net, Bernoulli(), noise)
        >>> x.shape, torch.equal(x, cached_sample(net, Bernoulli(), noise))
        (torch.Size([2, 1, 4, 4]), True)
    """
    return NaiveSampler().sample(network, distribution, noise, **inputs)
