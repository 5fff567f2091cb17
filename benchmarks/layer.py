"""Layer overhead: ``MaskedConv2d`` against a plain ``nn.Conv2d`` whose weight was masked once.

``MaskedConv2d`` multiplies its weight by the mask on every call (and checks the input's
shape); a plain convolution holding the pre-masked weight computes the same output without
either. The difference is the price of masking functionally.
"""

from __future__ import annotations

import torch
from torch import nn

from autoregressive import MaskedConv2d

from .report import Column, Section, fmt_pct, fmt_ratio_stats, fmt_stats, progress
from .settings import Settings
from .timing import measure_interleaved, paired_ratio
from .twins import exact_numerics

__all__ = ["run"]


def _shapes(settings: Settings) -> list[tuple[str, int, int, int, str, bool]]:
    """(name, in, out, kernel, mask type, input needs grad) of the reference model's convs."""
    cfg = settings.models["reference"]
    c = cfg.hidden_channels
    k, k0 = cfg.kernel_size, cfg.input_kernel_size
    return [
        (f"input {k0}x{k0} A", cfg.data_channels, c, k0, "A", False),
        (f"block {k}x{k} B", c // 2, c // 2, k, "B", True),
        ("block 1x1 B", c, c // 2, 1, "B", True),
    ]


def run(settings: Settings, device: torch.device) -> Section:
    section = Section(
        name="layer",
        title="Layer overhead: MaskedConv2d vs a pre-masked nn.Conv2d",
        description=(
            f"fp32, batch {settings.layer_batch}, {settings.image_size[0]}x"
            f"{settings.image_size[1]}, convolutions of the `reference` model. *forward* under "
            "`torch.no_grad()`; *forward+backward* computes weight, bias and (for inner layers) "
            "input gradients. Overhead = median over interleaved rounds of masked/plain - 1."
        ),
        columns=[
            Column("layer", "layer"),
            Column("pass", "pass"),
            Column("MaskedConv2d", "masked", fmt_stats),
            Column("pre-masked Conv2d", "plain", fmt_stats),
            Column("masked / plain", "ratio", fmt_ratio_stats),
            Column("overhead", "overhead_pct", fmt_pct),
        ],
    )
    for name, cin, cout, k, mask_type, input_grad in _shapes(settings):
        section.rows += _measure_layer(name, cin, cout, k, mask_type, input_grad, settings, device)
    return section


def _measure_layer(
    name: str,
    cin: int,
    cout: int,
    k: int,
    mask_type: str,
    input_grad: bool,
    settings: Settings,
    device: torch.device,
) -> list[dict]:
    """Rows (forward, forward+backward) comparing one masked convolution with its plain twin."""
    h, w = settings.image_size
    n = settings.layer_batch
    torch.manual_seed(0)
    masked = MaskedConv2d(cin, cout, k, mask_type, device=device)
    plain = nn.Conv2d(cin, cout, k, padding=k // 2, device=device)
    with torch.no_grad():
        plain.weight.copy_(masked.masked_weight())
        plain.bias.copy_(masked.bias)
        x = torch.randn(n, cin, h, w, device=device)
        with exact_numerics():
            assert torch.allclose(masked(x), plain(x), rtol=1e-5, atol=1e-5)
    xg = x.clone().requires_grad_(input_grad)
    grad = torch.randn(n, cout, h, w, device=device)

    def forward(conv: nn.Module) -> None:
        with torch.no_grad():
            conv(x)

    def forward_backward(conv: nn.Module) -> None:
        conv.zero_grad(set_to_none=True)
        xg.grad = None
        conv(xg).backward(grad)

    rows = []
    for pass_name, fn in (("forward", forward), ("forward+backward", forward_backward)):
        r = measure_interleaved(
            {"masked": lambda f=fn: f(masked), "plain": lambda f=fn: f(plain)},
            device,
            warmup=settings.warmup,
            repeats=settings.repeats,
        )
        ratio = paired_ratio(r["masked"], r["plain"])
        progress(f"layer {name} {pass_name}: masked/plain {float(ratio['median']):.3f}")
        rows.append(
            {
                "layer": name,
                "shape": {"batch": n, "in": cin, "out": cout, "kernel": k, "h": h, "w": w},
                "pass": pass_name,
                "masked": r["masked"],
                "plain": r["plain"],
                "ratio": ratio,
                "overhead_pct": 100 * (float(ratio["median"]) - 1),
            }
        )
    return rows
