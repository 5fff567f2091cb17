"""Causality, proven by property tests: the exact set of inputs each output depends on.

For configurations drawn by Hypothesis we measure dependencies with the autograd Jacobian (in
float64, with positive weights so that a zero means "no path") and compare them with an
independent set-algebra reference (tests/reference.py). Every output must depend only on earlier
pixels (and, for colour, earlier channels of its own pixel); the gated stack must see *every*
earlier pixel of its receptive field (no blind spot), and the residual stack's blind spot is shown
to exist.
"""

from __future__ import annotations

import pytest
import reference as ref
import torch
from helpers import as_set, measured_deps, network_settings, positive_weights_
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from autoregressive import (
    CausalSequential,
    Conditioning,
    GatedBlock,
    GatedStack,
    MaskedConv2d,
    PixelCNN,
    PixelCNNConfig,
    ResidualBlock,
)

ODD = st.sampled_from([1, 3, 5])
F64 = {"dtype": torch.float64}


def strictly_earlier(deps: frozenset, i: int, j: int, g: int) -> bool:
    """Every dependency is an earlier pixel, or an earlier channel of pixel (i, j)."""
    return all((ii, jj) < (i, j) or ((ii, jj) == (i, j) and c < g) for ii, jj, c in deps)


def check_against_reference(network, shape, expected: ref.Deps, groups: int, cond=None) -> None:
    _, h, w = shape
    measured = measured_deps(network, shape, cond)  # (O, H, W, C, H, W)
    per_group = measured.shape[0] // groups
    for k in range(measured.shape[0]):
        g = k // per_group
        for i in range(h):
            for j in range(w):
                got = as_set(measured[k, i, j])
                want = expected[(i, j, g)]
                assert strictly_earlier(got, i, j, g), f"output {k} at {(i, j)} sees {got}"
                assert got == want, (
                    f"output channel {k} at {(i, j)}: missing {sorted(want - got)}, "
                    f"unexpected {sorted(got - want)}"
                )


@st.composite
def masked_conv_stacks(draw):
    dc = draw(st.sampled_from([1, 3]))
    depth = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    layers: list[nn.Module] = []
    specs = []
    c_in = dc
    for k in range(depth):
        kernel = (draw(ODD), draw(ODD))
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        c_out = dc * draw(st.integers(1, 3))
        mask = "A" if k == 0 else "B"
        if k:
            layers.append(nn.ReLU())
        layers.append(MaskedConv2d(c_in, c_out, kernel, mask, dc, dilation=dilation, **F64))
        specs.append((kernel, mask, dilation))
        c_in = c_out
    return CausalSequential(*layers), specs, dc, h, w


@given(masked_conv_stacks())
def test_masked_conv_stack_dependencies(case):
    net, specs, dc, h, w = case
    positive_weights_(net)
    deps = ref.image_deps(h, w, dc)
    for kernel, mask, dilation in specs:
        deps = ref.masked_conv(deps, h, w, dc, kernel, mask, dilation)
    check_against_reference(net, (dc, h, w), deps, dc)


@st.composite
def residual_networks(draw):
    dc = draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    hidden = 2 * dc * draw(st.integers(1, 2))
    stem = (draw(ODD), draw(ODD))
    blocks = [
        ((draw(ODD), draw(ODD)), (draw(st.integers(1, 2)), draw(st.integers(1, 2))))
        for _ in range(draw(st.integers(0, 3)))
    ]
    cond = draw(st.booleans())
    cc = 2 if cond else None
    layers: list[nn.Module] = [MaskedConv2d(dc, hidden, stem, "A", dc, **F64)]
    layers += [ResidualBlock(hidden, k, dc, dilation=d, cond_channels=cc, **F64) for k, d in blocks]
    layers += [nn.ReLU(), MaskedConv2d(hidden, dc * draw(st.integers(1, 2)), 1, "B", dc, **F64)]
    return CausalSequential(*layers), stem, blocks, dc, h, w, cond


@given(residual_networks())
def test_residual_network_dependencies(case):
    net, stem, blocks, dc, h, w, cond = case
    positive_weights_(net)
    deps = ref.masked_conv(ref.image_deps(h, w, dc), h, w, dc, stem, "A")
    for kernel, dilation in blocks:
        deps = ref.residual_block(deps, h, w, dc, kernel, dilation)
    deps = ref.masked_conv(deps, h, w, dc, (1, 1), "B")
    c = Conditioning(torch.tensor([[0.3, 0.7]], dtype=torch.float64)) if cond else None
    check_against_reference(net, (dc, h, w), deps, dc, c)


@st.composite
def gated_networks(draw):
    dc = draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    kernels = [(draw(st.sampled_from([3, 5])), draw(ODD)) for _ in range(draw(st.integers(1, 3)))]
    cond = draw(st.booleans())
    channels = dc * draw(st.integers(1, 2))
    net = CausalSequential(
        _gated_stack(dc, channels, kernels, 2 if cond else None),
        nn.ReLU(),
        MaskedConv2d(channels, dc, 1, "B", dc, **F64),
    )
    return net, kernels, dc, h, w, cond


def _gated_stack(dc, channels, kernels, cc):
    """A GatedStack whose blocks have the given (possibly different, rectangular) kernels."""
    stack = GatedStack(
        dc, channels, len(kernels), kernels[-1], kernels[0], dc, cond_channels=cc, **F64
    )
    for k in range(1, len(kernels) - 1):  # middle blocks get their own kernel sizes
        stack.blocks[k] = GatedBlock(
            channels, channels, kernels[k], "B", dc, cond_channels=cc, **F64
        )
    return stack


@given(gated_networks())
def test_gated_network_dependencies_have_no_blind_spot(case):
    net, kernels, dc, h, w, cond = case
    positive_weights_(net)
    deps = ref.gated_stack(ref.image_deps(h, w, dc), h, w, dc, kernels)
    deps = ref.masked_conv(deps, h, w, dc, (1, 1), "B")
    c = Conditioning(torch.tensor([[0.3, 0.7]], dtype=torch.float64)) if cond else None
    check_against_reference(net, (dc, h, w), deps, dc, c)
    if kernels[0][1] == 1:
        return  # a first block 1 pixel wide lets no pixel of the current row in: not a full field
    up = sum(kh // 2 for kh, _ in kernels)
    side = sum(kw // 2 for _, kw in kernels)
    for (i, j, g), got in deps.items():
        assert got == ref.full_causal_field(i, j, g, w, dc, up, side), (i, j, g)


@st.composite
def pixelcnn_configs(draw):
    dc = draw(st.sampled_from([1, 3]))
    block = draw(st.sampled_from(["residual", "gated"]))
    categorical = draw(st.booleans())
    return (
        PixelCNNConfig(
            data_channels=dc,
            block=block,
            distribution="categorical" if categorical else "bernoulli",
            levels=draw(st.integers(2, 4)),
            **network_settings(draw, dc, widths=2),
        ),
        draw(st.integers(2, 5)),
        draw(st.integers(2, 5)),
    )


def _conditioning(model: PixelCNN, h: int, w: int):
    """Positive conditioning of every kind the model takes, for one image of size (h, w)."""
    c = model.config
    y = torch.tensor([1]) if c.num_classes else None
    vector = torch.rand(1, c.vector_size, **F64) + 0.5 if c.vector_size else None
    spatial = torch.rand(1, c.spatial_channels, h, w, **F64) + 0.5 if c.spatial_channels else None
    return model.condition(Conditioning(vector, spatial, y), 1, size=(h, w))


@given(pixelcnn_configs())
def test_pixelcnn_outputs_are_causal(case):
    """The model a config builds: each output channel group sees only earlier (sub-)pixels.

    Under every kind of conditioning (labels, a vector, a map, together): the map is given, so
    it may reach any output, but the image path stays exactly causal.
    """
    config, h, w = case
    model = PixelCNN(config, dtype=torch.float64)
    positive_weights_(model)
    cond = _conditioning(model, h, w)
    measured = measured_deps(model.network, (config.data_channels, h, w), cond)
    per_group = config.out_channels // config.data_channels
    seen_any = False
    for k in range(config.out_channels):
        for i in range(h):
            for j in range(w):
                got = as_set(measured[k, i, j])
                seen_any |= bool(got)
                assert strictly_earlier(got, i, j, k // per_group), (k, i, j, sorted(got))
    assert seen_any, "the network depends on no input at all"
    if config.block == "gated":  # and the full causal field, no blind spot
        up = config.input_kernel_size // 2 + (config.num_blocks - 1) * (config.kernel_size // 2)
        for k in range(config.out_channels):
            for i in range(h):
                for j in range(w):
                    want = ref.full_causal_field(
                        i, j, k // per_group, w, config.data_channels, up, up
                    )
                    assert as_set(measured[k, i, j]) == want


def test_default_initialisation_is_causal_too():
    """With the library's own random initialisation (not positive weights) nothing leaks."""
    for block in ("residual", "gated"):
        torch.manual_seed(0)
        model = PixelCNN(
            PixelCNNConfig(
                block=block,
                num_blocks=3,
                hidden_channels=12,
                data_channels=3,
                distribution="categorical",
                levels=3,
            ),
            dtype=torch.float64,
        )
        measured = measured_deps(model.network, (3, 5, 5))
        for k in range(measured.shape[0]):
            for i in range(5):
                for j in range(5):
                    assert strictly_earlier(as_set(measured[k, i, j]), i, j, k // 3)


@pytest.mark.parametrize("num_blocks", [2, 3])
def test_residual_stack_has_a_blind_spot_that_the_gated_stack_does_not(num_blocks):
    """Documents the difference: same kernels, same reach, only the gated stack sees it all."""
    h = w = 9
    i, j = 6, 4
    kw = dict(num_blocks=num_blocks, hidden_channels=4, input_kernel_size=3, kernel_size=3)
    residual = positive_weights_(PixelCNN(PixelCNNConfig(block="residual", **kw), **F64))
    gated = positive_weights_(PixelCNN(PixelCNNConfig(block="gated", **kw), **F64))
    # residual: stem + num_blocks 3x3 convs reach num_blocks + 1 rows up; gated: num_blocks.
    reach_res, reach_gated = num_blocks + 1, num_blocks
    res = as_set(measured_deps(residual.network, (1, h, w))[0, i, j])
    gat = as_set(measured_deps(gated.network, (1, h, w))[0, i, j])
    res_field = ref.full_causal_field(i, j, 0, w, 1, reach_res, reach_res)
    blind = res_field - res
    assert res <= res_field
    assert blind, "expected the residual stack's blind spot"
    assert all(ii < i and jj > j for ii, jj, _ in blind), "the blind spot lies above-right"
    assert gat == ref.full_causal_field(i, j, 0, w, 1, reach_gated, reach_gated)
