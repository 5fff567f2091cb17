"""Timing primitives: warm-up, device synchronisation, repeats, medians and spreads.

Every measurement in the suite goes through :func:`measure` (one callable) or
:func:`measure_interleaved` (several callables compared with each other). Both synchronise the
device around each call, so on CUDA the time is that of the work and not of queuing it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["Stats", "measure", "measure_interleaved", "paired_ratio", "stats", "sync"]

#: summary of one timing list, as stored in the JSON results (seconds)
Stats = dict[str, float | int | list[float]]


def sync(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _quantile(sorted_times: list[float], q: float) -> float:
    """Linear-interpolation quantile of an already sorted list (numpy's default method)."""
    pos = q * (len(sorted_times) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_times) - 1)
    return sorted_times[lo] + (sorted_times[hi] - sorted_times[lo]) * (pos - lo)


def stats(times: list[float]) -> Stats:
    """Median, min, max, quartiles and the raw list of a non-empty list of times.

    Example:
        >>> s = stats([3.0, 1.0, 2.0])
        >>> s["median"], s["min"], s["max"], s["n"]
        (2.0, 1.0, 3.0, 3)
    """
    if not times:
        raise ValueError("stats() needs at least one time")
    ordered = sorted(times)
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "q1": _quantile(ordered, 0.25),
        "q3": _quantile(ordered, 0.75),
        "n": len(ordered),
        "times": list(times),  # in the order they were taken
    }


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def measure(fn: Callable[[], object], device: torch.device, *, warmup: int, repeats: int) -> Stats:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; summarise the times."""
    for _ in range(warmup):
        fn()
    sync(device)
    return stats([_timed(fn, device) for _ in range(max(1, repeats))])


def measure_interleaved(
    fns: dict[str, Callable[[], object]], device: torch.device, *, warmup: int, repeats: int
) -> dict[str, Stats]:
    """Time several callables in alternating rounds so that drifting machine load hits all alike.

    Each round calls every function once; the order reverses from one round to the next
    (A B, B A, A B, ...) so that neither always runs first. Returns each function's
    :func:`stats`; ``times[k]`` of every function come from the same round ``k``, so per-round
    ratios (see :func:`paired_ratio`) are meaningful.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for k in range(max(1, repeats)):
        for name in names if k % 2 == 0 else reversed(names):
            times[name].append(_timed(fns[name], device))
    return {name: stats(t) for name, t in times.items()}


def paired_ratio(a: Stats, b: Stats) -> Stats:
    """Per-round ratios ``a / b`` of two interleaved measurements, summarised like times."""
    ta, tb = a["times"], b["times"]
    assert isinstance(ta, list) and isinstance(tb, list) and len(ta) == len(tb)
    return stats([x / y for x, y in zip(ta, tb, strict=True)])
