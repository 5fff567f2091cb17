"""What the samplers check before they spend ``H * W`` steps: noise, network, conditioning.

Both samplers (:func:`~autoregressive.naive_sample`, :class:`~autoregressive.CachedSampler`)
make one call, :func:`check_sampling`, at their boundary, so they accept and refuse the same
networks. It checks the arguments' kinds and shapes (with :mod:`autoregressive.validation`),
the noise's range, the conditioning against the network, a completion request against the
distribution's draw plan, that no module whose forward depends on the training mode is in it,
and runs the network on a probe: a few random images and their one-sub-pixel edits, to compare
its output width with the distribution's and to check that it is causal for the
distribution's draw plan (once per weights and shapes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..conditioning import Conditioning, refuse_labels
from ..distributions.base import Distribution, DrawPlan
from ..validation import check_shape, check_tensor
from .memo import derived
from .sampler import SampleRequest

__all__ = [
    "check_causal",
    "check_completion",
    "check_eval_mode",
    "check_noise_request",
    "check_sampling",
]

#: ``(image, known)`` broadcast to the images' shape, or ``None`` when nothing is given
Completion = tuple[torch.Tensor, torch.Tensor] | None


def check_noise_request(shape: Any, generator: Any) -> tuple[int, ...]:
    """The arguments of :func:`~autoregressive.draw_noise`: ``shape`` as a tuple, a generator."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}; "
            "e.g. torch.Generator().manual_seed(0)"
        )
    return check_shape("shape", shape)


def check_sampling(request: SampleRequest) -> Completion:
    """Check a sampler's arguments before it spends ``H * W`` steps on them.

    The network is run on 8 random images of the noise's size and 8 copies that each differ
    in one sub-pixel (which also runs every layer's own checks), to compare its output width
    with the distribution's ``C * P`` and to check that no prediction for that sub-pixel or an
    earlier one moves (:func:`check_causal`: a cheap check, not a proof). The probe runs once
    per network, weights, distribution and shapes.

    Returns:
        The completion request, ``(image, known)`` with ``known`` broadcast to the images'
        shape (see :func:`check_completion`), or ``None``.

    Raises:
        TypeError: an argument of the wrong kind.
        ValueError: noise of the wrong shape or outside ``[0, 1)``, conditioning of the wrong
            shape, a network of the wrong width, one that sees the current pixel or one with
            a BatchNorm or Dropout in training mode, a completion request that does not fit.
    """
    network, distribution, noise, cond = (
        request.network, request.distribution, request.noise, request.cond
    )  # fmt: skip
    if not isinstance(network, nn.Module) or next(network.parameters(), None) is None:
        raise TypeError("network must be an nn.Module with parameters, e.g. PixelCNN.network")
    if not isinstance(distribution, Distribution):
        raise TypeError(f"distribution must be a Distribution, got {type(distribution).__name__}")
    _check_noise(noise)
    _check_sampling_cond(network, cond, tuple(noise.shape))
    n, _, height, width = noise.shape
    shape = (n, distribution.image_channels(noise.shape[1]), height, width)  # the images'
    plan = distribution.draw_plan(shape[1])
    completion = check_completion(request.image, request.known, shape, plan)
    check_eval_mode(network)
    checked = derived(network, "causal", set)  # the probes passed with these weights
    probe = (type(distribution), distribution.num_params(shape[1]), shape[1:], _kinds(cond))
    if probe not in checked:
        check_causal(network, distribution, shape, cond)
        checked.add(probe)
    return completion


#: modules whose forward depends on the training mode: batch statistics, random drops
_TRAIN_MODE_MODULES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def check_eval_mode(network: nn.Module) -> None:
    """Refuse a network with a BatchNorm or Dropout in training mode (sampling needs ``eval()``).

    In training mode a BatchNorm mixes the images of a batch (and updates its running
    statistics) and a Dropout drops features at random: neither computes the model's
    distribution, and the first is not even causal.

    Raises:
        ValueError: naming the first such module; the fix is ``network.eval()``.
    """
    for name, module in network.named_modules():
        if module.training and isinstance(module, _TRAIN_MODE_MODULES):
            raise ValueError(
                f"the network's {name or 'top module'} ({type(module).__name__}) is in training "
                "mode, where it does not compute the model's distribution (batch statistics, "
                "random drops); call network.eval() before sampling (PixelCNN.sample does)"
            )


def check_completion(
    image: torch.Tensor | None,
    known: torch.Tensor | None,
    shape: tuple[int, ...],
    plan: DrawPlan,
) -> Completion:
    """Validate a completion request and return ``(image, known)`` broadcast to ``shape``.

    ``known`` must be the same for all the channels that one sub-step of ``plan`` writes
    (every channel of a pixel, for a distribution that draws a pixel's channels together).
    """
    if image is None and known is None:
        return None
    if image is None or known is None:
        raise ValueError("completion needs both `image` and `known` (a mask of given pixels)")
    check_tensor("image", image, like=" (N, C, H, W)")
    check_tensor("known", known, dtype=torch.bool)
    if image.shape != shape:
        raise ValueError(f"image must have shape {tuple(shape)}, got {tuple(image.shape)}")
    if known.dim() not in (2, 4):  # (C, H, W) and (N, H, W) would broadcast alike
        raise ValueError(
            f"known must be (H, W) or 4-D like (N, C, H, W), (N, 1, H, W) or (1, C, H, W), got "
            f"shape {tuple(known.shape)}; for a 3-D mask say which it is: known[:, None] "
            "masks each image, known[None] each channel"
        )
    try:
        known = known.to(image.device).expand(shape)
    except RuntimeError:
        raise ValueError(
            f"known of shape {tuple(known.shape)} does not broadcast to the image shape "
            f"{tuple(shape)}; use e.g. (N, C, H, W), (N, 1, H, W) or (H, W)"
        ) from None
    by_step = known.unflatten(1, (plan.steps, plan.writes))  # (N, S, C / S, H, W)
    if not bool((by_step == by_step[:, :, :1]).all()):
        raise ValueError(
            "this distribution draws the channels of a pixel together, so it completes whole "
            "pixels: known must be the same for every channel of a pixel, e.g. (N, 1, H, W)"
        )
    return image, known


def _kinds(cond: Conditioning | None) -> tuple[object, ...]:
    """What the probe reads of ``cond``: each part's shape after ``N``, dtype and device."""
    if cond is None:
        return ()
    return tuple(
        None if t is None else (tuple(t.shape[1:]), t.dtype, t.device)
        for t in (cond.vector, cond.spatial)
    )


def _check_sampling_cond(
    network: nn.Module, cond: Conditioning | None, shape: tuple[int, ...]
) -> None:
    """The conditioning's batch and map size against the noise's, and taken by some layer."""
    if cond is None:
        return
    refuse_labels(cond, "a sampler")
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
    check_tensor("noise", noise, floating=True, like=" from draw_noise((N, C, H, W))")
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
    cond: Conditioning | None,
) -> torch.Tensor:
    """The network's output for data ``x`` ``(B, C, H, W)``, after checking its width."""
    b, c, h, w = x.shape
    param = next(network.parameters())
    inp = dist.preprocess(x.to(param.device), param.dtype)
    cond = None if cond is None else cond.first(b).crop(h).to(param.device)
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
#: the largest move of a prediction that counts as rounding, relative to the outputs' size: a
#: float64 network shows a weak leak (an attention query that sees its own pixel) in full
_PROBE_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-5}


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


def check_causal(
    network: nn.Module,
    dist: Distribution,
    shape: tuple[int, ...],
    cond: Conditioning | None = None,
) -> None:
    """Refuse a network whose prediction of a sub-pixel or an earlier one sees that sub-pixel.

    The probe: 8 random images of ``shape``'s channels and size, and 8 copies that each differ
    in one random sub-pixel; no output that predicts that sub-pixel, or one drawn before it
    (by ``dist``'s draw plan: a pixel's channels one by one, or together), may move by more
    than rounding (relative ``1e-9`` in float64, ``1e-5`` otherwise, so a float64 copy of a
    network shows a weak leak that float32 rounding hides). A cheap
    check for a network of one's own, not a proof (the library's layers are proved causal by
    the test suite); the samplers run it before sampling.

    Args:
        network: called as ``network(x, cond)`` on preprocessed images ``(B, C, H, W)``.
        dist: the output distribution.
        shape: ``(N, C, H, W)`` of the images to sample (``N`` is not used).
        cond: a :class:`~autoregressive.Conditioning` for the network, or ``None``.

    Raises:
        ValueError: the network is not causal, or its output width is not
            ``dist.num_params(C)``.

    Example:
        >>> net = CausalSequential(MaskedConv2d(1, 4, 3, "B"), MaskedConv2d(4, 1, 1, "B"))
        >>> check_causal(net, Bernoulli(), (1, 1, 5, 5))
        Traceback (most recent call last):
        ...
        ValueError: the network is not causal: ...
    """
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
    tolerance = _PROBE_TOLERANCE.get(out.dtype, 1e-5) * (1 + float(out.abs().max()))
    if bool((delta[before] > tolerance).any()):
        raise ValueError(
            "the network is not causal: changing one sub-pixel changes the predictions for "
            "itself or for earlier pixels. Use a mask-A first layer (MaskedConv2d(..., "
            "mask_type='A') or a GatedStack) and mask-B layers after it"
        )
