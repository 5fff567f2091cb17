"""Fuzz tests of the public API: any input ends in a correct result or one of the library's errors.

Hypothesis draws arguments from a mix of valid values and the wrong ones a user might pass
(``bool`` for ``int``, floats, lists, negative sizes, shapes off by one, NaN noise, layers
changed after construction, damaged files). Whatever it draws, the call must either return a
result that honours the documented contract (shape, causality, round trips) or raise a
``ValueError`` / ``TypeError`` *from a ``raise`` statement of the library* with a message. An
exception raised inside torch, an ``AssertionError``, a ``ZeroDivisionError``, or a silently
wrong result fails the test.

Sizes are kept tiny so that the whole module runs in seconds on two CPU cores.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from error_cases import is_library_error
from helpers import SAMPLERS
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

import autoregressive
from autoregressive import (
    Bernoulli,
    CachedSampler,
    Categorical,
    CausalSelfAttention2d,
    CausalSequential,
    Conditioning,
    DiscretizedLogisticMixture,
    GatedBlock,
    GatedResidualBlock,
    GatedStack,
    MaskedConv2d,
    NaiveSampler,
    PixelCNN,
    PixelCNNConfig,
    ResidualBlock,
    cached_sample,
    draw_noise,
    naive_sample,
)
from autoregressive.data import Batch
from autoregressive.training import (
    Capabilities,
    CheckpointError,
    NegLogLikelihood,
    Precision,
    as_batch,
    choose_precision,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    train_epoch,
    train_step,
)

#: examples per test come from the Hypothesis profile (``--hypothesis-profile=hunt`` to hunt)
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# ------------------------------------------------------------------------------ the oracle
def outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, error)``; any other exception fails the test."""
    try:
        return True, fn(*args, **kwargs)
    except Exception as err:
        if not is_library_error(err, caller=__file__):
            raise AssertionError(f"not a library error: {type(err).__name__}: {err}") from err
        return False, err


# ------------------------------------------------------------------------------ strategies
def ints(lo: int = -2, hi: int = 9) -> st.SearchStrategy[Any]:
    """Mostly ints in ``[lo, hi]``, sometimes the wrong type."""
    wrong = st.sampled_from([True, False, 2.0, 3.5, "3", None, [3], (3,)])
    return st.one_of(st.integers(lo, hi), st.integers(lo, hi), wrong)


small_config = st.fixed_dictionaries(
    {},
    optional={
        "data_channels": ints(-1, 3),
        "distribution": st.sampled_from(["bernoulli", "categorical", "gaussian", 1, None]),
        "levels": ints(0, 5),
        "block": st.sampled_from(["residual", "gated", "dense", None]),
        "num_blocks": ints(-1, 2),
        "hidden_channels": ints(-2, 12),
        "input_kernel_size": ints(-1, 5),
        "kernel_size": ints(-1, 5),
        "head_channels": ints(-2, 6),
        "num_classes": st.one_of(st.none(), ints(-1, 3)),
        "vector_size": st.one_of(st.none(), ints(-1, 3)),
        "spatial_channels": st.one_of(st.none(), ints(-1, 3)),
        "input_embedding": st.sampled_from(["scaled", "onehot", "learned", "embedded", None]),
        "embedding_dim": ints(-1, 4),
        "image_size": st.one_of(
            st.tuples(st.integers(0, 4), st.integers(0, 4)),
            st.lists(st.integers(1, 4), min_size=1, max_size=3),
            st.sampled_from([(2.0, 3), (True, 3), "33", 3, None]),
        ),
    },
)


def _int_field_ok(value: Any) -> bool:
    return type(value) is int


# ---------------------------------------------------------------------------------- config
@FUZZ
@given(small_config)
def test_config_is_valid_or_refused(fields):
    ok, cfg = outcome(PixelCNNConfig, **fields)
    if not ok:
        return
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in ("distribution", "block", "input_embedding"):
            assert isinstance(value, str)
        elif f.name in ("num_classes", "vector_size", "spatial_channels"):
            assert value is None or _int_field_ok(value), (f.name, value)
        elif f.name == "image_size":
            assert type(value) is tuple and all(_int_field_ok(v) for v in value), value
        else:
            assert _int_field_ok(value), (f.name, value)
    hash(cfg)
    assert PixelCNNConfig(**dataclasses.asdict(cfg)) == cfg
    assert dataclasses.replace(cfg) == cfg
    model = PixelCNN(cfg)
    x = torch.zeros(2, cfg.data_channels, 3, 3)
    y = None if cfg.num_classes is None else torch.zeros(2, dtype=torch.long)
    v = None if cfg.vector_size is None else torch.zeros(2, cfg.vector_size)
    s = None if cfg.spatial_channels is None else torch.zeros(2, cfg.spatial_channels, 3, 3)
    assert model.log_prob(x, Conditioning(v, s, y)).shape == (2,)


# ----------------------------------------------------------------------------- layers
def _moved_before(fn: Any, x: torch.Tensor, i: int, j: int) -> bool:
    """Whether an output at a pixel strictly before ``(i, j)`` moves when pixel ``(i, j)`` does."""
    base = fn(x)
    y = x.clone()
    y[:, :, i, j] += 1.0 + y[:, :, i, j].abs()
    moved = (fn(y) - base).abs().amax(dim=(0, 1)) > 1e-9  # (H, W)
    w = x.shape[-1]
    before = torch.arange(moved.numel()).view(moved.shape) < i * w + j
    return bool((moved & before).any())


conv_args = st.fixed_dictionaries(
    {
        "in_channels": ints(-1, 4),
        "out_channels": ints(-1, 4),
        "kernel_size": st.one_of(ints(-1, 5), st.tuples(ints(0, 5), ints(0, 5)), st.just([3, 3])),
    },
    optional={
        "mask_type": st.sampled_from(["A", "B", "C", "a", None]),
        "data_channels": ints(-1, 3),
        "dilation": st.one_of(ints(-1, 2), st.tuples(ints(0, 2), ints(0, 2))),
    },
)
changes = st.dictionaries(
    st.sampled_from(["padding_mode", "stride", "padding", "dilation", "groups"]),
    st.one_of(
        st.sampled_from(["zeros", "reflect", "circular", "replicate"]),
        st.sampled_from([(1, 1), (2, 2), (1, 2), (0, 0), (2, 1), 2, 1]),
    ),
    min_size=1,
    max_size=2,
)


@FUZZ
@given(conv_args, st.integers(1, 4), st.data())
def test_masked_conv_builds_or_refuses(args, size, data):
    ok, conv = outcome(MaskedConv2d, **args)
    if not ok:
        return
    channels = data.draw(st.sampled_from([conv.in_channels, conv.in_channels + 1]))
    ok, out = outcome(conv, torch.rand(2, channels, size, size))
    if ok:
        assert out.shape == (2, conv.out_channels, size, size)


@FUZZ
@given(
    st.integers(1, 3),
    st.sampled_from([1, 3, 5, (1, 3), (3, 1)]),
    st.sampled_from(["A", "B"]),
    changes,
    st.integers(2, 4),
    st.integers(2, 4),
    st.data(),
)
def test_masked_conv_changed_after_construction_stays_causal_or_refuses(
    channels, kernel_size, mask_type, change, h, w, data
):
    conv = MaskedConv2d(channels, 2, kernel_size, mask_type).double()
    for name, value in change.items():
        setattr(conv, name, value)
    x = torch.rand(1, channels, h, w, dtype=torch.float64)
    ok, out = outcome(conv, x)
    if not ok:
        return
    assert out.shape == (1, 2, h, w), f"{change}: output must keep the input's H and W"
    i, j = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    assert not _moved_before(conv, x, i, j), f"{change}: an earlier output sees pixel {(i, j)}"


def _softmax() -> nn.Module:
    return nn.Softmax(dim=1)


block_kind = st.sampled_from(["residual", "gated", "stack"])


@FUZZ
@given(
    block_kind,
    st.one_of(st.none(), ints(0, 3)),
    st.one_of(st.none(), st.integers(0, 4)),
    st.sampled_from([nn.ReLU, nn.Tanh, _softmax]),
    st.integers(2, 4),
    st.sampled_from([2, 2, 1, 3]),
)
def test_blocks_use_cond_or_refuse_it(kind, cond_channels, cond_width, act, size, cond_batch):
    if kind == "residual":
        ok, block = outcome(ResidualBlock, 4, 3, cond_channels=cond_channels, act_layer=act)
    elif kind == "gated":
        ok, block = outcome(GatedBlock, 4, 4, 3, cond_channels=cond_channels)
    else:
        ok, block = outcome(GatedStack, 1, 4, 2, cond_channels=cond_channels)
    if not ok:
        return
    net = CausalSequential(block) if kind != "gated" else None
    x = torch.rand(2, 1 if kind == "stack" else 4, size, size)
    cond = None if cond_width is None else torch.rand(cond_batch, cond_width)
    call = (lambda: block(x, x, cond)) if net is None else (lambda: net(x, cond))
    ok, _ = outcome(call)
    if not ok:
        return
    first = block.blocks[0] if kind == "stack" else block
    assert (cond is None) == (first.cond_channels is None), "cond ignored or missing"
    if kind == "residual" and act is _softmax:
        raise AssertionError("a softmax over channels mixes the colour groups")


# ------------------------------------------------------------------------------ model
TINY = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4, num_classes=3))
TINY_CAT = PixelCNN(
    PixelCNNConfig(distribution="categorical", levels=3, data_channels=3, num_blocks=1,
                   hidden_channels=6)
)  # fmt: skip
tensors = st.one_of(
    st.builds(
        lambda shape, fill, dtype: torch.full(shape, fill).to(dtype),
        st.lists(st.integers(0, 3), min_size=2, max_size=5).map(tuple),
        st.sampled_from([0, 1, 2, -1, 0.5, float("nan"), float("inf")]),
        st.sampled_from([torch.float32, torch.float64, torch.long, torch.bool, torch.uint8]),
    ),
    st.sampled_from([None, 3, [[0.0]], "x"]),
)


@FUZZ
@given(st.sampled_from([TINY, TINY_CAT]), tensors, tensors, st.sampled_from(["forward", "log"]))
def test_model_scores_or_refuses(model, x, y, which):
    fn = model.forward if which == "forward" else model.log_prob
    ok, out = outcome(fn, x, y)
    if ok:
        assert out.shape[0] == x.shape[0] and bool(torch.isfinite(out).all())


@FUZZ
@given(
    st.sampled_from([TINY, TINY_CAT]),
    ints(-1, 3),
    tensors,
    st.one_of(st.none(), st.tuples(ints(-1, 3), ints(-1, 3)), st.just([2, 2])),
    st.sampled_from([CachedSampler(), NaiveSampler(), "fast", CachedSampler]),
)
def test_model_samples_or_refuses(model, n, y, size, sampler):
    ok, out = outcome(model.sample, n, y, size=size, sampler=sampler)
    if ok:
        assert out.shape[:2] == (n, model.config.data_channels)
        assert bool(((out >= 0) & (out < model.distribution.params_per_channel + 1)).all())


# ----------------------------------------------------------------------------- samplers
def _net(kind: str, channels: int = 1, out: int = 1) -> nn.Module:
    first = "B" if kind == "sees-current" else "A"
    return CausalSequential(
        MaskedConv2d(channels, 4 * channels, 3, first, channels), nn.ReLU(),
        MaskedConv2d(4 * channels, out, 1, "B", channels),
    ).double()  # fmt: skip


networks = st.sampled_from(["good", "sees-current", "too-wide", "too-narrow"])
noises = st.one_of(
    st.builds(
        lambda shape, lo, hi: lo + (hi - lo) * torch.rand(shape, dtype=torch.float64),
        st.sampled_from([(2, 1, 3, 3), (2, 2, 3, 3), (2, 3, 3), (0, 1, 3, 3), (2, 1, 3, 3)]),
        st.sampled_from([0.0, -0.5, 0.5]),
        st.sampled_from([1.0, 0.9, 2.0]),
    ),
    st.sampled_from([torch.full((2, 1, 3, 3), float("nan")), torch.ones(2, 1, 3, 3)]),
)


@FUZZ
@given(
    networks,
    st.sampled_from(["bernoulli", "categorical"]),
    noises,
    st.one_of(st.none(), st.just(torch.zeros(2, 3))),
    st.sampled_from(["naive", "cached", "sampler"]),
)
def test_samplers_return_images_or_refuse(kind, dist_name, noise, cond, which):
    dist = Bernoulli() if dist_name == "bernoulli" else Categorical(3)
    p = dist.params_per_channel
    out = {"too-wide": p + 1, "too-narrow": max(p - 1, 0) or 2}.get(kind, p)
    net = _net(kind, 1, out)
    if which == "naive":
        ok, x = outcome(naive_sample, net, dist, noise, cond=cond)
    elif which == "cached":
        ok, x = outcome(cached_sample, net, dist, noise, cond=cond)
    else:
        ok, x = outcome(CachedSampler().sample, net, dist, noise, cond=cond)
    if not ok:
        return
    assert kind == "good", f"a {kind} network was accepted"
    assert cond is None, "cond given to an unconditional network was ignored"
    assert noise.dim() == 4 and bool(((noise >= 0) & (noise < 1)).all()), "bad noise accepted"
    assert x.shape == noise.shape


# ------------------------------------------------------- samplers on networks of public layers
#: distributions that draw a pixel's channels one by one (Bernoulli, Categorical) or together
SAMPLED = {
    "bernoulli": Bernoulli,
    "categorical": lambda: Categorical(3),
    "logistic": lambda: DiscretizedLogisticMixture(1, levels=4),
}
HIDDEN = 6  # divisible by 1 and 3 colour groups


def _first_layer(kind: str, c: int, groups: int) -> nn.Module:
    """The layer that reads the image ``(N, c, H, W)`` and returns ``HIDDEN`` channels."""
    return {
        "masked-A": lambda: MaskedConv2d(c, HIDDEN, 3, "A", groups),
        "masked-A-1x1": lambda: MaskedConv2d(c, HIDDEN, 1, "A", groups),
        "masked-B": lambda: MaskedConv2d(c, HIDDEN, 3, "B", groups),  # sees its own pixel
        "gated": lambda: GatedStack(c, HIDDEN, 1, input_kernel_size=3, data_channels=groups),
        "attention-A": lambda: CausalSelfAttention2d(
            c, groups, key_channels=2, out_channels=HIDDEN, mask_type="A", data_channels=groups
        ),
        "attention-B": lambda: CausalSelfAttention2d(
            c, groups, key_channels=2, out_channels=HIDDEN, mask_type="B", data_channels=groups
        ),
        "conv-3x3": lambda: nn.Conv2d(c, HIDDEN, 3, padding=1),  # sees the pixels after
        "conv-1x1": lambda: nn.Conv2d(c, HIDDEN, 1),  # sees its own pixel
    }[kind]()


def _middle_layer(kind: str, groups: int) -> nn.Module:
    """A layer ``HIDDEN -> HIDDEN`` channels; train-mode BatchNorm and Dropout stay so."""
    return {
        "relu": nn.ReLU,
        "softmax": lambda: nn.Softmax(dim=1),  # mixes the colour groups of a pixel
        "residual": lambda: ResidualBlock(HIDDEN, 3, groups),
        "gated-residual": lambda: GatedResidualBlock(HIDDEN, 3, groups),
        "attention": lambda: CausalSelfAttention2d(HIDDEN, groups, key_channels=2,
                                                   data_channels=groups),
        "masked-B": lambda: MaskedConv2d(HIDDEN, HIDDEN, 3, "B", groups),
        "conv-1x1": lambda: nn.Conv2d(HIDDEN, HIDDEN, 1),  # mixes the colour groups
        "conv-3x3": lambda: nn.Conv2d(HIDDEN, HIDDEN, 3, padding=1),
        "batchnorm": lambda: nn.BatchNorm2d(HIDDEN),
        "batchnorm-eval": lambda: nn.BatchNorm2d(HIDDEN).eval(),
        "dropout": nn.Dropout,
        "dropout-eval": lambda: nn.Dropout().eval(),
    }[kind]()  # fmt: skip


networks_of_layers = st.fixed_dictionaries(
    {
        "channels": st.sampled_from([1, 3]),
        "colour_masks": st.booleans(),  # channel-wise masks (groups = C), else whole pixels
        "distribution": st.sampled_from(sorted(SAMPLED)),
        "first": st.sampled_from(["masked-A", "masked-A", "masked-A-1x1", "gated", "attention-A",
                                  "masked-B", "attention-B", "conv-3x3", "conv-1x1"]),
        "middle": st.lists(st.sampled_from(["relu", "softmax", "residual", "gated-residual",
                                            "attention", "masked-B", "conv-1x1", "conv-3x3",
                                            "batchnorm", "batchnorm-eval", "dropout",
                                            "dropout-eval"]), max_size=2),
        "width_error": st.sampled_from([0, 0, 0, 1, 2]),  # extra outputs per colour group
        "size": st.tuples(st.integers(1, 3), st.integers(1, 4)),
        "seed": st.integers(0, 3),
    }
)  # fmt: skip


def _network_of_layers(spec: dict[str, Any]) -> tuple[nn.Module, Any]:
    """A float64 ``CausalSequential`` built from ``spec``, and its distribution."""
    c = spec["channels"]
    groups = c if spec["colour_masks"] else 1
    dist = SAMPLED[spec["distribution"]]()
    with torch.random.fork_rng():
        torch.manual_seed(spec["seed"])
        layers = [_first_layer(spec["first"], c, groups)]
        layers += [_middle_layer(kind, groups) for kind in spec["middle"]]
        out = dist.num_params(c) + spec["width_error"] * groups
        last_groups = groups if out % groups == 0 else 1  # a mixture's 10 outputs: by pixel
        layers.append(MaskedConv2d(HIDDEN, out, 1, "B", last_groups))
        return CausalSequential(*layers).double(), dist


def _sees_ahead(network: nn.Module, dist: Any, shape: tuple[int, int, int]) -> bool:
    """Whether a prediction sees a sub-pixel drawn at or after it: every sub-pixel edited.

    The independent oracle of causality: for two random images, each sub-pixel in turn is
    changed, and no parameter of that sub-step (by the distribution's draw plan), of an
    earlier sub-step of the pixel or of an earlier pixel may move (float64, ``1e-9``).
    """
    c, h, w = shape
    plan, levels = dist.draw_plan(c), getattr(dist, "levels", 2)
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        base = torch.randint(0, levels, (c * h * w,), generator=g)
        edits = base.repeat(c * h * w, 1)  # row k: sub-pixel k changed
        k = torch.arange(c * h * w)
        edits[k, k] = (edits[k, k] + 1) % levels
        x = torch.cat([base[None], edits]).view(-1, c, h, w)
        with torch.no_grad():
            out = network(dist.preprocess(x, torch.float64), None).flatten(2)  # (1+CHW, K, HW)
        moved = (out[1:] - out[:1]).abs() > 1e-9
        for sub in range(c * h * w):
            channel, pos = divmod(sub, h * w)
            own = (channel // plan.writes + 1) * plan.params  # outputs of its sub-step and before
            if moved[sub, :, :pos].any() or moved[sub, :own, pos].any():
                return True
    return False


@FUZZ
@given(networks_of_layers, st.sampled_from([None, False, True]), st.sampled_from(["fn", "obj"]))
def test_samplers_agree_on_networks_of_public_layers_or_refuse(spec, rows_at_once, api):
    """Cached samples equal naive ones, or the cached sampler refuses; never a silent disagreement.

    Naive refuses => cached refuses. Cached alone may refuse a network it cannot step (a plain
    ``nn.Conv2d``, a first layer that does not read the image causally), saying so. Whatever
    the naive sampler samples is causal by the independent oracle :func:`_sees_ahead`.
    """
    network, dist = _network_of_layers(spec)
    c, (h, w) = spec["channels"], spec["size"]
    noise = draw_noise((2, dist.noise_channels(c), h, w), torch.Generator().manual_seed(0))
    cached = CachedSampler(rows_at_once=rows_at_once)
    if api == "fn":
        ok_naive, naive = outcome(naive_sample, network, dist, noise)
        ok_cached, fast = outcome(cached_sample, network, dist, noise, rows_at_once=rows_at_once)
    else:
        ok_naive, naive = outcome(NaiveSampler().sample, network, dist, noise)
        ok_cached, fast = outcome(cached.sample, network, dist, noise)
    verdict = {True: "samples", False: "refuses"}
    event(f"naive {verdict[ok_naive]}, cached {verdict[ok_cached]}")
    if ok_cached:
        assert ok_naive, f"the cached sampler accepts what the naive one refuses: {naive}"
        assert torch.equal(fast, naive), "the samplers disagree on the same noise"
    if ok_naive:
        assert not _sees_ahead(network, dist, (c, h, w)), "a non-causal network was sampled"
        assert spec["width_error"] == 0, "a network of the wrong width was sampled"
        assert not {"batchnorm", "dropout"} & set(spec["middle"]), "train mode was sampled"
    if ok_naive and not ok_cached:
        assert re.search(r"cached sampling|step", str(fast)), f"cached refuses: {fast}"


# ---------------------------------------------------------------------- training helpers
class _Summed(nn.Module):
    """A wrong objective: the batch's summed NLL, ``()`` instead of ``(N,)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        return -self.model.log_prob(x, y).sum()  # type: ignore[operator]


class _Column(_Summed):
    """A wrong objective: ``(N, 1)``."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        return -self.model.log_prob(x, y)[:, None]  # type: ignore[operator]


OBJECTIVES = {
    "nll": NegLogLikelihood,
    "model": lambda model: model,  # the model itself: its forward returns parameters
    "summed": _Summed,
    "column": _Column,
}


def _binary_images(n: int, seed: int) -> torch.Tensor:
    """``n`` random binary images ``(n, 1, 3, 3)``, float32."""
    return torch.randint(0, 2, (n, 1, 3, 3), generator=torch.Generator().manual_seed(seed)).float()


binary_images = st.builds(_binary_images, st.integers(1, 3), st.integers(0, 9))
images = st.one_of(
    st.builds(
        lambda n, c, side, fill, dtype: torch.full((n, c, side, side), fill).to(dtype),
        st.integers(0, 3), st.sampled_from([1, 1, 2]), st.integers(1, 3),
        st.sampled_from([0, 1, 0.5, -1, float("nan")]),
        st.sampled_from([torch.float32, torch.float64, torch.long, torch.bool, torch.uint8,
                         torch.bfloat16]),
    ),
    binary_images, binary_images,  # right ones oftener
    st.sampled_from([torch.zeros(2, 3, 3), torch.zeros(2, 1, 3, 3).numpy(), [[0.0]]]),
)  # fmt: skip
#: labels for ``n`` images: none, right (the model with labels takes 3 classes) or wrong
LABELS = {
    "none": lambda n: None,
    "right": lambda n: torch.arange(n) % 3,
    "float": lambda n: torch.zeros(n),
    "out of range": lambda n: torch.full((n,), 3),
    "too many": lambda n: torch.zeros(n + 1, dtype=torch.long),
    "2-D": lambda n: torch.zeros(n, 2, dtype=torch.long),
}
labels = st.sampled_from(["fit", "fit", "fit", *LABELS])  # fit: what the model takes
BATCH_FORMS = ["Batch", "Batch-total-0", "tuple", "1-tuple", "list", "tensor", "triple", "dict"]
batch_forms = st.sampled_from(["Batch", "tuple", "tensor"] * 2 + BATCH_FORMS)  # right: oftener


def _batch_of(form: str, x: Any, label_kind: str, with_labels: bool) -> Any:
    """``(x, y)`` in one of the forms a loader might yield, right or wrong."""
    if label_kind == "fit":
        label_kind = "right" if with_labels else "none"
    y = LABELS[label_kind](len(x))
    return {
        "Batch": lambda: Batch(x, y, getattr(x, "shape", [0])[0]),
        "Batch-total-0": lambda: Batch(x, y, 0),
        "tuple": lambda: (x, y),
        "1-tuple": lambda: (x,),
        "list": lambda: [x] if y is None else [x, y],
        "tensor": lambda: x,
        "triple": lambda: (x, y, y),
        "dict": lambda: {"images": x, "labels": y},
    }[form]()


def _precision(name: str | None) -> Any:
    """A :class:`Precision` (bf16 whatever this CPU has), ``None``, or a wrong string."""
    if name in (None, "fp32-string"):
        return None if name is None else "fp32"
    if name == "fp32-channels-last":
        return Precision("fp32", None, True, "drawn")
    return choose_precision(name, Capabilities("cpu", native_bf16=name == "bf16", name="drawn"))


@FUZZ
@given(
    st.booleans(),
    st.sampled_from(["nll", "nll", "nll", *OBJECTIVES]),
    st.lists(st.tuples(batch_forms, images, labels), max_size=3),
    st.sampled_from([None, "fp32", "bf16", "fp32-channels-last", "fp32-string"]),
    st.sampled_from(["train_step", "train_epoch", "evaluate", "as_batch"]),
)
def test_training_helpers_train_or_refuse(with_labels, objective, drawn, precision, helper):
    """A step, an epoch, an evaluation: a finite result or the library's error.

    A refused step leaves the weights as they were; only ``NegLogLikelihood`` trains.
    """
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4,
                                        num_classes=3 if with_labels else None))  # fmt: skip
    wrapped = OBJECTIVES[objective](model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = [_batch_of(form, x, y, with_labels) for form, x, y in drawn]
    before = [p.detach().clone() for p in model.parameters()]
    kwargs = {"device": torch.device("cpu")}
    if helper == "as_batch":
        for batch in batches:
            ok, out = outcome(as_batch, batch)
            assert not ok or isinstance(out, Batch)
        return
    if helper == "evaluate":
        ok, out = outcome(evaluate, model, batches, **kwargs)
    elif helper == "train_epoch":
        ok, out = outcome(train_epoch, wrapped, optimizer, batches, **kwargs,
                          precision=_precision(precision))  # fmt: skip
    else:
        batch = batches[0] if batches else []
        ok, out = outcome(train_step, wrapped, optimizer, batch, **kwargs,
                          precision=_precision(precision))  # fmt: skip
        if not ok:
            assert all(map(torch.equal, before, model.parameters())), "a refused step moved"
    event(f"{helper} {'returns' if ok else 'refuses'}: {'' if ok else str(out)[:50]}")
    if not ok:
        return
    assert helper == "evaluate" or objective == "nll", f"the objective {objective} trained"
    loss = out if isinstance(out, torch.Tensor) else torch.tensor(out.nll)
    assert bool(torch.isfinite(loss).all()), f"{helper} returned {out}"
    assert helper == "train_step" or out.images > 0


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> tuple[bytes, dict]:
    path = tmp_path_factory.mktemp("ckpt") / "c.pt"
    state = {"epoch": 3, "model": {"w": torch.arange(64, dtype=torch.float32)}, "note": "x"}
    save_checkpoint(path, state)
    return path.read_bytes(), state


@FUZZ
@given(st.data())
def test_mutated_checkpoints_load_unchanged_or_fail_clearly(checkpoint_bytes, tmp_path, data):
    blob, state = checkpoint_bytes
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    at = data.draw(st.integers(0, len(blob) - 1))
    if kind == "flip":
        bad = blob[:at] + bytes([blob[at] ^ data.draw(st.integers(1, 255))]) + blob[at + 1 :]
    elif kind == "truncate":
        bad = blob[:at]
    else:
        bad = blob[:at] + b"\x00" + blob[at:]
    path = tmp_path / f"fuzz-{at}.pt"
    path.write_bytes(bad)
    try:
        loaded = load_checkpoint(path)
    except CheckpointError as err:
        assert str(path) in str(err)
        return
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]), f"{kind} at {at} changed w"
    assert loaded["epoch"] == state["epoch"] and loaded["note"] == state["note"]


# --------------------------------------------------------------------------- MNIST files
def _idx(dims: tuple[int, ...], magic: int | None = None, extra: int = 0) -> bytes:
    header = struct.pack(">I", magic if magic is not None else 0x0800 + len(dims))
    header += struct.pack(f">{len(dims)}I", *dims)
    count = 1
    for d in dims:
        count *= d
    return header + bytes(max(count + extra, 0))


idx_files = st.fixed_dictionaries(
    {
        "n_images": st.integers(0, 3),
        "n_labels": st.integers(0, 3),
        "rows": st.integers(0, 3),
        "extra": st.sampled_from([0, 0, -1, 1]),
        "magic": st.sampled_from([None, None, 0x0801, 0x0803, 0x0C03, 0x12345678]),
    }
)


@FUZZ
@given(idx_files)
def test_mnist_files_load_consistently_or_fail_naming_the_file(tmp_path_factory, spec):
    pytest.importorskip("torchvision")
    from autoregressive.data import MNIST_FILES, load_mnist

    raw = tmp_path_factory.mktemp("mnist") / "MNIST" / "raw"
    raw.mkdir(parents=True)
    n, rows = spec["n_images"], spec["rows"]
    images = _idx((n, rows, rows), spec["magic"], spec["extra"])
    labels = _idx((spec["n_labels"],))
    for name, blob in zip(MNIST_FILES, (images, labels, images, labels), strict=True):
        (raw / name).write_bytes(blob)
    try:
        x, y = load_mnist(raw.parent.parent, download=False)
    except ValueError as err:
        assert is_library_error(err, caller=__file__), f"{type(err).__name__}: {err}"
        assert "idx" in str(err), "the message must name the file"
        return
    except Exception as err:
        raise AssertionError(f"not a library error: {type(err).__name__}: {err}") from err
    assert x.shape[0] == y.shape[0], "image and label counts disagree"
    assert x.shape[1:] == (1, rows, rows)


# ----------------------------------------------------------------- everything else, by table
anything = st.one_of(
    ints(-2, 5),
    st.sampled_from(["A", "bernoulli", "reference", "", None, 0.5, float("nan"), [1, 2], ()]),
    st.builds(torch.zeros, st.lists(st.integers(0, 3), max_size=4).map(tuple)),
)
#: public callables and how many positional arguments to draw for each
CALLS = {
    "PixelCNN": (PixelCNN, 1),
    "PixelCNN.from_preset": (PixelCNN.from_preset, 1),
    "PixelCNNConfig.preset": (PixelCNNConfig.preset, 1),
    "Categorical": (Categorical, 1),
    "causal_mask": (autoregressive.causal_mask, 4),
    "channel_groups": (autoregressive.channel_groups, 2),
    "draw_noise": (autoregressive.draw_noise, 1),
    "GatedStack": (GatedStack, 3),
    "GatedBlock": (GatedBlock, 3),
    "ResidualBlock": (ResidualBlock, 3),
    "gate": (autoregressive.gate, 1),
    "nats_to_bits_per_dim": (autoregressive.nats_to_bits_per_dim, 2),
    "Bernoulli.log_prob": (Bernoulli().log_prob, 2),
    "Categorical.log_prob": (Categorical(3).log_prob, 2),
}


@FUZZ
@given(st.sampled_from(sorted(CALLS)), st.lists(anything, min_size=0, max_size=4))
def test_public_callables_return_or_refuse(name, args):
    fn, arity = CALLS[name]
    outcome(fn, *args[:arity])


@FUZZ
@given(anything, anything, st.sampled_from(["cached", "naive"]))
def test_completion_requests_return_or_refuse(image, known, method):
    model = TINY_CAT
    ok, out = outcome(model.sample, None, image=image, known=known, sampler=SAMPLERS[method]())
    if ok:
        assert out.shape == image.shape


@FUZZ
@given(
    st.sampled_from(["images", "labels"]),
    anything,
    st.fixed_dictionaries({}, optional={"batch_size": ints(-1, 4), "rank": ints(-1, 2),
                                        "world_size": ints(-1, 2), "threshold": anything}),
)  # fmt: skip
def test_batches_build_or_refuse(which, value, kwargs):
    from autoregressive.data import BinarizedBatches

    images = torch.rand(4, 1, 2, 2)
    args = {"images": images, "labels": None, "batch_size": 2, **kwargs, which: value}
    ok, batches = outcome(BinarizedBatches, **args)
    if ok:
        seen = list(batches)
        assert sum(b.total for b in seen) == batches.images.shape[0]  # every image, once
        assert all(b.images.shape[0] <= b.total for b in seen)


@FUZZ
@given(anything, st.sampled_from(["cpu", None, 3, "nowhere"]))
def test_checkpoint_paths_load_or_refuse(path, map_location):
    outcome(load_checkpoint, path if not isinstance(path, torch.Tensor) else "x.pt")


@FUZZ
@given(
    st.sampled_from([TINY, TINY_CAT]),
    st.sampled_from([None, "cpu", 0, torch.Generator(), torch.Generator().manual_seed(1), [1]]),
    st.sampled_from(["cached", "naive"]),
    st.sampled_from([None, True, False, "yes"]),
)
def test_sampling_options_work_or_refuse(model, generator, method, cuda_graphs):
    y = torch.zeros(2, dtype=torch.long) if model is TINY else None

    def sample() -> torch.Tensor:
        sampler = NaiveSampler() if method == "naive" else CachedSampler(cuda_graphs=cuda_graphs)
        return model.sample(2, y, size=(2, 3), generator=generator, sampler=sampler)

    ok, out = outcome(sample)
    if ok:
        assert out.shape == (2, model.config.data_channels, 2, 3)


@FUZZ
@given(st.sampled_from(["cpu", None, 3, "cuda:7", "meta", "nowhere", torch.device("cpu"), 1.5]))
def test_checkpoint_map_location_loads_or_refuses(checkpoint_bytes, tmp_path, map_location):
    blob, state = checkpoint_bytes
    path = tmp_path / "c.pt"
    path.write_bytes(blob)
    ok, loaded = outcome(load_checkpoint, path, map_location=map_location)
    if ok:
        assert loaded["epoch"] == state["epoch"]
    else:
        assert "corrupted" not in str(loaded), "an intact file reported as corrupted"


#: where a checkpoint may be saved: a file, a new folder, a directory, a path under a file
SAVE_PATHS = {
    "file": lambda tmp: tmp / "c.pt",
    "new folder": lambda tmp: tmp / "new" / "deeper" / "c.pt",
    "directory": lambda tmp: tmp,
    "under a file": lambda tmp: tmp / "taken" / "c.pt",
}


@FUZZ
@given(
    st.sampled_from([*SAVE_PATHS, 3, None, b"bytes"]),
    st.one_of(anything, st.just({"w": torch.zeros(2)}), st.just({"p": Path("x")})),
)
def test_save_checkpoint_writes_or_refuses(tmp_path_factory, where, checkpoint):
    tmp = tmp_path_factory.mktemp("save")
    (tmp / "taken").write_text("x")
    path = SAVE_PATHS[where](tmp) if isinstance(where, str) else where
    ok, _ = outcome(save_checkpoint, path, checkpoint)
    if ok:
        assert torch.equal(load_checkpoint(path)["w"], checkpoint["w"])
    assert (tmp / "taken").read_text() == "x"
