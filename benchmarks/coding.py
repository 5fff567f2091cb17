"""Lossless compression: encode and decode images/s against cached sampling.

For each model of the settings (Bernoulli, fp32) and each batch of ``coding_batches`` (1 and
64 by default), on images the model sampled:

- *cached*: :meth:`autoregressive.CachedSampler.sample`, the sampler's defaults (at small batches
  on the CPU, whole-row passes);
- *cached, steps*: the same, one network step per sub-pixel (``rows_at_once=False``), the path
  the coder drives;
- *encode*: :func:`autoregressive.compress` of the batch (``batch_size`` = the batch);
- *decode*: :func:`autoregressive.decompress` of that stream (checked exact once).

*decode / cached* is the issue's target (at most 1.5x at batch 64); *decode / steps* is what
the coder adds to the step-by-step loop it drives (tables, the range coder's calls).
"""

from __future__ import annotations

import torch

from autoregressive import CachedSampler, PixelCNN, compress, decompress, draw_noise

from .report import Column, Section, fmt_stats, fmt_x, progress, seconds
from .sampling import models_and_batches
from .settings import Settings
from .timing import measure_interleaved

__all__ = ["run"]


def _per_second(value: float) -> str:
    return f"{value:,.1f}"


def run(settings: Settings, device: torch.device) -> Section:
    h, w = settings.image_size
    section = Section(
        name="coding",
        title="Compression: encode and decode vs cached sampling",
        description=(
            f"{h}x{w} Bernoulli images the model sampled, fp32, time per batch. *decode / "
            "cached* is decompress's time over the cached sampler's (defaults); *decode / "
            "steps* over the sampler's step-by-step path, which the coder drives."
        ),
        columns=[
            Column("model", "model"),
            Column("batch", "batch"),
            Column("cached", "cached", fmt_stats),
            Column("cached, steps", "cached_steps", fmt_stats),
            Column("encode", "encode", fmt_stats),
            Column("decode", "decode", fmt_stats),
            Column("encode images/s", "encode_images_per_s", _per_second),
            Column("decode images/s", "decode_images_per_s", _per_second),
            Column("bits / image", "bits_per_image", lambda v: f"{v:.1f}"),
            Column("decode / cached", "decode_over_cached", fmt_x),
            Column("decode / steps", "decode_over_steps", fmt_x),
        ],
    )
    for name, model, n in models_and_batches(settings.models, settings.coding_batches, device):
        row = _measure_batch(model, n, settings, device)
        section.rows.append({"model": name, **row})
        done = f"decode {seconds(row['decode_s'])}, cached {seconds(row['cached_s'])}"
        progress(f"coding {name} batch {n}: {done}")
    return section


def _measure_batch(model: PixelCNN, n: int, settings: Settings, device: torch.device) -> dict:
    """One table row: sampling, encoding and decoding a batch of ``n`` images."""
    h, w = settings.image_size
    noise = draw_noise((n, 1, h, w), torch.Generator().manual_seed(n)).to(device)
    net, dist = model.network, model.distribution
    images = CachedSampler().sample(net, dist, noise)
    data = compress(model, images, batch_size=n)
    if not torch.equal(decompress(model, data), images):
        raise AssertionError("the benchmark's stream did not decode to its images")
    sampler, stepper = CachedSampler(), CachedSampler(rows_at_once=False)
    timed = measure_interleaved(
        {
            "cached": lambda: sampler.sample(net, dist, noise),
            "steps": lambda: stepper.sample(net, dist, noise),
            "encode": lambda: compress(model, images, batch_size=n),
            "decode": lambda: decompress(model, data),
        },
        device,
        warmup=settings.warmup,
        repeats=settings.repeats,
    )
    median = {k: float(v["median"]) for k, v in timed.items()}
    return {
        "batch": n,
        "cached": timed["cached"],
        "cached_steps": timed["steps"],
        "encode": timed["encode"],
        "decode": timed["decode"],
        "cached_s": median["cached"],
        "decode_s": median["decode"],
        "encode_images_per_s": n / median["encode"],
        "decode_images_per_s": n / median["decode"],
        "bits_per_image": 8 * len(data) / n,
        "decode_over_cached": median["decode"] / median["cached"],
        "decode_over_steps": median["decode"] / median["steps"],
    }
