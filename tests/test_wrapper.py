"""The model-level API: AutoregressiveModel around any causal network, and what PixelCNN shares.

One preprocessing for training and sampling, chunked likelihoods equal to one call, progress
reports from the samplers, maps at a lower resolution and one label for every image.
"""

from __future__ import annotations

import inspect
import sys

import pytest
import torch
from helpers import SAMPLERS
from torch import nn

from autoregressive import (
    AutoregressiveModel,
    Bernoulli,
    CachedSampler,
    Categorical,
    CausalSequential,
    Conditioning,
    GatedStack,
    MaskedConv2d,
    NaiveSampler,
    PixelCNN,
    PixelCNNConfig,
    ResidualBlock,
    draw_noise,
)
from autoregressive.conditioning import fit_map

F64 = torch.float64
LEVELS = 4


def _stack(levels: int = LEVELS, seed: int = 0, dtype: torch.dtype = F64) -> CausalSequential:
    """A custom network of public layers, ``levels`` logits per pixel."""
    torch.manual_seed(seed)
    return CausalSequential(
        MaskedConv2d(1, 16, 5, "A"),
        ResidualBlock(16),
        nn.ReLU(),
        MaskedConv2d(16, levels, 1, "B"),
    ).to(dtype)


def _model(seed: int = 0, **kw: object) -> AutoregressiveModel:
    return AutoregressiveModel(_stack(seed=seed), Categorical(LEVELS), image_size=(5, 6), **kw)


def _seed(s: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(s)


def _diagonals(n: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """Images whose pixel ``(i, j)`` is ``(i + j + offset) % 4``, one random offset per image."""
    h, w = size
    offset = torch.randint(0, LEVELS, (n, 1, 1, 1), generator=_seed(seed))
    grid = torch.arange(h).view(h, 1) + torch.arange(w).view(1, w)  # (H, W)
    return (grid + offset) % LEVELS  # (N, 1, H, W)


def _follows_the_rule(x: torch.Tensor) -> float:
    """The share of pixels after the first that are their left (or upper) neighbour + 1."""
    left = (x[..., 1:] - x[..., :-1]) % LEVELS == 1  # (N, 1, H, W - 1)
    up = (x[..., 1:, 0] - x[..., :-1, 0]) % LEVELS == 1  # (N, 1, H - 1)
    return float(torch.cat([left.flatten(), up.flatten()]).double().mean())


def _train(network: nn.Module, inputs, data: torch.Tensor, steps: int = 150) -> None:
    optimiser = torch.optim.Adam(network.parameters(), lr=2e-2)
    for _ in range(steps):
        loss = -Categorical(LEVELS).log_prob(network(inputs(data), None), data).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


# ------------------------------------------------------------ one preprocessing everywhere
def test_the_wrapper_scores_the_network_on_the_distributions_preprocessing():
    model, x = _model(), torch.randint(0, LEVELS, (6, 1, 5, 6), generator=_seed())
    dist = Categorical(LEVELS)
    raw = model.network(dist.preprocess(x, F64))  # (N, C * L, H, W)
    assert torch.equal(model.log_prob(x), dist.log_prob(raw, x))
    assert torch.equal(model(x), dist.shape_params(raw, 1))
    # the old mistake, the network fed the raw levels, scores otherwise: it cannot happen here
    assert not torch.allclose(model.log_prob(x), dist.log_prob(model.network(x.to(F64)), x))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_the_samplers_compute_the_parameters_the_wrapper_trains_on(name):
    """Teacher forcing: a sampler given every pixel computes exactly the wrapper's forward."""
    model, x = _model(), torch.randint(0, LEVELS, (3, 1, 5, 6), generator=_seed(1))
    noise = draw_noise((3, 1, 5, 6), _seed())
    known = torch.ones(5, 6, dtype=torch.bool)
    sampler = SAMPLERS[name]()
    _, params = sampler.sample_with_params(
        model.network, model.distribution, noise, image=x.to(F64), known=known
    )
    assert torch.allclose(params, model.network(model.distribution.preprocess(x, F64)))


def test_a_stack_trained_through_the_wrapper_samples_what_it_learned():
    """Trained on preprocess(x), sampled on it: the samples follow the data's rule.

    The same stack trained on the raw levels (the mistake the wrapper rules out) is sampled on
    preprocessed inputs it never saw, and its samples do not follow the rule.
    """
    data = _diagonals(64, (5, 6), seed=0)
    model = _model(seed=1)
    _train(model.network, lambda x: model.distribution.preprocess(x, F64), data)
    samples = model.sample(32, generator=_seed(2))
    assert _follows_the_rule(data) == 1.0 and _follows_the_rule(samples) > 0.9

    raw_trained = _model(seed=1)
    _train(raw_trained.network, lambda x: x.to(F64), data)
    assert _follows_the_rule(raw_trained.sample(32, generator=_seed(2))) < 0.7


@pytest.mark.parametrize(
    "distribution", [Bernoulli(), Categorical(LEVELS), Categorical(LEVELS, input="index")]
)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_cached_equals_naive_through_the_wrapper(distribution, temperature):
    levels = distribution.num_params(1)
    model = AutoregressiveModel(_stack(levels), distribution, image_size=(4, 5))
    known = torch.zeros(4, 5, dtype=torch.bool)
    known[:2] = True
    image = model.sample(3, generator=_seed(9))
    for kw in ({}, {"image": image, "known": known}):
        draws = [
            model.sample(3, temperature=temperature, generator=_seed(), sampler=s(), **kw)
            for s in (CachedSampler, NaiveSampler)
        ]
        assert torch.equal(*draws)
    assert torch.equal(draws[0][:, :, :2], image[:, :, :2])  # the known rows kept


def test_the_wrapper_conditions_a_custom_network_and_round_trips_its_state():
    torch.manual_seed(0)
    network = CausalSequential(
        GatedStack(1, 8, 2, cond_channels=3 + 2), nn.ReLU(), MaskedConv2d(8, 1, 1, "B")
    ).to(F64)
    model = AutoregressiveModel(network, Bernoulli(), num_classes=3, vector_size=2)
    cond = Conditioning(labels=torch.tensor([0, 2]), vector=torch.randn(2, 2, dtype=F64))
    x = model.sample(2, cond, size=(4, 4), generator=_seed())
    slow = model.sample(2, cond, size=(4, 4), generator=_seed(), sampler=NaiveSampler())
    assert torch.equal(x, slow)
    other = AutoregressiveModel(
        CausalSequential(
            GatedStack(1, 8, 2, cond_channels=5), nn.ReLU(), MaskedConv2d(8, 1, 1, "B")
        ).to(F64),
        Bernoulli(),
        num_classes=3,
        vector_size=2,
    )
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.log_prob(x, cond), model.log_prob(x, cond))


def test_pixelcnn_is_the_wrapper_and_shares_its_methods():
    assert issubclass(PixelCNN, AutoregressiveModel)
    for name in ("forward", "log_prob", "bits_per_dim", "sample", "condition", "check_input"):
        assert getattr(PixelCNN, name) is getattr(AutoregressiveModel, name), name


def test_pixelcnn_sample_keeps_at_most_eight_parameters():
    params = [p for p in inspect.signature(PixelCNN.sample).parameters if p != "self"]
    assert len(params) <= 8, params


# ----------------------------------------------------------------------- chunked likelihood
def _conditioned(dtype: torch.dtype = F64) -> PixelCNN:
    config = PixelCNNConfig(
        block="gated", num_blocks=2, hidden_channels=8, num_classes=3, vector_size=2,
        spatial_channels=2, image_size=(4, 6),
    )  # fmt: skip
    torch.manual_seed(0)
    return PixelCNN(config, dtype=dtype)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 10, 64])
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_chunked_likelihoods_equal_one_call(chunk_size, dtype):
    """One call's results, to rounding: torch may pick other kernels for another batch size."""
    model, n = _conditioned(dtype), 10
    x = torch.randint(0, 2, (n, 1, 4, 6), generator=_seed()).float()
    g = _seed(1)
    cond = Conditioning(
        labels=torch.randint(0, 3, (n,), generator=g),
        vector=torch.randn(n, 2, generator=g, dtype=dtype),
        spatial=torch.randn(n, 2, 2, 3, generator=g, dtype=dtype),  # a lower resolution
    )
    rtol = 1e-12 if dtype == F64 else 1e-6

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return torch.allclose(a, b, rtol=rtol, atol=0)

    with torch.no_grad():
        whole, chunked = model.log_prob(x, cond), model.log_prob(x, cond, chunk_size=chunk_size)
        assert same(chunked, whole)
        bits = model.bits_per_dim(x, cond, chunk_size=chunk_size)
        assert same(bits, model.bits_per_dim(x, cond))


def test_chunked_likelihoods_carry_gradients():
    model = _model()
    x = torch.randint(0, LEVELS, (5, 1, 5, 6), generator=_seed())
    grads = []
    for chunk_size in (None, 2):
        model.zero_grad()
        (-model.log_prob(x, chunk_size=chunk_size).mean()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b) for a, b in zip(*grads, strict=True))


@pytest.mark.parametrize(
    ("chunk_size", "error", "message"),
    [(0, ValueError, r"chunk_size must be >= 1"), (2.0, TypeError, r"chunk_size must be an int")],
)
def test_bad_chunk_sizes_are_refused(chunk_size, error, message):
    model = _model()
    with pytest.raises(error, match=message):
        model.log_prob(torch.zeros(2, 1, 5, 6, dtype=torch.long), chunk_size=chunk_size)


# -------------------------------------------------------------------------------- progress
@pytest.mark.parametrize(
    "make",
    [
        lambda p: NaiveSampler(progress=p),
        lambda p: CachedSampler(progress=p),
        lambda p: CachedSampler(rows_at_once=False, progress=p),
        lambda p: CachedSampler(replay_rows=True, progress=p),
    ],
    ids=["naive", "cached", "cached-steps", "cached-replayed"],
)
def test_progress_reports_every_row_and_changes_nothing(make):
    model = _model()
    seen: list[tuple[int, int]] = []
    reported = model.sample(2, generator=_seed(), sampler=make(lambda *a: seen.append(a)))
    assert seen == [(i, 5) for i in range(1, 6)]
    assert torch.equal(reported, model.sample(2, generator=_seed(), sampler=make(False)))


@pytest.mark.parametrize("sampler", [NaiveSampler, CachedSampler])
def test_progress_true_draws_a_tqdm_bar(sampler, capsys):
    pytest.importorskip("tqdm")
    _model().sample(1, generator=_seed(), sampler=sampler(progress=True))
    assert f"{sampler.__name__}: 100%" in capsys.readouterr().err
    assert "progress=True" in repr(sampler(progress=True))


def test_progress_is_checked_when_the_sampler_is_built(monkeypatch):
    with pytest.raises(TypeError, match=r"progress must be True \(a tqdm bar\), False or a"):
        CachedSampler(progress="yes")  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed
    with pytest.raises(ImportError, match=r"pip install tqdm"):
        NaiveSampler(progress=True)


# -------------------------------------------------------------- maps and one label for all
def _mapped(size: tuple[int, int] = (8, 6)) -> PixelCNN:
    config = PixelCNNConfig(num_blocks=1, hidden_channels=8, spatial_channels=2, image_size=size)
    torch.manual_seed(0)
    return PixelCNN(config)


@pytest.mark.parametrize("low", [(4, 3), (1, 1), (8, 2), (2, 6)])
def test_a_map_that_divides_the_image_size_is_upsampled_by_nearest_neighbour(low):
    model = _mapped()
    small = torch.randn(2, 2, *low, generator=_seed())
    full = torch.nn.functional.interpolate(small, size=(8, 6), mode="nearest")
    assert torch.equal(fit_map(small, (8, 6)), full)
    x = model.sample(2, Conditioning(spatial=small), generator=_seed())  # size from the map
    assert x.shape == (2, 1, 8, 6)
    assert torch.equal(x, model.sample(2, Conditioning(spatial=full), generator=_seed()))
    assert torch.equal(model.log_prob(x, Conditioning(spatial=small)),
                       model.log_prob(x, Conditioning(spatial=full)))  # fmt: skip


@pytest.mark.parametrize("low", [(3, 3), (16, 6), (5, 4)])
def test_a_map_that_does_not_divide_the_image_size_is_refused_with_the_rule(low):
    model = _mapped()
    with pytest.raises(ValueError, match=r"must be the images' \(8, 6\) or divide them"):
        model.log_prob(torch.zeros(1, 1, 8, 6), Conditioning(spatial=torch.zeros(1, 2, *low)))


def test_the_sample_size_is_taken_from_a_full_resolution_map():
    model = _mapped()
    x = model.sample(1, Conditioning(spatial=torch.zeros(1, 2, 5, 7)), generator=_seed())
    assert x.shape == (1, 1, 5, 7)  # (5, 7) does not divide (8, 6): the map's own size
    given = model.sample(1, Conditioning(spatial=torch.zeros(1, 2, 4, 3)), size=(4, 3))
    assert given.shape == (1, 1, 4, 3)  # an explicit size wins


@pytest.mark.parametrize("label", [3, torch.tensor(3), Conditioning(labels=3)])
def test_one_label_is_every_images_label(label):
    config = PixelCNNConfig(num_blocks=1, hidden_channels=8, num_classes=5, image_size=(4, 4))
    torch.manual_seed(0)
    model = PixelCNN(config)
    x = model.sample(4, label, generator=_seed())
    threes = torch.full((4,), 3)
    assert torch.equal(x, model.sample(4, threes, generator=_seed()))
    assert torch.equal(model.log_prob(x, label), model.log_prob(x, threes))
    with pytest.raises(TypeError, match=r"cond must be class labels"):
        model.sample(4, True)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- the constructor
@pytest.mark.parametrize(
    ("network", "distribution", "error", "message"),
    [
        (lambda x: x, Bernoulli(), TypeError, r"network must be an nn.Module"),
        (nn.ReLU(), Bernoulli(), ValueError, r"the network has no parameters"),
        (MaskedConv2d(1, 1, 3, "A"), "bernoulli", TypeError, r"distribution must be a Distri"),
    ],
)
def test_the_wrapper_refuses_what_it_cannot_wrap(network, distribution, error, message):
    with pytest.raises(error, match=message):
        AutoregressiveModel(network, distribution)
