"""The same mistake raises the same error type, whichever public constructor it is made in.

One table of public entry points that take a count, one table of mistakes: a count of the
wrong kind (``2.0``, ``True``, ``"2"``) is a ``TypeError``, a count out of range (``0``, ``-1``)
a ``ValueError``, and either message names the argument. The same for temperatures and
thresholds (floats), choices, tensors, and the elementwise probe shared by the blocks and the
cached sampler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from error_cases import is_library_error
from torch import nn

import autoregressive as ar
from autoregressive.data import BinarizedBatches, threshold_binarize
from autoregressive.data.colour import ImageBatches, cut_patches
from autoregressive.validation import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_pair,
    check_tensor,
    is_elementwise,
)

#: public entry points that take a count ``v`` (at least 1 or 2), and the argument's name
COUNTS: dict[str, tuple[Callable[[Any], object], str]] = {
    "MaskedConv2d(data_channels)": (
        lambda v: ar.MaskedConv2d(4, 4, 3, data_channels=v),
        "data_channels",
    ),
    "MaskedConv2d(in_channels)": (lambda v: ar.MaskedConv2d(v, 4, 3), "in_channels"),
    "MaskedConv2d(dilation)": (lambda v: ar.MaskedConv2d(1, 4, 3, dilation=v), "dilation"),
    "mask_groups": (lambda v: ar.mask_groups(v), "data_channels"),
    "channel_groups": (lambda v: ar.channel_groups(v, 1), "channels"),
    "causal_mask": (lambda v: ar.causal_mask(v, 1, 3), "channels"),
    "PixelCNNConfig(hidden_channels)": (
        lambda v: ar.PixelCNNConfig(hidden_channels=v),
        "hidden_channels",
    ),
    "PixelCNNConfig(num_classes)": (lambda v: ar.PixelCNNConfig(num_classes=v), "num_classes"),
    "PixelCNNConfig(image_size)": (lambda v: ar.PixelCNNConfig(image_size=(v, 4)), "image_size"),
    "Categorical(levels)": (lambda v: ar.Categorical(levels=v), "levels"),
    "DiscretizedLogisticMixture(mixtures)": (
        lambda v: ar.DiscretizedLogisticMixture(mixtures=v),
        "mixtures",
    ),
    "DrawPlan(channels)": (lambda v: ar.DrawPlan(v, "channel", params=1), "channels"),
    "ResidualBlock(channels)": (lambda v: ar.ResidualBlock(v), "channels"),
    "ResidualBlock(cond_channels)": (
        lambda v: ar.ResidualBlock(4, cond_channels=v),
        "cond_channels",
    ),
    "GatedBlock(channels)": (lambda v: ar.GatedBlock(1, v, 3, "A"), "channels"),
    "GatedStack(num_blocks)": (lambda v: ar.GatedStack(1, 4, num_blocks=v), "num_blocks"),
    "CategoricalEmbedding(embedding_dim)": (
        lambda v: ar.CategoricalEmbedding(4, embedding_dim=v),
        "embedding_dim",
    ),
    "nats_to_bits_per_dim(num_dims)": (lambda v: ar.nats_to_bits_per_dim(1.0, v), "num_dims"),
    "draw_noise(shape)": (lambda v: ar.draw_noise((v, 1, 2, 2)), "shape[0]"),
    "BinarizedBatches(batch_size)": (
        lambda v: BinarizedBatches(torch.rand(4, 1, 2, 2), batch_size=v),
        "batch_size",
    ),
    "ImageBatches(world_size)": (
        lambda v: ImageBatches(
            torch.zeros(4, 1, 2, 2, dtype=torch.uint8), batch_size=2, world_size=v
        ),
        "world_size",
    ),
    "cut_patches(size)": (lambda v: cut_patches(torch.zeros(1, 4, 4), size=v), "size"),
    "PixelCNN.sample(n)": (lambda v: ar.PixelCNN(ar.PixelCNNConfig(num_blocks=1)).sample(v), "n"),
}
#: mistakes in a count, and the error each must raise
MISTAKES: list[tuple[object, type[Exception]]] = [
    (2.0, TypeError),
    (True, TypeError),
    ("2", TypeError),
    (None, TypeError),
    (0, ValueError),
    (-1, ValueError),
]


def raised(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except Exception as err:
        return err
    return None


@pytest.mark.parametrize(("value", "error"), MISTAKES, ids=repr)
@pytest.mark.parametrize("where", sorted(COUNTS))
def test_the_same_mistake_in_a_count_raises_the_same_error_everywhere(where, value, error):
    make, name = COUNTS[where]
    if value is None and name in ("num_classes", "cond_channels", "embedding_dim", "n"):
        pytest.skip("None is this argument's default (no conditioning, the default width or n)")
    err = raised(lambda: make(value))
    assert type(err) is error, f"{where} with {value!r}: {type(err).__name__}: {err}"
    assert is_library_error(err), f"{where}: not raised by a `raise` of the library: {err}"
    message = str(err)
    assert name in message, f"{where}: the message must name {name}: {message}"
    if value == 2.0 and type(value) is float:
        assert "got float 2.0; pass 2" in message, message  # the fix for a whole float


@pytest.mark.parametrize("where", sorted(COUNTS))
def test_a_numpy_integer_is_a_count(where):
    make, _ = COUNTS[where]
    ok = raised(lambda: make(4))  # a valid count everywhere
    assert ok is None or not isinstance(ok, TypeError), f"{where}: {ok}"
    with_numpy = raised(lambda: make(np.int64(4)))
    assert type(with_numpy) is type(ok), f"{where}: {ok!r} for 4 but {with_numpy!r} for np.int64(4)"


#: public entry points that take a float, and what each accepts
FLOATS: dict[str, Callable[[Any], object]] = {
    "Bernoulli(temperature)": lambda v: ar.Bernoulli(temperature=v),
    "Categorical(temperature)": lambda v: ar.Categorical(4, temperature=v),
    "DiscretizedLogisticMixture(temperature)": lambda v: ar.DiscretizedLogisticMixture(
        temperature=v
    ),
    "threshold_binarize(threshold)": lambda v: threshold_binarize(torch.rand(4), threshold=v),
    "BinarizedBatches(threshold)": lambda v: BinarizedBatches(
        torch.rand(4, 1, 2, 2), batch_size=2, threshold=v
    ),
}


@pytest.mark.parametrize(
    ("value", "error"),
    [("0.5", TypeError), (True, TypeError), (None, TypeError), ([0.5], TypeError),
     (math.nan, ValueError), (math.inf, ValueError), (-1.0, ValueError)],
    ids=repr,
)  # fmt: skip
@pytest.mark.parametrize("where", sorted(FLOATS))
def test_the_same_mistake_in_a_float_raises_the_same_error_everywhere(where, value, error):
    err = raised(lambda: FLOATS[where](value))
    assert type(err) is error, f"{where} with {value!r}: {type(err).__name__}: {err}"
    assert is_library_error(err)
    assert ("temperature" if "temperature" in where else "threshold") in str(err)


#: public entry points that take one of a few named values
CHOICES: dict[str, Callable[[Any], object]] = {
    "MaskedConv2d(mask_type)": lambda v: ar.MaskedConv2d(1, 4, 3, mask_type=v),
    "mask_groups(colour)": lambda v: ar.mask_groups(3, v),
    "PixelCNNConfig(block)": lambda v: ar.PixelCNNConfig(block=v),
    "Categorical(input)": lambda v: ar.Categorical(4, input=v),
    "DrawPlan(colour)": lambda v: ar.DrawPlan(3, v, params=1),
    "BinarizedBatches(binarize)": lambda v: BinarizedBatches(
        torch.rand(4, 1, 2, 2), batch_size=2, binarize=v
    ),
}


@pytest.mark.parametrize("value", ["nope", 1, None, ["A"], torch.zeros(2)], ids=repr)
@pytest.mark.parametrize("where", sorted(CHOICES))
def test_anything_but_a_choice_is_a_value_error(where, value):
    if where == "BinarizedBatches(binarize)" and value is None:
        pytest.skip("None is one of its choices: binary images")
    err = raised(lambda: CHOICES[where](value))
    assert type(err) is ValueError, f"{where} with {value!r}: {type(err).__name__}: {err}"
    assert is_library_error(err) and " must be " in str(err)


#: public entry points that take a tensor
TENSORS: dict[str, Callable[[Any], object]] = {
    "PixelCNN.log_prob(x)": lambda v: ar.PixelCNN(ar.PixelCNNConfig(num_blocks=1)).log_prob(v),
    "Bernoulli.log_prob(x)": lambda v: ar.Bernoulli().log_prob(torch.zeros(1, 1, 2, 2), v),
    "naive_sample(noise)": lambda v: ar.naive_sample(
        ar.MaskedConv2d(1, 1, 3, "A"), ar.Bernoulli(), v
    ),
    "BinarizedBatches(images)": lambda v: BinarizedBatches(v, batch_size=2),
    "threshold_binarize(x)": lambda v: threshold_binarize(v),
    "cut_patches(image)": lambda v: cut_patches(v),
    "ConvKernel(weight)": lambda v: ar.ConvKernel(v),
    "gate(x)": lambda v: ar.gate(v),
}


@pytest.mark.parametrize("value", [[[0.0, 1.0]], 0.5, None, np.zeros((1, 1, 2, 2))], ids=type)
@pytest.mark.parametrize("where", sorted(TENSORS))
def test_what_is_not_a_tensor_is_a_type_error(where, value):
    err = raised(lambda: TENSORS[where](value))
    assert type(err) is TypeError, f"{where} with {value!r}: {type(err).__name__}: {err}"
    assert is_library_error(err) and "must be a torch.Tensor" in str(err)


@pytest.mark.parametrize(
    ("module", "per", "expected"),
    [
        (nn.ReLU(), "value", True),
        (nn.Softmax(dim=1), "value", False),
        (nn.Softmax(dim=1), "pixel", True),
        (nn.Softmax(dim=0), "pixel", False),
        (nn.Dropout(0.5), "value", True),  # the probe runs in eval mode
        (nn.PReLU(), "value", True),  # float32 parameters: probed in float32
        (nn.AvgPool2d(3, 1, 1), "value", False),
        (nn.Flatten(), "pixel", False),
    ],
    ids=str,
)
def test_one_probe_tells_elementwise_from_mixing_modules(module, per, expected):
    training = module.training
    assert is_elementwise(module, per=per) is expected
    assert module.training == training, "the probe must leave the module's mode as it was"


def test_the_blocks_and_the_sampler_share_the_probe():
    with pytest.raises(ValueError, match=r"is not elementwise .*depends on others"):
        ar.ResidualBlock(4, act_layer=lambda: nn.Softmax(dim=1))
    assert isinstance(ar.stepper_for(nn.Softmax(dim=1), 2, 3, None), ar.ElementwiseStepper)
    ar.ResidualBlock(4, act_layer=nn.PReLU)  # elementwise, with a parameter


def test_the_primitives_normalise_what_they_accept():
    assert check_int("n", np.int64(3), 1) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_pair("k", 3) == (3, 3) and check_pair("k", [3, 5]) == (3, 5)
    assert check_float("t", 1) == 1.0 and type(check_float("t", 1)) is float
    assert check_choice("c", "a", ("a", "b")) == "a"
    assert check_bool("b", None, optional=True) is None and check_bool("b", False) is False
    x = torch.zeros(2, 3)
    assert check_tensor("x", x, ndim=2, floating=True, device=x.device) is x


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: check_int("n", 2.5, owner="Thing"), TypeError,
         r"^Thing: n must be an int, got float 2.5$"),
        (lambda: check_int("n", 0, 1, hint=" (a count)"), ValueError,
         r"n must be >= 1, got 0 \(a count\)"),
        (lambda: check_pair("k", (3,)), TypeError, r"k must be an int or a pair of ints"),
        (lambda: check_pair("k", 3, single=False), TypeError, r"k must be a pair \(H, W\)"),
        (lambda: check_choice("c", True, (1, 2)), ValueError,
         r"c must be one of \(1, 2\), got True"),
        (lambda: check_bool("b", 1), TypeError, r"b must be a bool, True or False, got 1"),
        (lambda: check_float("t", 0, positive=True), ValueError, r"t must be a positive finite"),
        (lambda: check_float("t", 1.0, minimum=0, below=1), ValueError, r"in \[0, 1\)"),
        (lambda: check_tensor("x", torch.zeros(2), ndim=4, like=" (N, C, H, W)"), ValueError,
         r"x must have 4 dimensions \(N, C, H, W\), got shape \(2,\)"),
        (lambda: check_tensor("x", torch.zeros(2).long(), floating=True), ValueError,
         r"x must be a floating-point tensor, got dtype torch.int64"),
        (lambda: check_tensor("x", torch.zeros(2), dtype=torch.bool), ValueError,
         r"x must be a torch.bool tensor"),
        (lambda: check_tensor("x", torch.zeros(2), device=torch.device("meta")), ValueError,
         r"x must be on meta, got cpu"),
    ],
)  # fmt: skip
def test_the_primitives_messages_name_the_argument_and_the_fix(call, error, match):
    with pytest.raises(error, match=match):
        call()
