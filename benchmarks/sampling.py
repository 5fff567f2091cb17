"""Sampling: the naive sampler vs the cached sampler vs one teacher-forced forward pass.

- *forward*: ``model(x)`` under ``torch.no_grad()`` on a binary batch of the same size: the
  arithmetic floor, since generating an image needs at least one pass' worth of work.
- *cached*: :meth:`autoregressive.CachedSampler.sample` on pre-drawn noise, the whole image,
  with the sampler's defaults (on CUDA: rows replayed as CUDA graphs; also timed without).
- *naive*: :func:`autoregressive.naive_sample` on the same noise, ``C * H * W`` forward passes.
  Its first ``naive_steps`` steps are always timed (by stopping the library's own loop after
  that many network calls) and extrapolated linearly to all steps: every step is the same
  full-batch forward pass plus a one-pixel draw, so the cost per step is constant. Where the
  extrapolation says the whole run takes at most ``naive_budget_s``, the whole run is also
  timed and reported as *measured*.
- *per step*: the cached time over the ``C * H * W`` sub-pixel steps, and the top-level ATen
  operator calls per step (one profiled call): at small batches the per-step dispatch, not the
  arithmetic, sets the pace.
- *cached* uses the sampler's defaults; *cached, steps* forces one step per sub-pixel
  (``rows_at_once=False``). By default small batches on the CPU find each row as the fixed
  point of whole-row passes; *passes / image* is ``CachedSampler.last_passes`` over the batch's
  ``C * H * W`` steps.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from autoregressive import (
    CachedSampler,
    Conditioning,
    PixelCNN,
    PixelCNNConfig,
    draw_noise,
    naive_sample,
)

from .report import Column, Section, fmt_mib, fmt_stats, fmt_x, progress, seconds
from .settings import Settings
from .timing import Stats, measure, measure_interleaved

__all__ = [
    "columns",
    "count_aten_calls",
    "measure_batch",
    "models_and_batches",
    "pick",
    "run",
    "time_naive_steps",
]


class _Stop(Exception):
    """Raised by :class:`_StopAfter` to end a naive sampler run early."""


class _StopAfter(nn.Module):
    """Wraps a network; the call after ``limit`` calls raises :class:`_Stop`."""

    def __init__(self, network: nn.Module, limit: int) -> None:
        super().__init__()
        self.network = network
        self.limit = limit
        self.calls = 0

    def forward(self, x: torch.Tensor, cond: Conditioning | None = None) -> torch.Tensor:
        if self.calls >= self.limit:
            raise _Stop
        self.calls += 1
        return self.network(x, cond)


def time_naive_steps(
    model: PixelCNN,
    noise: torch.Tensor,
    steps: int,
    settings: Settings,
    device: torch.device,
    *,
    cond: Conditioning | None = None,
) -> Stats:
    """Time the first ``steps`` steps of ``naive_sample`` (each a forward pass and a draw)."""

    def run_steps() -> None:
        wrapper = _StopAfter(model.network, steps)
        try:
            naive_sample(wrapper, model.distribution, noise, cond=cond)
        except _Stop:
            return
        raise AssertionError("the naive sampler finished before the step limit")

    return measure(run_steps, device, warmup=settings.warmup, repeats=settings.naive_repeats)


def count_aten_calls(fn: Callable[[], object]) -> int:
    """Top-level ATen operator calls (not those an operator makes inside) of one ``fn()``."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(
        1
        for e in prof.events()
        if e.name.startswith("aten::")
        and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    )


def _graphs_optional(device: torch.device) -> bool:
    """Whether ``CachedSampler`` uses CUDA graphs here by default and can be told not to."""
    params = inspect.signature(CachedSampler).parameters
    return device.type == "cuda" and "cuda_graphs" in params


def _median(s: Stats) -> float:
    return float(s["median"])


def columns(device: torch.device) -> list[Column]:
    """The sampling table's columns on ``device``; other tables pick theirs by key."""
    return [
        Column("model", "model"),
        Column("batch", "batch"),
        Column("forward", "forward", fmt_stats),
        Column("cached", "cached", fmt_stats),
        *(
            [Column("cached, no CUDA graphs", "cached_eager", fmt_stats)]
            if _graphs_optional(device)
            else []
        ),
        Column("cached, steps", "cached_steps", fmt_stats),
        Column("passes", "passes"),
        Column("cached / image", "cached_per_image_s", seconds),
        Column("cached / step", "cached_per_step_s", seconds),
        Column("ATen calls / step", "aten_calls_per_step", lambda v: f"{v:.1f}"),
        Column("naive", "naive_s", seconds),
        Column("naive is", "naive_source"),
        Column("naive / cached", "speedup", fmt_x),
        Column("cached / forward", "cached_over_forward", fmt_x),
        Column("steps / forward", "steps_over_forward", fmt_x),
        Column("cache", "cache_bytes", fmt_mib),
    ]


def pick(keys: list[str], device: torch.device) -> list[Column]:
    """The columns of :func:`columns` with these keys, in this order."""
    by_key = {c.key: c for c in columns(device)}
    return [by_key[k] for k in keys]


def run(settings: Settings, device: torch.device) -> Section:
    h, w = settings.image_size
    section = Section(
        name="sampling",
        title="Sampling: naive vs cached vs one forward pass",
        description=(
            f"{h}x{w} images, fp32, time per batch. *naive* is measured in full where it takes "
            f"<= {settings.naive_budget_s:g} s, otherwise extrapolated from its first "
            f"{settings.naive_steps} steps (x C*H*W / steps). *cached / forward* is the cached "
            "sampler's time (defaults) over one teacher-forced forward pass (issue 12's targets "
            "on the CPU: <= 8 for the reference and <= 5 for the gated model at batch 1, <= 1.3 "
            "at batch 64). *cached, steps* forces one network step per sub-pixel; *passes* "
            "counts the network passes the default took (steps, or whole-row passes: "
            "`CachedSampler.last_passes`) against the C*H*W steps. "
            "Cache = `CachedSampler.last_cache_nbytes`."
        ),
        columns=columns(device),
    )
    for model_name, model, n in models_and_batches(settings.models, settings.batch_sizes, device):
        row = measure_batch(model, n, settings, device)
        section.rows.append({"model": model_name, **row})
        progress(
            f"sampling {model_name} batch {n}: cached {seconds(row['cached_s'])}, "
            f"forward {seconds(row['forward_s'])}, naive {seconds(row['naive_s'])}"
        )
    return section


def models_and_batches(
    models: Mapping[str, PixelCNNConfig], batches: Sequence[int], device: torch.device
) -> Iterator[tuple[str, PixelCNN, int]]:
    """Each model (seed 0, eval mode, on ``device``) with each batch: ``(name, model, n)``."""
    for name, cfg in models.items():
        torch.manual_seed(0)
        model = PixelCNN(cfg, device=device).eval()
        for n in batches:
            yield name, model, n


def measure_batch(model: PixelCNN, n: int, settings: Settings, device: torch.device) -> dict:
    """One table row: forward, cached and naive sampling of ``n`` images by ``model``."""
    h, w = settings.image_size
    c = model.config.data_channels
    sampler = CachedSampler()
    steps_total = c * h * w
    steps = min(settings.naive_steps, steps_total)
    noise = draw_noise((n, c, h, w), torch.Generator().manual_seed(n)).to(device)
    x = (noise < 0.5).to(torch.float32)  # a binary batch to score

    def forward() -> None:
        with torch.no_grad():
            model(x)

    reps = {"warmup": settings.warmup, "repeats": settings.repeats}
    stepper = CachedSampler(rows_at_once=False)
    fns = {
        "forward": forward,
        "cached": lambda: sampler.sample(model.network, model.distribution, noise),
        "steps": lambda: stepper.sample(model.network, model.distribution, noise),
    }
    if _graphs_optional(device):  # the default replays rows as CUDA graphs: time without too
        eager = CachedSampler(cuda_graphs=False)
        fns["eager"] = lambda: eager.sample(model.network, model.distribution, noise)
    timed = measure_interleaved(fns, device, **reps)  # alternating: drifting load hits all
    fwd, cached, cached_steps = timed["forward"], timed["cached"], timed["steps"]
    cached_eager = timed.get("eager")
    passes = sampler.last_passes
    naive_k = time_naive_steps(model, noise, steps, settings, device)
    extrapolated = _median(naive_k) * steps_total / steps
    naive_full = None
    if extrapolated <= settings.naive_budget_s:
        naive_full = measure(
            lambda: naive_sample(model.network, model.distribution, noise),
            device,
            warmup=0,  # the step runs above warmed it up
            repeats=settings.naive_repeats,
        )
    naive_s = _median(naive_full) if naive_full is not None else extrapolated
    return {
        "batch": n,
        "height": h,
        "width": w,
        "forward": fwd,
        "cached": cached,
        "cached_eager": cached_eager,
        "cached_steps": cached_steps,
        "cached_steps_s": _median(cached_steps),
        "passes": f"{passes} of {steps_total}",
        "passes_count": passes,
        "steps_over_forward": _median(cached_steps) / _median(fwd),
        "forward_s": _median(fwd),
        "cached_s": _median(cached),
        "cached_per_image_s": _median(cached) / n,
        "cached_per_step_s": _median(cached) / steps_total,
        "aten_calls_per_step": count_aten_calls(
            lambda: sampler.sample(model.network, model.distribution, noise)
        )
        / steps_total,
        "naive_steps": steps,
        "naive_steps_total": steps_total,
        "naive_k_steps": naive_k,
        "naive_extrapolated_s": extrapolated,
        "naive_full": naive_full,
        "naive_s": naive_s,
        "naive_measured": naive_full is not None,
        "naive_source": (
            f"measured (extrap. {seconds(extrapolated)})"
            if naive_full is not None
            else f"extrapolated from {steps} of {steps_total} steps"
        ),
        "speedup": naive_s / _median(cached),
        "cached_over_forward": _median(cached) / _median(fwd),
        "cache_bytes": sampler.last_cache_nbytes,
    }
