"""Command-line checks shared by the example scripts: every flag is checked before training.

Two kinds of check, both with a message that names the flag and says what to pass instead:

- argparse ``type=`` callables (:func:`int_at_least`, :func:`finite_float` and the names built
  from them) check one value as it is parsed; argparse reports a bad one as
  ``error: argument --lr: must be a finite number > 0; got 'nan'`` and exits with code 2;
- ``check_*`` functions raise ``ValueError`` for what needs several flags, the file system or
  the data; a script reports them with ``parser.error`` (before the data loads) or as
  ``error: ...`` with exit code 2 (after), always before the first training step.
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum``.

    Args:
        minimum: the smallest value accepted.

    Returns:
        The callable argparse calls with the flag's text.
    """

    def parse(text: str) -> int:
        try:
            value: int | None = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {text!r}")
        return value

    return parse


def finite_float(
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
) -> Callable[[str], float]:
    """An argparse type: a finite number within the given bounds.

    Args:
        above: the value must be greater than this.
        at_least: the value must be at least this.
        below: the value must be less than this.

    Returns:
        The callable argparse calls with the flag's text.
    """
    bounds = [
        f"{op} {bound:g}"
        for op, bound in ((">", above), (">=", at_least), ("<", below))
        if bound is not None
    ]
    wanted = f"a finite number {' and '.join(bounds)}".rstrip()

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (
            math.isfinite(value)
            and (above is None or value > above)
            and (at_least is None or value >= at_least)
            and (below is None or value < below)
        ):
            raise argparse.ArgumentTypeError(f"must be {wanted}; got {text!r}")
        return value

    return parse


#: Counts, sizes and steps.
positive_int = int_at_least(1)
#: Counts where 0 means "none" (e.g. no head layer).
non_negative_int = int_at_least(0)
#: Learning rates, temperatures.
positive_float = finite_float(above=0)
#: Loss weights and thresholds where 0 switches something off.
non_negative_float = finite_float(at_least=0)


def torch_seed(text: str) -> int:
    """An argparse type: a seed torch accepts, an integer in ``[0, 2**64)``."""
    value = non_negative_int(text)
    if value >= 2**64:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**64); got {text!r}")
    return value


def check_device(choice: str) -> None:
    """Refuse ``--device cuda`` where torch sees no CUDA device."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device here; pass --device cpu or auto")


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that is a file or lies below one (looks only; creates nothing)."""
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                where = "is a file" if path == out else f"lies below the file {path}"
                raise ValueError(f"--out {out} {where}; pass a folder (new or existing)")
            return


def make_out(out: Path) -> None:
    """Create ``--out`` and check that a file can be written into it.

    Raises:
        ValueError: the folder cannot be created or written to.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ValueError(
            f"--out {out}: cannot create or write to it ({err.strerror or err}); pass a folder "
            "you can write to"
        ) from None


def check_each_in(flag: str, values: Iterable[int], low: int, high: int, why: str) -> None:
    """Refuse a list flag with a value outside ``low..high`` (``why`` names the bound)."""
    bad = [v for v in values if not low <= v <= high]
    if bad:
        raise ValueError(
            f"{flag} {' '.join(map(str, bad))}: each value must lie in {low}..{high} ({why})"
        )


def check_count(flag: str, value: int | None, available: int, what: str) -> None:
    """Refuse a flag that asks for more images than ``what`` (a data set) has."""
    if value is not None and value > available:
        raise ValueError(
            f"{flag} {value}: {what} has only {available:,} images; pass at most {available:,}"
        )


def check_steps(doing: str, steps: int, what: str, flags: str) -> None:
    """Refuse a run whose epoch would train (or score) no batch at all."""
    if steps < 1:
        raise ValueError(
            f"the run would {doing} nothing: {what} ({flags}) is empty; pass flags that leave "
            "at least one image"
        )


def check_config(build: Callable[[], object], flags: Mapping[str, str]) -> None:
    """Build the model's config now, so that model flags the library refuses stop the run early.

    Args:
        build: builds the config from the parsed flags.
        flags: config field -> the flag that sets it, to name the flags in the message.

    Raises:
        ValueError: the library's message, after the flags whose fields it names.
    """
    try:
        build()
    except ValueError as err:
        named = [flag for name, flag in flags.items() if re.search(rf"\b{name}\b", str(err))]
        raise ValueError(f"{', '.join(named) or 'model flags'}: {err}") from None
