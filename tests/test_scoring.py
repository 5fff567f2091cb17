"""Out-of-distribution scores: perturb's statistics, the ratio as a difference of likelihoods.

``perturb`` is checked by counting: with a fixed seed over many values, rate 0 changes nothing,
rate 1 spreads the values uniformly over the levels, and a rate in between replaces that
share of them. ``log_likelihood`` in chunks is compared with one ``log_prob`` of the whole
batch (float64 models, every kind of conditioning), and ``likelihood_ratio`` with the
difference of the two models' ``log_prob``. The refusals are in ``tests/error_cases.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import small_configs
from hypothesis import given
from hypothesis import strategies as st

from autoregressive import (
    Conditioning,
    PixelCNN,
    PixelCNNConfig,
    likelihood_ratio,
    log_likelihood,
    perturb,
)

F64 = {"dtype": torch.float64}
#: values counted by the statistical tests
COUNT = 200_000


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def within_sigmas(observed: float, n: int, p: float, sigmas: float = 5.0) -> bool:
    """Whether a count ``observed`` of ``n`` Bernoulli(``p``) draws lies within ``sigmas``."""
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


VALUES = [  # (values, levels): the dtypes a model scores, and bytes
    (torch.randint(0, 2, (COUNT,), generator=seeded(1)).float(), 2),
    (torch.randint(0, 2, (COUNT,), generator=seeded(2)).bool(), 2),
    (torch.randint(0, 4, (COUNT,), generator=seeded(3)), 4),
    (torch.randint(0, 256, (COUNT,), generator=seeded(4)).to(torch.uint8), 256),
]


@pytest.mark.parametrize(("x", "levels"), VALUES, ids=lambda v: str(getattr(v, "dtype", v)))
def test_rate_zero_is_the_identity(x, levels):
    y = perturb(x, 0.0, levels, seeded())
    assert y.dtype == x.dtype and torch.equal(y, x)


@pytest.mark.parametrize(("x", "levels"), VALUES[:3], ids=lambda v: str(getattr(v, "dtype", v)))
def test_rate_one_draws_every_level_uniformly(x, levels):
    y = perturb(x, 1.0, levels, seeded())
    counts = torch.bincount(y.long(), minlength=levels)
    assert counts.numel() == levels
    assert all(within_sigmas(float(c), COUNT, 1 / levels) for c in counts)
    same = float((y == x).sum())  # independent of the old values: a 1 / levels match
    assert within_sigmas(same, COUNT, 1 / levels)


@pytest.mark.parametrize(("rate", "levels"), [(0.1, 2), (0.3, 2), (0.2, 4), (0.25, 256)])
def test_a_share_rate_of_the_values_is_redrawn(rate, levels):
    x = torch.zeros(COUNT, dtype=torch.long)
    y = perturb(x, rate, levels, seeded(7))
    changed = float((y != x).sum())  # a redraw keeps the old value with chance 1 / levels
    assert within_sigmas(changed, COUNT, rate * (levels - 1) / levels)
    new = torch.bincount(y[y != x], minlength=levels)[1:]  # the others, equally often
    assert all(within_sigmas(float(c), int(changed), 1 / (levels - 1)) for c in new)


@given(
    levels=st.sampled_from([2, 3, 256]),
    rate=st.floats(0, 1),
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_shape_dtype_and_range_are_kept_and_a_seed_repeats(levels, rate, shape, seed):
    x = torch.randint(0, levels, shape, generator=seeded(seed)).double()
    y = perturb(x, rate, levels, seeded(seed))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert bool(((y >= 0) & (y < levels) & (y == y.round())).all())
    assert torch.equal(y, perturb(x, rate, levels, seeded(seed)))


def cond_for(config: PixelCNNConfig, n: int, size: tuple[int, int]) -> Conditioning | None:
    """A conditioning of every part the config declares (``None`` if it declares none)."""
    g = seeded(5)
    labels = None if config.num_classes is None else torch.randint(0, 3, (n,), generator=g)
    vector = None if config.vector_size is None else torch.randn(n, 2, generator=g, **F64)
    spatial = None
    if config.spatial_channels is not None:
        spatial = torch.randn(n, 2, *size, generator=g, **F64)
    if labels is None and vector is None and spatial is None:
        return None
    return Conditioning(vector=vector, spatial=spatial, labels=labels)


@given(
    config=small_configs(st.sampled_from([3, 16]), conditions=True),
    n=st.integers(1, 7),
    chunk=st.integers(1, 8),
)
def test_chunked_scores_equal_one_log_prob_and_the_ratio_is_their_difference(config, n, chunk):
    torch.manual_seed(n)
    model, background = PixelCNN(config, **F64), PixelCNN(config, **F64)
    levels = config.levels
    x = torch.randint(0, levels, (n, config.data_channels, 3, 4), generator=seeded(n))
    x = x.double() if config.distribution == "bernoulli" else x
    cond = cond_for(config, n, (3, 4))
    with torch.no_grad():
        whole, base = model.log_prob(x, cond), background.log_prob(x, cond)
    chunked = log_likelihood(model, x, cond, chunk_size=chunk)
    assert chunked.shape == (n,) and torch.allclose(chunked, whole, rtol=0, atol=1e-10)
    ratio = likelihood_ratio(model, background, x, cond, chunk_size=chunk)
    assert torch.allclose(ratio, whole - base, rtol=0, atol=1e-10)


def test_labels_alone_are_sliced_with_their_images():
    config = PixelCNNConfig(num_blocks=1, hidden_channels=4, num_classes=3)
    model = PixelCNN(config, **F64)
    x = torch.randint(0, 2, (5, 1, 4, 4), generator=seeded()).double()
    labels = torch.tensor([0, 1, 2, 1, 0])
    expected = model.log_prob(x, labels).detach()
    assert torch.allclose(log_likelihood(model, x, labels, chunk_size=2), expected, atol=1e-12)


def test_scores_need_no_gradient_and_leave_the_mode_as_it_was():
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4)).train()
    scores = log_likelihood(model, torch.zeros(3, 1, 4, 4))
    assert not scores.requires_grad and model.training


def test_models_of_other_images_are_refused_by_name():
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4))
    other = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4, image_size=(8, 8)))
    with pytest.raises(ValueError, match=r"image_size \(28, 28\) vs \(8, 8\)"):
        likelihood_ratio(model, other, torch.zeros(1, 1, 4, 4))


def test_conditioning_of_another_batch_is_refused_before_chunking():
    config = PixelCNNConfig(num_blocks=1, hidden_channels=4, num_classes=3)
    model = PixelCNN(config)
    with pytest.raises(ValueError, match="labels"):
        log_likelihood(model, torch.zeros(2, 1, 4, 4), torch.tensor([0, 1, 2]), chunk_size=2)


def test_no_images_give_no_scores():
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4))
    assert log_likelihood(model, torch.zeros(0, 1, 4, 4)).shape == (0,)
