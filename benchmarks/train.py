"""Training step: the library's PixelCNN against a hand-written twin of identical architecture.

One step is ``zero_grad``, forward, the Bernoulli loss (mean negative log-likelihood in nats),
``backward`` and an ``Adam`` step. The library model's loss is ``-model.log_prob(x).mean()``,
which also validates the batch (finite and binary) as every user call does; the twin's is
:meth:`~benchmarks.twins.HandPixelCNN.loss`. Both start from the same weights, are checked to
compute the same logits, and are then timed in alternating rounds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from autoregressive import PixelCNN, PixelCNNConfig

from .report import Column, Section, fmt_mib, fmt_rate, fmt_ratio_stats, fmt_stats, progress
from .settings import Settings
from .timing import measure_interleaved, paired_ratio, sync
from .twins import check_twin, make_twin

__all__ = ["TARGET_RATIO", "make_step", "run", "variants"]

#: the library's step may take at most this multiple of the hand-written one's (CPU, fp32)
TARGET_RATIO = 1.05


def variants(device: torch.device) -> list[str]:
    """The training set-ups measured on ``device``: fp32 eager everywhere, more on CUDA."""
    if device.type == "cuda":
        return ["fp32", "bf16-autocast", "channels-last", "compile"]
    return ["fp32"]


def make_step(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    variant: str,
) -> Callable[[], None]:
    """A zero-argument training step (Adam, lr 1e-3) of ``model`` on the batch ``x``."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if variant == "compile":
        loss_fn = torch.compile(loss_fn)
    if variant == "bf16-autocast":
        autocast: Callable[[], contextlib.AbstractContextManager] = lambda: torch.autocast(  # noqa: E731
            x.device.type, dtype=torch.bfloat16
        )
    else:
        autocast = contextlib.nullcontext

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(x)
        loss.backward()
        opt.step()

    return step


def peak_memory(step: Callable[[], None], device: torch.device) -> int | str:
    """Peak CUDA memory allocated during one call of ``step`` (weights, Adam state, activations).

    ``"n/a"`` on the CPU: PyTorch keeps no allocator statistics there, and the process's
    resident-set size mostly measures the allocator's caching, not the step.
    """
    if device.type != "cuda":
        return "n/a"
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    sync(device)
    return torch.cuda.max_memory_allocated(device)


def run(settings: Settings, device: torch.device) -> Section:
    n = settings.train_batch
    h, w = settings.image_size
    section = Section(
        name="train",
        title="Training step: library vs hand-written twin",
        description=(
            f"Batch {n}, {h}x{w}, forward + loss + backward + Adam step. *twin* = a minimal "
            "hand-written PixelCNN of identical architecture and weights (plain `nn.Conv2d` "
            "times a mask, same blocks, same BCE loss; see `benchmarks/twins.py`), timed "
            "alternately with the library model. *lib / twin* = median over rounds of the "
            f"per-round ratio; the target is <= {TARGET_RATIO} on the CPU in fp32. Peak memory "
            "is CUDA's `max_memory_allocated` over one step (n/a on the CPU)."
        ),
        columns=[
            Column("model", "model"),
            Column("variant", "variant"),
            Column("library step", "lib", fmt_stats),
            Column("twin step", "twin", fmt_stats),
            Column("library img/s", "lib_images_per_s", fmt_rate),
            Column("twin img/s", "twin_images_per_s", fmt_rate),
            Column("lib / twin", "ratio", fmt_ratio_stats),
            Column("target", "verdict"),
            Column("peak mem lib", "lib_peak_bytes", fmt_mib),
            Column("peak mem twin", "twin_peak_bytes", fmt_mib),
        ],
    )
    for model_name, cfg in settings.models.items():
        for variant in variants(device):
            row: dict = {"model": model_name, "variant": variant, "batch": n}
            try:
                row.update(_measure_variant(cfg, variant, settings, device))
            except Exception as exc:  # a twin mismatch, compile unsupported here...: go on
                row["error"] = f"{type(exc).__name__}: {exc}"[:500]
                row["verdict"] = "error: " + row["error"][:60]
                progress(f"train {model_name} {variant}: {row['error']}")
                section.notes.append(f"`{model_name}` {variant} failed: {row['error']}")
            else:
                progress(f"train {model_name} {variant}: lib/twin {row['ratio']['median']:.3f}")
            section.rows.append(row)
    return section


def _measure_variant(
    cfg: PixelCNNConfig, variant: str, settings: Settings, device: torch.device
) -> dict:
    """Library vs twin training step for one model and set-up; raises if the twin differs."""
    n = settings.train_batch
    h, w = settings.image_size
    torch.manual_seed(0)
    lib = PixelCNN(cfg, device=device)
    twin = make_twin(lib)
    x = torch.randint(0, 2, (n, cfg.data_channels, h, w), device=device).float()
    twin_check = check_twin(lib, twin, x)  # before any timing: both compute the same function
    if variant == "channels-last":
        lib = lib.to(memory_format=torch.channels_last)
        twin = twin.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    lib_step = make_step(lib, lambda v: -lib.log_prob(v).mean(), x, variant)
    twin_step = make_step(twin, twin.loss, x, variant)
    r = measure_interleaved(
        {"lib": lib_step, "twin": twin_step},
        device,
        warmup=settings.warmup + (2 if variant == "compile" else 0),  # + recompilations
        repeats=settings.repeats,
    )
    ratio = paired_ratio(r["lib"], r["twin"])
    row = {
        "twin_check": twin_check,
        "lib": r["lib"],
        "twin": r["twin"],
        "lib_images_per_s": n / float(r["lib"]["median"]),
        "twin_images_per_s": n / float(r["twin"]["median"]),
        "ratio": ratio,
        "lib_peak_bytes": peak_memory(lib_step, device),
        "twin_peak_bytes": peak_memory(twin_step, device),
    }
    if device.type == "cpu" and variant == "fp32":
        ok = float(ratio["median"]) <= TARGET_RATIO
        row["verdict"] = f"{'met' if ok else 'MISSED'} (<= {TARGET_RATIO})"
    return row
