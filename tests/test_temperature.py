"""Sampling temperature: logits divided by ``t`` in both samplers and in ``log_prob``."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import SAMPLERS
from test_sampling import all_images, perturbed

from autoregressive import Bernoulli, Categorical, PixelCNN, PixelCNNConfig

F64 = torch.float64
CASES = {
    "residual-bernoulli": PixelCNNConfig(num_blocks=2, hidden_channels=8, image_size=(4, 3)),
    "gated-colour-categorical-classes": PixelCNNConfig(
        block="gated",
        num_blocks=2,
        hidden_channels=6,
        data_channels=3,
        distribution="categorical",
        levels=4,
        num_classes=3,
        image_size=(3, 3),
    ),
}


def _model(cfg: PixelCNNConfig, seed: int = 0) -> PixelCNN:
    torch.manual_seed(seed)
    return perturbed(PixelCNN(cfg, dtype=F64), seed)


def _labels(cfg: PixelCNNConfig, n: int) -> torch.Tensor | None:
    return torch.arange(n) % cfg.num_classes if cfg.num_classes else None


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_cached_and_naive_agree_at_any_temperature(name, t):
    cfg = CASES[name]
    model = _model(cfg)
    y = _labels(cfg, 6)

    def draw(method: str, **kw: object) -> torch.Tensor:
        g = torch.Generator().manual_seed(3)
        return model.sample(6, y, generator=g, sampler=SAMPLERS[method](), temperature=t, **kw)

    assert torch.equal(draw("cached"), draw("naive"))
    image = draw("naive")
    known = torch.zeros(1, 1, *cfg.image_size, dtype=torch.bool)
    known[..., :1, :] = True  # the top row given
    assert torch.equal(draw("cached", image=image, known=known),
                       draw("naive", image=image, known=known))  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_temperature_one_is_the_model_as_trained(name):
    cfg = CASES[name]
    model = _model(cfg)
    y = _labels(cfg, 4)
    plain = model.sample(4, y, generator=torch.Generator().manual_seed(1))
    one = model.sample(4, y, generator=torch.Generator().manual_seed(1), temperature=1.0)
    assert torch.equal(plain, one)
    assert model.distribution.with_temperature(1.0) == model.distribution


@pytest.mark.parametrize("name", sorted(CASES))
def test_other_temperatures_change_the_samples(name):
    cfg = CASES[name]
    model = _model(cfg)
    y = _labels(cfg, 32)
    draws = {
        t: model.sample(32, y, generator=torch.Generator().manual_seed(1), temperature=t)
        for t in (1.0, 0.2, 5.0)
    }
    assert not torch.equal(draws[1.0], draws[0.2]) and not torch.equal(draws[1.0], draws[5.0])


def test_near_zero_temperature_draws_the_same_image_whatever_the_noise():
    cfg = CASES["residual-bernoulli"]
    model = _model(cfg)
    images = [
        model.sample(1, generator=torch.Generator().manual_seed(s), temperature=1e-9)
        for s in range(6)
    ]
    assert all(torch.equal(images[0], im) for im in images[1:])
    varied = [model.sample(1, generator=torch.Generator().manual_seed(s)) for s in range(6)]
    assert not all(torch.equal(varied[0], im) for im in varied[1:])


@pytest.mark.parametrize(
    ("cfg", "size"),
    [
        (PixelCNNConfig(num_blocks=1, hidden_channels=8, input_kernel_size=3), (2, 3)),
        (
            PixelCNNConfig(block="gated", num_blocks=2, hidden_channels=6, num_classes=2,
                           distribution="categorical", levels=3),
            (2, 2),
        ),
    ],
)  # fmt: skip
@pytest.mark.parametrize("t", [0.5, 3.0])
def test_tempered_likelihood_still_sums_to_one(cfg, size, t):
    model = _model(cfg)
    levels = cfg.levels if cfg.distribution == "categorical" else 2
    x = all_images(cfg.data_channels, *size, levels)  # (levels ** (C*H*W), C, H, W)
    y = torch.ones(x.shape[0], dtype=torch.long) if cfg.num_classes else None
    cond = model.condition(y, x.shape[0])
    raw = model.network(model.distribution.preprocess(x, F64), cond)
    log_p = model.distribution.with_temperature(t).log_prob(raw, x)
    assert abs(log_p.exp().sum().item() - 1.0) < 1e-9
    assert not torch.allclose(log_p, model.distribution.log_prob(raw, x))


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan])
def test_temperature_must_be_positive_and_finite(bad):
    model = _model(CASES["residual-bernoulli"])
    with pytest.raises(ValueError, match="positive finite"):
        model.sample(1, temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        Categorical(4, temperature=bad)


@pytest.mark.parametrize("bad", ["hot", True, None])
def test_temperature_must_be_a_number(bad):
    with pytest.raises(TypeError, match="temperature must be a positive float"):
        Bernoulli(temperature=bad)
