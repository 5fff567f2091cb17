"""Whole-row passes (``rows_at_once``): the step-by-step images in a fraction of the passes.

The cached sampler may find a row as the fixed point of whole-row passes
(:meth:`autoregressive.Stepper.step_row`). These tests hold it to the step-by-step loop and to
the naive sampler in float64, and check its parts: each stepper's ``step_row`` against its
``step``, a pass for some images (``images=``) against the pass for all, the fall-back for
layers without ``step_row`` or without ``images``, and the loud failure when a layer is not
causal.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from helpers import network_settings
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from autoregressive import (
    Bernoulli,
    CachedSampler,
    CausalSelfAttention2d,
    CausalSequential,
    Conditioning,
    GatedResidualBlock,
    GatedStack,
    MaskedConv2d,
    NaiveSampler,
    PixelCNN,
    PixelCNNConfig,
    ResidualBlock,
    SnailStack,
    Stepper,
    draw_noise,
    naive_sample,
    stepper_for,
)
from autoregressive.conditioning import RowConditioning

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


class _RecordingStepper(Stepper):
    """Another stepper, unchanged, that records how many images each whole-row pass was for."""

    def __init__(self, inner: Stepper, passes: list[int]) -> None:
        self.inner, self.passes = inner, passes
        for flag in ("reads_image", "pixelwise", "steps_rows", "replays_rows", "steps_subsets"):
            setattr(self, flag, getattr(inner, flag))
        self.attends_prefix = inner.attends_prefix

    def begin_image(self, height: int) -> None:
        self.inner.begin_image(height)

    def begin_row(self, i: int) -> None:
        self.inner.begin_row(i)

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        return self.inner.step(j, x)

    def step_row(
        self, x: torch.Tensor, start: int = 0, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.passes.append(x.shape[0])
        if images is None:
            return self.inner.step_row(x, start)
        assert images.shape == (x.shape[0],)
        return self.inner.step_row(x, start, images)

    def write(self, j: int, x: torch.Tensor) -> None:
        self.inner.write(j, x)


class _Recorded(nn.Module):
    """A network as it is, whose stepper records the batch of every whole-row pass."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.passes: list[int] = []

    def forward(self, x: torch.Tensor, cond: Conditioning | None = None) -> torch.Tensor:
        return self.network(x, cond)

    def stepper(self, batch: int, width: int, cond: RowConditioning | None = None) -> Stepper:
        return _RecordingStepper(stepper_for(self.network, batch, width, cond), self.passes)


@pytest.mark.parametrize("block", ["residual", "gated"])
@pytest.mark.parametrize(
    ("distribution", "channels", "conditioned"),
    [
        ("bernoulli", 1, False),
        ("bernoulli", 1, True),
        ("categorical", 1, True),
        ("logistic_mixture", 3, False),
    ],
)
def test_passes_of_the_unsettled_images_only_draw_the_step_by_step_and_naive_images(
    block, distribution, channels, conditioned
):
    """Images settle at different passes: the later passes are for the others only."""
    config = PixelCNNConfig(
        data_channels=channels, block=block, distribution=distribution, levels=4, mixtures=2,
        num_blocks=2, hidden_channels=4 * channels, input_kernel_size=3,
        num_classes=3 if conditioned else None, spatial_channels=2 if conditioned else None,
    )  # fmt: skip
    torch.manual_seed(5)
    model = perturbed(PixelCNN(config, **F64), 5)
    n, size, g = 6, (7, 7), torch.Generator().manual_seed(6)
    cond = None
    if conditioned:
        spatial = torch.randn(n, 2, *size, generator=g, **F64)
        cond = Conditioning(labels=torch.arange(n) % 3, spatial=spatial)
    parts = model.condition(cond, n, size=size)
    dist = model.distribution
    noise = draw_noise((n, dist.noise_channels(channels), *size), g)
    recorded = _Recorded(model.network)
    rows = CachedSampler(rows_at_once=True).sample(recorded, dist, noise, cond=parts)
    steps = CachedSampler(rows_at_once=False).sample(model.network, dist, noise, cond=parts)
    assert torch.equal(rows, steps)
    assert torch.equal(rows, naive_sample(model.network, dist, noise, cond=parts))
    assert n in recorded.passes  # every row's first pass is for every image ...
    assert min(recorded.passes) < n  # ... and some later ones for fewer


_COND = {"cond_channels": 2, "spatial_channels": 2}  # a vector (N, 2) and a map (N, 2, H, W)

#: layers whose steppers keep rows, by name: the layer, ``C_in``, whether it is conditioned
SUBSET_CASES: dict[str, Callable[[], tuple[nn.Module, int, bool]]] = {
    "conv A": lambda: (MaskedConv2d(3, 6, 3, "A", 3, **F64), 3, False),
    "conv B dilated": lambda: (MaskedConv2d(4, 4, (3, 5), "B", dilation=(1, 2), **F64), 4, False),
    "residual": lambda: (ResidualBlock(6, 3, **_COND, **F64), 6, True),
    "residual ELU": lambda: (ResidualBlock(6, 5, act_layer=nn.ELU, **_COND, **F64), 6, True),
    "gated": lambda: (GatedStack(1, 4, 2, input_kernel_size=5, **_COND, **F64), 1, True),
    "gated colour": lambda: (GatedStack(3, 6, 2, data_channels=3, **F64), 3, False),
    "attention": lambda: (
        CausalSelfAttention2d(4, 2, key_channels=3, positional=True, **F64),
        4,
        False,
    ),
    "attention A": lambda: (
        CausalSelfAttention2d(3, 3, mask_type="A", data_channels=3, **F64),
        3,
        False,
    ),
    "gated residual": lambda: (GatedResidualBlock(4, 3, **_COND, **F64), 4, True),
    "snail": lambda: (SnailStack(1, 4, 1, input_kernel_size=3, key_channels=2, **F64), 1, False),
}


@pytest.mark.parametrize("name", list(SUBSET_CASES))
def test_a_pass_for_some_images_is_the_pass_for_all_at_those_images(name):
    """``step_row(x[images], s, images)`` gives the rows ``step_row(x, s)`` gives there, and
    leaves the same state when the other images' inputs are those they held already."""
    torch.manual_seed(7)
    layer, c_in, conditioned = SUBSET_CASES[name]()
    perturbed(layer, 7)
    with torch.no_grad():  # as the sampler runs the steppers
        _compare_subset_passes(layer, c_in, conditioned)


def _compare_subset_passes(layer: nn.Module, c_in: int, conditioned: bool) -> None:
    """Row by row: a pass for all images, then one from a random column for some of them."""
    n, width, height, g = 5, 6, 4, torch.Generator().manual_seed(8)
    vector = torch.randn(n, 2, generator=g, **F64)
    row = RowConditioning(vector, torch.zeros(n, width, 2, **F64)) if conditioned else None
    every, some = (stepper_for(layer, n, width, row) for _ in range(2))
    assert some.steps_subsets
    for s in (every, some):
        s.begin_image(height)
    for i in range(height):
        if row is not None and row.spatial_row is not None:  # the map's row i, as the sampler
            row.spatial_row.copy_(torch.randn(n, width, 2, generator=g, **F64))
        guess = torch.randn(n, width, c_in, generator=g, **F64)
        for s in (every, some):
            s.begin_row(i)
        torch.testing.assert_close(some.step_row(guess), every.step_row(guess))  # same state
        start = int(torch.randint(0, width, (), generator=g))
        images = torch.randperm(n, generator=g)[: 1 + i % (n - 1)].sort().values  # (N',)
        x = guess[:, start:].clone()  # the other images' inputs as the guess stored them
        x[images] = torch.randn(x[images].shape, generator=g, **F64)
        got = some.step_row(x[images], start, images)  # (N', W - start, C_out)
        torch.testing.assert_close(got, every.step_row(x, start)[images])


class _ScaledStepper(Stepper):
    """A user's stepper whose ``step_row`` takes no ``images``: it never announced them."""

    steps_rows = True

    def __init__(self, scale: torch.Tensor, passes: list[int]) -> None:
        self.scale, self.passes = scale, passes

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def step_row(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        self.passes.append(x.shape[0])
        return x * self.scale


class _Scaled(nn.Module):
    """Each channel times its own weight: a user's block with the stepper above."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, channels, **F64))
        self.passes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale[:, None, None]

    def stepper(self, batch: int, width: int, cond: object = None) -> Stepper:
        return _ScaledStepper(self.scale.detach(), self.passes)


def test_a_network_with_a_block_whose_passes_take_no_images_passes_every_image():
    """The sampler passes ``images`` only when every stepper takes them; here one does not."""
    torch.manual_seed(9)
    scaled = _Scaled(8)
    network = CausalSequential(
        MaskedConv2d(1, 8, 3, "A", **F64), nn.ReLU(), scaled, MaskedConv2d(8, 8, 3, "B", **F64),
        nn.ReLU(), MaskedConv2d(8, 1, 1, "B", **F64),
    )  # fmt: skip
    perturbed(network, 9)
    assert not network.stepper(6, 7).steps_subsets
    noise = draw_noise((6, 1, 7, 7), torch.Generator().manual_seed(10))
    rows = CachedSampler(rows_at_once=True).sample(network, Bernoulli(), noise)
    assert torch.equal(rows, naive_sample(network, Bernoulli(), noise))
    assert scaled.passes and set(scaled.passes) == {6}  # whole-row passes, of every image
