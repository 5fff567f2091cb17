"""Tests that need a CUDA device (run by ``make gpu-check``; skipped without CUDA).

They check on a real GPU what the CPU suite can only check in part: the cached sampler's
CUDA-graph replay against eager stepping and the naive sampler, bf16 training and fp32
evaluation, and the automatic precision choice.
"""

from __future__ import annotations

import pytest
import torch

from autoregressive import (
    CachedSampler,
    Conditioning,
    NaiveSampler,
    PixelCNN,
    PixelCNNConfig,
    Sampler,
)
from autoregressive.data import BinarizedBatches
from autoregressive.training import NegLogLikelihood, evaluate, resolve_precision, train_epoch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
CONFIGS = {
    "residual": PixelCNNConfig(num_blocks=2, hidden_channels=16, image_size=(7, 6)),
    "gated": PixelCNNConfig(block="gated", num_blocks=3, hidden_channels=8, image_size=(7, 6)),
    "colour": PixelCNNConfig(
        block="gated",
        num_blocks=2,
        hidden_channels=12,
        data_channels=3,
        distribution="categorical",
        levels=4,
        num_classes=3,
        image_size=(5, 4),
    ),
}


def _model(cfg: PixelCNNConfig) -> PixelCNN:
    torch.manual_seed(0)
    return PixelCNN(cfg, device=CUDA, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_graph_replay_equals_eager_cached_and_naive_on_cuda(name):
    cfg = CONFIGS[name]
    model = _model(cfg)
    y = torch.arange(4, device=CUDA) % cfg.num_classes if cfg.num_classes else None

    def draw(sampler: Sampler) -> torch.Tensor:
        g = torch.Generator(CUDA).manual_seed(1)
        return model.sample(4, y, generator=g, sampler=sampler)

    graphs = draw(CachedSampler(cuda_graphs=True))
    assert graphs.device.type == "cuda"
    assert torch.equal(graphs, draw(CachedSampler(cuda_graphs=False)))
    assert torch.equal(graphs, draw(NaiveSampler()))


@pytest.mark.parametrize("block", ["residual", "gated"])
def test_graph_replay_with_vectors_and_maps_on_cuda(block):
    """The spatial term comes from the row buffer the recording reads, for every replayed row."""
    cfg = PixelCNNConfig(
        block=block, num_blocks=2, hidden_channels=8, num_classes=3, vector_size=4,
        spatial_channels=2, image_size=(7, 6),
    )  # fmt: skip
    model = _model(cfg)
    g = torch.Generator(CUDA).manual_seed(2)
    cond = Conditioning(
        vector=torch.randn(4, 4, device=CUDA, generator=g, dtype=torch.float64),
        spatial=torch.randn(4, 2, 7, 6, device=CUDA, generator=g, dtype=torch.float64),
        labels=torch.arange(4, device=CUDA) % 3,
    )

    def draw(sampler: Sampler) -> torch.Tensor:
        gen = torch.Generator(CUDA).manual_seed(1)
        return model.sample(4, cond, generator=gen, temperature=0.8, sampler=sampler)

    graphs = draw(CachedSampler(cuda_graphs=True))
    assert torch.equal(graphs, draw(CachedSampler(cuda_graphs=False)))
    assert torch.equal(graphs, draw(NaiveSampler()))


def test_completion_on_cuda_keeps_the_known_pixels():
    model = _model(CONFIGS["gated"])
    image = torch.randint(0, 2, (3, 1, 7, 6), device=CUDA).double()
    known = torch.zeros(1, 1, 7, 6, dtype=torch.bool, device=CUDA)
    known[..., :3, :] = True
    out = model.sample(image=image, known=known, generator=torch.Generator(CUDA).manual_seed(0))
    assert torch.equal(out[..., :3, :], image[..., :3, :])


def test_cuda_log_prob_matches_the_cpu():
    cfg = CONFIGS["gated"]
    model = _model(cfg)
    x = torch.randint(0, 2, (5, 1, 7, 6)).double()
    on_cpu = model.to("cpu").log_prob(x)
    assert torch.allclose(model.to(CUDA).log_prob(x.to(CUDA)).cpu(), on_cpu, atol=1e-9)


def test_auto_precision_on_this_gpu_follows_its_compute_capability():
    major, _ = torch.cuda.get_device_capability()
    assert resolve_precision("auto", CUDA).name == ("bf16" if major >= 8 else "fp32")


def test_bf16_training_on_cuda_lowers_the_nll_and_evaluates_in_fp32():
    cfg = PixelCNNConfig(block="gated", num_blocks=2, hidden_channels=16, image_size=(8, 8))
    g = torch.Generator().manual_seed(0)
    blobs = torch.nn.functional.interpolate(torch.rand(160, 1, 2, 2, generator=g), size=(8, 8))
    x = (blobs > 0.5).float()
    train = BinarizedBatches(x[:128], batch_size=32, binarize=None, shuffle=True, seed=0)
    test = BinarizedBatches(x[128:], batch_size=32, binarize=None)
    precision = resolve_precision("bf16", CUDA)
    torch.manual_seed(0)
    model = PixelCNN(cfg, device=CUDA).to(memory_format=precision.memory_format)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = evaluate(model, test, device=CUDA).nll
    for epoch in range(4):
        train.set_epoch(epoch)
        train_epoch(NegLogLikelihood(model), opt, train, device=CUDA, precision=precision)
    after = evaluate(model, test, device=CUDA)
    assert after.nll < before - 1.0
    assert isinstance(after.nll, float)
    assert all(p.dtype == torch.float32 for p in model.parameters())
