"""Weights folded once for the cached sampler, and never used after the weights change.

``autoregressive.sampling.memo.derived`` keeps what steppers derive from a layer's weights (and the
sampler's width probe) across sampling calls. A stale value would sample from old weights, so
every way of changing a weight must be seen: each test changes weights one way and checks that
the cached sampler still draws the naive sampler's images, which read the weights afresh.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from autoregressive import PixelCNN, PixelCNNConfig, cached_sample, draw_noise, naive_sample
from autoregressive.sampling.memo import derived


def test_derived_is_reused_until_a_weight_changes() -> None:
    layer = nn.Linear(3, 2)
    builds: list[int] = []

    def build() -> torch.Tensor:
        builds.append(1)
        return layer.weight.detach().t().contiguous()

    first = derived(layer, "t", build)
    assert derived(layer, "t", build) is first and len(builds) == 1
    assert derived(layer, "other key", build) is not first and len(builds) == 2
    layer.weight.data[1, 2] = 7.0  # through .data: the version counter does not move
    again = derived(layer, "t", build)
    assert len(builds) == 3 and again[2, 1].item() == 7.0
    layer.double()  # same values, another dtype
    assert derived(layer, "t", build).dtype == torch.float64 and len(builds) == 4


def _train_step(model: PixelCNN) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    x = torch.bernoulli(torch.full((4, 1, 6, 6), 0.3, dtype=torch.float64))
    (-model.log_prob(x).mean()).backward()
    opt.step()


def _load_other(model: PixelCNN) -> None:
    other = PixelCNN(model.config, dtype=torch.float64)
    model.load_state_dict(other.state_dict())


def _through_data(model: PixelCNN) -> None:
    for p in model.parameters():
        p.data.mul_(-1.5)


CHANGES: dict[str, Callable[[PixelCNN], None]] = {
    "optimizer step": _train_step,
    "load_state_dict": _load_other,
    "write through .data": _through_data,
}


@pytest.mark.parametrize("block", ["residual", "gated"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_cached_sampler_sees_changed_weights(block: str, change: str) -> None:
    torch.manual_seed(0)
    config = PixelCNNConfig(block=block, num_blocks=2, hidden_channels=8)
    model = PixelCNN(config, dtype=torch.float64)
    noise = draw_noise((6, 1, 6, 6), torch.Generator().manual_seed(1))
    before = cached_sample(model.network, model.distribution, noise)
    CHANGES[change](model)
    after = cached_sample(model.network, model.distribution, noise)
    assert torch.equal(after, naive_sample(model.network, model.distribution, noise))
    assert not torch.equal(after, before)  # the change matters: a stale cache would fail


def test_probe_runs_again_for_a_changed_network() -> None:
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=8))
    noise = draw_noise((1, 1, 5, 5), torch.Generator().manual_seed(0))
    cached_sample(model.network, model.distribution, noise)  # probed and remembered
    last = model.network[-1]
    assert isinstance(last, nn.Conv2d)
    model.network[-1] = nn.Conv2d(last.in_channels, 3, 1)  # the wrong width for Bernoulli
    with pytest.raises(ValueError, match="distribution needs 1"):
        cached_sample(model.network, model.distribution, noise)


def test_values_built_while_sampling_are_ordinary_tensors() -> None:
    layer = nn.Linear(2, 2)
    with torch.inference_mode():  # as inside the sampler
        value = derived(layer, "t", lambda: layer.weight.detach().t().contiguous())
    assert not value.is_inference()
    x = torch.ones(1, 2, requires_grad=True)
    (x @ value).sum().backward()  # autograd may save it (an inference tensor would refuse)
    assert x.grad is not None


def test_derived_without_values_follows_which_tensors_not_their_numbers() -> None:
    layer = nn.Linear(3, 2)
    builds: list[int] = []

    def build() -> int:
        builds.append(1)
        return len(builds)

    assert derived(layer, "shape", build, values=False) == 1
    with torch.no_grad():
        layer.weight.mul_(3.0)  # other numbers, same tensors: kept
    assert derived(layer, "shape", build, values=False) == 1
    layer.weight = nn.Parameter(torch.zeros(2, 3))  # another tensor of the same shape
    assert derived(layer, "shape", build, values=False) == 2
    layer.double()  # the same tensors, another dtype
    assert derived(layer, "shape", build, values=False) == 3
