"""``torch.export`` of a model's likelihood: the exported program scores as the eager model does.

See docs/export.rst. Exporting traces the network once; the program it returns must give the
eager model's log-likelihoods, at the traced batch size and at another one (a dynamic batch).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from autoregressive import Conditioning, PixelCNN, PixelCNNConfig
from autoregressive.training import NegLogLikelihood


class MapLogProb(nn.Module):
    """``model.log_prob(x, Conditioning(spatial=s))`` with tensors only, as export takes them.

    Shape:
        - ``x``: :math:`(N, C, H, W)`; ``spatial``: :math:`(N, C_{map}, H, W)`.
        - output: :math:`(N,)`, nats.
    """

    def __init__(self, model: PixelCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, spatial: torch.Tensor) -> torch.Tensor:
        return self.model.log_prob(x, Conditioning(spatial=spatial))


def _case(kind: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` binary images ``(n, 1, 8, 8)`` and their labels ``(n,)`` or maps ``(n, 2, 8, 8)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (n, 1, 8, 8), generator=g).float()
    if kind == "labels":
        return x, torch.randint(0, 3, (n,), generator=g)
    return x, torch.randn(n, 2, 8, 8, generator=g)


@pytest.mark.parametrize(
    ("block", "kind"), [("gated", "labels"), ("residual", "map")], ids=["gated-labels", "map"]
)
def test_exported_log_prob_scores_as_the_eager_model(block, kind):
    cond = {"num_classes": 3} if kind == "labels" else {"spatial_channels": 2}
    torch.manual_seed(0)
    config = PixelCNNConfig(block=block, num_blocks=2, hidden_channels=8, image_size=(8, 8))
    model = PixelCNN(dataclasses.replace(config, **cond)).eval()
    module = NegLogLikelihood(model) if kind == "labels" else MapLogProb(model)
    x, c = _case(kind, 4, seed=1)
    batch = torch.export.Dim("batch")
    exported = torch.export.export(module, (x, c), dynamic_shapes=({0: batch}, {0: batch}))
    program = exported.module()
    for n, seed in ((4, 2), (7, 3)):  # the traced batch size and another
        x, c = _case(kind, n, seed)
        with torch.no_grad():
            expected, got, other = module(x, c), program(x, c), program(x, c.roll(1, 0))
        assert got.shape == (n,)
        torch.testing.assert_close(got, expected)
        assert not torch.equal(got, other), "the program ignores the conditioning"
