"""Training precision: how fast each set-up trains, and whether bf16 reaches fp32's likelihood.

Two measurements of the reference preset's training step (forward, Bernoulli NLL, backward,
Adam), each set-up against plain fp32 eager in the same interleaved rounds:

- ``precision``: step time of fp32 / channels_last / fused Adam / ``torch.compile`` / bf16
  autocast combinations; *speed-up* = fp32 eager time / variant time per round.
- ``precision-nll``: the same number of training steps from the same seed in fp32 and in the
  device's bf16, then the test NLL of both computed in fp32 (they should agree within 0.5 nats).

On a device that emulates bf16 (no AMX / AVX512-BF16 on a CPU) the bf16 steps are several times
slower than fp32: they are measured with fewer repeats, and the table says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from autoregressive import PixelCNN
from autoregressive.data import BinarizedBatches, load_mnist, threshold_binarize
from autoregressive.training import (
    Capabilities,
    NegLogLikelihood,
    choose_precision,
    evaluate,
    train_epoch,
)

from .report import Column, Section, fmt_rate, fmt_ratio_stats, fmt_stats, progress
from .settings import Settings
from .timing import measure_interleaved, paired_ratio

__all__ = ["VARIANTS", "Variant", "run", "run_nll"]

_REPO = Path(__file__).resolve().parents[1]
#: where MNIST is looked for, as the example does: the checkout's data folder, then ../shared
MNIST_DIRS = (_REPO / "data" / "mnist", _REPO.parent / "shared" / "data" / "mnist")


@dataclass(frozen=True)
class Variant:
    """One training set-up."""

    name: str
    bf16: bool = False
    channels_last: bool = False
    fused_adam: bool = False
    compile: bool = False


VARIANTS: tuple[Variant, ...] = (
    Variant("fp32 + channels_last", channels_last=True),
    Variant("fp32 + fused Adam", fused_adam=True),
    Variant("fp32 + compile", compile=True),
    Variant(
        "fp32 + channels_last + compile + fused Adam",
        channels_last=True,
        fused_adam=True,
        compile=True,
    ),
    Variant("bf16 autocast", bf16=True),
    Variant("bf16 + channels_last", bf16=True, channels_last=True),
    Variant(
        "bf16 + channels_last + compile + fused Adam",
        bf16=True,
        channels_last=True,
        fused_adam=True,
        compile=True,
    ),
)


def make_step(model: PixelCNN, x: torch.Tensor, v: Variant) -> Callable[[], None]:
    """A zero-argument training step of ``model`` on the batch ``x`` in set-up ``v``."""
    fmt = torch.channels_last if v.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = x.contiguous(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True if v.fused_adam else None)
    loss_fn: Callable[[torch.Tensor], torch.Tensor] = lambda b: -model.log_prob(b).mean()  # noqa: E731
    if v.compile:
        loss_fn = torch.compile(loss_fn)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, torch.bfloat16) if v.bf16 else contextlib.nullcontext():
            loss = loss_fn(x)
        loss.backward()
        opt.step()

    return step


def run(settings: Settings, device: torch.device) -> Section:
    caps = Capabilities.detect(device)
    n = settings.train_batch
    section = Section(
        name="precision",
        title="Training step by precision and set-up, against fp32 eager",
        description=(
            f"`reference` preset, batch {n}, {settings.image_size[0]}x{settings.image_size[1]}, "
            "forward + NLL + backward + Adam. Each variant is timed in alternating rounds with "
            "fp32 eager; *speed-up* = per-round fp32 time / variant time (median [min-max]). "
            f"Device: {caps.name}."
            + ("" if caps.native_bf16 else " bf16 is emulated here: its rows use fewer repeats.")
        ),
        columns=[
            Column("variant", "variant"),
            Column("step", "variant_time", fmt_stats),
            Column("fp32 eager step", "fp32_time", fmt_stats),
            Column("img/s", "images_per_s", fmt_rate),
            Column("speed-up", "speedup", fmt_ratio_stats),
        ],
    )
    for v in VARIANTS:
        if v.compile and not settings.compile_variants:
            continue
        try:
            emulated = v.bf16 and not caps.native_bf16
            section.rows.append(_measure(settings, device, v, emulated=emulated))
        except Exception as exc:  # compile unsupported here...: go on, say so
            error = f"{type(exc).__name__}: {exc}"[:300]
            section.rows.append({"variant": v.name, "error": error})
            section.notes.append(f"{v.name} failed: {error}")
        progress(f"precision {v.name}: done")
    return section


def _measure(settings: Settings, device: torch.device, v: Variant, emulated: bool) -> dict:
    cfg = settings.models["reference"]
    h, w = settings.image_size
    x = torch.randint(0, 2, (settings.train_batch, cfg.data_channels, h, w), device=device)
    steps = {}
    for name, variant in (("fp32", Variant("fp32")), ("variant", v)):
        torch.manual_seed(0)
        steps[name] = make_step(PixelCNN(cfg, device=device), x.float(), variant)
    warmup = settings.warmup + (2 if v.compile else 0)
    repeats = min(settings.repeats, 3) if emulated else settings.repeats
    r = measure_interleaved(steps, device, warmup=1 if emulated else warmup, repeats=repeats)
    return {
        "variant": v.name,
        "variant_time": r["variant"],
        "fp32_time": r["fp32"],
        "images_per_s": settings.train_batch / float(r["variant"]["median"]),
        "speedup": paired_ratio(r["fp32"], r["variant"]),
        "emulated_bf16": emulated,
    }


def _mnist_or_synthetic(
    n_train: int, n_test: int, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Threshold-binarized MNIST when one of ``MNIST_DIRS`` has it, else synthetic blobs."""
    found = [d for d in MNIST_DIRS if (d / "MNIST" / "raw").is_dir()]
    if found and size == (28, 28):  # (download=True only unpacks .gz files found there)
        train, _ = load_mnist(found[0], train=True, download=True)
        test, _ = load_mnist(found[0], train=False, download=True)
        return threshold_binarize(train[:n_train]), threshold_binarize(test[:n_test]), "MNIST"
    g = torch.Generator().manual_seed(0)
    base = torch.rand(n_train + n_test, 1, 4, 4, generator=g)
    x = (torch.nn.functional.interpolate(base, size=size, mode="bilinear") > 0.5).float()
    return x[:n_train], x[n_train:], "synthetic"


def run_nll(settings: Settings, device: torch.device) -> Section:
    """fp32 vs bf16 training for the same steps from the same seed; test NLL of both in fp32."""
    cfg = settings.models["reference"]
    n, steps = settings.train_batch, settings.precision_steps
    caps = Capabilities.detect(device)
    train, test, source = _mnist_or_synthetic(n * steps, settings.precision_eval_images,
                                              settings.image_size)  # fmt: skip
    section = Section(
        name="precision-nll",
        title="Test NLL after the same training steps: bf16 vs fp32",
        description=(
            f"`reference` preset, {steps} Adam steps (lr 1e-3) of batch {n} on {source} "
            f"(threshold 0.5), same seed; test NLL over {test.shape[0]} test images, computed "
            "in fp32 for both. Target: |bf16 - fp32| <= 0.5 nats."
        ),
        columns=[
            Column("precision", "precision"),
            Column("test NLL (nats)", "test_nll", lambda v: f"{v:.2f}"),
            Column("train s", "train_seconds", lambda v: f"{v:.0f}"),
            Column("diff vs fp32", "diff", lambda v: f"{v:+.2f}"),
        ],
    )
    if not caps.native_bf16:
        section.notes.append(
            f"skipped: the {caps.name} emulates bf16 ({steps} bf16 steps would take many times "
            "the fp32 time); run it where bf16 is native (make gpu-check)"
        )
        return section
    results = {}
    for name in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = PixelCNN(cfg, device=device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batches = BinarizedBatches(train, batch_size=n, binarize=None, shuffle=True, seed=0)
        precision = choose_precision(name, caps)
        stats = train_epoch(NegLogLikelihood(model), opt, batches, device=device,
                            precision=precision, max_steps=steps)  # fmt: skip
        test_stats = evaluate(model, BinarizedBatches(test, batch_size=250, binarize=None),
                              device=device)  # fmt: skip
        results[name] = test_stats.nll
        section.rows.append({"precision": name, "test_nll": test_stats.nll,
                             "train_seconds": stats.seconds,
                             "diff": test_stats.nll - results["fp32"]})  # fmt: skip
        progress(f"precision-nll {name}: {test_stats.nll:.2f} nats")
    ok = abs(results["bf16"] - results["fp32"]) <= 0.5
    section.notes.append(f"agreement within 0.5 nats: {'met' if ok else 'MISSED'}")
    return section
