"""Argument checks, each written once, for the config, the layers, the data and the samplers.

The same mistake raises the same error everywhere:

- a value of the wrong *kind* is a ``TypeError``: a ``float``, a ``bool`` or a ``str`` where an
  ``int`` is needed (``2.0`` for a count), a ``list`` where a tensor is needed;
- a value of the right kind but a wrong value is a ``ValueError``: ``0`` channels, a
  negative temperature, a tensor of the wrong dtype or number of dimensions;
- a choice among named values (``mask_type``, ``block``) is a ``ValueError`` for anything that
  is not one of them, whatever its type, as for torch's ``padding_mode``.

Messages name the argument (after its owner, ``"PixelCNNConfig: "``, when one is given) and say
what to pass. The checks read Python values and tensor metadata (shape, dtype, device), never a
tensor's values, so none of them waits for a device. The one probe that runs a module,
:func:`is_elementwise`, runs it on a small CPU tensor of its own.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, overload

import torch
from torch import nn

__all__ = [
    "check_bool",
    "check_choice",
    "check_device",
    "check_elementwise",
    "check_float",
    "check_int",
    "check_optional_int",
    "check_pair",
    "check_shape",
    "check_tensor",
    "is_elementwise",
]

T = TypeVar("T")


def _owned(owner: str | None, message: str) -> str:
    return f"{owner}: {message}" if owner else message


def _shown(value: Any) -> str:
    """``value`` for a message: its type and a short repr (a tensor by its shape)."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def check_int(
    name: str, value: Any, minimum: int | None = None, *, owner: str | None = None, hint: str = ""
) -> int:
    """``value`` as an ``int`` of at least ``minimum`` (numpy integers accepted, ``bool`` not).

    Args:
        name: the argument, as the message names it.
        value: what was passed.
        minimum: the smallest value allowed, or ``None``.
        owner: the class or function the argument belongs to, to prefix the message.
        hint: appended to the ``ValueError``'s message, e.g. ``" (256 for 8-bit images)"``.

    Returns:
        ``int(value)``.

    Raises:
        TypeError: ``value`` is not an integer (a ``bool``, a ``float`` such as ``2.0``, ...).
        ValueError: ``value < minimum``.

    Example:
        >>> check_int("channels", 3, 1)
        3
        >>> check_int("channels", 2.0)
        Traceback (most recent call last):
        ...
        TypeError: channels must be an int, got float 2.0; pass 2
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        whole = isinstance(value, float) and value.is_integer()
        fix = f"; pass {int(value)}" if whole else ""
        raise TypeError(_owned(owner, f"{name} must be an int, got {_shown(value)}{fix}"))
    if minimum is not None and value < minimum:
        raise ValueError(_owned(owner, f"{name} must be >= {minimum}, got {value}{hint}"))
    return int(value)


def check_optional_int(
    name: str, value: Any, minimum: int | None = None, *, owner: str | None = None
) -> int | None:
    """``None``, or ``value`` checked by :func:`check_int` (e.g. an optional channel count)."""
    return None if value is None else check_int(name, value, minimum, owner=owner)


def check_pair(
    name: str,
    value: Any,
    minimum: int | None = None,
    *,
    single: bool = True,
    owner: str | None = None,
    like: str = "(H, W)",
) -> tuple[int, int]:
    """``value``, a pair of ints (or, with ``single``, one int for both), as ``(a, b)``.

    A ``list`` is taken as a pair too; each entry is checked by :func:`check_int` under
    ``name``.

    Raises:
        TypeError: neither an int (with ``single``) nor a pair, or an entry that is not an int.
        ValueError: an entry below ``minimum``.

    Example:
        >>> check_pair("kernel_size", 3), check_pair("size", [4, 5], 1, single=False)
        ((3, 3), (4, 5))
    """
    if isinstance(value, (tuple, list)) and len(value) == 2:
        first, second = (check_int(name, v, minimum, owner=owner) for v in value)
        return first, second
    if single and isinstance(value, numbers.Real):  # an int, or a float such as 3.0
        v = check_int(name, value, minimum, owner=owner)
        return v, v
    what = "an int or a pair of ints" if single else "a pair"
    raise TypeError(_owned(owner, f"{name} must be {what} {like}, got {_shown(value)}"))


def check_shape(
    name: str, shape: Any, ndim: int = 4, minimum: int = 1, *, like: str = "(N, C, H, W)"
) -> tuple[int, ...]:
    """``shape`` as a tuple of ``ndim`` ints, each at least ``minimum``.

    Entry ``i`` is named ``name[i]`` in the messages.

    Raises:
        TypeError: not a tuple, list or ``torch.Size`` of ``ndim`` entries, or an entry that is
            not an int.
        ValueError: an entry below ``minimum``.

    Example:
        >>> check_shape("shape", [2, 1, 4, 4])
        (2, 1, 4, 4)
    """
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != ndim:
        raise TypeError(f"{name} must be a tuple of {ndim} ints such as {like}, got {shape!r}")
    return tuple(check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(shape))


def check_float(
    name: str,
    value: Any,
    *,
    positive: bool = False,
    minimum: float | None = None,
    below: float | None = None,
    owner: str | None = None,
    hint: str = "",
) -> float:
    """``value`` as a finite ``float``: positive, or in ``[minimum, below)``, when asked.

    Ints are numbers too (``1`` for ``1.0``); ``bool`` is not.

    Args:
        name: the argument, as the message names it.
        value: what was passed.
        positive: whether it must be ``> 0``.
        minimum: the smallest value allowed (inclusive), or ``None``.
        below: the bound it must stay under (exclusive), or ``None``.
        owner: the class or function the argument belongs to, to prefix the message.
        hint: appended to the ``ValueError``'s message.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: NaN, infinite, not positive, or out of range.

    Example:
        >>> check_float("threshold", 0.5, minimum=0, below=1)
        0.5
    """
    lo = "" if minimum is None else f"[{minimum}, "
    hi = "" if below is None else f"{below})"
    span = f" in {lo or '(-inf, '}{hi or 'inf)'}" if lo or hi else ""
    kind = "positive float" if positive else f"float{span}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(_owned(owner, f"{name} must be a {kind}, got {_shown(value)}"))
    v = float(value)
    bad = not math.isfinite(v) or (positive and v <= 0)
    bad = bad or (minimum is not None and v < minimum) or (below is not None and v >= below)
    if bad:
        want = "positive finite number" if positive else f"finite number{span}"
        raise ValueError(_owned(owner, f"{name} must be a {want}, got {v}{hint}"))
    return v


def check_choice(
    name: str,
    value: Any,
    choices: Sequence[T],
    *,
    owner: str | None = None,
    describe: str | None = None,
) -> T:
    """``value`` if it is one of ``choices`` (the same type and equal), else a ``ValueError``.

    Args:
        name: the argument, as the message names it.
        value: what was passed.
        choices: the values allowed.
        owner: the class or function the argument belongs to, to prefix the message.
        describe: what the message says it must be (default ``one of (...)``), e.g. each
            choice with its meaning.

    Raises:
        ValueError: ``value`` is not one of ``choices`` (also when it has another type: a
            choice is a value, as torch's ``padding_mode``).

    Example:
        >>> check_choice("block", "gated", ("residual", "gated"))
        'gated'
    """
    for choice in choices:  # by type and value: 1 is not True, a tensor is never compared
        if value is choice or (type(value) is type(choice) and value == choice):
            return choice
    want = describe or f"one of {tuple(choices)!r}"
    raise ValueError(_owned(owner, f"{name} must be {want}, got {value!r}"))


@overload
def check_bool(
    name: str, value: Any, *, optional: Literal[False] = False, owner: str | None = None
) -> bool: ...
@overload
def check_bool(
    name: str, value: Any, *, optional: Literal[True], owner: str | None = None
) -> bool | None: ...
def check_bool(
    name: str, value: Any, *, optional: bool = False, owner: str | None = None
) -> bool | None:
    """``value`` if it is ``True`` or ``False`` (or, when ``optional``, ``None``).

    Raises:
        TypeError: anything else, ``1`` and ``"yes"`` included.

    Example:
        >>> check_bool("cuda_graphs", None, optional=True) is None
        True
    """
    if isinstance(value, bool) or (optional and value is None):
        return value
    want = "None, True or False" if optional else "a bool, True or False"
    raise TypeError(_owned(owner, f"{name} must be {want}, got {value!r}"))


def check_device(name: str, value: Any, *, owner: str | None = None) -> torch.device | None:
    """``value`` as a ``torch.device`` that this machine has, or ``None`` for the default.

    Args:
        name: the argument, as the message names it.
        value: ``None``, a ``torch.device`` or a string such as ``"cpu"`` or ``"cuda:1"``.
        owner: the class or function the argument belongs to, to prefix the message.

    Raises:
        TypeError: ``value`` is not ``None``, a string or a device.
        ValueError: a string torch does not read as a device, or a CUDA or MPS device this
            machine does not have.

    Example:
        >>> check_device("device", "cpu")
        device(type='cpu')
    """
    if value is None:
        return None
    if not isinstance(value, str | torch.device):
        raise TypeError(_owned(owner, f"{name} must be a torch.device or str, got {_shown(value)}"))
    try:
        device = torch.device(value)
    except RuntimeError as err:
        raise ValueError(
            _owned(owner, f"{name}={value!r} is not a device: use e.g. 'cpu', 'cuda' or 'cuda:0'")
        ) from err
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise ValueError(
            _owned(owner, f"{name}={value!r}, but this machine has {count} CUDA device(s); "
                   "use device='cpu' (or check the driver with torch.cuda.is_available())")
        )  # fmt: skip
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(_owned(owner, f"{name}={value!r}, but MPS is not available; use 'cpu'"))
    return device


def check_tensor(
    name: str,
    value: Any,
    *,
    ndim: int | None = None,
    floating: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
    owner: str | None = None,
    like: str = "",
) -> torch.Tensor:
    """``value`` if it is a tensor of the dtype, number of dimensions and device asked for.

    Only metadata is read: a check that needs the values (binary, in range, finite) belongs
    to the caller, where it can be skipped.

    Args:
        name: the argument, as the message names it.
        value: what was passed.
        ndim: the number of dimensions it must have, or ``None``.
        floating: whether it must have a floating-point dtype.
        dtype: the dtype it must have, or ``None``.
        device: the device it must be on, or ``None``.
        owner: the class or function the argument belongs to, to prefix the message.
        like: the expected shape for the messages, e.g. ``" (N, C, H, W)"``.

    Raises:
        TypeError: ``value`` is not a tensor.
        ValueError: the wrong dtype, number of dimensions or device.

    Example:
        >>> check_tensor("x", torch.zeros(2, 1, 4, 4), ndim=4, floating=True).shape
        torch.Size([2, 1, 4, 4])
    """
    if not isinstance(value, torch.Tensor):
        got = type(value).__name__
        fix = "; convert it with torch.tensor(...)" if isinstance(value, (list, tuple)) else ""
        raise TypeError(_owned(owner, f"{name} must be a torch.Tensor{like}, got {got}{fix}"))
    if floating and not value.is_floating_point():
        raise ValueError(
            _owned(owner, f"{name} must be a floating-point tensor{like}, got dtype {value.dtype}")
        )
    if dtype is not None and value.dtype != dtype:
        raise ValueError(_owned(owner, f"{name} must be a {dtype} tensor, got dtype {value.dtype}"))
    if ndim is not None and value.dim() != ndim:
        raise ValueError(
            _owned(
                owner, f"{name} must have {ndim} dimensions{like}, got shape {tuple(value.shape)}"
            )
        )
    if device is not None and value.device != device:
        raise ValueError(
            _owned(owner, f"{name} must be on {device}, got {value.device}; move it with .to()")
        )
    return value


#: torch's activations that map every element on its own (exact types: no probe needed)
ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.CELU, nn.ELU, nn.GELU, nn.Hardsigmoid, nn.Hardswish, nn.Hardtanh, nn.Identity,
    nn.LeakyReLU, nn.Mish, nn.ReLU, nn.ReLU6, nn.SELU, nn.Sigmoid, nn.SiLU, nn.Softplus,
    nn.Softsign, nn.Tanh, nn.Tanhshrink,
)  # fmt: skip
#: relative and absolute tolerance of the probe: far above rounding (a vectorised kernel may
#: treat the elements of two layouts differently), far below what any mixing of the probe's
#: values changes
PROBE_TOLERANCE = 1e-6


def _probe_failure(module: nn.Module, per: Literal["value", "pixel"]) -> str | None:
    """Why ``module`` is not elementwise (per value, or per pixel), or ``None`` when it is."""
    if type(module) in ELEMENTWISE:
        return None
    floats = [p.dtype for p in module.parameters() if p.is_floating_point()]
    probe = torch.linspace(-3, 3, 72, dtype=floats[0] if floats else torch.float64)
    probe = probe.view(2, 4, 3, 3)  # (N, C, H, W)
    if per == "value":
        alone = probe.reshape(-1, 1, 1, 1)  # (N * C * H * W, 1, 1, 1): each value alone
    else:
        alone = probe.permute(0, 2, 3, 1).reshape(-1, 4)  # (N * H * W, C): each pixel a row
    was_training = module.training
    module.eval()  # dropout is the identity: the probe sees which values an output reads
    try:
        with torch.no_grad():
            whole, parts = module(probe.clone()), module(alone.clone())
    except Exception as err:  # it does not even accept the probe
        return f"it fails on a probe of shape {tuple(alone.shape)}: {err}"
    finally:
        module.train(was_training)
    if not isinstance(parts, torch.Tensor) or parts.shape != alone.shape:
        return f"it changes the shape {tuple(alone.shape)} of what it is given"
    if per == "value":
        parts = parts.view(probe.shape)
    else:
        parts = parts.view(2, 3, 3, 4).permute(0, 3, 1, 2)  # back to (N, C, H, W)
    if not isinstance(whole, torch.Tensor) or whole.shape != probe.shape:
        return "its output does not have its input's shape"
    tol = PROBE_TOLERANCE
    if not torch.allclose(whole, parts, rtol=tol, atol=tol):
        where = "channel or pixel" if per == "value" else "pixel"
        return f"its output at one {where} depends on others"
    return None


def is_elementwise(module: nn.Module, *, per: Literal["value", "pixel"] = "value") -> bool:
    """Whether ``module`` maps each value (or, ``per="pixel"``, each pixel's channels) alone.

    torch's elementwise activations (``nn.ReLU``, ``nn.GELU``, ...) are known; any other module
    is run, in eval mode, on a probe image ``(2, 4, 3, 3)`` and on the same values taken one by
    one (``(72, 1, 1, 1)``) or pixel by pixel (``(18, 4)``), and the two results compared up
    to :data:`PROBE_TOLERANCE`. A cheap check, not a proof.

    Example:
        >>> is_elementwise(nn.Softmax(dim=1)), is_elementwise(nn.Softmax(dim=1), per="pixel")
        (False, True)
    """
    return _probe_failure(module, per) is None


def check_elementwise(module: nn.Module, name: str) -> None:
    """Refuse an activation that mixes values across positions or channels (e.g. a softmax).

    A masked network stays causal only if its activations act on each value alone; see
    :func:`is_elementwise` for the probe.

    Raises:
        ValueError: ``module`` is not elementwise; the message says why and what to use.
    """
    failure = _probe_failure(module, "value")
    if failure is not None:
        raise ValueError(
            f"{name}={type(module).__name__} is not elementwise ({failure}), which breaks the "
            "causal masks; use an elementwise activation such as nn.ReLU, nn.GELU or nn.Tanh"
        )
