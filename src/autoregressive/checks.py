"""Argument checks shared by the config, the layers and the samplers.

Every check raises a ``TypeError`` (wrong kind of value) or a ``ValueError`` (right kind, wrong
value) whose message names the argument and says what to pass instead; the checks that run on
every ``forward`` compare Python attributes only and never read tensor values.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from .conditioning import Conditioning, as_conditioning
from .distributions import Distribution
from .memo import derived

__all__ = [
    "check_cond",
    "check_elementwise",
    "check_int",
    "check_noise_request",
    "check_pair",
    "check_sampling",
    "check_shape",
]


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an ``int`` (``bool`` refused), at least ``minimum``.

    Raises:
        TypeError: ``value`` is not an integer (a ``bool``, a float, a string, ...).
        ValueError: ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_pair(name: str, value: Any, minimum: int | None = None) -> tuple[int, int]:
    """``value`` (an int or a pair of ints) as ``(a, b)``, each at least ``minimum``."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        first, second = (check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(value))
        return first, second
    if isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    v = check_int(name, value, minimum)
    return v, v


def check_shape(name: str, shape: Any, ndim: int = 4) -> tuple[int, ...]:
    """``shape`` as a tuple of ``ndim`` ints >= 1, e.g. ``(N, C, H, W)``."""
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != ndim:
        raise TypeError(
            f"{name} must be a tuple of {ndim} ints such as (N, C, H, W), got {shape!r}"
        )
    return tuple(check_int(f"{name}[{i}]", v, 1) for i, v in enumerate(shape))


def check_noise_request(shape: Any, generator: Any) -> tuple[int, ...]:
    """The arguments of :func:`~autoregressive.draw_noise`: ``shape`` as a tuple, a generator."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}; "
            "e.g. torch.Generator().manual_seed(0)"
        )
    return check_shape("shape", shape)


def check_cond(
    cond: object,
    cond_channels: int | None,
    owner: str,
    batch: int | None = None,
    *,
    spatial_channels: int | None = None,
    size: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Split ``cond`` into ``(vector, spatial)`` after checking both against the module.

    ``cond`` is ``None``, a vector ``(N, cond_channels)`` or a
    :class:`~autoregressive.Conditioning`; a part the module does not take must be absent and a
    part it takes must be present. ``N`` must be ``batch`` and the map's ``(H, W)`` must be
    ``size`` when those are given. Only shapes and dtypes are read (no device sync).

    Returns:
        The vector ``(N, cond_channels)`` and the map ``(N, spatial_channels, H, W)``, each
        ``None`` when the module does not take it.
    """
    parts = as_conditioning(cond)
    vector = None if parts is None else parts.vector
    spatial = None if parts is None else parts.spatial
    _check_part(vector, cond_channels, owner, "cond_channels", "vector", batch)
    _check_part(spatial, spatial_channels, owner, "spatial_channels", "spatial map", batch)
    if spatial is not None and size is not None and tuple(spatial.shape[2:]) != tuple(size):
        raise ValueError(
            f"{owner}: the spatial map must have the images' size: shape ({batch or 'N'}, "
            f"{spatial_channels}, {size[0]}, {size[1]}), got {tuple(spatial.shape)}"
        )
    return vector, spatial


def _check_part(
    t: object, channels: int | None, owner: str, field: str, kind: str, batch: int | None
) -> None:
    """One part of the conditioning: absent iff ``channels`` is ``None``, else of its shape."""
    if channels is None:
        if t is not None:
            raise ValueError(
                f"{owner} takes no conditioning {kind} ({field}=None) but got one: do not pass "
                f"it, or build the module with {field} set"
            )
        return
    if t is None:
        raise ValueError(f"{owner} is conditioned on a {kind} ({field}={channels}): pass it")
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise TypeError(f"{owner}: the conditioning {kind} must be a floating-point tensor")
    n = "N" if batch is None else batch
    dims = 2 if kind == "vector" else 4
    shape = f"({n}, {channels})" if dims == 2 else f"({n}, {channels}, H, W)"
    wrong_batch = batch is not None and t.shape[:1] != (batch,)
    if t.dim() != dims or t.shape[1] != channels or wrong_batch:
        raise ValueError(
            f"{owner}: the conditioning {kind} must have shape {shape}, got {tuple(t.shape)}"
        )


def check_elementwise(module: nn.Module, name: str) -> None:
    """Refuse an activation that mixes values across positions or channels (e.g. a softmax).

    A masked network stays causal only if its activations act on each value alone; one call on
    a small fixed tensor (in eval mode, so dropout is the identity) compares the module with its
    value-by-value application.
    """
    probe = torch.linspace(-2.0, 2.0, 2 * 4 * 2 * 2).view(2, 4, 2, 2)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            whole = module(probe.clone())
            alone = module(probe.clone().view(-1, 1, 1, 1)).view(probe.shape)
    except Exception as err:
        raise ValueError(
            f"{name} must be an elementwise activation such as nn.ReLU: {err}"
        ) from err
    finally:
        module.train(was_training)
    if whole.shape != probe.shape or not torch.allclose(whole, alone):
        raise ValueError(
            f"{name}={type(module).__name__} is not elementwise (its output at one channel or "
            "pixel depends on others), which breaks the causal masks; use an elementwise "
            "activation such as nn.ReLU, nn.GELU or nn.Tanh"
        )


def check_sampling(
    network: nn.Module,
    distribution: Distribution,
    noise: torch.Tensor,
    cond: torch.Tensor | Conditioning | None,
    *,
    causality: bool = False,
) -> None:
    """Check a sampler's arguments before it spends ``H * W`` steps on them.

    The network is run once on a zero image of the noise's width and at most two rows (which
    also runs every layer's own checks) to compare its output width with the distribution's
    ``C * P``; with ``causality`` instead once
    on 8 random images and 8 copies that each differ in one sub-pixel, to check that no
    prediction for that sub-pixel or an earlier one moves (a cheap check, not a proof).

    Raises:
        TypeError: an argument of the wrong kind.
        ValueError: noise of the wrong shape or outside ``[0, 1)``, conditioning of the wrong
            shape, a network of the wrong width or one that sees the current pixel.
    """
    if not isinstance(network, nn.Module) or next(network.parameters(), None) is None:
        raise TypeError("network must be an nn.Module with parameters, e.g. PixelCNN.network")
    if not isinstance(distribution, Distribution):
        raise TypeError(f"distribution must be a Distribution, got {type(distribution).__name__}")
    _check_noise(noise)
    _check_sampling_cond(network, as_conditioning(cond), tuple(noise.shape))
    n, _, height, width = noise.shape
    shape = (n, distribution.image_channels(noise.shape[1]), height, width)  # the images'
    if causality:
        _check_causal(network, distribution, shape, cond)
    else:  # once per network, distribution and shapes while its tensors stay the same
        rows = min(height, 2)  # enough to run every layer, a fraction of a forward pass
        x = torch.zeros((1, shape[1], rows, width))
        size = distribution.num_params(shape[1])
        key = ("probe", type(distribution), size, x.shape, _kinds(cond))
        # the output's shape does not depend on the weights' values: compare which tensors
        derived(
            network, key, lambda: _probe(network, distribution, x, cond) is not None, values=False
        )


def _kinds(cond: torch.Tensor | Conditioning | None) -> tuple[object, ...]:
    """What the probe reads of ``cond``: each part's shape after ``N``, dtype and device."""
    parts = as_conditioning(cond)
    if parts is None:
        return ()
    return tuple(
        None if t is None else (tuple(t.shape[1:]), t.dtype, t.device)
        for t in (parts.vector, parts.spatial)
    )


def _check_sampling_cond(
    network: nn.Module, cond: Conditioning | None, shape: tuple[int, ...]
) -> None:
    """The conditioning's batch and map size against the noise's, and taken by some layer."""
    if cond is None:
        return
    n, _, height, width = shape
    for part, attr in ((cond.vector, "cond_channels"), (cond.spatial, "spatial_channels")):
        if part is None:
            continue
        if not isinstance(part, torch.Tensor) or part.dim() < 2 or part.shape[0] != n:
            raise ValueError(
                f"cond must hold tensors whose first dimension is N = {n} (noise's N): a vector "
                "(N, C_cond) and/or a map (N, C_map, H, W)"
            )
        if not any(getattr(m, attr, None) for m in network.modules()):
            raise ValueError(
                f"the network takes no such conditioning (no layer has {attr}): leave it out"
            )
    if cond.spatial is not None and tuple(cond.spatial.shape[2:]) != (height, width):
        raise ValueError(
            f"the conditioning map must have the sampled images' size ({height}, {width}), got "
            f"shape {tuple(cond.spatial.shape)}"
        )


def _check_noise(noise: Any) -> None:
    if not isinstance(noise, torch.Tensor) or not noise.is_floating_point():
        raise TypeError("noise must be a floating-point tensor from draw_noise((N, C, H, W))")
    if noise.dim() != 4 or noise.numel() == 0:
        raise ValueError(
            f"noise must have shape (N, C, H, W) with every size >= 1, got {tuple(noise.shape)}; "
            "draw it with draw_noise"
        )
    if not bool(((noise >= 0) & (noise < 1)).all()):  # also refuses NaN
        raise ValueError(
            "noise must lie in [0, 1) (uniform noise from draw_noise), got values outside"
        )


def _probe(
    network: nn.Module,
    dist: Distribution,
    x: torch.Tensor,
    cond: torch.Tensor | Conditioning | None,
) -> torch.Tensor:
    """The network's output for data ``x`` ``(B, C, H, W)``, after checking its width."""
    b, c, h, w = x.shape
    param = next(network.parameters())
    inp = dist.preprocess(x.to(param.device), param.dtype)
    parts = as_conditioning(cond)
    cond = None if parts is None else parts.first(b).crop(h).to(param.device)
    with torch.no_grad():
        try:
            out = network(inp, cond)
        except (RuntimeError, IndexError) as err:
            raise ValueError(
                f"the network fails on images of shape (N, {c}, {h}, {w}) (the noise's C and W)"
                f"{'' if cond is None else ' with cond'}: {str(err).splitlines()[0]}"
            ) from err
    want = (b, dist.num_params(c), h, w)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the network returns {got} for {b} images but the distribution needs {want[1]} "
            f"channels for C={c} (distribution.num_params(C)): give its last layer "
            "out_channels = distribution.num_params(data_channels)"
        )
    return out


#: images per causality probe: each changes one random sub-pixel of a random image
_PROBES = 8


def _causal_probe(dist: Distribution, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """``(x, sub-pixel channel, flat position)``: ``x`` holds random images then their edits."""
    _, c, h, w = shape
    g = torch.Generator().manual_seed(0)  # fixed, and leaves the global generator alone
    levels = getattr(dist, "levels", 2)
    base = torch.randint(0, levels, (_PROBES, c, h * w), generator=g)
    chan = torch.randint(0, c, (_PROBES,), generator=g)
    pos = torch.randint(0, h * w, (_PROBES,), generator=g)
    edit = base.clone()
    rows = torch.arange(_PROBES)
    edit[rows, chan, pos] = (base[rows, chan, pos] + 1) % levels
    x = torch.cat([base, edit]).view(2 * _PROBES, c, h, w)  # (2B, C, H, W)
    return x, chan, pos


def _check_causal(
    network: nn.Module,
    dist: Distribution,
    shape: tuple[int, ...],
    cond: torch.Tensor | Conditioning | None,
) -> None:
    """Refuse a network whose prediction of a sub-pixel or an earlier one sees that sub-pixel."""
    x, chan, pos = _causal_probe(dist, shape)
    out = _probe(network, dist, x, cond)  # (2B, C * P, H, W)
    delta = (out[_PROBES:] - out[:_PROBES]).abs().flatten(2).cpu()  # (B, C * P, H * W)
    here = torch.arange(delta.shape[2])[None, None, :]  # (1, 1, H * W)
    outs = torch.arange(delta.shape[1])[None, :, None]  # (1, C * P, 1)
    plan = dist.draw_plan(shape[1])
    step = chan[:, None, None] // plan.writes  # (B, 1, 1): the sub-step that draws the change
    same_pixel = outs < (step + 1) * plan.params  # the outputs it and the earlier ones read
    before = (here < pos[:, None, None]) | (
        (here == pos[:, None, None]) & same_pixel
    )  # (B, C * P, H * W): predictions that must not see the changed sub-pixel
    if bool((delta[before] > 1e-5 * (1 + float(out.abs().max()))).any()):
        raise ValueError(
            "the network is not causal: changing one sub-pixel changes the predictions for "
            "itself or for earlier pixels. Use a mask-A first layer (MaskedConv2d(..., "
            "mask_type='A') or a GatedStack) and mask-B layers after it"
        )
