"""The samplers' ``sample_with_choice`` hook: who picks each sub-step's value.

Sampling is the choice ``distribution.draw``; an entropy coder's encoder hands back the known
values in order and its decoder reads them from a stream. Both samplers call the choice once per
sub-step, in the same order, with the same parameters (the naive sampler is the slow twin).
"""

from __future__ import annotations

import pytest
import torch
from helpers import small_configs
from hypothesis import given
from hypothesis import strategies as st

from autoregressive import (
    CachedSampler,
    Conditioning,
    NaiveSampler,
    PixelCNN,
    PixelCNNConfig,
    draw_noise,
)

F64 = {"dtype": torch.float64}


@st.composite
def choice_cases(draw):
    config = draw(small_configs(st.integers(2, 6)))
    n = draw(st.integers(1, 3))
    size = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return config, n, size, draw(st.integers(0, 2**16))


class Recorder:
    """A choice that draws from the noise as sampling does and keeps every call's arguments."""

    def __init__(self, draw):
        self.draw = draw
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, raw: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        self.calls.append((raw.clone(), noise.clone()))
        return self.draw(raw, noise)


def labels_of(config: PixelCNNConfig, n: int) -> Conditioning | None:
    if config.num_classes is None:
        return None
    return Conditioning(vector=torch.eye(config.num_classes, **F64)[torch.arange(n) % 3])


@given(choice_cases(), st.sampled_from([None, True, False]))
def test_drawing_as_the_choice_is_sampling_and_both_samplers_ask_alike(case, rows_at_once):
    config, n, (h, w), seed = case
    model = PixelCNN(config, **F64)
    dist, cond = model.distribution, labels_of(config, n)
    shape = (n, dist.noise_channels(config.data_channels), h, w)
    noise = draw_noise(shape, torch.Generator().manual_seed(seed))
    sampled = CachedSampler(rows_at_once=rows_at_once).sample(model.network, dist, noise, cond=cond)
    fast, slow = Recorder(dist.draw), Recorder(dist.draw)
    cached = CachedSampler(rows_at_once=rows_at_once).sample_with_choice(
        model.network, dist, noise, fast, cond=cond
    )
    naive = NaiveSampler().sample_with_choice(model.network, dist, noise, slow, cond=cond)
    assert torch.equal(cached, sampled) and torch.equal(naive, sampled)
    assert len(fast.calls) == len(slow.calls) == h * w * dist.draw_plan(config.data_channels).steps
    for (raw_c, u_c), (raw_n, u_n) in zip(fast.calls, slow.calls, strict=True):
        assert torch.equal(u_c, u_n)
        torch.testing.assert_close(raw_c, raw_n)


@given(choice_cases())
def test_a_choice_that_hands_back_an_images_values_rebuilds_it(case):
    """The encoder's choice: the known values, sub-step by sub-step, in the documented order."""
    config, n, (h, w), seed = case
    model = PixelCNN(config, **F64)
    dist = model.distribution
    plan = dist.draw_plan(config.data_channels)
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, config.levels, (n, config.data_channels, h, w), generator=g)
    # (H * W * S, N, *V): rows, then pixels, then a pixel's sub-steps
    order = image.permute(2, 3, 1, 0).reshape(h * w, plan.steps, plan.writes, n)
    values = iter(order.flatten(0, 1).movedim(-1, 1).reshape(-1, n, *plan.value_shape))
    noise = draw_noise((n, dist.noise_channels(config.data_channels), h, w), g)
    rebuilt = CachedSampler().sample_with_choice(
        model.network, dist, noise, lambda raw, u: next(values), cond=labels_of(config, n)
    )
    assert torch.equal(rebuilt.long(), image)
    assert next(values, None) is None


def test_a_choice_runs_step_by_step_whatever_the_samplers_options():
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4), **F64)
    noise = draw_noise((2, 1, 5, 4), torch.Generator().manual_seed(0))
    for sampler in (CachedSampler(rows_at_once=True), CachedSampler(replay_rows=True)):
        recorder = Recorder(model.distribution.draw)
        sampler.sample_with_choice(model.network, model.distribution, noise, recorder)
        assert len(recorder.calls) == 20 and sampler.last_passes == 20
        assert not sampler.last_used_graph


def test_a_choice_that_is_not_callable_is_refused():
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4))
    noise = draw_noise((1, 1, 2, 2))
    with pytest.raises(TypeError, match="choose must be a function"):
        CachedSampler().sample_with_choice(model.network, model.distribution, noise, 3)
