"""Whole-row passes (``rows_at_once``): the step-by-step images in a fraction of the passes.

The cached sampler may find a row as the fixed point of whole-row passes
(:meth:`autoregressive.Stepper.step_row`). These tests hold it to the step-by-step loop and to
the naive sampler in float64, and check its parts: each stepper's ``step_row`` against its
``step``, the fall-back for layers without ``step_row``, and the loud failure when a layer is
not causal.
"""

from __future__ import annotations

import pytest
import torch
from helpers import network_settings
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from autoregressive import (
    Bernoulli,
    CachedSampler,
    CausalSequential,
    Conditioning,
    MaskedConv2d,
    NaiveSampler,
    PixelCNN,
    PixelCNNConfig,
    Stepper,
    draw_noise,
    naive_sample,
)

F64 = {"dtype": torch.float64}


def perturbed(model: nn.Module, seed: int, scale: float = 0.5) -> nn.Module:
    """Random weights large enough that a pixel's draw depends on the pixels before it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


@st.composite
def row_cases(draw):
    """Every kind of model the library builds, with conditioning, temperature and completion."""
    dist = draw(st.sampled_from(["bernoulli", "categorical", "logistic_mixture"]))
    dc = 1 if dist == "bernoulli" else draw(st.sampled_from([1, 3]))
    block = draw(st.sampled_from(["residual", "gated"]))
    embedding = "scaled"
    if dist == "categorical" and block == "gated":
        embedding = draw(st.sampled_from(["scaled", "learned"]))
    config = PixelCNNConfig(
        data_channels=dc,
        block=block,
        distribution=dist,
        levels=draw(st.integers(2, 6)),
        mixtures=2,
        **network_settings(draw, dc),
        input_embedding=embedding,
        embedding_dim=3,
    )
    n = draw(st.integers(1, 3))
    size = (draw(st.integers(1, 5)), draw(st.integers(1, 6)))
    temperature = draw(st.sampled_from([1.0, 0.7]))
    completion = draw(st.booleans())
    return config, n, size, temperature, completion, draw(st.integers(0, 2**16))


@given(row_cases())
def test_row_passes_draw_the_step_by_step_and_the_naive_images(case):
    config, n, (h, w), temperature, completion, seed = case
    model = perturbed(PixelCNN(config, **F64), seed)
    g = torch.Generator().manual_seed(seed)
    cond = Conditioning(
        labels=torch.arange(n) % 3 if config.num_classes else None,
        vector=torch.randn(n, 2, generator=g, **F64) if config.vector_size else None,
        spatial=torch.randn(n, 2, h, w, generator=g, **F64) if config.spatial_channels else None,
    )
    kwargs: dict = {"size": (h, w), "temperature": temperature}
    if completion:  # whole pixels, so that the mixture can take it too
        kwargs["image"] = model.sample(
            n, cond, size=(h, w), generator=torch.Generator().manual_seed(seed + 1)
        )
        kwargs["known"] = torch.rand(n, 1, h, w, generator=g) < 0.4
    images = {
        mode: model.sample(
            n, cond, generator=torch.Generator().manual_seed(seed), sampler=sampler, **kwargs
        )
        for mode, sampler in {
            "rows": CachedSampler(rows_at_once=True),
            "steps": CachedSampler(rows_at_once=False),
            "naive": NaiveSampler(),
        }.items()
    }
    assert torch.equal(images["rows"], images["steps"])
    assert torch.equal(images["rows"], images["naive"])


@st.composite
def conv_cases(draw):
    odd = st.sampled_from([1, 3, 5])
    dc = draw(st.sampled_from([1, 3]))
    conv = MaskedConv2d(
        dc * draw(st.integers(1, 2)),
        dc * draw(st.integers(1, 2)),
        (draw(odd), draw(odd)),
        draw(st.sampled_from(["A", "B"])),
        dc,
        dilation=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        **F64,
    )
    return conv, draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(0, 999))


@given(conv_cases())
def test_a_convolutions_step_row_is_its_steps_at_every_column(case):
    """After a guess, ``step_row(x[:, s:], s)`` gives what ``step`` gives at columns ``s ..``."""
    conv, n, width, seed = case
    g = torch.Generator().manual_seed(seed)
    stepped, rowed = conv.stepper(n, width), conv.stepper(n, width)
    for i in range(3):  # rows, so that the rows above count too
        x = torch.randn(n, width, conv.in_channels, generator=g, **F64)  # the row's inputs
        start = int(torch.randint(0, width, (), generator=g))
        guess = x.clone()
        guess[:, start:] = torch.randn(guess[:, start:].shape, generator=g, **F64)
        stepped.begin_row(i)
        rowed.begin_row(i)
        expected = []
        for j in range(width):
            expected.append(stepped.step(j, x[:, j]))
            stepped.write(j, x[:, j])  # as the first layer is asked to; a no-op for the others
        rowed.step_row(guess)  # a wrong guess from column start on ...
        got = rowed.step_row(x[:, start:], start)  # ... then the right inputs from there
        torch.testing.assert_close(got, torch.stack(expected, 1)[:, start:], rtol=1e-12, atol=0)


def test_a_row_whose_pixels_are_all_known_takes_one_pass_and_gives_the_forward_pass():
    model = perturbed(PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8), **F64), 0)
    x = model.sample(3, size=(5, 6), generator=torch.Generator().manual_seed(0))
    sampler = CachedSampler(rows_at_once=True)
    noise = draw_noise(x.shape, torch.Generator().manual_seed(1))
    images, params = sampler.sample_with_params(
        model.network, model.distribution, noise, image=x, known=torch.ones_like(x).bool()
    )
    assert torch.equal(images, x)
    assert sampler.last_passes == 5  # one per row: the guess is the known row
    with torch.no_grad():
        expected = model.network(model.distribution.preprocess(x, torch.float64))
    torch.testing.assert_close(params, expected, rtol=1e-10, atol=1e-12)


def test_by_default_small_batches_take_row_passes_and_large_ones_steps():
    model = perturbed(PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8), **F64), 1)
    sampler = CachedSampler()
    steps = 6 * 7
    small = sampler.sample(
        model.network,
        model.distribution,
        draw_noise((2, 1, 6, 7), torch.Generator().manual_seed(0)),
    )
    assert 6 <= sampler.last_passes < steps  # at least one pass per row, fewer than the steps
    sampler.sample(
        model.network,
        model.distribution,
        draw_noise((17, 1, 6, 7), torch.Generator().manual_seed(0)),
    )
    assert sampler.last_passes == steps  # one step per pixel: above the default's batch
    stepped = CachedSampler(rows_at_once=False)
    noise = draw_noise((2, 1, 6, 7), torch.Generator().manual_seed(0))
    assert torch.equal(stepped.sample(model.network, model.distribution, noise), small)
    assert stepped.last_passes == steps


class _FlipStepper(Stepper):
    """Claims to read the image causally, but its output at a pixel flips that pixel's value."""

    reads_image = True
    steps_rows = True

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("only step_row is used here")

    def step_row(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        return 40.0 * (0.5 - x)  # a draw of 1 where the guess was 0, and of 0 where it was 1


class _Flip(nn.Module):
    """Causal in ``forward`` (a constant), so the samplers' probe passes; its stepper is not."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones((), **F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.zeros_like(x)

    def stepper(self, batch: int, width: int, cond: object = None) -> Stepper:
        return _FlipStepper()


def test_a_layer_that_sees_its_own_pixel_fails_loudly_instead_of_looping():
    sampler = CachedSampler(rows_at_once=True)
    with pytest.raises(RuntimeError, match="fixed point"):
        sampler.sample(
            CausalSequential(_Flip()),
            Bernoulli(),
            draw_noise((1, 1, 2, 3), torch.Generator().manual_seed(0)),
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rows_at_once": "yes"}, TypeError, "rows_at_once must be None, True or False"),
        ({"cuda_graphs": 1}, TypeError, "cuda_graphs must be None, True or False"),
        ({"cuda_graphs": True, "rows_at_once": True}, ValueError, "not both"),
        ({"replay_rows": 1}, TypeError, "replay_rows must be a bool"),
        ({"replay_rows": True, "cuda_graphs": True}, ValueError, "replay_rows=True"),
        ({"replay_rows": True, "rows_at_once": True}, ValueError, "replay_rows=True"),
        ({"tap_products": "yes"}, TypeError, "tap_products must be None, True or False"),
    ],
)
def test_bad_sampler_options_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        CachedSampler(**kwargs)


def test_naive_and_row_samplers_agree_on_a_deeper_model_with_many_passes():
    """A categorical colour model whose rows need many passes: still the naive images."""
    config = PixelCNNConfig(
        data_channels=3, distribution="categorical", levels=8, num_blocks=3, hidden_channels=12
    )
    model = perturbed(PixelCNN(config, **F64), 3, scale=1.0)
    noise = draw_noise((2, 3, 4, 6), torch.Generator().manual_seed(4))
    sampler = CachedSampler(rows_at_once=True)
    rows = sampler.sample(model.network, model.distribution, noise)
    assert sampler.last_passes > 2 * 4  # more than draw-and-confirm in some row
    assert torch.equal(rows, naive_sample(model.network, model.distribution, noise))
