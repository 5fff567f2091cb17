"""The discretized logistic mixture and pixel-wise colour: likelihood, masks, samplers.

Normalisation by enumerating every image, a closed-form check against sigmoid differences
written out here, exact dependency sets of pixel-wise networks (Hypothesis), the cached sampler
against the naive one, a chi-square test of the samples, and float32 edge cases.
"""

from __future__ import annotations

import itertools
import math

import pytest
import reference as ref
import torch
from helpers import SAMPLERS, as_set, measured_deps, positive_weights_
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from test_sampling import all_images, perturbed
from torch import nn

from autoregressive import (
    CachedSampler,
    CausalSequential,
    DiscretizedLogisticMixture,
    MaskedConv2d,
    NaiveSampler,
    PixelCNN,
    PixelCNNConfig,
    Stepper,
    draw_noise,
    mask_groups,
    naive_sample,
)

F64 = {"dtype": torch.float64}


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Models are initialised from the global generator: the same weights on every run."""
    torch.manual_seed(0)


def dlm_config(**changes: object) -> PixelCNNConfig:
    """A tiny RGB logistic-mixture model; fields overridable."""
    fields: dict[str, object] = {
        "data_channels": 3,
        "distribution": "logistic_mixture",
        "mixtures": 2,
        "levels": 4,
        "num_blocks": 2,
        "hidden_channels": 4,
        "input_kernel_size": 3,
    }
    return PixelCNNConfig(**{**fields, **changes})  # type: ignore[arg-type]


def random_raw(dist: DiscretizedLogisticMixture, channels: int, seed: int) -> torch.Tensor:
    """Raw parameters ``(1, P, 1, 1)`` of one pixel: spread means, log-scales in [-2.5, 0.5]."""
    g = torch.Generator().manual_seed(seed)
    k = dist.mixtures
    logits = 2 * torch.randn(k, generator=g, **F64)
    means = 1.5 * torch.randn(channels * k, generator=g, **F64)
    log_scales = -2.5 + 3 * torch.rand(channels * k, generator=g, **F64)
    coeffs = 2 * torch.randn(channels * (channels - 1) // 2 * k, generator=g, **F64)
    return torch.cat([logits, means, log_scales, coeffs]).view(1, -1, 1, 1)


# -------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("mixtures", [1, 3])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_image_of_one_pixel_at_3_bits_sums_to_one(channels, mixtures, temperature, seed):
    dist = DiscretizedLogisticMixture(mixtures, levels=8, temperature=temperature)
    raw = random_raw(dist, channels, seed)
    images = all_images(channels, 1, 1, 8).long()  # (8 ** C, C, 1, 1)
    total = dist.log_prob(raw.expand(len(images), -1, -1, -1), images).exp().sum().item()
    assert abs(total - 1.0) < 1e-5, total


@pytest.mark.parametrize("block", ["residual", "gated"])
def test_every_two_pixel_image_through_a_network_sums_to_one(block):
    """2x1 RGB at 2 bits: the second pixel's mixture depends on the first pixel's channels."""
    config = dlm_config(block=block, head_channels=4 if block == "gated" else 0)
    model = perturbed(PixelCNN(config, **F64), seed=1)
    images = all_images(3, 2, 1, 4).long()  # (4096, 3, 2, 1)
    with torch.no_grad():
        logp = model.log_prob(images)
    assert abs(logp.exp().sum().item() - 1.0) < 1e-5
    code = (images * torch.tensor([16, 4, 1]).view(1, 3, 1, 1)).sum(1)  # (4096, 2, 1)
    joint = torch.empty(64, 64, **F64)  # log p(first pixel, second pixel)
    joint[code[:, 0, 0], code[:, 1, 0]] = logp
    conditional = joint - joint.logsumexp(1, keepdim=True)  # log p(second | first)
    spread = (conditional - conditional[:1]).abs().max()  # over the first pixel's values
    assert spread > 1e-3, "the second pixel ignores the first"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_bin_of_one_channel_at_8_bits_sums_to_one(dtype):
    dist = DiscretizedLogisticMixture(1, levels=256)
    v = torch.arange(256).view(-1, 1)  # (256, 1): every bin
    means = torch.tensor([-1.3, -1.0, -0.4, 0.0, 0.37, 0.999, 1.0, 2.0], dtype=dtype)
    log_scales = torch.tensor([-7.0, -5.0, -3.0, -1.0, 0.0, 2.0, 6.0], dtype=dtype)
    grid_m, grid_s = (t.reshape(1, -1) for t in torch.meshgrid(means, log_scales, indexing="ij"))
    total = dist.bin_log_prob(v, grid_m, grid_s).exp().sum(0)  # (cases,)
    tol = 1e-5 if dtype == torch.float64 else 1e-3  # float32: tiny bins by the midpoint rule
    torch.testing.assert_close(total, torch.ones_like(total), atol=tol, rtol=0)


# ----------------------------------------------------------------------------- closed form
def discretized_logistic(v: torch.Tensor, mean: float, scale: float, levels: int) -> torch.Tensor:
    """P(v) by sigmoid differences, the outer bins reaching to infinity; an independent formula."""
    x = -1 + 2 * v.double() / (levels - 1)
    half = 1 / (levels - 1)
    upper = torch.where(v == levels - 1, 1.0, torch.sigmoid((x + half - mean) / scale))
    lower = torch.where(v == 0, 0.0, torch.sigmoid((x - half - mean) / scale))
    return upper - lower


@pytest.mark.parametrize(
    ("mean", "scale", "levels"), [(0.1, 0.2, 256), (-0.8, 0.05, 16), (0.7, 1.3, 8)]
)
def test_one_component_matches_the_closed_form_discretized_logistic(mean, scale, levels):
    dist = DiscretizedLogisticMixture(1, levels)
    v = torch.arange(levels)
    raw = (
        torch.tensor([0.7, mean, math.log(scale)], **F64)
        .view(1, 3, 1, 1)
        .expand(levels, -1, -1, -1)
    )
    got = dist.log_prob(raw, v.view(-1, 1, 1, 1)).exp()
    torch.testing.assert_close(
        got, discretized_logistic(v, mean, scale, levels), rtol=1e-9, atol=1e-12
    )


def test_colour_channels_are_linear_in_the_earlier_ones():
    """RGB, one component: G's mean moves by tanh(a) * R, B's by tanh(b) * R + tanh(c) * G."""
    levels, means, scales, a = 16, (0.2, -0.3, 0.5), (0.3, 0.2, 0.4), (0.4, -1.1, 0.8)
    dist = DiscretizedLogisticMixture(1, levels)
    raw = torch.tensor([0.0, *means, *(math.log(s) for s in scales), *a], **F64)
    images = torch.tensor([[0, 3, 15], [7, 7, 7], [15, 0, 9], [4, 12, 1]])  # (4, 3)
    got = dist.log_prob(raw.view(1, -1, 1, 1).expand(4, -1, -1, -1), images.view(4, 3, 1, 1))
    x = -1 + 2 * images.double() / (levels - 1)  # (4, 3) bin centres
    t = torch.tanh(torch.tensor(a, **F64))
    mu = [
        means[0] + 0 * x[:, 0],
        means[1] + t[0] * x[:, 0],
        means[2] + t[1] * x[:, 0] + t[2] * x[:, 1],
    ]
    want = sum(
        torch.stack(
            [
                discretized_logistic(images[n, c], float(mu[c][n]), scales[c], levels)
                for n in range(4)
            ]
        ).log()
        for c in range(3)
    )
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_mixture_weights_are_a_softmax_of_the_logits():
    levels = 8
    dist = DiscretizedLogisticMixture(2, levels)
    raw = torch.tensor([1.0, -0.5, -0.6, 0.4, math.log(0.3), math.log(0.2)], **F64)
    v = torch.arange(levels)
    got = dist.log_prob(raw.view(1, -1, 1, 1).expand(levels, -1, -1, -1), v.view(-1, 1, 1, 1))
    w = torch.softmax(raw[:2], 0)
    want = w[0] * discretized_logistic(v, -0.6, 0.3, levels) + w[1] * discretized_logistic(
        v, 0.4, 0.2, levels
    )
    torch.testing.assert_close(got.exp(), want, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- edge cases
def test_edges_extremes_and_gradients_stay_finite_in_float32():
    dist = DiscretizedLogisticMixture(3, levels=256)
    n = 6
    raw = torch.zeros(n, dist.num_params(3), 4, 4)
    logits, means, log_scales, coeffs = raw.split([3, 9, 9, 9], dim=1)
    values = torch.tensor([-30.0, -7.0, -3.0, 0.0, 5.0, 40.0])  # log-scales: tiny to huge
    log_scales.copy_(values.view(n, 1, 1, 1).expand_as(log_scales))
    means.copy_(torch.tensor([-4.0, -1.0, 0.0, 1.0, 4.0, 0.3]).view(n, 1, 1, 1).expand_as(means))
    coeffs.fill_(5.0)
    logits.copy_(torch.linspace(-50, 50, 3).view(1, 3, 1, 1))
    raw.requires_grad_(True)
    x = torch.randint(0, 256, (n, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    x[:, :, 0] = 0  # the bottom edge bin
    x[:, :, 1] = 255  # the top edge bin
    logp = dist.log_prob(raw, x)
    assert bool(torch.isfinite(logp).all()) and bool((logp <= 0).all()), logp
    logp.sum().backward()
    assert raw.grad is not None and bool(torch.isfinite(raw.grad).all())


def test_float32_agrees_with_float64_far_into_the_tails():
    """The CDF difference is taken where it keeps its digits: tails match float64 closely."""
    dist = DiscretizedLogisticMixture(1, levels=256)
    v = torch.arange(256).view(-1, 1)
    mean = torch.tensor([[-0.9, 0.0, 0.9]])
    log_scale = torch.full((1, 3), -2.5)
    lp64 = dist.bin_log_prob(v, mean.double(), log_scale.double())
    lp32 = dist.bin_log_prob(v, mean, log_scale)
    ok = lp64 > math.log(2e-5)  # every bin above the midpoint-rule threshold (7.6e-6)
    assert bool(ok.sum() > 100)
    # a plain sigma(upper) - sigma(lower) near 1 would be off by ~1e-2 in the log here
    torch.testing.assert_close(lp32[ok].double(), lp64[ok], atol=2e-4, rtol=0)


def test_half_precision_parameters_are_scored_in_float32():
    dist = DiscretizedLogisticMixture(2, levels=256)
    raw = torch.randn(2, dist.num_params(3), 3, 3, generator=torch.Generator().manual_seed(0))
    x = torch.randint(0, 256, (2, 3, 3, 3))
    got = dist.log_prob(raw.to(torch.bfloat16), x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, dist.log_prob(raw.to(torch.bfloat16).float(), x))


def test_log_scales_are_clamped_below():
    dist = DiscretizedLogisticMixture(1, levels=256)
    raw = torch.tensor([0.0, 0.0, -50.0], **F64).view(1, 3, 1, 1)
    clamped = torch.tensor([0.0, 0.0, -7.0], **F64).view(1, 3, 1, 1)
    x = torch.tensor([[[[128]]]])
    torch.testing.assert_close(dist.log_prob(raw, x), dist.log_prob(clamped, x))


# ----------------------------------------------------------------------------- the config
def test_config_builds_pixel_wise_masks_for_a_joint_distribution():
    cfg = dlm_config(mixtures=10, levels=256, hidden_channels=8)  # 8: no multiple of 3 needed
    assert (cfg.colour, cfg.mask_groups, cfg.out_channels) == ("pixel", 1, 100)
    model = PixelCNN(cfg)
    convs = [m for m in model.modules() if isinstance(m, MaskedConv2d)]
    assert convs and all(m.data_channels == 1 for m in convs)
    assert not bool(convs[0].mask[:, :, 1, 1].any()), "mask A must drop the centre for all"
    cat = PixelCNNConfig(data_channels=3, distribution="categorical", hidden_channels=6)
    assert (cat.colour, cat.mask_groups) == ("channel", 3)
    assert mask_groups(3, "pixel") == 1
    with pytest.raises(ValueError, match="positive multiple of 6"):
        cat.replace(hidden_channels=8)


def test_model_scores_samples_and_reports_bits_per_dim():
    model = PixelCNN(dlm_config(levels=256, image_size=(3, 4)))
    x = torch.randint(0, 256, (2, 3, 3, 4))
    assert model(x).shape == (2, 20, 3, 4)
    bpd = model.bits_per_dim(x)
    torch.testing.assert_close(bpd, -model.log_prob(x) / (36 * math.log(2)))
    sample = model.sample(2, generator=torch.Generator().manual_seed(0), temperature=0.7)
    assert sample.dtype == torch.long and sample.shape == (2, 3, 3, 4)
    assert bool(((sample >= 0) & (sample < 256)).all())


# ------------------------------------------------------------------------------- causality
def one_group_image(h: int, w: int, channels: int) -> ref.Deps:
    """The image as one colour group: node (i, j, 0) is every channel of pixel (i, j)."""
    return {
        (i, j, 0): frozenset((i, j, c) for c in range(channels)) for i in range(h) for j in range(w)
    }


@st.composite
def pixel_wise_models(draw):
    block = draw(st.sampled_from(["residual", "gated"]))
    num_blocks = draw(st.integers(1 if block == "gated" else 0, 3))
    config = dlm_config(
        block=block,
        data_channels=draw(st.integers(1, 3)),
        mixtures=1,
        num_blocks=num_blocks,
        hidden_channels=2 * draw(st.integers(1, 3)),
        input_kernel_size=draw(st.sampled_from([3, 5])),
        kernel_size=draw(st.sampled_from([3, 5])),
        head_channels=draw(st.integers(0, 3)),
        num_classes=draw(st.sampled_from([None, 2])) if num_blocks else None,  # blocks take it
    )
    return config, draw(st.integers(1, 5)), draw(st.integers(1, 5))


@given(pixel_wise_models())
def test_pixel_wise_outputs_depend_on_every_channel_of_earlier_pixels_only(case):
    """Exact sets: all channels of the earlier pixels the network reaches, nothing at p or after."""
    config, h, w = case
    c = config.data_channels
    model = positive_weights_(PixelCNN(config, **F64))
    cond = model.condition(torch.tensor([1]) if config.num_classes else None, 1)
    measured = measured_deps(model.network, (c, h, w), cond)  # (P, H, W, C, H, W)
    if config.block == "gated":
        up = config.input_kernel_size // 2 + (config.num_blocks - 1) * (config.kernel_size // 2)
        want = {
            (i, j, 0): ref.full_causal_field(i, j, 0, w, c, up, up)
            for i in range(h)
            for j in range(w)
        }
    else:
        want = ref.masked_conv(
            one_group_image(h, w, c), h, w, 1, (config.input_kernel_size,) * 2, "A"
        )
        for _ in range(config.num_blocks):
            want = ref.residual_block(want, h, w, 1, (config.kernel_size,) * 2)
    for k in range(config.out_channels):
        for i in range(h):
            for j in range(w):
                got = as_set(measured[k, i, j])
                assert all((ii, jj) < (i, j) for ii, jj, _ in got), (k, i, j, sorted(got))
                assert got == want[(i, j, 0)], (k, i, j, sorted(want[(i, j, 0)] ^ got))


# -------------------------------------------------------------------------------- sampling
@st.composite
def dlm_sampling_cases(draw):
    block = draw(st.sampled_from(["residual", "gated"]))
    config = dlm_config(
        block=block,
        data_channels=draw(st.sampled_from([1, 3])),
        mixtures=draw(st.integers(1, 3)),
        levels=draw(st.sampled_from([2, 5, 16, 256])),
        num_blocks=draw(st.integers(1, 3)),
        hidden_channels=2 * draw(st.integers(1, 3)),
        input_kernel_size=draw(st.sampled_from([3, 5, 7])),
        kernel_size=draw(st.sampled_from([3, 5])),
        head_channels=draw(st.integers(0, 4)),
        num_classes=draw(st.sampled_from([None, 4])),
    )
    size = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    completion = draw(st.sampled_from(["none", "pixels", "top-half"]))
    temperature = draw(st.sampled_from([1.0, 1.0, 0.5, 2.0]))
    return (
        config,
        draw(st.integers(1, 4)),
        size,
        completion,
        temperature,
        draw(st.integers(0, 2**16)),
    )


def whole_pixel_mask(kind: str, n: int, h: int, w: int, seed: int) -> torch.Tensor | None:
    if kind == "none":
        return None
    if kind == "pixels":
        return torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(seed)) < 0.4
    known = torch.zeros(h, w, dtype=torch.bool)
    known[: h // 2] = True
    return known


@given(dlm_sampling_cases())
def test_cached_sampler_returns_the_naive_samplers_images(case):
    config, n, (h, w), completion, t, seed = case
    model = perturbed(PixelCNN(config, **F64), seed)
    y = torch.arange(n) % config.num_classes if config.num_classes else None
    known = whole_pixel_mask(completion, n, h, w, seed)
    image = None
    if known is not None:
        image = model.sample(n, y, size=(h, w), generator=torch.Generator().manual_seed(seed + 1))
    kwargs = {"size": (h, w), "image": image, "known": known, "temperature": t}
    naive = model.sample(
        n, y, generator=torch.Generator().manual_seed(seed), sampler=NaiveSampler(), **kwargs
    )
    cached = model.sample(n, y, generator=torch.Generator().manual_seed(seed), **kwargs)
    assert torch.equal(naive, cached)
    assert naive.dtype == torch.long and bool(((naive >= 0) & (naive < config.levels)).all())
    if known is not None:
        given_ = known.expand_as(image)
        assert torch.equal(cached[given_], image[given_])


def test_cached_sampler_steps_once_per_pixel():
    model = PixelCNN(dlm_config(), **F64)
    calls: list[int] = []

    class CountingStepper(Stepper):
        pixelwise = True  # an identity on each pixel's parameters, after the network

        def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
            calls.append(j)
            return x

    class CountsSteps(nn.Identity):
        def stepper(self, batch: int, width: int, cond: object = None) -> Stepper:
            return CountingStepper()

    network = CausalSequential(model.network, CountsSteps())
    sampler = CachedSampler(rows_at_once=False)
    noise = draw_noise((2, 4, 3, 5), torch.Generator().manual_seed(0))  # (N, C + 1, H, W)
    images = sampler.sample(network, model.distribution, noise)
    assert images.shape == (2, 3, 3, 5) and len(calls) == 15 == sampler.last_passes
    assert torch.equal(images, naive_sample(model.network, model.distribution, noise))


def test_teacher_forcing_matches_the_forward_pass():
    model = perturbed(PixelCNN(dlm_config(block="gated", levels=256), **F64), seed=2).eval()
    x = torch.randint(0, 256, (2, 3, 4, 5), generator=torch.Generator().manual_seed(0))
    sampler = CachedSampler()
    noise = draw_noise((2, 4, 4, 5), torch.Generator().manual_seed(1))
    images, params = sampler.sample_with_params(
        model.network,
        model.distribution,
        noise,
        image=x,
        known=torch.ones(x.shape, dtype=torch.bool),
    )
    assert torch.equal(images.long(), x)
    with torch.no_grad():
        torch.testing.assert_close(params, model(x), rtol=1e-9, atol=1e-9)


def test_completion_of_single_channels_is_refused():
    model = PixelCNN(dlm_config(), **F64)
    image = torch.zeros(1, 3, 2, 2, dtype=torch.long)
    known = torch.zeros(1, 3, 2, 2, dtype=torch.bool)
    known[:, 0] = True  # R known, G and B not
    for method in ("cached", "naive"):
        with pytest.raises(ValueError, match="completes whole pixels"):
            model.sample(image=image, known=known, sampler=SAMPLERS[method]())


@pytest.mark.parametrize("method", ["naive", "cached"])
@pytest.mark.parametrize(
    ("config", "size"),
    [
        (dlm_config(block="gated", mixtures=3, levels=4, head_channels=4), (1, 1)),
        (dlm_config(mixtures=2, levels=3), (2, 1)),
        (dlm_config(data_channels=1, mixtures=2, levels=8), (1, 2)),
    ],
)
def test_sample_frequencies_match_the_likelihood(config, size, method):
    """Chi-square goodness of fit of 6000 samples against exp(log_prob), fixed seed."""
    model = perturbed(PixelCNN(config, **F64), seed=3)
    n = 6000
    samples = model.sample(
        n, size=size, generator=torch.Generator().manual_seed(0), sampler=SAMPLERS[method]()
    )
    images = all_images(config.data_channels, *size, config.levels)
    with torch.no_grad():
        expected = model.log_prob(images.long()).exp() * n  # (K,)
    assert_fits(samples, images, expected)


@pytest.mark.parametrize("method", ["naive", "cached"])
def test_tempered_samples_follow_the_tempered_likelihood(method):
    """At temperature 0.6 (logits / 0.6, scales * 0.6) the samples fit the tempered model."""
    config = dlm_config(mixtures=3, levels=4)
    model = perturbed(PixelCNN(config, **F64), seed=4)
    n, t = 6000, 0.6
    samples = model.sample(
        n,
        size=(1, 1),
        generator=torch.Generator().manual_seed(0),
        sampler=SAMPLERS[method](),
        temperature=t,
    )
    images = all_images(3, 1, 1, 4).long()
    with torch.no_grad():
        raw = model.network(model.distribution.preprocess(images, torch.float64))
        expected = model.distribution.with_temperature(t).log_prob(raw, images).exp() * n
    assert_fits(samples, images, expected)


def assert_fits(samples: torch.Tensor, images: torch.Tensor, expected: torch.Tensor) -> None:
    """Chi-square test of ``samples`` against ``expected`` counts of each of ``images``."""
    n = len(samples)
    assert abs(expected.sum().item() - n) < 1e-6 * n
    index = (samples.view(n, 1, -1).double() == images.view(1, len(images), -1)).all(-1)
    assert bool((index.sum(1) == 1).all()), "a sample is not one of the enumerated images"
    observed = index.sum(0).double()
    keep = expected > 5  # chi-square needs expected counts >= 5: pool the rare images
    obs, exp = observed[keep], expected[keep]
    if not bool(keep.all()):
        obs = torch.cat([obs, observed[~keep].sum().view(1)])
        exp = torch.cat([exp, expected[~keep].sum().view(1)])
    assert len(obs) >= 8, "too few distinct outcomes for a meaningful test"
    result = stats.chisquare(obs.numpy(), (exp * obs.sum() / exp.sum()).numpy())
    assert result.pvalue > 1e-3, result


def test_component_draw_is_the_inverse_cdf_of_the_tempered_weights():
    """Two far-apart components: the noise's first channel alone decides which one is drawn."""
    dist = DiscretizedLogisticMixture(2, levels=256, temperature=2.0)
    logits = torch.tensor([math.log(3.0) * 2.0, 0.0])  # softmax(logits / 2): (0.75, 0.25)
    raw = torch.cat([logits, torch.tensor([-0.6, 0.6, -6.0, -6.0])]).view(1, -1).double()
    u = torch.tensor([[0.74, 0.5], [0.76, 0.5]], **F64)  # u = 0.5: the component's mean
    values = dist.sample_pixel(raw.expand(2, -1), u)  # (2, 1)
    assert list(itertools.chain(*values.tolist())) == [51, 204]  # (+-0.6 + 1) * 127.5
