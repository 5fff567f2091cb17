"""PixelSNAIL against the gated model of similar size: sampling, the KV cache, a training step.

Chen et al., *PixelSNAIL*, 2018, https://arxiv.org/abs/1712.09763. The models are
``settings.attention_models``: the ``snail-small`` preset (gated residual blocks and two
attention layers) and ``gated-small`` (a Gated PixelCNN of about the same parameter count).

- ``attention``: for each model and each batch of ``attention_batches`` (1 and 64), one forward
  pass, the cached sampler (defaults) and the naive sampler, as :mod:`benchmarks.sampling`
  measures them (:func:`benchmarks.sampling.measure_batch`), with the cache memory
  (``CachedSampler.last_cache_nbytes``: for ``snail-small`` mostly the keys and values of every
  pixel, ``N * heads * H * W * (d_k + d_v)`` numbers per attention layer). Issue 23's targets on
  the CPU: cached sampling of ``snail-small`` at most 1.5x one forward pass at batch 64 and 8x at
  batch 1. ``--trained`` adds the models of runs' ``weights.pt`` files: a row's whole-row
  passes settle later on trained weights, whose draws depend more on the pixels before them.
- ``attention-train``: one training step (zero_grad, forward, the mean negative log-likelihood,
  backward, Adam) of each model at ``train_batch``, timed in alternating rounds; the ratio is
  the median of the per-round ratios of each model's step to the gated model's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from autoregressive import PixelCNN, PixelCNNConfig
from autoregressive.checkpoint import load_checkpoint

from .report import (
    Column,
    Section,
    fmt_int,
    fmt_mib,
    fmt_ratio_stats,
    fmt_stats,
    progress,
    seconds,
)
from .sampling import measure_batch, pick
from .settings import Settings
from .timing import measure_interleaved, paired_ratio
from .train import make_step

__all__ = ["run", "run_train"]

#: the model every ratio of the training table is taken against
BASELINE = "gated-small"
#: the columns of :mod:`benchmarks.sampling`'s table that the sampling table shows
SAMPLING_KEYS = [
    "batch", "forward", "cached", "cached_over_forward", "naive_s", "naive_source", "speedup",
    "cache_bytes",
]  # fmt: skip


def _models(settings: Settings, device: torch.device) -> dict[str, PixelCNN]:
    models = {}
    for name, cfg in settings.attention_models.items():
        torch.manual_seed(0)
        models[name] = PixelCNN(cfg.replace(image_size=settings.image_size), device=device)
    return models


def _trained(path: str, device: torch.device) -> tuple[str, PixelCNN]:
    """The model of a run's ``weights.pt`` (config and weights), named after the run's folder."""
    saved = load_checkpoint(path)
    if not isinstance(saved.get("config"), dict) or not isinstance(saved.get("model"), dict):
        raise ValueError(
            f"--trained {path}: no config and weights in it; pass a run's weights.pt "
            "(examples/mnist_pixelcnn.py writes one after its last epoch)"
        )
    model = PixelCNN(PixelCNNConfig.from_dict(saved["config"]), device=device)
    model.load_state_dict(saved["model"])
    return f"{Path(path).parent.name} (trained)", model


def run(settings: Settings, device: torch.device) -> Section:
    h, w = settings.image_size
    section = Section(
        name="attention",
        title="PixelSNAIL vs gated: sampling and the KV cache",
        description=(
            f"{h}x{w} images, fp32, time per batch. *cached / forward* is the cached sampler's "
            "time (defaults) over one forward pass (issue 23's targets for snail-small on the "
            "CPU: <= 8 at batch 1, <= 1.5 at batch 64); *naive / cached* the naive sampler's "
            f"(measured where it takes <= {settings.naive_budget_s:g} s, else extrapolated from "
            f"its first {settings.naive_steps} steps). Cache = `CachedSampler.last_cache_nbytes`."
        ),
        columns=[
            Column("model", "model"),
            Column("params", "params", fmt_int),
            *pick(SAMPLING_KEYS, device),
        ],
    )
    models = _models(settings, device)
    models.update(_trained(path, device) for path in settings.trained)
    for name, model in models.items():
        model.eval()
        params = sum(p.numel() for p in model.parameters())
        for n in settings.attention_batches:
            row = measure_batch(model, n, settings, device)
            section.rows.append({"model": name, "params": params, **row})
            progress(
                f"attention {name} batch {n}: cached {seconds(row['cached_s'])}, forward "
                f"{seconds(row['forward_s'])}, cache {fmt_mib(row['cache_bytes'])}"
            )
    return section


def run_train(settings: Settings, device: torch.device) -> Section:
    h, w = settings.image_size
    n = settings.train_batch
    section = Section(
        name="attention-train",
        title="PixelSNAIL vs gated: a training step",
        description=(
            f"One Adam step on {n} binary {h}x{w} images, fp32, the models timed in alternating "
            f"rounds; *vs {BASELINE}* is the median of the per-round ratios."
        ),
        columns=[
            Column("model", "model"),
            Column("params", "params", fmt_int),
            Column("step", "step", fmt_stats),
            Column(f"vs {BASELINE}", "ratio", fmt_ratio_stats),
        ],
    )
    models = _models(settings, device)
    x = (torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    x = x.to(device)
    steps: dict[str, Callable[[], None]] = {
        name: make_step(model, lambda b, m=model: -m.log_prob(b).mean(), x, "fp32")
        for name, model in models.items()
    }
    timed = measure_interleaved(steps, device, warmup=settings.warmup, repeats=settings.repeats)
    for name, model in models.items():
        section.rows.append(
            {
                "model": name,
                "params": sum(p.numel() for p in model.parameters()),
                "batch": n,
                "step": timed[name],
                "ratio": paired_ratio(timed[name], timed[BASELINE]),
            }
        )
        progress(f"attention-train {name}: {seconds(float(timed[name]['median']))} per step")
    return section
