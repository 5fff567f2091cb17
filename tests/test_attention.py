"""Causal self-attention and PixelSNAIL: dependency sets, exact cached sampling, normalisation.

The same proofs as for the convolutional blocks (``test_dependencies.py``, ``test_sampling.py``):
Hypothesis draws the configuration, the autograd Jacobian (float64, positive weights) gives the
exact set of inputs each output depends on, compared with the set algebra of
``tests/reference.py``; with attention every earlier pixel is reached, at any distance. The
cached sampler (a cache of every drawn pixel's keys and values) returns the naive sampler's
images in float64, for every distribution, conditioning, completion and temperature.
"""

from __future__ import annotations

import pytest
import reference as ref
import torch
from helpers import as_set, measured_deps, positive_weights_
from hypothesis import given
from hypothesis import strategies as st
from test_dependencies import check_against_reference
from test_sampling import all_images, completion_mask, perturbed
from torch import nn

from autoregressive import (
    Bernoulli,
    CachedSampler,
    CausalSelfAttention2d,
    CausalSequential,
    Conditioning,
    GatedResidualBlock,
    MaskedConv2d,
    NaiveSampler,
    PixelCNN,
    PixelCNNConfig,
    SnailStack,
    cached_sample,
    draw_noise,
    naive_sample,
)
from autoregressive.sampling.cached import ROWS_AT_ONCE_MAX_BATCH
from autoregressive.sampling.snail_stepper import SnailStepper

F64 = {"dtype": torch.float64}


# ----------------------------------------------------------------------- dependency sets
@st.composite
def attention_networks(draw):
    """A mask-A convolution then an attention layer, or an attention layer reading the image.

    Returns the network and its features' dependency sets (the image's, or the convolution's).
    With the positional background every pixel's key and value differ from the others', so the
    query's part cannot cancel (were the earlier features all alike, e.g. constant, every key
    would be alike and the query could not matter).
    """
    dc = draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    heads = dc * draw(st.integers(1, 2))
    positional = True
    image = ref.image_deps(h, w, dc)
    if draw(st.booleans()):
        kernel = (draw(st.sampled_from([1, 3])), draw(st.sampled_from([1, 3])))
        hidden = dc * draw(st.integers(1, 3))
        mask = draw(st.sampled_from(["A", "B"]))
        attention = CausalSelfAttention2d(
            hidden, heads, key_channels=draw(st.integers(1, 3)), out_channels=dc,
            mask_type=mask, data_channels=dc, positional=positional, **F64,
        )  # fmt: skip
        net = CausalSequential(MaskedConv2d(dc, hidden, kernel, "A", dc, **F64), attention)
        features = ref.masked_conv(image, h, w, dc, kernel, "A")
        return net, features, mask, dc, h, w
    attention = CausalSelfAttention2d(
        dc, heads, out_channels=2 * dc, mask_type="A", data_channels=dc, positional=positional,
        **F64,
    )  # fmt: skip
    return CausalSequential(attention), image, "A", dc, h, w


@given(attention_networks())
def test_attention_dependencies(case):
    """Keys and values at every earlier pixel; the query at the pixel, by colour group."""
    net, features, mask, dc, h, w = case
    positive_weights_(net)
    must = ref.attention(features, h, w, dc, mask)  # see reference.attention: position 1
    may = ref.attention(features, h, w, dc, mask, query_from=1)
    measured = measured_deps(net, (dc, h, w))  # (O, H, W, C, H, W)
    per_group = measured.shape[0] // dc
    for k in range(measured.shape[0]):
        for i in range(h):
            for j in range(w):
                got, node = as_set(measured[k, i, j]), (i, j, k // per_group)
                assert must[node] <= got <= may[node], (k, (i, j), got, must[node])


def snail_config(draw, dc: int, colour: str) -> PixelCNNConfig:
    """A small ``block="snail"`` config for ``dc`` channels, channel- or pixel-wise."""
    groups = dc if colour == "channel" else 1
    return PixelCNNConfig(
        block="snail",
        data_channels=dc,
        distribution="categorical" if colour == "channel" else "logistic_mixture",
        levels=draw(st.integers(2, 4)),
        mixtures=draw(st.integers(1, 2)),
        num_blocks=draw(st.integers(1, 2)),
        attention_every=draw(st.integers(0, 2)),
        hidden_channels=2 * groups * draw(st.integers(1, 2)),
        attention_heads=groups * draw(st.integers(1, 2)),
        attention_key_channels=draw(st.integers(1, 4)),
        input_kernel_size=draw(st.sampled_from([1, 3])),
        kernel_size=draw(st.sampled_from([1, 3])),
        head_channels=groups * draw(st.integers(0, 2)),
        vector_size=draw(st.sampled_from([None, 2])),
        spatial_channels=draw(st.sampled_from([None, 2])),
    )


@given(st.data())
def test_snail_network_sees_every_earlier_pixel(data):
    """No blind spot at any distance: each output depends on exactly the earlier sub-pixels."""
    dc, colour = data.draw(st.sampled_from([(1, "channel"), (3, "channel"), (3, "pixel")]))
    config = snail_config(data.draw, dc, colour)
    h, w = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    model = PixelCNN(config, **F64)
    positive_weights_(model.network)
    parts = {}
    if config.vector_size:
        parts["vector"] = torch.full((1, 2), 0.3, **F64)
    if config.spatial_channels:
        parts["spatial"] = torch.full((1, 2, h, w), 0.2, **F64)
    cond = Conditioning(**parts) if parts else None
    groups = config.mask_groups
    expected = {
        (i, j, g): ref.full_causal_field(i, j, g if groups > 1 else 0, w, dc, h, w)
        for i in range(h)
        for j in range(w)
        for g in range(groups)
    }
    check_against_reference(model.network, (dc, h, w), expected, groups, cond)


def test_gated_residual_blocks_alone_keep_a_blind_spot():
    """The attention is what closes it: without, the pixel up and to the right is unseen."""
    net = CausalSequential(
        MaskedConv2d(1, 4, 3, "A", **F64), GatedResidualBlock(4, 3, **F64),
        GatedResidualBlock(4, 3, **F64), MaskedConv2d(4, 1, 1, **F64),
    )  # fmt: skip
    positive_weights_(net)
    deps = measured_deps(net, (1, 4, 6))  # (1, H, W, 1, H, W)
    assert not bool(deps[0, 3, 1, 0, 0, 5])  # far above right: out of reach
    with_attention = PixelCNN(PixelCNNConfig(block="snail", num_blocks=1, hidden_channels=4), **F64)
    positive_weights_(with_attention.network)
    assert bool(measured_deps(with_attention.network, (1, 4, 6))[0, 3, 1, 0, 0, 5])


# -------------------------------------------------------------------- cached == naive
@st.composite
def snail_sampling_cases(draw):
    dc, colour = draw(st.sampled_from([(1, "channel"), (3, "channel"), (3, "pixel")]))
    config = snail_config(draw, dc, colour)
    if dc == 1 and draw(st.booleans()):
        config = config.replace(distribution="bernoulli", levels=2)
    elif dc == 1 and draw(st.booleans()):
        config = config.replace(input_embedding=draw(st.sampled_from(["onehot", "learned"])))
    config = config.replace(num_classes=draw(st.sampled_from([None, 3])))
    n = draw(st.integers(1, 3))
    size = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    completion = draw(st.sampled_from(["none", "pixels", "subpixels", "top-half"]))
    if colour == "pixel" and completion == "subpixels":
        completion = "pixels"  # a mixture draws whole pixels
    temperature = draw(st.sampled_from([1.0, 0.7, 1.5]))
    rows_at_once = draw(st.sampled_from([None, True, False]))
    return config, n, size, completion, temperature, rows_at_once, draw(st.integers(0, 2**16))


def _cond(config: PixelCNNConfig, n: int, size: tuple[int, int], seed: int) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % config.num_classes if config.num_classes else None
    vector = torch.randn(n, 2, generator=g, **F64) if config.vector_size else None
    spatial = torch.randn(n, 2, *size, generator=g, **F64) if config.spatial_channels else None
    return Conditioning(vector, spatial, labels)


@given(snail_sampling_cases())
def test_cached_sampler_returns_the_naive_samplers_images_for_snail(case):
    config, n, (h, w), completion, temperature, rows_at_once, seed = case
    model = perturbed(PixelCNN(config, **F64), seed)
    cond = _cond(config, n, (h, w), seed)
    known = completion_mask(completion, n, config.data_channels, h, w, seed)
    image = None
    if known is not None:
        image = model.sample(n, cond, size=(h, w), generator=torch.Generator().manual_seed(seed))
    kwargs = {"size": (h, w), "image": image, "known": known, "temperature": temperature}

    def draw(sampler):
        generator = torch.Generator().manual_seed(seed + 1)
        return model.sample(n, cond, generator=generator, sampler=sampler, **kwargs)

    cached = draw(CachedSampler(rows_at_once=rows_at_once))
    assert torch.equal(draw(NaiveSampler()), cached)
    if known is not None:
        given = known.expand_as(image)
        assert torch.equal(cached[given], image[given])


@st.composite
def mixed_stacks(draw):
    """Attention and convolutions interleaved freely, as a user might stack them."""
    dc = draw(st.sampled_from([1, 3]))
    hidden = 2 * dc * draw(st.integers(1, 2))
    heads = dc * draw(st.integers(1, 2))
    odd = st.sampled_from([1, 3, 5])
    if draw(st.booleans()):
        first: nn.Module = MaskedConv2d(dc, hidden, (draw(odd), draw(odd)), "A", dc, **F64)
    else:
        first = CausalSelfAttention2d(
            dc, heads, out_channels=hidden, mask_type="A", data_channels=dc,
            positional=draw(st.booleans()), **F64,
        )  # fmt: skip
    layers = [first]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "attention", "gated", "act"]))
        if kind == "conv":
            layers.append(MaskedConv2d(hidden, hidden, (draw(odd), draw(odd)), "B", dc, **F64))
        elif kind == "attention":
            layers.append(
                CausalSelfAttention2d(
                    hidden,
                    heads,
                    key_channels=draw(st.integers(1, 4)),
                    value_channels=draw(st.integers(1, 3)),
                    data_channels=dc,
                    positional=draw(st.booleans()),
                    **F64,
                )
            )
        elif kind == "gated":
            layers.append(GatedResidualBlock(hidden, draw(odd), dc, **F64))
        else:
            layers.append(draw(st.sampled_from([nn.ReLU, nn.GELU, nn.Tanh]))())
    layers += [nn.ReLU(), MaskedConv2d(hidden, dc, 1, "B", dc, **F64)]
    size = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    rows_at_once = draw(st.sampled_from([None, True, False]))
    return CausalSequential(*layers), dc, size, rows_at_once, draw(st.integers(0, 999))


@given(mixed_stacks())
def test_a_block_mixing_attention_and_convolutions_samples_exactly(case):
    net, dc, (h, w), rows_at_once, seed = case
    perturbed(net, seed)
    noise = draw_noise((2, dc, h, w), torch.Generator().manual_seed(seed))
    naive = naive_sample(net, Bernoulli(), noise)
    assert torch.equal(cached_sample(net, Bernoulli(), noise, rows_at_once=rows_at_once), naive)


def test_teacher_forcing_matches_the_forward_pass():
    """Stepping over a given image yields the forward pass's parameters (float32)."""
    torch.manual_seed(0)
    config = PixelCNNConfig.preset("snail-small", num_classes=3, image_size=(9, 7))
    model = PixelCNN(config).eval()
    x = (torch.rand(3, 1, 9, 7) < 0.4).float()
    cond = model.condition(torch.arange(3), 3)
    for rows_at_once in (True, False):
        images, params = CachedSampler(rows_at_once=rows_at_once).sample_with_params(
            model.network, model.distribution, draw_noise(x.shape), cond=cond, image=x,
            known=torch.ones(x.shape, dtype=torch.bool),
        )  # fmt: skip
        assert torch.equal(images, x)
        with torch.no_grad():
            expected = model.network(x, cond)
        torch.testing.assert_close(params, expected, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------- normalisation
NORMALISATION_CASES = [
    (PixelCNNConfig(block="snail", num_blocks=2, hidden_channels=4, attention_heads=2), (3, 3)),
    (
        PixelCNNConfig(
            block="snail", distribution="categorical", levels=3, num_blocks=1,
            hidden_channels=4, num_classes=2, attention_every=1,
        ),
        (2, 2),
    ),
    (
        PixelCNNConfig(
            block="snail", data_channels=3, distribution="categorical", levels=2,
            num_blocks=1, hidden_channels=6, attention_heads=3,
        ),
        (2, 1),
    ),
    (
        PixelCNNConfig(
            block="snail", data_channels=3, distribution="logistic_mixture", levels=2,
            mixtures=2, num_blocks=1, hidden_channels=4,
        ),
        (1, 2),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("config", "size"), NORMALISATION_CASES)
def test_probabilities_of_all_images_sum_to_one(config, size):
    model = perturbed(PixelCNN(config, **F64))
    images = all_images(config.data_channels, *size, config.levels)
    for label in range(config.num_classes) if config.num_classes else [None]:
        y = None if label is None else torch.full((len(images),), label)
        total = model.log_prob(images, y).exp().sum().item()
        assert abs(total - 1.0) < 1e-6, total


# ---------------------------------------------------------------- the cache and its rules
def test_the_key_value_cache_holds_every_pixel():
    """``N * heads * H * W * (d_k + d_v)`` numbers per attention layer, allocated per call."""
    config = PixelCNNConfig.preset("snail-small")
    model = PixelCNN(config)
    sampler = CachedSampler()
    sizes = {}
    for height in (4, 8):
        sampler.sample(model.network, model.distribution, draw_noise((2, 1, height, 5)))
        sizes[height] = sampler.last_cache_nbytes
    heads, d_k = config.attention_heads, config.attention_key_channels
    d_v = config.hidden_channels // heads
    per_row = config.num_blocks * 2 * heads * 5 * (d_k + d_v) * 4  # float32
    assert sizes[8] - sizes[4] == 4 * per_row


def test_an_attention_network_passes_whole_rows_at_any_batch():
    """Above ``ROWS_AT_ONCE_MAX_BATCH`` a step would read every cached key: rows are passed."""
    config = PixelCNNConfig(block="snail", num_blocks=1, hidden_channels=4, attention_heads=2)
    model = perturbed(PixelCNN(config, **F64), 0)
    noise = draw_noise((ROWS_AT_ONCE_MAX_BATCH + 1, 1, 4, 5), torch.Generator().manual_seed(0))
    by_default, by_steps = CachedSampler(), CachedSampler(rows_at_once=False)
    images = by_default.sample(model.network, model.distribution, noise)
    assert torch.equal(images, by_steps.sample(model.network, model.distribution, noise))
    assert torch.equal(images, naive_sample(model.network, model.distribution, noise))
    assert by_steps.last_passes == 4 * 5
    assert by_default.last_passes < by_steps.last_passes


SETTLING_CASES = [
    ({"distribution": "bernoulli", "vector_size": 2}, "none"),
    ({"distribution": "categorical", "levels": 4, "spatial_channels": 2}, "pixels"),
    ({"distribution": "logistic_mixture", "levels": 8, "mixtures": 2, "data_channels": 3}, "top"),
]


@pytest.mark.parametrize(("options", "completion"), SETTLING_CASES)
def test_settled_images_are_not_passed_again(options, completion, monkeypatch):
    """Passes after an image's row settles run for the others only: the same images and params."""
    config = PixelCNNConfig(block="snail", num_blocks=1, hidden_channels=6, **options)
    model = perturbed(PixelCNN(config, **F64), 0)
    c, n, h, w = config.data_channels, 9, 4, 5
    noise = draw_noise((n, model.distribution.noise_channels(c), h, w), torch.Generator())
    g = torch.Generator().manual_seed(1)
    inputs: dict = {"cond": Conditioning(
        torch.randn(n, 2, generator=g, **F64) if config.vector_size else None,
        torch.randn(n, 2, h, w, generator=g, **F64) if config.spatial_channels else None,
    )}  # fmt: skip
    known = completion_mask(completion, n, c, h, w, seed=1)
    if known is not None:  # other images of the model, to complete
        other = naive_sample(model.network, model.distribution, noise.flip(0), **inputs)
        inputs.update(image=other, known=known)
    passed: list[int] = []  # how many images each pass ran for
    step_row = SnailStepper.step_row

    def recorded(self, x, start=0, images=None):
        passed.append(len(x) if images is None else len(images))
        return step_row(self, x, start, images)

    monkeypatch.setattr(SnailStepper, "step_row", recorded)
    rows = CachedSampler(rows_at_once=True)
    images, params = rows.sample_with_params(model.network, model.distribution, noise, **inputs)
    expected = CachedSampler(rows_at_once=False).sample_with_params(
        model.network, model.distribution, noise, **inputs
    )
    assert torch.equal(images, expected[0])
    torch.testing.assert_close(params, expected[1])
    assert torch.equal(images, naive_sample(model.network, model.distribution, noise, **inputs))
    assert 0 < min(passed) < n  # some passes ran for the unsettled images only
    assert rows.last_passes == len(passed)


@pytest.mark.parametrize("options", [{"replay_rows": True}, {"cuda_graphs": True}])
def test_rows_of_an_attention_network_are_not_replayed(options):
    model = PixelCNN(PixelCNNConfig(block="snail", num_blocks=1, hidden_channels=4))
    with pytest.raises(ValueError, match=r"cannot be replayed|CUDA device"):
        CachedSampler(**options).sample(model.network, model.distribution, draw_noise((1, 1, 4, 4)))


def test_snail_model_round_trips_through_save_pretrained(tmp_path):
    model = PixelCNN(PixelCNNConfig.preset("snail-small", num_blocks=1, image_size=(6, 6)))
    x = (torch.rand(2, 1, 6, 6) < 0.5).float()
    loaded = PixelCNN.from_pretrained(model.save_pretrained(tmp_path))
    assert loaded.config == model.config and loaded.config.block == "snail"
    assert torch.equal(loaded.log_prob(x), model.eval().log_prob(x))


def test_attention_layer_contract():
    attn = CausalSelfAttention2d(6, 3, mask_type="A", data_channels=3, extra_channels=1)
    assert "mask_type='A'" in repr(attn) and "data_channels=3" in repr(attn)
    before = attn.key_value.weight.clone()
    attn.reset_parameters()
    assert not torch.equal(before, attn.key_value.weight)
    stack = SnailStack(1, 4, 1, heads=2, dtype=torch.float64)
    assert "residual_blocks=2, heads=2" in repr(stack)
    assert all(t.dtype == torch.float64 for t in [*stack.parameters(), *stack.buffers()])
