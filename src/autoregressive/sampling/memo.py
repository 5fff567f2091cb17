"""Values derived from a module's weights, kept until the weights change.

The cached sampler builds its steppers afresh for every call, and a stepper folds its layer's
weights into the matrices it multiplies (masking, transposing, permuting, scaling). At batch 1
that folding, and the check that runs the network on two rows, cost about half a forward pass
per call, every call the same. :func:`derived` keeps such a value with a copy of the weights it
came from, and hands it out again while every parameter and buffer of the module still equals
its copy: compared exactly, so every way of changing a weight is seen (an optimiser step,
``load_state_dict``, ``.to()``, a write through ``.data``), at the cost of one comparison of
the weights per call and of holding the copy while the module lives.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import NamedTuple, TypeVar, cast

import torch
from torch import nn

__all__ = ["derived"]

T = TypeVar("T")


class _Entry(NamedTuple):
    weights: tuple[object, ...]  # one record per parameter and buffer, in order (_record)
    value: object


#: by module, then by key: the derived value and the weights it was derived from
_entries: weakref.WeakKeyDictionary[nn.Module, dict[Hashable, _Entry]] = weakref.WeakKeyDictionary()


def _record(weight: torch.Tensor, values: bool) -> object:
    """What is kept of a weight: a copy, or (``values=False``) the tensor's identity and kind."""
    if values:
        return weight.detach().clone()
    return (weakref.ref(weight), weight.dtype, weight.device, weight.shape)


def _matches(record: object, weight: torch.Tensor) -> bool:
    """Whether ``weight`` is still what :func:`_record` kept of it."""
    if isinstance(record, torch.Tensor):
        kind = (record.dtype, record.device, record.shape)
        return kind == (weight.dtype, weight.device, weight.shape) and torch.equal(record, weight)
    ref, dtype, device, shape = cast(tuple, record)
    return ref() is weight and (dtype, device, shape) == (weight.dtype, weight.device, weight.shape)


def derived(module: nn.Module, key: Hashable, build: Callable[[], T], *, values: bool = True) -> T:
    """``build()``, a value computed from ``module``'s weights, reused while they are unchanged.

    Args:
        module: the module whose parameters and buffers (its submodules' included) ``build``
            reads; nothing else it reads may change between calls.
        key: tells apart several values of one module (e.g. what they were built for).
        build: computes the value, without autograd.
        values: ``False`` for a value that depends only on the weights' shapes, dtypes and
            devices (and which tensors they are), not on their numbers: then nothing is copied
            and nothing compared but those.

    Returns:
        The value built now, or the one built earlier for ``key`` if every parameter and buffer
        still equals the copy taken then (with ``values=False``: is the same tensor, of the
        same shape, dtype and device).

    Example:
        >>> layer = nn.Linear(3, 2)
        >>> first = derived(layer, "t", lambda: layer.weight.t().contiguous())
        >>> derived(layer, "t", lambda: None) is first
        True
        >>> with torch.no_grad():
        ...     layer.weight.data[0, 0] = 5.0  # changed behind autograd's back: still seen
        >>> derived(layer, "t", lambda: layer.weight.t().contiguous())[0, 0].item()
        5.0
    """
    weights = [*module.parameters(), *module.buffers()]
    entries = _entries.setdefault(module, {})
    entry = entries.get(key)
    if (
        entry is not None
        and len(entry.weights) == len(weights)
        and all(_matches(r, w) for r, w in zip(entry.weights, weights, strict=True))
    ):
        return cast(T, entry.value)
    with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, usable anywhere
        value = build()
        records = tuple(_record(w, values) for w in weights)
    entries[key] = _Entry(records, value)
    return value
