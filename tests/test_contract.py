"""The module contract, table-driven over every public module: dtype/device, state_dict round
trip, determinism under a seed, torch.compile."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from autoregressive import (
    AutoregressiveModel,
    Categorical,
    CausalSelfAttention2d,
    CausalSequential,
    Conditioning,
    GatedBlock,
    GatedResidualBlock,
    GatedStack,
    MaskedConv2d,
    PixelCNN,
    PixelCNNConfig,
    ResidualBlock,
    SnailStack,
)


def _x(c: int) -> torch.Tensor:
    return torch.rand(2, c, 6, 7, generator=torch.Generator().manual_seed(0)).round()


# name -> (factory(dtype), call(module, dtype))
MODULES = {
    "MaskedConv2d": (
        lambda dt: MaskedConv2d(3, 6, 5, "A", 3, dilation=(1, 2), dtype=dt),
        lambda m, dt: m(_x(3).to(dt)),
    ),
    "ResidualBlock": (
        lambda dt: ResidualBlock(8, 3, cond_channels=4, dtype=dt),
        lambda m, dt: m(_x(8).to(dt), Conditioning(vector=torch.ones(2, 4, dtype=dt))),
    ),
    "GatedBlock": (
        lambda dt: GatedBlock(3, 6, (3, 5), "A", 3, cond_channels=2, dtype=dt),
        lambda m, dt: torch.cat(
            [t for t in m(_x(3).to(dt), _x(3).to(dt), Conditioning(torch.ones(2, 2, dtype=dt)))],
            1,
        ),
    ),
    "GatedStack": (
        lambda dt: GatedStack(1, 8, 3, dtype=dt),
        lambda m, dt: m(_x(1).to(dt)),
    ),
    "CausalSelfAttention2d": (
        lambda dt: CausalSelfAttention2d(
            6, 3, mask_type="A", data_channels=3, extra_channels=3, positional=True, dtype=dt
        ),
        lambda m, dt: m(_x(6).to(dt), _x(3).to(dt)),
    ),
    "GatedResidualBlock": (
        lambda dt: GatedResidualBlock(6, 3, 3, cond_channels=2, spatial_channels=1, dtype=dt),
        lambda m, dt: m(
            _x(6).to(dt),
            Conditioning(torch.ones(2, 2, dtype=dt), torch.ones(2, 1, 6, 7, dtype=dt)),
        ),
    ),
    "SnailStack": (
        lambda dt: SnailStack(1, 8, 2, heads=2, cond_channels=3, dtype=dt),
        lambda m, dt: m(_x(1).to(dt), Conditioning(torch.ones(2, 3, dtype=dt))),
    ),
    "CausalSequential": (
        lambda dt: CausalSequential(
            MaskedConv2d(1, 4, 3, "A", dtype=dt),
            nn.ReLU(),
            ResidualBlock(4, dtype=dt),
            MaskedConv2d(4, 1, 1, dtype=dt),
        ),
        lambda m, dt: m(_x(1).to(dt)),
    ),
    "PixelCNN-residual": (
        lambda dt: PixelCNN(
            PixelCNNConfig(num_blocks=2, hidden_channels=8, num_classes=3), dtype=dt
        ),
        lambda m, dt: m.log_prob(_x(1), torch.tensor([0, 2])),
    ),
    "PixelCNN-gated-colour": (
        lambda dt: PixelCNN(
            PixelCNNConfig(
                block="gated",
                data_channels=3,
                distribution="categorical",
                levels=4,
                num_blocks=2,
                hidden_channels=6,
            ),
            dtype=dt,
        ),
        lambda m, dt: m.log_prob((_x(3) * 3).long()),
    ),
    "PixelCNN-snail": (
        lambda dt: PixelCNN(PixelCNNConfig.preset("snail-small", num_blocks=1), dtype=dt),
        lambda m, dt: m.log_prob(_x(1)),
    ),
    "PixelCNN-logistic-mixture": (
        lambda dt: PixelCNN(
            PixelCNNConfig(
                data_channels=3,
                distribution="logistic_mixture",
                mixtures=3,
                levels=256,
                num_blocks=2,
                hidden_channels=8,
            ),
            dtype=dt,
        ),
        lambda m, dt: m.log_prob((_x(3) * 255).long()),
    ),
    "AutoregressiveModel-categorical": (
        lambda dt: AutoregressiveModel(
            CausalSequential(
                MaskedConv2d(1, 8, 3, "A", dtype=dt),
                ResidualBlock(8, cond_channels=3, dtype=dt),
                nn.ReLU(),
                MaskedConv2d(8, 4, 1, dtype=dt),
            ),
            Categorical(4),
            num_classes=3,
        ),
        lambda m, dt: m.log_prob((_x(1) * 3).long(), torch.tensor([0, 2]), chunk_size=1),
    ),
}
NAMES = list(MODULES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_reaches_every_parameter_and_buffer(name, dtype):
    make, call = MODULES[name]
    module = make(dtype)
    tensors = list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]
    assert tensors and all(t.dtype == dtype for t in tensors)
    assert all(t.device.type == "cpu" for t in tensors)
    out = call(module, dtype)
    assert out.dtype == dtype and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    make, call = MODULES[name]
    torch.manual_seed(0)
    a = make(torch.float32)
    torch.manual_seed(1)
    b = make(torch.float32)
    assert not torch.equal(call(a, torch.float32), call(b, torch.float32))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(call(a, torch.float32), call(b, torch.float32), rtol=0, atol=0)
    c = copy.deepcopy(a)
    torch.testing.assert_close(call(a, torch.float32), call(c, torch.float32), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_a_seed(name):
    make, call = MODULES[name]
    torch.manual_seed(123)
    a = call(make(torch.float32), torch.float32)
    torch.manual_seed(123)
    b = call(make(torch.float32), torch.float32)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    """No dead parameter: DistributedDataParallel needs every parameter to get a gradient."""
    make, call = MODULES[name]
    module = make(torch.float64)
    call(module, torch.float64).sum().backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "MaskedConv2d",
        "PixelCNN-residual",
        "PixelCNN-gated-colour",
        "PixelCNN-logistic-mixture",
        "PixelCNN-snail",
    ],
)
def test_torch_compile_matches_eager(name):
    make, call = MODULES[name]
    module = make(torch.float32)
    compiled = torch.compile(module)
    torch.testing.assert_close(call(compiled, torch.float32), call(module, torch.float32))
