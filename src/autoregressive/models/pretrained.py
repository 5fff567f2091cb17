"""Pretrained weights that ship inside the package, verified by SHA-256 before they are read.

The folder ``autoregressive/models/weights/`` holds one file per model (written by the MNIST example
as ``weights.pt``: config, weights and the final test metrics, in the checkpoint format of
:mod:`autoregressive.checkpoint`) and ``registry.json``, which maps each name to its file, its
SHA-256, a description and the figures it was trained to. ``examples/package_weights.py`` adds a
run's weights to the folder and the registry.

:meth:`PixelCNN.from_pretrained <autoregressive.PixelCNN.from_pretrained>` loads a shipped model
by name (and a directory written by ``save_pretrained``); :func:`load_pretrained` is the same
for a name, with the weights folder as an argument. The reading itself lives in
:mod:`autoregressive.models.serialization`, which the model imports; this module imports the model.

Example:
    >>> from autoregressive.models.pretrained import available
    >>> all({"file", "sha256", "test_nll"} <= set(e) for e in available().values())
    True
"""

from __future__ import annotations

from pathlib import Path

import torch

from .pixelcnn import PixelCNN
from .serialization import WEIGHTS_DIR, ChecksumError, available, read_pretrained

__all__ = ["WEIGHTS_DIR", "ChecksumError", "available", "load_pretrained"]


def load_pretrained(
    name: str,
    *,
    device: torch.device | str | None = None,
    folder: str | Path = WEIGHTS_DIR,
) -> PixelCNN:
    """A :class:`~autoregressive.PixelCNN` with packaged weights, in eval mode.

    Args:
        name: a key of :func:`available`, e.g. ``"mnist-demo"``.
        device: where to put the model (default CPU).
        folder: a weights folder (default: the package's).

    Returns:
        The model.

    Raises:
        ValueError: ``name`` is not registered (the message lists the names).
        ChecksumError: (a ``ValueError``) the file's SHA-256 differs from the registry's:
            the file was damaged or replaced; reinstall the package.
    """
    return read_pretrained(name, folder=folder).build(PixelCNN, device=device)
