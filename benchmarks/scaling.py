"""Scaling: cached sampling and training-step time as the image and the network grow.

For each model, the image side runs over ``scaling_sizes`` at the model's depth, and the depth
(``num_blocks``) over ``scaling_depths`` at the first image size. Each point times the cached
sampler and one forward pass at ``scaling_sample_batch``, and the library's fp32 training step
at ``scaling_train_batch``, and records the cached sampler's cache memory.
"""

from __future__ import annotations

import torch

from autoregressive import CachedSampler, PixelCNN, draw_noise

from .report import Column, Section, fmt_int, fmt_mib, fmt_stats, fmt_x, progress, seconds
from .settings import Settings
from .timing import measure
from .train import make_step

__all__ = ["run"]


def run(settings: Settings, device: torch.device) -> Section:
    sb, tb = settings.scaling_sample_batch, settings.scaling_train_batch
    section = Section(
        name="scaling",
        title="Scaling with image size and depth",
        description=(
            f"fp32. Cached sampling and one forward pass at batch {sb}; library training step "
            f"(forward, loss, backward, Adam) at batch {tb}. *per pixel* = cached time / (H*W)."
        ),
        columns=[
            Column("model", "model"),
            Column("varied", "axis"),
            Column("blocks", "num_blocks"),
            Column("size", "size_label"),
            Column("params", "params", fmt_int),
            Column("cached sample", "cached", fmt_stats),
            Column("per pixel", "cached_per_pixel_s", seconds),
            Column("cached / forward", "cached_over_forward", fmt_x),
            Column("train step", "train", fmt_stats),
            Column("cache", "cache_bytes", fmt_mib),
        ],
    )
    reps = {"warmup": settings.warmup, "repeats": settings.scaling_repeats}
    for model_name, base in settings.models.items():
        points = [("size", base, s) for s in settings.scaling_sizes]
        points += [
            ("depth", base.replace(num_blocks=d), settings.scaling_sizes[0])
            for d in settings.scaling_depths
        ]
        for axis, cfg, size in points:
            torch.manual_seed(0)
            model = PixelCNN(cfg, device=device)
            sampler = CachedSampler()
            noise = draw_noise(
                (sb, cfg.data_channels, size, size), torch.Generator().manual_seed(0)
            )
            noise = noise.to(device)
            x = (noise < 0.5).to(torch.float32)

            def forward(model: PixelCNN = model, x: torch.Tensor = x) -> None:
                with torch.no_grad():
                    model(x)

            model.eval()
            cached = measure(
                lambda s=sampler, m=model, z=noise: s.sample(m.network, m.distribution, z),
                device,
                **reps,
            )
            fwd = measure(forward, device, **reps)
            model.train()
            xt = torch.randint(0, 2, (tb, cfg.data_channels, size, size), device=device).float()
            step = make_step(model, lambda v, m=model: -m.log_prob(v).mean(), xt, "fp32")
            train = measure(step, device, **reps)
            section.rows.append(
                {
                    "model": model_name,
                    "axis": axis,
                    "num_blocks": cfg.num_blocks,
                    "size": size,
                    "size_label": f"{size}x{size}",
                    "params": sum(p.numel() for p in model.parameters()),
                    "cached": cached,
                    "cached_per_pixel_s": float(cached["median"]) / (size * size),
                    "forward": fwd,
                    "cached_over_forward": float(cached["median"]) / float(fwd["median"]),
                    "train": train,
                    "train_images_per_s": tb / float(train["median"]),
                    "cache_bytes": sampler.last_cache_nbytes,
                }
            )
            progress(
                f"scaling {model_name} {cfg.num_blocks} blocks {size}x{size}: cached "
                f"{seconds(float(cached['median']))}, train {seconds(float(train['median']))}"
            )
    return section
