"""Checks for a block of one's own: its steppers compute what its ``forward`` computes.

:func:`~autoregressive.sampling.checks.check_causal` tells whether a network is causal;
:func:`check_stepper` tells whether the cached sampler's way of computing it, one pixel (or one
row) at a time through the layers' steppers, agrees with the network's ``forward``. A stepper
that disagrees samples images that do not come from the model, and nothing else would notice:
run both on a new block before trusting its samples (the tutorial's *Write a block the sampler
can step* shows how).
"""

from __future__ import annotations

import torch
from torch import nn

from ..conditioning import Conditioning, RowConditioning
from ..distributions.base import Distribution
from .cached import CachedSampler
from .checks import check_causal
from .naive import draw_noise
from .stepping import stepper_for

__all__ = ["check_stepper"]

#: largest difference allowed between stepped and forward parameters, relative to their size
_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}


def check_stepper(
    network: nn.Module,
    dist: Distribution,
    shape: tuple[int, int, int, int],
    cond: Conditioning | None = None,
) -> None:
    """Refuse a network whose steppers disagree with its ``forward`` on random images.

    The cached sampler completes ``N`` images of ``shape`` whose first half are random known
    images and whose others it draws, once pixel by pixel and, if every stepper implements
    ``step_row``, once by whole rows (where the drawn images' rows take more passes than the
    known ones', so steppers with :attr:`~autoregressive.Stepper.steps_subsets` also pass some
    images only). The parameters it computes at every sub-pixel on the way
    (:meth:`~autoregressive.sampling.Sampler.sample_with_params`) must equal one forward pass
    of the network over the images it returns, up to rounding (relative ``1e-9`` in float64,
    ``1e-4`` in float32, ``1e-2`` otherwise). The network is first checked to be causal
    (:func:`check_causal`).

    Args:
        network: a causal network whose layers have steppers, e.g. a
            :class:`~autoregressive.CausalSequential` with a block of one's own.
        dist: the output distribution.
        shape: ``(N, C, H, W)`` of the images to try.
        cond: a :class:`~autoregressive.Conditioning` of ``N`` items, or ``None``.

    Raises:
        ValueError: the network is not causal, or its stepped parameters differ from its
            forward pass (the message says by how much and in which mode).

    Example:
        >>> net = CausalSequential(MaskedConv2d(1, 8, 3, "A"), nn.ReLU(), MaskedConv2d(8, 1, 1))
        >>> check_stepper(net.double(), Bernoulli(), (2, 1, 5, 6))  # silent: they agree
    """
    check_causal(network, dist, shape, cond)
    param = next(network.parameters())
    g = torch.Generator().manual_seed(0)
    levels = getattr(dist, "levels", 2)
    x = torch.randint(0, levels, shape, generator=g).to(param.device)  # (N, C, H, W)
    noise = draw_noise((shape[0], dist.noise_channels(shape[1]), *shape[2:]), g)
    known = torch.zeros(shape, dtype=torch.bool, device=param.device)
    known[: (shape[0] + 1) // 2] = True  # the first half given, the others drawn
    for rows in (False, True) if _steps_rows(network, shape, cond) else (False,):
        sampler = CachedSampler(rows_at_once=rows)
        images, got = sampler.sample_with_params(
            network, dist, noise.to(param.device), cond=cond, image=x.to(param.dtype), known=known
        )
        with torch.no_grad():
            expected = network(dist.preprocess(images, param.dtype), cond)  # (N, C * P, H, W)
        tolerance = _TOLERANCE.get(param.dtype, 1e-2) * (1 + float(expected.abs().max()))
        error = float((got - expected).abs().max())
        if not error <= tolerance:  # also a NaN
            mode = "by whole rows (step_row)" if rows else "pixel by pixel (step)"
            raise ValueError(
                f"the network's steppers disagree with its forward pass when stepped {mode}: "
                f"the parameters differ by up to {error:.3g} (allowed {tolerance:.3g}); check "
                "that each stepper computes its layer's forward at one pixel (or one row, of "
                "every image or of the images it is given)"
            )


def _steps_rows(network: nn.Module, shape: tuple[int, ...], cond: Conditioning | None) -> bool:
    """Whether the network's stepper computes whole rows (every layer's implements step_row)."""
    n, width = shape[0], shape[3]
    spatial = None if cond is None or cond.spatial is None else cond.spatial
    row = None if spatial is None else spatial.new_zeros(n, width, spatial.shape[1])
    rows_cond = None if cond is None else RowConditioning(cond.vector, row)
    return stepper_for(network, n, width, rows_cond).steps_rows
