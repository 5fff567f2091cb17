"""Training precision: which floating-point format the forward and backward passes compute in.

A PixelCNN trains in ``float32`` or under ``bfloat16`` autocast (weights, optimizer state and
likelihoods stay ``float32``). bf16 pays only where the hardware computes it natively: CUDA
devices of compute capability 8.0 and later, and CPUs with AMX or AVX512-BF16 units (Intel
Sapphire Rapids and later, AMD Zen 4 and later). Elsewhere oneDNN emulates it and a training
step becomes several times *slower* than in float32 (measured: see the benchmarks page).

:func:`resolve_precision` turns the user's choice (``"auto"``, ``"fp32"`` or ``"bf16"``) into a
:class:`Precision`; the decision itself is the pure function :func:`choose_precision` of the
device's :class:`Capabilities`, so it is tested with capabilities made up for the test.

Example:
    >>> p = choose_precision("auto", Capabilities("cpu", native_bf16=False, name="AVX2 CPU"))
    >>> p.name, p.autocast_dtype, p.channels_last
    ('fp32', None, False)
    >>> choose_precision("auto", Capabilities("cuda", native_bf16=True, name="H200")).name
    'bf16'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

__all__ = [
    "PRECISIONS",
    "Capabilities",
    "Precision",
    "choose_precision",
    "full_float32",
    "resolve_precision",
]

#: The choices :func:`resolve_precision` accepts.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")

_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Capabilities:
    """What a device computes natively, as far as the precision choice is concerned.

    Attributes:
        device_type: ``"cpu"`` or ``"cuda"`` (any other type is treated like a CPU without
            bf16 units).
        native_bf16: bf16 matrix products run in hardware (AMX / AVX512-BF16 on a CPU, compute
            capability >= 8.0 on CUDA).
        name: a readable description for logs, e.g. ``"CPU with AVX2 (no bf16 units)"``.
    """

    device_type: str
    native_bf16: bool
    name: str

    @classmethod
    def detect(cls, device: torch.device | str) -> Capabilities:
        """Capabilities of ``device`` on this machine."""
        device = torch.device(device)
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            major, minor = torch.cuda.get_device_capability(index)
            return cls(
                "cuda",
                native_bf16=major >= 8,
                name=f"{torch.cuda.get_device_name(index)} (compute capability {major}.{minor})",
            )
        if device.type != "cpu":
            return cls(device.type, native_bf16=False, name=device.type)
        native, units = _cpu_bf16_units()
        isa = torch.backends.cpu.get_cpu_capability()
        return cls("cpu", native_bf16=native, name=f"CPU with {units or isa + ' (no bf16 units)'}")


def _cpu_bf16_units() -> tuple[bool, str]:
    """Whether this CPU has bf16 units, and which (torch's own probe, else ``/proc/cpuinfo``)."""
    probes = {"AMX": "_is_amx_tile_supported", "AVX512-BF16": "_is_avx512_bf16_supported"}
    found = [unit for unit, fn in probes.items() if getattr(torch.cpu, fn, lambda: False)()]
    if not found and not all(hasattr(torch.cpu, fn) for fn in probes.values()):
        found = [f for f in _CPU_BF16_FLAGS if f in _cpuinfo_flags()]
    return bool(found), " + ".join(found)


def _cpuinfo_flags() -> set[str]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return set()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


@dataclass(frozen=True)
class Precision:
    """How to run training steps: float format and memory layout.

    Attributes:
        name: ``"fp32"`` or ``"bf16"``.
        autocast_dtype: ``torch.bfloat16`` for bf16 autocast, ``None`` for plain float32.
        channels_last: convert the model and its inputs to ``torch.channels_last``.
        reason: why this was chosen, for the run's log.
    """

    name: Literal["fp32", "bf16"]
    autocast_dtype: torch.dtype | None
    channels_last: bool
    reason: str

    def autocast(self, device: torch.device | str) -> contextlib.AbstractContextManager:
        """The autocast context of this precision on ``device`` (a no-op for fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=self.autocast_dtype)

    @property
    def memory_format(self) -> torch.memory_format:
        """``torch.channels_last`` or ``torch.contiguous_format``."""
        return torch.channels_last if self.channels_last else torch.contiguous_format


def choose_precision(choice: str, caps: Capabilities) -> Precision:
    """The precision for ``choice`` on a device with capabilities ``caps`` (pure function).

    ``"auto"`` is bf16 autocast where ``caps.native_bf16``, float32 elsewhere. channels_last
    goes with bf16 (oneDNN's and cuDNN's bf16 convolutions run in NHWC; measured faster on
    CPUs with AMX); float32 keeps the default layout (no gain measured on an AVX2 CPU).

    Args:
        choice: one of :data:`PRECISIONS`.
        caps: the device's capabilities.

    Returns:
        The precision to train with.

    Raises:
        ValueError: ``choice`` is not one of :data:`PRECISIONS`.
    """
    if choice not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {choice!r}")
    if choice == "auto":
        bf16 = caps.native_bf16
        how = "computes" if bf16 else "does not compute"
        reason = f"auto: the {caps.name} {how} bf16 natively"
    else:
        bf16 = choice == "bf16"
        reason = f"asked for {choice}" + (
            "; warning: this device emulates bf16 (slower than fp32)"
            if bf16 and not caps.native_bf16
            else ""
        )
    if bf16:
        return Precision("bf16", torch.bfloat16, channels_last=True, reason=reason)
    return Precision("fp32", None, channels_last=False, reason=reason)


def resolve_precision(choice: str, device: torch.device | str) -> Precision:
    """:func:`choose_precision` for ``device`` on this machine (see :meth:`Capabilities.detect`).

    Example:
        >>> resolve_precision("fp32", "cpu").autocast_dtype is None
        True
    """
    return choose_precision(choice, Capabilities.detect(device))


@contextlib.contextmanager
def full_float32(device: torch.device | str) -> Iterator[None]:
    """Within the block, float32 as written: no autocast and no TF32 in cuDNN's convolutions.

    cuDNN computes float32 convolutions in TF32 by default on Ampere and later GPUs, which
    rounds their inputs to 10 bits; the flag is process-wide, so it is restored on exit.

    Args:
        device: the device whose autocast is turned off.
    """
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(torch.device(device).type, enabled=False):
            yield
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
