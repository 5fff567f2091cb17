"""The text of the layers' ``extra_repr``: an option is shown where it differs from its default.

As ``nn.Conv2d`` leaves a default ``padding`` out of its repr, the layers name ``data_channels``
only for colour masks, ``cond_channels`` only when conditioned, and so on.
"""

from __future__ import annotations

from torch import nn

__all__ = ["changed_options"]


def changed_options(module: nn.Module, **defaults: object) -> str:
    """``", name=value"`` for each option of ``module`` that differs from its default, in order.

    Args:
        module: the layer, which keeps each option as an attribute of the same name.
        **defaults: option name -> the value that is left out of the repr.

    Returns:
        The changed options, e.g. ``", data_channels=3, cond_channels=10"``; ``""`` if none.
    """
    values = {name: getattr(module, name) for name in defaults}
    return "".join(f", {k}={v!r}" for k, v in values.items() if v != defaults[k])
