"""Conditioning on labels, vectors and spatial maps: exact sampling, reach, normalisation, errors.

Causality of the image path under every kind of conditioning is proven with the other dependency
sets in tests/test_dependencies.py (its configs draw every kind).
"""

from __future__ import annotations

import pytest
import torch
from helpers import SAMPLERS, positive_weights_
from test_sampling import all_images

from autoregressive import (
    CachedSampler,
    Conditioning,
    NaiveSampler,
    PixelCNN,
    PixelCNNConfig,
    Sampler,
    draw_noise,
)
from autoregressive.sampling import rows as engine_rows

F64 = torch.float64
KINDS = {
    "class": {"num_classes": 3},
    "vector": {"vector_size": 5},
    "spatial": {"spatial_channels": 2},
    "mixed": {"num_classes": 3, "vector_size": 4, "spatial_channels": 3},
}
BLOCKS = {
    "residual": {"block": "residual", "num_blocks": 2, "hidden_channels": 8},
    "gated": {"block": "gated", "num_blocks": 3, "hidden_channels": 6},
}


def _inputs(cfg: PixelCNNConfig, n: int, size: tuple[int, int], seed: int = 0) -> Conditioning:
    """Random conditioning of every kind ``cfg`` takes: the ``cond`` of the model's methods."""
    g = torch.Generator().manual_seed(seed)
    kw: dict = {}
    if cfg.num_classes:
        kw["labels"] = torch.randint(0, cfg.num_classes, (n,), generator=g)
    if cfg.vector_size:
        kw["vector"] = torch.randn(n, cfg.vector_size, generator=g, dtype=F64)
    if cfg.spatial_channels:
        kw["spatial"] = torch.randn(n, cfg.spatial_channels, *size, generator=g, dtype=F64)
    return Conditioning(**kw)


def _other(cond: Conditioning, classes: int | None) -> Conditioning:
    """Other labels, vectors and maps than ``cond``'s."""
    return Conditioning(
        vector=None if cond.vector is None else cond.vector * -3.0,
        spatial=None if cond.spatial is None else cond.spatial * -3.0,
        labels=None if cond.labels is None else (cond.labels + 1) % (classes or 1),
    )


def _model(cfg: PixelCNNConfig, seed: int = 0) -> PixelCNN:
    """The library's own initialisation (outputs far from saturated), in float64."""
    torch.manual_seed(seed)
    return PixelCNN(cfg, dtype=F64)


@pytest.mark.parametrize("block", sorted(BLOCKS))
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("t", [1.0, 0.6])
def test_cached_equals_naive_under_conditioning(block, kind, t):
    cfg = PixelCNNConfig(**BLOCKS[block], **KINDS[kind], image_size=(4, 5))
    model = _model(cfg)
    n, size = 4, cfg.image_size
    kw = _inputs(cfg, n, size)

    def draw(method: str, seed: int = 0, **extra: object) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        sampler = SAMPLERS[method]()
        return model.sample(n, kw, generator=g, sampler=sampler, temperature=t, **extra)  # type: ignore[arg-type]

    fast = draw("cached")
    assert torch.equal(fast, draw("naive"))
    assert 0 < fast.float().mean() < 1, "saturated: a weak test"
    # the conditioning matters: other vectors / maps / labels, other likelihoods
    other = _other(kw, cfg.num_classes)
    assert not torch.allclose(model.log_prob(fast, kw), model.log_prob(fast, other))
    # completion: the top rows given
    known = torch.zeros(size, dtype=torch.bool)
    known[:2] = True
    completed = draw("cached", seed=1, image=fast, known=known)
    assert torch.equal(completed, draw("naive", seed=1, image=fast, known=known))
    assert torch.equal(completed[:, :, :2], fast[:, :, :2])


@pytest.mark.parametrize("block", sorted(BLOCKS))
@pytest.mark.parametrize("taps", [True, False], ids=["tap-by-tap", "gathered"])
@pytest.mark.parametrize("rows_at_once", [False, True])
def test_ring_products_are_exact_tap_by_tap_and_gathered(monkeypatch, block, taps, rows_at_once):
    """The convolutions over rows above, a row at a time (``rows.ring_product``): one product
    per kernel tap (``CachedSampler(tap_products=True)``) and its slow twin, one product of
    gathered windows, with every kind of conditioning and a completion: the naive sampler's
    images, in float64."""
    calls = []
    gathered = engine_rows.gathered_windows  # a spy on the slow twin: which way ran
    monkeypatch.setattr(engine_rows, "gathered_windows", lambda *a: calls.append(1) or gathered(*a))
    cfg = PixelCNNConfig(
        **{**BLOCKS[block], "kernel_size": 5, "input_kernel_size": 3},
        **KINDS["mixed"],
        image_size=(5, 6),
    )
    model = _model(cfg)
    n, size = 4, cfg.image_size
    kw = _inputs(cfg, n, size)
    known = torch.zeros(size, dtype=torch.bool)
    known[1, :4] = True
    image = (torch.rand(n, 1, *size, generator=torch.Generator().manual_seed(1)) < 0.5).double()

    def draw(sampler: Sampler) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return model.sample(n, kw, generator=g, sampler=sampler, image=image, known=known)

    fast = draw(CachedSampler(rows_at_once=rows_at_once, tap_products=taps))
    assert bool(calls) == (not taps), "the other way ran"
    assert torch.equal(fast, draw(NaiveSampler()))
    assert 0 < fast.float().mean() < 1, "saturated: a weak test"


@pytest.mark.parametrize("block", sorted(BLOCKS))
@pytest.mark.parametrize("distribution", ["categorical", "logistic_mixture"])
def test_colour_with_a_map_cached_equals_naive(block, distribution):
    """Channel-wise (categorical) and pixel-wise (a mixture: one step per pixel) colour."""
    cfg = PixelCNNConfig(
        **{**BLOCKS[block], "hidden_channels": 12},
        data_channels=3,
        distribution=distribution,
        levels=4,
        vector_size=2,
        spatial_channels=2,
        image_size=(3, 4),
    )
    model = _model(cfg, seed=3)
    kw = _inputs(cfg, 3, cfg.image_size, seed=3)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    cached = model.sample(3, kw, generator=g(), temperature=1.4)
    assert torch.equal(
        cached, model.sample(3, kw, generator=g(), sampler=NaiveSampler(), temperature=1.4)
    )


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_the_row_replay_path_reads_each_rows_map(block):
    """The CUDA-graph path (one row recorded, replayed on fixed buffers), run on the CPU."""
    cfg = PixelCNNConfig(**BLOCKS[block], **KINDS["mixed"])
    model = _model(cfg)
    n, size = 3, (6, 4)
    noise = draw_noise((n, 1, *size), torch.Generator().manual_seed(0))
    cond = model.condition(_inputs(cfg, n, size), n, size=size)
    eager = CachedSampler(rows_at_once=False).sample_with_params(
        model.network, model.distribution, noise, cond=cond
    )
    replayed = CachedSampler(replay_rows=True).sample_with_params(
        model.network, model.distribution, noise, cond=cond
    )
    assert torch.equal(replayed[0], eager[0])
    assert torch.equal(replayed[1], eager[1])


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_the_conditioning_reaches_every_output(block):
    """Every output at every pixel has a non-zero gradient with respect to the vector (one-hot
    labels included) and to the map at its own pixel."""
    cfg = PixelCNNConfig(**BLOCKS[block], **KINDS["mixed"])
    model = positive_weights_(PixelCNN(cfg, dtype=F64))
    h, w = 4, 3
    x = torch.ones(1, 1, h, w, dtype=F64)
    base = model.condition(_inputs(cfg, 1, (h, w)), 1, size=(h, w))
    assert base is not None and base.vector is not None and base.spatial is not None
    vector, spatial = base.vector.abs(), base.spatial.abs()

    def out(v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return model.network(x, Conditioning(v, s))[0]  # (C * P, H, W)

    jv, js = torch.autograd.functional.jacobian(out, (vector, spatial))
    # jv: (O, H, W, 1, K + D); js: (O, H, W, 1, C_map, H, W)
    assert bool((jv[..., 0, :] != 0).all()), "an output ignores part of the vector"
    for i in range(h):
        for j in range(w):
            assert bool((js[:, i, j, 0, :, i, j] != 0).all()), f"map at {(i, j)} unused there"


@pytest.mark.parametrize("block", sorted(BLOCKS))
@pytest.mark.parametrize("t", [1.0, 0.5])
def test_likelihood_sums_to_one_under_conditioning(block, t):
    cfg = PixelCNNConfig(**BLOCKS[block], **KINDS["mixed"], distribution="categorical", levels=3)
    model = _model(cfg)
    x = all_images(1, 2, 2, 3)  # (81, 1, 2, 2)
    n = x.shape[0]
    one = _inputs(cfg, 1, (2, 2), seed=2)
    parts = (one.vector, one.spatial, one.labels)
    cond = model.condition(
        Conditioning(*(None if t is None else t.expand(n, *t.shape[1:]) for t in parts)),
        n,
        size=(2, 2),
    )
    raw = model.network(model.distribution.preprocess(x, F64), cond)
    log_p = model.distribution.with_temperature(t).log_prob(raw, x)
    assert abs(log_p.exp().sum().item() - 1.0) < 1e-9


def test_log_prob_takes_the_same_cond_as_sample():
    cfg = PixelCNNConfig(**BLOCKS["gated"], **KINDS["mixed"])
    model = _model(cfg)
    cond = _inputs(cfg, 2, (3, 3))
    x = model.sample(2, cond, size=(3, 3))
    lp = model.log_prob(x, cond)
    assert lp.shape == (2,) and bool(torch.isfinite(lp).all())
    assert torch.allclose(model.bits_per_dim(x, cond), -lp / (9 * torch.log(torch.tensor(2.0))))
    assert model(x, cond).shape == x.shape


def test_labels_alone_are_a_tensor_or_a_conditioning():
    model = _model(PixelCNNConfig(**BLOCKS["gated"], **KINDS["class"]))
    y = torch.tensor([2, 0])
    x = model.sample(2, y, size=(3, 4), generator=torch.Generator().manual_seed(0))
    same = model.sample(
        2, Conditioning(labels=y), size=(3, 4), generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(x, same)
    assert torch.equal(model.log_prob(x, y), model.log_prob(x, Conditioning(labels=y)))
    with pytest.raises(TypeError, match=r"cond must be class labels \(N,\), a Conditioning"):
        model.log_prob(x, [2, 0])  # type: ignore[arg-type]


def test_layers_and_samplers_refuse_labels():
    """Labels are for the model's boundary: a layer or a sampler given them says what to do."""
    model = _model(PixelCNNConfig(**BLOCKS["residual"], **KINDS["class"]))
    x = torch.zeros(2, 1, 3, 4, dtype=F64)
    labels = Conditioning(labels=torch.tensor([2, 0]))
    with pytest.raises(ValueError, match="takes no labels"):
        model.network(x, labels)
    with pytest.raises(ValueError, match="takes no labels"):
        CachedSampler().sample(model.network, model.distribution, draw_noise((2, 1, 3, 4)),
                               cond=labels)  # fmt: skip
    cond = model.condition(labels, 2)
    assert cond is not None and cond.labels is None and cond.vector is not None
    assert torch.equal(cond.vector, torch.eye(3, dtype=F64)[[2, 0]])
    model.network(x, cond)  # the layers' conditioning


MIXED = PixelCNNConfig(num_blocks=1, hidden_channels=4, **KINDS["mixed"])
GOOD = {
    "labels": torch.zeros(2).long(),
    "vector": torch.zeros(2, 4),
    "spatial": torch.zeros(2, 3, 4, 4),
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vector": None}, r"pass Conditioning\(vector=...\) of shape \(2, 4\)"),
        ({"spatial": None}, r"pass Conditioning\(spatial=...\) of shape \(2, 3, 4, 4\)"),
        ({"labels": None}, r"pass labels of shape \(2,\)"),
        ({"vector": torch.zeros(2, 5)}, r"vector must have shape \(2, 4\), got \(2, 5\)"),
        ({"vector": torch.zeros(3, 4)}, r"vector must have shape \(2, 4\), got \(3, 4\)"),
        ({"spatial": torch.zeros(2, 3, 5, 4)}, r"shape \(2, 3, 4, 4\), got \(2, 3, 5, 4\)"),
        ({"spatial": torch.zeros(2, 1, 4, 4)}, r"shape \(2, 3, 4, 4\), got \(2, 1, 4, 4\)"),
        ({"spatial": torch.zeros(2, 3, 4, 4).long()}, r"floating-point tensor of shape"),
        ({"vector": torch.full((2, 4), float("nan"))}, r"vector contains NaN"),
    ],
)
@pytest.mark.parametrize("method", ["log_prob", "forward", "sample"])
def test_bad_conditioning_names_the_expected_shape(change, message, method):
    model = PixelCNN(MIXED)
    cond = Conditioning(**{**GOOD, **change})
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=message):
        if method == "sample":
            model.sample(2, cond, size=(4, 4))
        else:
            getattr(model, method)(x, cond)


@pytest.mark.parametrize("name", ["vector", "spatial"])
def test_conditioning_given_to_a_model_that_takes_none_is_refused(name):
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4))
    with pytest.raises(ValueError, match=rf"takes no {name} \(.*=None\): leave Conditioning"):
        model.log_prob(torch.zeros(2, 1, 4, 4), Conditioning(**{name: GOOD[name]}))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"vector_size": 0}, "vector_size must be >= 1"),
        ({"spatial_channels": -1}, "spatial_channels must be >= 1"),
        ({"vector_size": 3, "num_blocks": 0}, "conditional model needs num_blocks >= 1"),
    ],
)
def test_config_refuses_bad_conditioning_fields(fields, message):
    with pytest.raises(ValueError, match=message):
        PixelCNNConfig(**fields)


def test_cond_channels_is_labels_then_vector():
    assert PixelCNNConfig(num_classes=3, vector_size=4).cond_channels == 7
    assert PixelCNNConfig(spatial_channels=2).cond_channels is None
    assert PixelCNNConfig(spatial_channels=2).conditional


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_checkpoints_of_the_older_projection_layout_still_load(block):
    """Blocks saved before their projections were ConditionProjection modules load unchanged."""
    cfg = PixelCNNConfig(**BLOCKS[block], **KINDS["mixed"])
    model = _model(cfg)
    new_to_old = {
        "cond.vector.weight": "cond_proj.weight",
        "cond.spatial.weight": "spatial_proj.weight",
        **{f"cond_{g}.vector.weight": f"cond_{g}.weight" for g in "vh"},
        **{f"cond_{g}.spatial.weight": f"spatial_{g}.weight" for g in "vh"},
    }
    old = {}
    for key, value in model.state_dict().items():
        for new, was in new_to_old.items():
            key = key.replace(new, was) if key.endswith(new) else key
        old[key] = value
    assert old.keys() != model.state_dict().keys(), "the test must rename something"
    loaded = PixelCNN(cfg, dtype=F64)
    loaded.load_state_dict(old)  # strict: every key placed, none left over
    n, size = 2, cfg.image_size
    x = torch.randint(0, 2, (n, 1, *size), generator=torch.Generator().manual_seed(0)).to(F64)
    cond = _inputs(cfg, n, size)
    assert torch.equal(loaded.log_prob(x, cond), model.log_prob(x, cond))
