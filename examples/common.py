"""The command line the example scripts share: flags, profiles and start-up checks.

Every flag is checked before training, with a message that names the flag and says what to pass
instead:

- argparse ``type=`` callables (:func:`int_at_least`, :func:`finite_float` and the names built
  from them) check one value as it is parsed; argparse reports a bad one as
  ``error: argument --lr: must be a finite number > 0; got 'nan'`` and exits with code 2;
- ``check_*`` functions raise ``ValueError`` for what needs several flags, the file system or
  the data; a script reports them with ``parser.error`` (before the data loads) or as
  ``error: ...`` with exit code 2 (after), always before the first training step.

The flag groups the scripts share (:func:`add_run_flags`, :func:`add_model_flags`,
:func:`add_training_flags`, :func:`add_data_flags`, :func:`add_sample_flags`) and the run
profiles (``--demo`` or the full run: :func:`profile_help`, :func:`parse_profiled`) live here
too. The training loop's pieces are in ``loop.py``, what a run writes besides its checkpoint
(pictures, ``metrics.json``) in ``outputs.py``.
"""

from __future__ import annotations

import argparse
import math
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from autoregressive.training import PRECISIONS


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


# ----------------------------------------------------------------------- flags and profiles
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` only for flags with a fixed default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def profile_help(full: Mapping[str, Any], demo: Mapping[str, Any]) -> Callable[[str], str]:
    """``help(key)``: text naming a flag's full-run and ``--demo`` defaults."""

    def text(key: str) -> str:
        default = full.get(key, "the preset's")
        return f"default: {'all' if default is None else default}; with --demo: {demo.get(key)}"

    return text


def fill_profile(args: argparse.Namespace, profile: Mapping[str, Any]) -> None:
    """Set the flags left unset (``None``) to the profile's values.

    A ``--preset`` given on the command line brings its own model: the profile's model flags
    (:data:`MODEL_FLAGS`), which adjust the profile's own preset, are then not applied.
    """
    own_preset = getattr(args, "preset", None) is not None
    for key, value in profile.items():
        if own_preset and key in MODEL_FLAGS:
            continue
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def parse_profiled(
    p: argparse.ArgumentParser,
    argv: list[str] | None,
    full: Mapping[str, Any],
    demo: Mapping[str, Any],
    finish: Callable[[argparse.Namespace], None],
) -> argparse.Namespace:
    """Parse ``argv``, fill unset flags from the ``--demo`` or full profile, check them.

    Every flag is checked here (exit code 2 naming the flag) except what needs the data and the
    output folder. ``finish(args)`` fills the script's other defaults and raises ``ValueError``
    for what it refuses (reported by ``p.error``).
    """
    args = p.parse_args(argv)
    sample_epochs = getattr(args, "sample_epochs", None)  # before a profile fills it
    fill_profile(args, demo if args.demo else full)
    args.out = Path(args.out)
    try:
        check_device(args.device)
        check_out(args.out)
        if sample_epochs is not None:  # a profile's own never lie past a shorter --epochs
            epochs = args.epochs
            check_each_in("--sample-epochs", sample_epochs, 1, epochs, f"--epochs is {epochs}")
        finish(args)
    except ValueError as err:
        p.error(str(err))
    return args


#: The flag of each model config field that :func:`add_model_flags` adds.
MODEL_FLAGS = {
    "block": "--block",
    "num_blocks": "--num-blocks",
    "hidden_channels": "--hidden-channels",
    "head_channels": "--head-channels",
}


def add_run_flags(
    p: argparse.ArgumentParser,
    demo: str,
    out: str,
    *,
    checkpoint_minutes: str = "",
    precision: str = "training precision",
) -> argparse._ArgumentGroup:
    """The "run" group: where the run writes, how it resumes, its seed, device and precision.

    Args:
        p: the parser.
        demo: the help of ``--demo``.
        out: the text naming the defaults of ``--out``.
        checkpoint_minutes: the text naming the defaults of ``--checkpoint-minutes``; the flag
            is added only where it is given.
        precision: what ``--precision`` sets.
    """
    g = p.add_argument_group("run")
    g.add_argument("--demo", action="store_true", help=demo)
    g.add_argument("--out", type=Path, help=f"output folder ({out})")
    mid = ", mid-epoch where it was saved mid-epoch" if checkpoint_minutes else ""
    g.add_argument(
        "--resume",
        action="store_true",
        help=f"continue from <out>/checkpoint.pt{mid} (starts afresh when there is none)",
    )
    if checkpoint_minutes:
        g.add_argument(
            "--checkpoint-minutes",
            type=non_negative_float,
            help="also save the whole state mid-epoch after this many minutes of training, 0 "
            f"after every step ({checkpoint_minutes})",
        )
    seed_help = "seed of initialisation, data and samples"
    g.add_argument("--seed", type=torch_seed, default=0, help=seed_help)
    devices = ["auto", "cpu", "cuda"]
    g.add_argument("--device", choices=devices, default="auto", help="auto: CUDA when available")
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help=f"{precision}; auto: bf16 autocast (and channels_last) where the device "
        "computes bf16 natively (CUDA >= sm80, CPUs with AMX or AVX512-BF16), fp32 elsewhere; "
        "test NLLs are always computed in fp32",
    )
    threads_help = "torch CPU threads per process (default: torch's choice)"
    g.add_argument("--threads", type=positive_int, help=threads_help)
    return g


def add_model_flags(
    p: argparse.ArgumentParser, ref: Callable[[str], str]
) -> argparse._ArgumentGroup:
    """The "model" group: the block type, depth, width and head of the PixelCNN."""
    g = p.add_argument_group("model")
    g.add_argument("--block", choices=["residual", "gated"], help=f"block type ({ref('block')})")
    g.add_argument("--num-blocks", type=positive_int, help=f"depth ({ref('num_blocks')})")
    width = f"width ({ref('hidden_channels')})"
    g.add_argument("--hidden-channels", type=positive_int, help=width)
    head = f"width of an extra 1x1 head layer, 0 for none ({ref('head_channels')})"
    g.add_argument("--head-channels", type=non_negative_int, help=head)
    return g


def add_training_flags(p: argparse.ArgumentParser, ref: Callable[[str], str]) -> None:
    """The "training" group: Adam's learning rate, epochs, batch size, a step limit."""
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=positive_float, help=f"Adam learning rate ({ref('lr')})")
    g.add_argument("--epochs", type=positive_int, help=f"epochs ({ref('epochs')})")
    batch = f"images per step over all processes ({ref('batch_size')})"
    g.add_argument("--batch-size", type=positive_int, help=batch)
    limit = "at most this many steps per epoch (for tests)"
    g.add_argument("--limit-train-batches", type=positive_int, help=limit)


#: The checkout the examples belong to.
REPO = Path(__file__).resolve().parents[1]
#: MNIST as laid out for this project's developers and CI (read only; used when present).
SHARED_MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
#: Where MNIST goes otherwise: a git-ignored folder in the checkout.
LOCAL_MNIST_DIR = REPO / "data" / "mnist"


def default_mnist_dir(shared: Path = SHARED_MNIST_DIR, local: Path = LOCAL_MNIST_DIR) -> Path:
    """``shared`` when it holds MNIST's raw files, else ``local``: where ``--data-dir`` points."""
    return shared if (shared / "MNIST" / "raw").is_dir() else local


#: ``--data-dir`` of the MNIST examples.
MNIST_DIR_HELP = (
    "folder holding MNIST/raw/ (torchvision layout); default: ../shared/data/mnist beside the "
    "checkout if it holds the files, else data/mnist in the checkout"
)


def add_data_flags(
    p: argparse.ArgumentParser, ref: Callable[[str], str], data_dir: str, download: str
) -> argparse._ArgumentGroup:
    """The "data" group: where the data is, whether to download it, how much to use."""
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", type=Path, help=data_dir)
    g.add_argument("--no-download", action="store_true", help=download)
    first = f"use the first N training images ({ref('train_images')})"
    g.add_argument("--train-images", type=positive_int, help=first)
    return g


def add_sample_flags(
    p: argparse.ArgumentParser, ref: Callable[[str], str], num_samples: int
) -> argparse._ArgumentGroup:
    """The "samples" group: which epochs write pictures, and how many samples."""
    g = p.add_argument_group("samples")
    epochs = "epochs that write sample and completion grids; the last always does"
    g.add_argument(
        "--sample-epochs", type=positive_int, nargs="*", help=f"{epochs} ({ref('sample_epochs')})"
    )
    g.add_argument(
        "--num-samples", type=positive_int, default=num_samples, help="images in the sample grid"
    )
    return g


def pick_device(choice: str) -> torch.device:
    """``--device``: ``auto`` is CUDA when torch sees a device."""
    cuda = choice == "cuda" or (choice == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if cuda else "cpu")
