"""A categorical prior over code grids: cached sampling vs one forward pass vs naive, by grid size.

The model a VQ-VAE prior needs (issue 13): a class-conditional Gated PixelCNN with 512 levels
(6 blocks x 64 channels: 567,232 parameters with the codes fed ``"scaled"``), and the same
network reading its codes through a learned ``CategoricalEmbedding`` (``input_embedding=
"learned"``, 16 channels per code). For each, batches of ``prior_batch`` code grids of each side
in ``prior_grids`` (8x8 and 32x32), with class labels ``0, 1, ...``:

- *forward*: ``model(codes, y)`` under ``torch.no_grad()`` on random codes, the floor;
- *cached*: :meth:`autoregressive.CachedSampler.sample` on pre-drawn noise, with the labels,
  and its top-level ATen operator calls per step (one profiled call; the embedding's lookups
  add 2 to the scaled input's 80 at 8x8);
- *naive*: :func:`autoregressive.naive_sample`, measured in full where it takes at most
  ``naive_budget_s``, else its first ``naive_steps`` steps timed and extrapolated to
  ``H * W`` steps, as in :mod:`benchmarks.sampling`.
"""

from __future__ import annotations

import torch

from autoregressive import CachedSampler, Conditioning, PixelCNN, draw_noise, naive_sample

from .report import Column, Section, fmt_int, progress, seconds
from .sampling import count_aten_calls, pick, time_naive_steps
from .settings import Settings
from .timing import Stats, measure

__all__ = ["run"]

#: the columns of :mod:`benchmarks.sampling`'s table that the prior's table shows
PRIOR_KEYS = [
    "forward", "cached", "cached_over_forward", "aten_calls_per_step", "naive_s",
    "naive_source", "speedup", "cache_bytes",
]  # fmt: skip


def run(settings: Settings, device: torch.device) -> Section:
    n = settings.prior_batch
    section = Section(
        name="prior",
        title="Categorical prior: code grids, scaled vs embedded input",
        description=(
            f"Class-conditional gated categorical priors, fp32, batch {n}, time per batch. "
            "*cached / forward* is the cached sampler's time over one forward pass of the "
            "same batch (issue 13 measured 1.2x at 8x8 and 1.0x at 32x32 with scaled input). "
            f"*naive* is measured in full where it takes <= {settings.naive_budget_s:g} s, "
            f"otherwise extrapolated from its first {settings.naive_steps} steps."
        ),
        columns=[
            Column("model", "model"),
            Column("input", "input"),
            Column("params", "params", fmt_int),
            Column("grid", "grid"),
            *pick(PRIOR_KEYS, device),
        ],
    )
    for name, cfg in settings.prior_models.items():
        torch.manual_seed(0)
        model = PixelCNN(cfg, device=device).eval()
        params = sum(p.numel() for p in model.parameters())
        for side in settings.prior_grids:
            row = _measure_grid(model, n, side, settings, device)
            section.rows.append(
                {"model": name, "input": cfg.input_embedding, "params": params, **row}
            )
            progress(
                f"prior {name} {side}x{side}: cached {seconds(row['cached_s'])}, "
                f"forward {seconds(row['forward_s'])}, naive {seconds(row['naive_s'])}"
            )
    return section


def _measure_grid(
    model: PixelCNN, n: int, side: int, settings: Settings, device: torch.device
) -> dict:
    """One table row: forward, cached and naive sampling of ``n`` grids ``side x side``."""
    cfg = model.config
    shape = (n, cfg.data_channels, side, side)
    y = torch.arange(n, device=device) % cfg.num_classes if cfg.num_classes else None
    cond = model.condition(y, n)
    noise = draw_noise(shape, torch.Generator().manual_seed(side)).to(device)
    codes = torch.randint(0, cfg.levels, shape, generator=torch.Generator().manual_seed(0))
    codes = codes.to(device)
    sampler = CachedSampler()

    def forward() -> None:
        with torch.no_grad():
            model(codes, y)

    reps = {"warmup": settings.warmup, "repeats": settings.repeats}
    fwd = measure(forward, device, **reps)
    cached = measure(
        lambda: sampler.sample(model.network, model.distribution, noise, cond=cond), device, **reps
    )
    naive = _time_naive(model, noise, cond, settings, device)
    return {
        "grid": f"{side}x{side}",
        "side": side,
        "batch": n,
        "forward": fwd,
        "cached": cached,
        "forward_s": _median(fwd),
        "cached_s": _median(cached),
        "cached_over_forward": _median(cached) / _median(fwd),
        "aten_calls_per_step": count_aten_calls(
            lambda: sampler.sample(model.network, model.distribution, noise, cond=cond)
        )
        / (side * side),
        **naive,
        "speedup": naive["naive_s"] / _median(cached),
        "cache_bytes": sampler.last_cache_nbytes,
    }


def _time_naive(
    model: PixelCNN,
    noise: torch.Tensor,
    cond: Conditioning | None,
    settings: Settings,
    device: torch.device,
) -> dict:
    """The naive sampler's time: its first steps, and the whole run where that is affordable."""
    steps_total = noise[0].numel()
    steps = min(settings.naive_steps, steps_total)
    first = time_naive_steps(model, noise, steps, settings, device, cond=cond)
    extrapolated = _median(first) * steps_total / steps
    full = None
    if extrapolated <= settings.naive_budget_s:
        full = measure(
            lambda: naive_sample(model.network, model.distribution, noise, cond=cond),
            device,
            warmup=0,  # the step runs above warmed it up
            repeats=settings.naive_repeats,
        )
    return {
        "naive_steps": steps,
        "naive_steps_total": steps_total,
        "naive_k_steps": first,
        "naive_extrapolated_s": extrapolated,
        "naive_full": full,
        "naive_measured": full is not None,
        "naive_s": _median(full) if full is not None else extrapolated,
        "naive_source": (
            f"measured (extrap. {seconds(extrapolated)})"
            if full is not None
            else f"extrapolated from {steps} of {steps_total} steps"
        ),
    }


def _median(s: Stats) -> float:
    return float(s["median"])
