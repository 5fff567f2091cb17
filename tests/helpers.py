"""Shared test utilities: measured dependency sets and small model factories."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import strategies as st
from torch import nn

from autoregressive import CachedSampler, Conditioning, NaiveSampler, PixelCNNConfig, Sampler

#: the samplers by name with their default options, for tests parametrized over both
SAMPLERS: dict[str, Callable[[], Sampler]] = {"naive": NaiveSampler, "cached": CachedSampler}


def positive_weights_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter a small positive value (about 1 / fan-in).

    With positive weights, positive inputs and monotone activations every path through the
    network carries a strictly positive gradient, so a zero in the Jacobian means *no path*,
    never a dead ReLU or a cancellation; the scale keeps tanh far from saturation.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = math.prod(p.shape[1:]) if p.dim() > 1 else 1
            p.copy_((0.5 + torch.rand(p.shape, generator=g, dtype=p.dtype)) / fan_in)
    return module


def measured_deps(
    network: nn.Module, shape: tuple[int, int, int], cond: Conditioning | None = None
) -> torch.Tensor:
    """Boolean ``(C_out, H, W, C, H, W)``: which input sub-pixels each output depends on."""
    c, h, w = shape
    g = torch.Generator().manual_seed(1)
    x = 0.5 + torch.rand(1, c, h, w, generator=g, dtype=torch.float64)

    def f(inp: torch.Tensor) -> torch.Tensor:
        return network(inp, cond) if cond is not None else network(inp)

    jac = torch.autograd.functional.jacobian(f, x, vectorize=True)  # (1, O, H, W, 1, C, H, W)
    return jac[0, :, :, :, 0] != 0


def as_set(dep: torch.Tensor) -> frozenset[tuple[int, int, int]]:
    """Set of (i, j, c) where the ``(C, H, W)`` boolean tensor is True."""
    return frozenset((i, j, c) for c, i, j in dep.nonzero().tolist())


def network_settings(draw: Callable[[Any], Any], dc: int, widths: int = 3) -> dict[str, Any]:
    """Hypothesis draws of a small ``PixelCNNConfig``'s network for ``dc`` data channels.

    Blocks, widths (``2 * dc * 1 .. widths``), kernels, head and every kind of conditioning.
    """
    return {
        "num_blocks": draw(st.integers(1, 3)),
        "hidden_channels": 2 * dc * draw(st.integers(1, widths)),
        "input_kernel_size": draw(st.sampled_from([3, 5])),
        "kernel_size": draw(st.sampled_from([3, 5])),
        "head_channels": dc * draw(st.integers(0, 2)),
        "num_classes": draw(st.sampled_from([None, 3])),
        "vector_size": draw(st.sampled_from([None, 2])),
        "spatial_channels": draw(st.sampled_from([None, 2])),
    }


@st.composite
def small_configs(draw, levels: st.SearchStrategy[int], conditions: bool = False) -> PixelCNNConfig:
    """A small model of any distribution: Bernoulli, categorical or logistic mixture, 1 or 3
    channels, residual or gated; class labels, or (``conditions``) every kind of conditioning.
    """
    distribution = draw(st.sampled_from(["bernoulli", "categorical", "logistic_mixture"]))
    dc = 1 if distribution == "bernoulli" else draw(st.sampled_from([1, 3]))
    optional = st.sampled_from([None, 2]) if conditions else st.none()
    return PixelCNNConfig(
        data_channels=dc,
        distribution=distribution,
        levels=2 if distribution == "bernoulli" else draw(levels),
        mixtures=draw(st.integers(1, 3)),
        block=draw(st.sampled_from(["residual", "gated"])),
        num_blocks=draw(st.integers(1, 2)),
        hidden_channels=2 * dc * draw(st.integers(1, 2)),
        input_kernel_size=3,
        num_classes=draw(st.sampled_from([None, 3])),
        vector_size=draw(optional),
        spatial_channels=draw(optional),
    )


@contextlib.contextmanager
def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``folder`` read-only within the block; as root, whom the OS lets write anyway, writes
    there through ``tempfile.mkstemp`` fail as the OS fails other users'."""
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            real_mkstemp = tempfile.mkstemp

            def refuse(*args: Any, dir: Any = None, **kwargs: Any) -> Any:
                if dir is not None and Path(dir) == folder:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
                return real_mkstemp(*args, dir=dir, **kwargs)

            monkeypatch.setattr(tempfile, "mkstemp", refuse)
        yield
    finally:
        folder.chmod(0o755)
