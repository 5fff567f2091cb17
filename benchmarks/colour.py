"""Colour 32x32x3: discretized logistic mixture (DLM) vs 256-way categorical output.

The same Gated PixelCNN body with two likelihoods: PixelCNN++'s DLM (10 components, pixel-wise
masks, ``10 * (1 + 2*3 + 3) = 100`` output channels per pixel, a whole pixel per sampling step)
and the PixelCNN paper's categorical (channel-wise masks, ``3 * 256 = 768`` output channels,
one sub-pixel per sampling step). Rows:

- *train*: one training step (forward, mean NLL, backward, Adam) of a batch.
- *output*: the output layer alone (the last 1x1 masked convolution and the likelihood, forward
  and backward, on random features): its parameters, the bytes of its raw output, its time
  and, on CUDA, its peak memory.
- *sampling*: one teacher-forced forward pass vs the cached sampler vs the naive sampler (timed
  in full where it fits ``naive_budget_s``, else extrapolated from its first ``naive_steps``
  steps as in the ``sampling`` suite: every step is the same full forward pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from autoregressive import CachedSampler, PixelCNN, PixelCNNConfig, draw_noise, naive_sample

from .report import Column, Section, fmt_int, fmt_mib, fmt_stats, fmt_x, progress, seconds
from .sampling import time_naive_steps
from .settings import Settings, model_summary
from .timing import measure, sync
from .train import make_step, peak_memory

__all__ = ["COLOUR", "ColourSettings", "colour_models", "run"]


@dataclass(frozen=True)
class ColourSettings:
    """What the colour suite measures in one mode (timing repeats come from ``Settings``)."""

    image_size: tuple[int, int] = (32, 32)
    num_blocks: int = 8  # of the shared Gated PixelCNN body
    hidden_channels: int = 96  # a multiple of 3 (the categorical model's channel-wise masks)
    mixtures: int = 10
    train_batch: int = 32
    output_batch: int = 32
    batch_sizes: tuple[int, ...] = field(default=(1, 16, 64))


#: per mode: the full run, ``--quick`` (minutes on 2 CPU cores) and the smoke test's ``--tiny``
COLOUR: dict[str, ColourSettings] = {
    "full": ColourSettings(),
    "quick": ColourSettings(
        num_blocks=4, hidden_channels=48, train_batch=16, output_batch=16, batch_sizes=(1, 16)
    ),
    "tiny": ColourSettings(
        image_size=(8, 8),
        num_blocks=2,
        hidden_channels=6,
        mixtures=2,
        train_batch=2,
        output_batch=2,
        batch_sizes=(1, 2),
    ),
}


def colour_models(c: ColourSettings) -> dict[str, PixelCNNConfig]:
    """The two models compared: same body, DLM or categorical output."""
    body = {"data_channels": 3, "levels": 256, "block": "gated", "num_blocks": c.num_blocks,
            "hidden_channels": c.hidden_channels, "image_size": c.image_size}  # fmt: skip
    return {
        "dlm": PixelCNNConfig(distribution="logistic_mixture", mixtures=c.mixtures, **body),
        "categorical": PixelCNNConfig(distribution="categorical", **body),
    }


def run(settings: Settings, device: torch.device) -> Section:
    c = COLOUR.get(settings.mode, COLOUR["full"])
    h, w = c.image_size
    models = colour_models(c)
    section = Section(
        name="colour",
        title="Colour images: logistic mixture vs categorical output",
        description=(
            f"{h}x{w}x3 images, fp32; both models are {model_summary(models['dlm'])} with "
            f"a DLM ({c.mixtures} components, pixel-wise masks) or a 256-way categorical "
            "(channel-wise masks) output. *train*: forward + NLL + backward + Adam, batch "
            f"{c.train_batch}. *output*: the last 1x1 layer + likelihood, forward + backward, "
            f"batch {c.output_batch}; *out bytes*: its raw output (fp32). *sampling*: time per "
            f"batch; *naive* measured where it takes <= {settings.naive_budget_s:g} s, else "
            f"extrapolated from {settings.naive_steps} steps; its *time* is one teacher-forced "
            "forward pass of the batch. Peak memory: CUDA only."
        ),
        columns=[
            Column("model", "model"),
            Column("measure", "measure"),
            Column("batch", "batch"),
            Column("params", "params", fmt_int),
            Column("out channels", "out_channels", fmt_int),
            Column("out bytes", "out_bytes", fmt_mib),
            Column("time", "time", fmt_stats),
            Column("img/s", "images_per_s", lambda v: f"{v:.1f}"),
            Column("cached", "cached", fmt_stats),
            Column("naive", "naive_s", seconds),
            Column("naive is", "naive_source"),
            Column("naive / cached", "speedup", fmt_x),
            Column("cached / forward", "cached_over_forward", fmt_x),
            Column("peak mem", "peak_bytes", fmt_mib),
        ],
    )
    for name, cfg in models.items():
        torch.manual_seed(0)
        model = PixelCNN(cfg, device=device)
        rows = [_train_row(model, c, settings, device), _output_row(model, c, settings, device)]
        model.eval()
        rows += [_sampling_row(model, n, settings, device) for n in c.batch_sizes]
        for row in rows:
            section.rows.append({"model": name, **_blank(row)})
            progress(
                f"colour {name} {row['measure']} batch {row['batch']}: {seconds(row['median_s'])}"
            )
    return section


def _blank(row: dict) -> dict:
    """Every column present: the ones a measure does not fill are ``None`` (shown as ``–``)."""
    keys = ("params", "out_channels", "out_bytes", "time", "images_per_s", "cached", "naive_s",
            "naive_source", "speedup", "cached_over_forward", "peak_bytes")  # fmt: skip
    return dict.fromkeys(keys) | row


def _images(n: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    return torch.randint(0, 256, (n, 3, *size), generator=g).to(device)  # (N, 3, H, W)


def _train_row(model: PixelCNN, c: ColourSettings, s: Settings, device: torch.device) -> dict:
    x = _images(c.train_batch, c.image_size, device)
    step = make_step(model, lambda v: -model.log_prob(v).mean(), x, "fp32")
    t = measure(step, device, warmup=s.warmup, repeats=s.repeats)
    return {
        "measure": "train step",
        "batch": c.train_batch,
        "params": sum(p.numel() for p in model.parameters()),
        "time": t,
        "median_s": t["median"],
        "images_per_s": c.train_batch / float(t["median"]),
        "peak_bytes": peak_memory(step, device),
    }


def _output_row(model: PixelCNN, c: ColourSettings, s: Settings, device: torch.device) -> dict:
    """The output layer and likelihood alone, on random features of the body's width."""
    out = model.network[-1]  # the last 1x1 masked convolution
    n, (h, w) = c.output_batch, c.image_size
    features = torch.randn(n, out.in_channels, h, w, device=device, requires_grad=True)
    x = _images(n, c.image_size, device)
    dist = model.distribution

    def step() -> None:
        features.grad = None
        dist.log_prob(out(features), x).sum().backward()

    t = measure(step, device, warmup=s.warmup, repeats=s.repeats)
    return {
        "measure": "output layer",
        "batch": n,
        "params": sum(p.numel() for p in out.parameters()),
        "out_channels": out.out_channels,
        "out_bytes": n * out.out_channels * h * w * 4,
        "time": t,
        "median_s": t["median"],
        "images_per_s": n / float(t["median"]),
        "peak_bytes": peak_memory(step, device),
    }


def _sampling_row(model: PixelCNN, n: int, s: Settings, device: torch.device) -> dict:
    """Forward vs cached vs naive sampling of ``n`` images."""
    cfg, dist = model.config, model.distribution
    h, w = cfg.image_size
    noise = draw_noise((n, dist.noise_channels(3), h, w), torch.Generator().manual_seed(n))
    noise = noise.to(device)
    x = _images(n, (h, w), device)
    sampler = CachedSampler()
    steps_total = dist.draw_plan(3).steps * h * w  # a pixel, or a sub-pixel, per step

    def forward() -> None:
        with torch.no_grad():
            model(x)

    fwd = measure(forward, device, warmup=s.warmup, repeats=s.repeats)
    cached = measure(
        lambda: sampler.sample(model.network, dist, noise),
        device,
        warmup=s.warmup,
        repeats=s.repeats,
    )
    steps = min(s.naive_steps, steps_total)
    naive_k = time_naive_steps(model, noise, steps, s, device)
    naive_s = float(naive_k["median"]) * steps_total / steps
    source = f"extrapolated from {steps} of {steps_total} steps"
    if naive_s <= s.naive_budget_s:
        full = measure(lambda: naive_sample(model.network, dist, noise), device, warmup=0,
                       repeats=s.naive_repeats)  # fmt: skip
        naive_s, source = float(full["median"]), f"measured ({steps_total} steps)"
    sync(device)
    return {
        "measure": "sampling",
        "batch": n,
        "time": fwd,
        "median_s": cached["median"],
        "cached": cached,
        "naive_s": naive_s,
        "naive_source": source,
        "naive_steps_total": steps_total,
        "speedup": naive_s / float(cached["median"]),
        "cached_over_forward": float(cached["median"]) / float(fwd["median"]),
        "cache_bytes": sampler.last_cache_nbytes,
    }
