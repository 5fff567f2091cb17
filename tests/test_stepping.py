"""The stepping protocol: a block written here, not in the library, gets exact cached sampling.

``GatedResidualBlock`` below is ``x + 1x1(gate(kxk_B(x)))`` with a dilated kxk convolution and
the gated activation: a block type the library does not have. It implements
``stepper(batch, width, cond)`` from the library's own steppers, and the cached sampler then
returns the naive sampler's images in float64, with no change to the library.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from autoregressive import (
    Bernoulli,
    CachedSampler,
    CausalSequential,
    ElementwiseStepper,
    MaskedConv2d,
    PixelCNN,
    PixelCNNConfig,
    Stepper,
    cached_sample,
    draw_noise,
    gate,
    naive_sample,
    stepper_for,
)
from autoregressive.sampling import rows as engine_rows

F64 = {"dtype": torch.float64}


class GatedResidualBlock(nn.Module):
    """``x + 1x1(gate(kxk_B(x)))``: a residual block with a gated activation."""

    def __init__(
        self, channels: int, kernel_size: int | tuple[int, int], dilation: int, data_channels: int
    ) -> None:
        super().__init__()
        self.conv = MaskedConv2d(
            channels, 2 * channels, kernel_size, "B", data_channels, dilation=dilation, **F64
        )
        self.out = MaskedConv2d(channels, channels, 1, "B", data_channels, **F64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(gate(self.conv(x)))

    def stepper(self, batch: int, width: int, cond: torch.Tensor | None = None) -> Stepper:
        return GatedResidualStepper(self.conv.stepper(batch, width), self.out.stepper(batch, width))


class GatedResidualStepper(Stepper):
    """``GatedResidualBlock.forward`` at one pixel, from the convolutions' own steppers."""

    def __init__(self, conv: Stepper, out: Stepper) -> None:
        self.conv, self.out = conv, out

    def begin_row(self, i: int) -> None:
        self.conv.begin_row(i)  # the kxk convolution keeps rows; the 1x1 one keeps nothing

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        return x + self.out.step(j, gate(self.conv.step(j, x)))  # (N, C), gate over dim 1

    steps_rows = True  # optional: the whole row at once, (N, M, C) -> (N, M, C)

    def step_row(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        return x + self.out.step_row(gate(self.conv.step_row(x, start), dim=-1), start)

    def cache_nbytes(self) -> int:
        return self.conv.cache_nbytes() + self.out.cache_nbytes()


@st.composite
def gated_residual_networks(draw):
    dc = draw(st.sampled_from([1, 3]))
    channels = dc * draw(st.integers(1, 3))
    odd = st.sampled_from([1, 3, 5])
    layers: list[nn.Module] = [MaskedConv2d(dc, channels, draw(odd), "A", dc, **F64)]
    for _ in range(draw(st.integers(1, 3))):
        kernel = (draw(odd), draw(odd))
        layers.append(GatedResidualBlock(channels, kernel, draw(st.integers(1, 3)), dc))
    act = draw(st.sampled_from([nn.ReLU, nn.GELU, nn.Tanh, nn.ELU, nn.SiLU]))
    layers += [act(), MaskedConv2d(channels, dc, 1, "B", dc, **F64)]
    size = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    return CausalSequential(*layers), dc, size, draw(st.integers(1, 3)), draw(st.integers(0, 999))


class StepsOnlyStepper(GatedResidualStepper):
    """The same block for a stepper that does not implement ``step_row``."""

    steps_rows = False


@given(gated_residual_networks(), st.sampled_from([True, False, None]))
def test_a_block_defined_in_the_test_samples_exactly(case, rows_at_once):
    net, dc, (h, w), n, seed = case
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    noise = draw_noise((n, dc, h, w), torch.Generator().manual_seed(seed))
    naive = naive_sample(net, Bernoulli(), noise)
    assert torch.equal(cached_sample(net, Bernoulli(), noise, rows_at_once=rows_at_once), naive)


def test_a_block_without_step_row_is_stepped_pixel_by_pixel(monkeypatch):
    """Whole-row passes are optional: without ``step_row`` the sampler steps every pixel."""
    monkeypatch.setattr(
        GatedResidualBlock,
        "stepper",
        lambda self, batch, width, cond=None: StepsOnlyStepper(
            self.conv.stepper(batch, width), self.out.stepper(batch, width)
        ),
    )
    net = CausalSequential(
        MaskedConv2d(1, 2, 3, "A", **F64), GatedResidualBlock(2, 3, 1, 1),
        MaskedConv2d(2, 1, 1, "B", **F64),
    )  # fmt: skip
    noise = draw_noise((2, 1, 4, 5), torch.Generator().manual_seed(0))
    sampler = CachedSampler()
    assert torch.equal(
        sampler.sample(net, Bernoulli(), noise), naive_sample(net, Bernoulli(), noise)
    )
    assert sampler.last_passes == 4 * 5  # one step per pixel
    with pytest.raises(ValueError, match="step_row"):
        CachedSampler(rows_at_once=True).sample(net, Bernoulli(), noise)


class NotSteppable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


@pytest.mark.parametrize("module", [NotSteppable(), nn.BatchNorm2d(4).eval()])
def test_a_module_that_cannot_step_gets_an_error_that_says_how_to_add_it(module):
    net = CausalSequential(MaskedConv2d(1, 4, 3, "A"), module, MaskedConv2d(4, 1, 1))
    with pytest.raises(ValueError, match=r"stepper\(batch, width, cond\)"):
        cached_sample(net, Bernoulli(), draw_noise((1, 1, 3, 3)))


@pytest.mark.parametrize(
    "module", [nn.ReLU(), nn.GELU(), nn.Mish(), nn.Hardtanh(), nn.Softmax(dim=1), nn.Identity()]
)
def test_parameter_free_pixelwise_modules_step_as_they_are(module):
    stepper = stepper_for(module, batch=2, width=4, cond=None)
    assert isinstance(stepper, ElementwiseStepper)
    x = torch.randn(2, 5)
    assert torch.equal(stepper.step(0, x), module(x))


@pytest.mark.parametrize(
    "config",
    [
        PixelCNNConfig(num_blocks=2, hidden_channels=8),
        PixelCNNConfig(block="gated", num_blocks=3, hidden_channels=6, num_classes=3),
        PixelCNNConfig(
            block="gated",
            data_channels=3,
            distribution="categorical",
            levels=4,
            num_blocks=2,
            hidden_channels=6,
        ),
        PixelCNNConfig(
            data_channels=3,
            distribution="logistic_mixture",
            mixtures=3,
            levels=16,
            num_blocks=2,
            hidden_channels=6,
        ),
    ],
)
def test_the_row_replay_path_on_fixed_buffers_matches_the_eager_path(config):
    """The CUDA-graph path's row buffers, with the recording replaced by the row itself (CPU)."""
    model = PixelCNN(config, **F64)
    n, size = 3, (5, 4)
    shape = (n, config.data_channels, *size)
    channels = model.distribution.noise_channels(config.data_channels)
    noise = draw_noise((n, channels, *size), torch.Generator().manual_seed(0))
    cond = model.condition(torch.arange(n) % 3 if config.num_classes else None, n)
    bernoulli = isinstance(model.distribution, Bernoulli)
    image = (noise < 0.5).double() if bernoulli else torch.zeros(shape, **F64)
    known = torch.zeros(size, dtype=torch.bool)
    known[:2, :3] = True
    inputs = {"cond": cond, "image": image, "known": known}
    eager = CachedSampler(rows_at_once=False).sample_with_params(
        model.network, model.distribution, noise, **inputs
    )
    replayed = CachedSampler(replay_rows=True)
    images, params = replayed.sample_with_params(model.network, model.distribution, noise, **inputs)
    assert torch.equal(images, eager[0])
    assert torch.equal(params, eager[1])
    assert (
        replayed.last_passes
        == size[0] * size[1] * model.distribution.draw_plan(config.data_channels).steps
    )
    assert not replayed.last_used_graph


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("block", ["residual", "gated"])
def test_cuda_graph_replay_matches_eager_on_cuda(block):
    config = PixelCNNConfig(block=block, num_blocks=3, hidden_channels=16, num_classes=4)
    model = PixelCNN(config, device="cuda", **F64)
    noise = draw_noise((4, 1, 9, 7), torch.Generator().manual_seed(0), device="cuda")
    cond = model.condition(torch.arange(4, device="cuda"), 4)
    graphed, eager = CachedSampler(cuda_graphs=True), CachedSampler(cuda_graphs=False)
    fast = graphed.sample(model.network, model.distribution, noise, cond=cond)
    assert torch.equal(fast, eager.sample(model.network, model.distribution, noise, cond=cond))
    assert graphed.last_used_graph and not eager.last_used_graph
    assert torch.equal(
        fast,
        naive_sample(model.network, model.distribution, noise, cond=cond),
    )


def test_cuda_graphs_on_a_cpu_network_is_an_error():
    net = CausalSequential(MaskedConv2d(1, 2, 3, "A"), nn.ReLU(), MaskedConv2d(2, 1, 1))
    with pytest.raises(ValueError, match="CUDA device"):
        cached_sample(net, Bernoulli(), draw_noise((1, 1, 2, 2)), cuda_graphs=True)


@pytest.mark.parametrize("seed_kind", ["none", "bias", "per row"])
@pytest.mark.parametrize("dw", [1, 2])
@pytest.mark.parametrize("taps", [True, False], ids=["tap-by-tap", "gathered"])
def test_ring_product_is_a_convolution_over_the_ring_both_ways(seed_kind, dw, taps):
    """``rows.ring_product`` against ``F.conv2d`` over the same rows, tap by tap and gathered."""
    rows, width, n, c_in, c_out, kw = 2, 5, 3, 4, 6, 3
    g = torch.Generator().manual_seed(dw)
    ring = torch.randn(rows, width + (kw - 1) * dw, n, c_in, generator=g, **F64)
    weight = torch.randn(c_out, c_in, rows, kw, generator=g, **F64)
    matrix = weight.permute(2, 3, 1, 0).reshape(-1, c_out)  # (kernel row, tap, C_in) x C_out
    seed = {
        "none": None,
        "bias": torch.randn(c_out, generator=g, **F64),
        "per row": torch.randn(width * n, c_out, generator=g, **F64),
    }[seed_kind]
    conv2d = F.conv2d(ring.permute(2, 3, 0, 1), weight, dilation=(1, dw))  # (N, C_out, 1, W)
    expected = conv2d[:, :, 0].permute(2, 0, 1).reshape(width * n, c_out)  # column-major
    expected = expected if seed is None else expected + seed
    out = torch.empty(width * n, c_out, **F64)
    result = engine_rows.ring_product(ring, matrix, seed, width=width, dw=dw, out=out, taps=taps)
    assert result.data_ptr() == out.data_ptr()
    torch.testing.assert_close(result, expected)
