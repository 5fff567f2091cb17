"""A hand-written PixelCNN, the way a user would write one, to measure the library against.

The training-step benchmark compares :class:`autoregressive.PixelCNN` with this minimal
re-implementation of the *same* architecture: plain ``nn.Conv2d`` layers whose ``forward``
multiplies the weight by a mask, the same residual / gated block structure and the same
Bernoulli loss, but none of the library's argument checks, input validation or generality.
Module names follow the library's, so the library network's ``state_dict`` loads into the twin
and :func:`check_twin` can assert that both compute the same function before anything is timed.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from autoregressive import PixelCNN, PixelCNNConfig

__all__ = ["HandPixelCNN", "check_twin", "exact_numerics", "make_twin"]


def exact_numerics() -> contextlib.AbstractContextManager:
    """Deterministic cuDNN without TF32 (a no-op on the CPU), for comparing two computations."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=False, deterministic=True, allow_tf32=False)


class HandMaskedConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a PixelCNN mask multiplied into the weight on every call (grey only)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], mask_type: str):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        super().__init__(cin, cout, (kh, kw), padding=(kh // 2, kw // 2))
        mask = torch.ones(cout, cin, kh, kw)
        mask[:, :, kh // 2, kw // 2 + (mask_type == "B") :] = 0  # the centre row, right part
        mask[:, :, kh // 2 + 1 :] = 0  # every row below the centre
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class HandResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv1 = HandMaskedConv2d(channels, channels // 2, 1, "B")
        self.conv2 = HandMaskedConv2d(channels // 2, channels // 2, kernel, "B")
        self.conv3 = HandMaskedConv2d(channels // 2, channels, 1, "B")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(x))
        h = self.conv2(F.relu(h))
        h = self.conv3(F.relu(h))
        return x + h


def _gate(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x[:, 0::2]) * torch.sigmoid(x[:, 1::2])  # channels paired (a0, b0, a1, ...)


class HandGatedBlock(nn.Module):
    def __init__(self, cin: int, channels: int, kernel: int, mask_type: str, last: bool):
        super().__init__()
        self.kernel = kernel
        self.mask_type = mask_type
        rows = kernel // 2 + (mask_type == "B")  # vertical stack: the rows above (and this one)
        self.v_conv = nn.Conv2d(cin, 2 * channels, (rows, kernel))
        self.h_conv = HandMaskedConv2d(cin, 2 * channels, (1, kernel), mask_type)
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = None if last else HandMaskedConv2d(channels, channels, 1, "B")
        self.skip = HandMaskedConv2d(channels, channels, 1, "B")

    def forward(self, v: torch.Tensor, h: torch.Tensor):
        k = self.kernel
        v_pre = self.v_conv(F.pad(v, (k // 2, k // 2, k // 2, 0)))[:, :, : v.shape[-2]]
        h_pre = self.h_conv(h) + self.link(v_pre)
        h_gated = _gate(h_pre)
        h_new = None
        if self.h_out is not None:
            h_new = self.h_out(h_gated) + (h if self.mask_type == "B" else 0)
        return _gate(v_pre), h_new, self.skip(h_gated)


class HandGatedStack(nn.Module):
    def __init__(
        self, channels: int, num_blocks: int, kernel: int, input_kernel: int, last_h_out: bool
    ):
        super().__init__()
        drop = [k == num_blocks - 1 and not last_h_out for k in range(num_blocks)]
        self.blocks = nn.ModuleList(
            [HandGatedBlock(1, channels, input_kernel, "A", drop[0])]
            + [
                HandGatedBlock(channels, channels, kernel, "B", drop[k])
                for k in range(1, num_blocks)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, h, skips = x, x, 0
        for block in self.blocks:
            v, h, skip = block(v, h)
            skips = skips + skip
        return skips


class HandPixelCNN(nn.Module):
    """A grey-scale, unconditional, Bernoulli PixelCNN (residual or gated) written by hand.

    ``last_h_out``: whether the last gated block computes a horizontal output (which nothing
    uses); :func:`make_twin` sets it to whatever the library model does, so that both do the
    same work.
    """

    def __init__(self, config: PixelCNNConfig, last_h_out: bool = False):
        super().__init__()
        c = config
        supported = c.data_channels == 1 and c.distribution == "bernoulli" and not c.num_classes
        if not supported:
            raise ValueError("the hand-written twin covers grey, unconditional Bernoulli models")
        if c.block == "residual":
            layers: list[nn.Module] = [
                HandMaskedConv2d(1, c.hidden_channels, c.input_kernel_size, "A")
            ]
            layers += [
                HandResidualBlock(c.hidden_channels, c.kernel_size) for _ in range(c.num_blocks)
            ]
        else:
            stack = HandGatedStack(
                c.hidden_channels, c.num_blocks, c.kernel_size, c.input_kernel_size, last_h_out
            )
            layers = [stack]
        width = c.hidden_channels
        if c.head_channels:
            layers += [nn.ReLU(), HandMaskedConv2d(width, c.head_channels, 1, "B")]
            width = c.head_channels
        layers += [nn.ReLU(), HandMaskedConv2d(width, 1, 1, "B")]
        self.network = nn.Sequential(*layers)  # same indices as the library's CausalSequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)  # (N, 1, H, W) logits

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood in nats per image (binary cross-entropy summed)."""
        bce = F.binary_cross_entropy_with_logits(self(x), x, reduction="none")
        return bce.flatten(1).sum(1).mean()


def _last_block_keys(model: PixelCNN) -> list[str]:
    if model.config.block != "gated":
        return []
    prefix = f"0.blocks.{model.config.num_blocks - 1}."
    return [k for k in model.network.state_dict() if k.startswith(prefix)]


def make_twin(model: PixelCNN) -> HandPixelCNN:
    """A :class:`HandPixelCNN` holding a copy of ``model``'s weights, on its device and dtype."""
    param = next(model.parameters())
    last_h_out = any(k.endswith(".h_out.weight") for k in _last_block_keys(model))
    twin = HandPixelCNN(model.config, last_h_out).to(device=param.device, dtype=param.dtype)
    twin.network.load_state_dict(model.network.state_dict(), strict=True)
    return twin


def check_twin(model: PixelCNN, twin: HandPixelCNN, x: torch.Tensor) -> dict[str, object]:
    """Assert that ``twin`` has ``model``'s parameter count and computes the same logits and loss.

    Raises:
        RuntimeError: if they differ (the comparison would then measure different work).
    """
    n_model = sum(p.numel() for p in model.parameters())
    n_twin = sum(p.numel() for p in twin.parameters())
    with torch.no_grad(), exact_numerics():
        logits, twin_logits = model(x), twin(x)
        loss, twin_loss = -model.log_prob(x).mean(), twin.loss(x)
    max_diff = (logits - twin_logits).abs().max().item()
    same = n_model == n_twin and torch.allclose(logits, twin_logits, rtol=1e-4, atol=1e-4)
    same = same and torch.allclose(loss, twin_loss, rtol=1e-4, atol=1e-3)
    if not same:
        raise RuntimeError(
            f"the hand-written twin does not match the library model: params {n_model} vs "
            f"{n_twin}, max |logit difference| {max_diff:.3g}, loss {loss.item():.6g} vs "
            f"{twin_loss.item():.6g}; update benchmarks/twins.py to the library's architecture"
        )
    return {"params": n_model, "twin_params": n_twin, "max_abs_logit_diff": max_diff}
