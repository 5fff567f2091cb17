"""The draw plans the distributions hand the samplers: sub-steps and what each one touches."""

from __future__ import annotations

import pytest
import torch

from autoregressive import (
    Bernoulli,
    Categorical,
    DiscretizedLogisticMixture,
    DrawPlan,
    PixelCNNConfig,
)
from autoregressive.layers.masks import mask_groups

# distribution, C, then the plan's steps, its slices of sub-step 1 (params, noise, channels) or
# None for a one-step plan, value_shape, colour
PLANS = [
    (Bernoulli(), 1, 1, None, (), "channel"),
    (Bernoulli(), 3, 3, (slice(1, 2), slice(1, 2), slice(1, 2)), (), "channel"),
    (Categorical(4), 1, 1, None, (), "channel"),
    (Categorical(4), 3, 3, (slice(4, 8), slice(1, 2), slice(1, 2)), (), "channel"),
    (DiscretizedLogisticMixture(mixtures=2), 1, 1, None, (1,), "pixel"),
    (DiscretizedLogisticMixture(mixtures=2), 3, 1, None, (3,), "pixel"),
]


@pytest.mark.parametrize(("dist", "channels", "steps", "second", "value_shape", "colour"), PLANS)
def test_per_channel_and_whole_pixel_plans(dist, channels, steps, second, value_shape, colour):
    plan = dist.draw_plan(channels)
    assert (plan.steps, plan.value_shape, plan.colour) == (steps, value_shape, colour)
    # the sub-steps cut the pixel's parameters, noise and channels into equal consecutive parts
    assert plan.num_params == dist.num_params(channels)
    assert plan.noise_channels == dist.noise_channels(channels)
    assert plan.steps * plan.writes == channels
    first = (plan.param_slice(0), plan.noise_slice(0), plan.channel_slice(0))
    assert first == (
        slice(0, plan.params),
        slice(0, plan.noise_per_step),
        slice(0, plan.writes),
    )
    if second is not None:
        assert (plan.param_slice(1), plan.noise_slice(1), plan.channel_slice(1)) == second
    last = steps - 1
    assert plan.param_slice(last).stop == plan.num_params
    assert plan.noise_slice(last).stop == plan.noise_channels
    assert plan.channel_slice(last).stop == channels
    assert dist.joint == (colour == "pixel")
    assert dist.with_temperature(0.5).draw_plan(channels) == plan


@pytest.mark.parametrize(("dist", "channels", "steps", "second", "value_shape", "colour"), PLANS)
def test_a_sub_step_draws_what_its_plan_says(dist, channels, steps, second, value_shape, colour):
    plan = dist.draw_plan(channels)
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(5, plan.params, generator=g, dtype=torch.float64)
    noise = dist.prepare_noise(torch.rand(5, *plan.noise_shape, generator=g, dtype=torch.float64))
    assert dist.draw(raw, noise).shape == (5, *plan.value_shape)


@pytest.mark.parametrize(
    ("distribution", "colour"),
    [("bernoulli", "channel"), ("categorical", "channel"), ("logistic_mixture", "pixel")],
)
def test_the_plan_picks_the_masks(distribution, colour):
    cfg = PixelCNNConfig(data_channels=3, distribution=distribution, hidden_channels=12)
    plan = cfg.make_distribution().draw_plan(3)
    assert cfg.colour == plan.colour == colour
    assert cfg.mask_groups == mask_groups(3, colour) == (3 if colour == "channel" else 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 0, "colour": "channel", "params": 1}, "channels must be"),
        ({"channels": 3, "colour": "group", "params": 1}, "colour must be"),
        ({"channels": 3, "colour": "pixel", "params": 0}, "params must be"),
        ({"channels": 3, "colour": "pixel", "params": 4, "noise_shape": (0,)}, "noise_shape"),
    ],
)
def test_bad_plans_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DrawPlan(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 3.0, "colour": "channel", "params": 1}, "channels must be an int"),
        ({"channels": 3, "colour": "pixel", "params": 4, "noise_shape": [4]}, "noise_shape"),
        ({"channels": 3, "colour": "pixel", "params": 4, "noise_shape": (4.0,)}, "noise_shape"),
    ],
)
def test_plans_of_the_wrong_kind_are_type_errors(kwargs, match):
    with pytest.raises(TypeError, match=match):
        DrawPlan(**kwargs)


def test_a_distribution_that_sets_joint_is_refused():
    with pytest.raises(TypeError, match="by overriding draw_plan"):

        class WholePixels(Bernoulli):
            joint = True
