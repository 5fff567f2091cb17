"""Scoring many images: peak memory and time of ``log_prob`` in one call and in chunks.

For ``memory_images`` MNIST-sized Bernoulli images (10,000 by default) and the
``memory_model`` (the gated-small preset by default), under ``torch.no_grad()``:

- *one call*: ``model.log_prob(x)``;
- *chunks of K*: ``model.log_prob(x, chunk_size=K)`` for each ``K`` of ``memory_chunks``
  (checked equal to one call's result, to fp32 rounding).

Each variant runs in a fresh Python process, so that one's peak cannot hide another's. On the
CPU the peak is the process's maximum resident set size, ``resource.getrusage(RUSAGE_SELF)
.ru_maxrss`` (tracemalloc does not see torch's allocations), given whole and above the peak the
process had reached before the first call (interpreter, torch, model and images); on CUDA it is
``torch.cuda.max_memory_allocated`` above the memory allocated before the first call.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from typing import Any

import torch

from autoregressive import PixelCNN, PixelCNNConfig

from .report import Column, Section, fmt_stats, fmt_x, progress, seconds
from .settings import Settings
from .timing import measure

__all__ = ["run"]

#: what the child process runs: ``measure_variant`` of this module on the JSON in argv[1]
_CHILD = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[2]); "
    "from benchmarks.memory import measure_variant; "
    "print(json.dumps(measure_variant(json.loads(sys.argv[1]))))"
)


def _mb(value: float) -> str:
    return f"{value:,.0f}"


def run(settings: Settings, device: torch.device) -> Section:
    n, (h, w) = settings.memory_images, settings.image_size
    section = Section(
        name="memory",
        title="Scoring many images: log_prob in one call and in chunks",
        description=(
            f"{n:,} {h}x{w} Bernoulli images, fp32, torch.no_grad(), one process per variant. "
            "*peak* is the process's maximum RSS (getrusage ru_maxrss) on the CPU, "
            "torch.cuda.max_memory_allocated on CUDA; *above start* subtracts the peak before "
            "the first call (interpreter, torch, model, images). *time / one call*: the "
            "median time over one call's."
        ),
        columns=[
            Column("variant", "variant"),
            Column("images", "images"),
            Column("chunk", "chunk"),
            Column("time", "time", fmt_stats),
            Column("peak MB", "peak_mb", _mb),
            Column("above start MB", "above_start_mb", _mb),
            Column("time / one call", "time_over_one_call", fmt_x),
        ],
        extra={"model": asdict(settings.memory_model)},
    )
    for chunk in (None, *settings.memory_chunks):
        row = _run_child(settings, device, chunk)
        section.rows.append(row)
        progress(f"memory {row['variant']}: {seconds(row['median_s'])}, {row['peak_mb']:.0f} MB")
    one = section.rows[0]["median_s"]
    for row in section.rows:
        row["time_over_one_call"] = row["median_s"] / one
    return section


def _run_child(settings: Settings, device: torch.device, chunk: int | None) -> dict[str, Any]:
    """One variant in a fresh process: its table row."""
    job = {
        "config": asdict(settings.memory_model),
        "images": settings.memory_images,
        "size": list(settings.image_size),
        "chunk": chunk,
        "device": str(device),
        "warmup": settings.memory_warmup,
        "repeats": settings.memory_repeats,
        "threads": torch.get_num_threads(),
    }
    args = [sys.executable, "-c", _CHILD, json.dumps(job), json.dumps(sys.path)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the memory benchmark's child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_variant(job: dict[str, Any]) -> dict[str, Any]:
    """In the child: build the model and the images, time the calls, read the peak."""
    import resource  # Unix only, as the benchmark's CPU peak is

    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    torch.manual_seed(0)
    config = PixelCNNConfig(**{**job["config"], "image_size": tuple(job["size"])})
    model = PixelCNN(config, device=device).eval()
    x = torch.randint(0, 2, (job["images"], 1, *job["size"]), device=device).float()
    chunk = job["chunk"]
    with torch.no_grad():
        check = model.log_prob(x[:64])  # the chunked result is one call's
        chunked = model.log_prob(x[:64], chunk_size=chunk or 64)
        if not torch.allclose(chunked, check, rtol=1e-5, atol=0):  # fp32: to rounding
            raise AssertionError("chunked log_prob differs from one call")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            start = torch.cuda.memory_allocated(device)
        else:
            start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        timed = measure(
            lambda: model.log_prob(x, chunk_size=chunk),
            device,
            warmup=job["warmup"],
            repeats=job["repeats"],
        )
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {
        "variant": "one call" if chunk is None else f"chunks of {chunk}",
        "images": job["images"],
        "chunk": chunk,
        "time": timed,
        "median_s": float(timed["median"]),
        "peak_mb": peak / 1e6,
        "above_start_mb": (peak - start) / 1e6,
    }
