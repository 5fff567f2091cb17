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
    weights: tuple[torch.Tensor, ...]  # copies of the parameters and buffers, in order
    value: object


#: by module, then by key: the derived value and the weights it was derived from
_entries: weakref.WeakKeyDictionary[nn.Module, dict[Hashable, _Entry]] = weakref.WeakKeyDictionary()


def _unchanged(copies: tuple[torch.Tensor, ...], weights: list[torch.Tensor]) -> bool:
    """Whether every weight has its copy's dtype, device, shape and values."""
    return len(copies) == len(weights) and all(
        c.dtype == w.dtype and c.device == w.device and c.shape == w.shape and torch.equal(c, w)
        for c, w in zip(copies, weights, strict=True)
    )


def derived(module: nn.Module, key: Hashable, build: Callable[[], T]) -> T:
    """``build()``, a value computed from ``module``'s weights, reused while they are unchanged.

    Args:
        module: the module whose parameters and buffers (its submodules' included) ``build``
            reads; nothing else it reads may change between calls.
        key: tells apart several values of one module (e.g. what they were built for).
        build: computes the value, without autograd.

    Returns:
        The value built now, or the one built earlier for ``key`` if every parameter and buffer
        still equals the copy taken then.

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
    if entry is not None and _unchanged(entry.weights, weights):
        return cast(T, entry.value)
    with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, usable anywhere
        value = build()
        copies = tuple(w.detach().clone() for w in weights)
    entries[key] = _Entry(copies, value)
    return value
