"""Likelihood normalisation, sampler correctness, and the cached sampler against the naive one."""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import SAMPLERS
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from torch import nn

from autoregressive import (
    Bernoulli,
    CachedSampler,
    CausalSequential,
    Conditioning,
    GatedBlock,
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

F64 = {"dtype": torch.float64}


def all_images(channels: int, h: int, w: int, levels: int) -> torch.Tensor:
    """Every image of the given size, ``(levels ** (C*H*W), C, H, W)``."""
    values = list(itertools.product(range(levels), repeat=channels * h * w))
    return torch.tensor(values, dtype=torch.float64).view(-1, channels, h, w)


def perturbed(model: nn.Module, seed: int = 0) -> nn.Module:
    """Move weights away from initialisation so outputs are far from uniform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


NORMALISATION_CASES = [
    (PixelCNNConfig(num_blocks=2, hidden_channels=8, input_kernel_size=3), (3, 3)),
    (PixelCNNConfig(block="gated", num_blocks=2, hidden_channels=8, input_kernel_size=3), (3, 3)),
    (PixelCNNConfig(distribution="categorical", levels=4, num_blocks=1, hidden_channels=8), (2, 2)),
    (
        PixelCNNConfig(
            block="gated",
            distribution="categorical",
            levels=4,
            num_blocks=2,
            hidden_channels=6,
            num_classes=3,
        ),
        (2, 2),
    ),
    (
        PixelCNNConfig(
            data_channels=3, distribution="categorical", levels=3, num_blocks=2, hidden_channels=6
        ),
        (1, 2),
    ),
    (
        PixelCNNConfig(
            block="gated",
            data_channels=3,
            distribution="categorical",
            levels=2,
            num_blocks=2,
            hidden_channels=6,
            head_channels=6,
        ),
        (2, 1),
    ),
]


@pytest.mark.parametrize(("config", "size"), NORMALISATION_CASES)
def test_probabilities_of_all_images_sum_to_one(config, size):
    model = perturbed(PixelCNN(config, **F64))
    images = all_images(config.data_channels, *size, config.levels)
    labels = range(config.num_classes) if config.num_classes else [None]
    for label in labels:
        y = None if label is None else torch.full((len(images),), label)
        total = model.log_prob(images, y).exp().sum().item()
        assert abs(total - 1.0) < 1e-5, total


@pytest.mark.parametrize("method", ["naive", "cached"])
@pytest.mark.parametrize(
    ("config", "size"),
    [
        (PixelCNNConfig(num_blocks=2, hidden_channels=8, input_kernel_size=3), (2, 2)),
        (
            PixelCNNConfig(
                block="gated",
                data_channels=3,
                distribution="categorical",
                levels=3,
                num_blocks=2,
                hidden_channels=6,
            ),
            (1, 1),
        ),
    ],
)
def test_sample_frequencies_match_the_likelihood(config, size, method):
    """Chi-square goodness of fit of 6000 samples against exp(log_prob), fixed seed."""
    torch.manual_seed(3)  # the same model whatever ran before (a fixed test, not a lottery)
    model = perturbed(PixelCNN(config, **F64), seed=3)
    n = 6000
    samples = model.sample(
        n, size=size, generator=torch.Generator().manual_seed(0), sampler=SAMPLERS[method]()
    )
    images = all_images(config.data_channels, *size, config.levels)
    with torch.no_grad():
        expected = model.log_prob(images).exp() * n  # (K,)
    index = (samples.view(n, 1, -1).double() == images.view(1, len(images), -1)).all(-1)  # (n, K)
    assert bool((index.sum(1) == 1).all()), "a sample is not one of the enumerated images"
    observed = index.sum(0).double()
    keep = expected > 5  # chi-square needs expected counts >= 5: pool the rare images
    obs, exp = observed[keep], expected[keep]
    if not bool(keep.all()):
        obs = torch.cat([obs, observed[~keep].sum().view(1)])
        exp = torch.cat([exp, expected[~keep].sum().view(1)])
    obs, exp = obs.numpy(), exp.numpy()
    result = stats.chisquare(obs, exp * obs.sum() / exp.sum())
    assert result.pvalue > 1e-3, result


@st.composite
def sampling_cases(draw):
    dc = draw(st.sampled_from([1, 3]))
    block = draw(st.sampled_from(["residual", "gated"]))
    config = PixelCNNConfig(
        data_channels=dc,
        block=block,
        distribution=draw(st.sampled_from(["bernoulli", "categorical"])),
        levels=draw(st.integers(2, 5)),
        num_blocks=draw(st.integers(1, 3)),
        hidden_channels=2 * dc * draw(st.integers(1, 3)),
        input_kernel_size=draw(st.sampled_from([3, 5, 7])),
        kernel_size=draw(st.sampled_from([3, 5])),
        head_channels=dc * draw(st.integers(0, 2)),
        num_classes=draw(st.sampled_from([None, 4])),
    )
    n = draw(st.integers(1, 4))
    size = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    completion = draw(st.sampled_from(["none", "pixels", "subpixels", "top-half"]))
    seed = draw(st.integers(0, 2**16))
    return config, n, size, completion, seed


def completion_mask(kind: str, n: int, c: int, h: int, w: int, seed: int) -> torch.Tensor | None:
    g = torch.Generator().manual_seed(seed)
    if kind == "none":
        return None
    if kind == "pixels":
        return torch.rand(n, 1, h, w, generator=g) < 0.4
    if kind == "subpixels":
        return torch.rand(n, c, h, w, generator=g) < 0.4
    known = torch.zeros(h, w, dtype=torch.bool)
    known[: h // 2] = True
    return known


@given(sampling_cases())
def test_cached_sampler_returns_the_naive_samplers_images(case):
    """float64, same generator seed: identical images, for every kind of model and completion."""
    config, n, (h, w), completion, seed = case
    model = perturbed(PixelCNN(config, **F64), seed)
    y = torch.arange(n) % config.num_classes if config.num_classes else None
    known = completion_mask(completion, n, config.data_channels, h, w, seed)
    image = None
    if known is not None:
        image = model.sample(n, y, size=(h, w), generator=torch.Generator().manual_seed(seed + 1))
    kwargs = {"size": (h, w), "image": image, "known": known}
    naive = model.sample(
        n, y, generator=torch.Generator().manual_seed(seed), sampler=NaiveSampler(), **kwargs
    )
    cached = model.sample(n, y, generator=torch.Generator().manual_seed(seed), **kwargs)
    assert torch.equal(naive, cached)
    if known is not None:  # completion never changes known pixels
        given = known.expand_as(image)
        assert torch.equal(cached[given], image[given])


@st.composite
def custom_stacks(draw):
    """Stacks a user might build from the public layers: dilation, rectangular kernels."""
    dc = draw(st.sampled_from([1, 3]))
    hidden = 2 * dc * draw(st.integers(1, 2))
    odd = st.sampled_from([1, 3, 5])
    if draw(st.booleans()):
        layers: list[nn.Module] = [
            MaskedConv2d(
                dc,
                hidden,
                (draw(odd), draw(odd)),
                "A",
                dc,
                dilation=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                **F64,
            )
        ]
        for _ in range(draw(st.integers(0, 2))):
            layers.append(draw(st.sampled_from([nn.ReLU, nn.GELU, nn.Tanh]))())
            if draw(st.booleans()):
                layers.append(
                    ResidualBlock(
                        hidden,
                        (draw(odd), draw(odd)),
                        dc,
                        dilation=draw(st.integers(1, 3)),
                        act_layer=nn.ELU,
                        **F64,
                    )
                )
            else:
                layers.append(
                    MaskedConv2d(
                        hidden,
                        hidden,
                        (draw(odd), draw(odd)),
                        "B",
                        dc,
                        dilation=draw(st.integers(1, 2)),
                        **F64,
                    )
                )
    else:
        kernels = [
            (draw(st.sampled_from([3, 5])), draw(odd)) for _ in range(draw(st.integers(1, 3)))
        ]
        stack = GatedStack(dc, hidden, len(kernels), kernels[-1], kernels[0], dc, **F64)
        for k in range(1, len(kernels) - 1):
            stack.blocks[k] = GatedBlock(hidden, hidden, kernels[k], "B", dc, **F64)
        layers = [stack]
    layers += [nn.ReLU(), MaskedConv2d(hidden, dc, 1, "B", dc, **F64)]
    size = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    return CausalSequential(*layers), dc, size, draw(st.integers(0, 1000))


@pytest.mark.parametrize("taps", [True, None], ids=["tap-by-tap", "default"])
@given(custom_stacks())
def test_cached_sampler_on_stacks_built_from_public_layers(taps, case):
    """Dilated and rectangular kernels; with ``tap_products=True`` every convolution over the
    rows above multiplies tap by tap (``rows.ring_product``), else these few channels gather."""
    net, dc, (h, w), seed = case
    perturbed(net, seed)
    noise = draw_noise((2, dc, h, w), torch.Generator().manual_seed(seed))
    naive = naive_sample(net, Bernoulli(), noise)
    sampler = CachedSampler(tap_products=taps)
    assert torch.equal(sampler.sample(net, Bernoulli(), noise), naive)


@pytest.mark.parametrize(
    "config",
    [
        PixelCNNConfig.preset("reference", num_blocks=3),
        PixelCNNConfig.preset("gated-small", num_blocks=3, num_classes=10),
        PixelCNNConfig(
            block="gated",
            data_channels=3,
            distribution="categorical",
            levels=16,
            num_blocks=3,
            hidden_channels=12,
            head_channels=24,
        ),
    ],
)
def test_teacher_forcing_matches_the_forward_pass(config):
    """Running the cached path over a given image yields model(x)'s parameters, within 1e-5."""
    torch.manual_seed(0)
    model = PixelCNN(config).eval()  # float32, default initialisation
    n, size = 3, (12, 10)
    x = model.sample(
        n,
        torch.arange(n) if config.num_classes else None,
        size=size,
        sampler=NaiveSampler() if config.data_channels > 1 else CachedSampler(),
        generator=torch.Generator().manual_seed(0),
    )
    y = torch.arange(n) if config.num_classes else None
    cond = model.condition(y, n)
    sampler = CachedSampler()
    noise = draw_noise(x.shape, torch.Generator().manual_seed(5))
    images, params = sampler.sample_with_params(
        model.network,
        model.distribution,
        noise,
        cond=cond,
        image=x,
        known=torch.ones(x.shape, dtype=torch.bool),
    )
    assert torch.equal(images.to(x.dtype), x)
    with torch.no_grad():
        expected = model.network(model.distribution.preprocess(x, torch.float32), cond)
    torch.testing.assert_close(params, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", ["reference", "gated-small"])
def test_cache_memory_does_not_grow_with_image_height(preset):
    model = PixelCNN.from_preset(preset, num_blocks=3)
    sampler = CachedSampler()
    sampler.sample(model.network, model.distribution, draw_noise((2, 1, 4, 16)))
    short = sampler.last_cache_nbytes
    sampler.sample(model.network, model.distribution, draw_noise((2, 1, 64, 16)))
    tall = sampler.last_cache_nbytes
    sampler.sample(model.network, model.distribution, draw_noise((2, 1, 4, 32)))
    wide = sampler.last_cache_nbytes
    assert 0 < tall <= short
    assert wide > short  # it does grow with width
    # the image itself (the output) is not counted; a full-height cache would be 16x larger
    assert tall < 64 / 4 * short


def test_cached_sampler_rejects_networks_it_cannot_step():
    net = CausalSequential(MaskedConv2d(1, 4, 3, "A"), nn.BatchNorm2d(4), MaskedConv2d(4, 1, 1))
    with pytest.raises(ValueError, match="cannot step a BatchNorm2d"):
        cached_sample(net.eval(), Bernoulli(), draw_noise((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="training mode"):
        cached_sample(net.train(), Bernoulli(), draw_noise((1, 1, 3, 3)))
    not_causal_first = CausalSequential(ResidualBlock(2), MaskedConv2d(2, 1, 1))
    with pytest.raises(ValueError, match=r"first layer|expects input of shape"):
        cached_sample(not_causal_first, Bernoulli(), draw_noise((1, 1, 3, 3)))


def test_sampling_is_deterministic_under_a_seed_and_varies_across_seeds():
    model = PixelCNN.from_preset("gated-small", num_blocks=2)
    a = model.sample(4, size=(6, 6), generator=torch.Generator().manual_seed(7))
    b = model.sample(4, size=(6, 6), generator=torch.Generator().manual_seed(7))
    c = model.sample(4, size=(6, 6), generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sample_restores_training_mode_and_returns_the_right_dtype():
    model = PixelCNN(
        PixelCNNConfig(distribution="categorical", levels=4, num_blocks=1, hidden_channels=4)
    ).train()
    out = model.sample(2, size=(3, 3))
    assert model.training and out.dtype == torch.long and out.shape == (2, 1, 3, 3)
    assert int(out.min()) >= 0 and int(out.max()) < 4


def test_one_sampler_object_serves_two_networks_in_turn():
    """A sampler holds only its options: alternating networks (one conditioned, of another
    width and distribution) gives each its own naive images."""
    first = perturbed(PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8), **F64), 0)
    config = PixelCNNConfig(
        block="gated", num_blocks=2, hidden_channels=6, num_classes=3, spatial_channels=2,
        data_channels=3, distribution="categorical", levels=4,
    )  # fmt: skip
    second = perturbed(PixelCNN(config, **F64), 1)
    cond = Conditioning(
        vector=torch.eye(3, **F64)[[0, 2]],
        spatial=torch.randn(2, 2, 4, 5, generator=torch.Generator().manual_seed(2), **F64),
    )
    cases = [
        (first, draw_noise((2, 1, 5, 6), torch.Generator().manual_seed(3)), None),
        (second, draw_noise((2, 3, 4, 5), torch.Generator().manual_seed(4)), cond),
    ]
    for sampler in [CachedSampler(), CachedSampler(rows_at_once=False), NaiveSampler()]:
        for model, noise, c in cases + cases:
            images = sampler.sample(model.network, model.distribution, noise, cond=c)
            expected = naive_sample(model.network, model.distribution, noise, cond=c)
            assert torch.equal(images, expected)


@pytest.mark.parametrize("method", ["naive", "cached"])
def test_both_samplers_return_the_parameters_they_drew_from(method):
    """With ``sample_with_params`` the naive and the cached sampler return the same parameters."""
    model = perturbed(PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8), **F64), 5)
    noise = draw_noise((3, 1, 4, 5), torch.Generator().manual_seed(6))
    sampler = NaiveSampler() if method == "naive" else CachedSampler()
    images, params = sampler.sample_with_params(model.network, model.distribution, noise)
    assert torch.equal(images, naive_sample(model.network, model.distribution, noise))
    with torch.no_grad():
        expected = model.network(model.distribution.preprocess(images, torch.float64))
        torch.testing.assert_close(params, expected, rtol=1e-12, atol=1e-12)
    if method == "naive":
        assert sampler.last_passes == 4 * 5
