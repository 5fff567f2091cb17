"""Pretrained weights that ship inside the package, verified by SHA-256 before they are read.

The folder ``autoregressive/weights/`` holds one file per model (written by the MNIST example
as ``weights.pt``: config, weights and the final test metrics, in the checkpoint format of
:mod:`autoregressive.training`) and ``registry.json``, which maps each name to its file, its
SHA-256, a description and the figures it was trained to. ``examples/package_weights.py`` adds a
run's weights to the folder and the registry.

Example:
    >>> from autoregressive.pretrained import available
    >>> all({"file", "sha256", "test_nll"} <= set(e) for e in available().values())
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .checksums import file_sha256
from .config import PixelCNNConfig
from .model import PixelCNN
from .training import load_checkpoint

__all__ = ["WEIGHTS_DIR", "ChecksumError", "available", "load_pretrained"]

#: The packaged weights and their ``registry.json``.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class ChecksumError(ValueError):
    """A packaged weights file whose SHA-256 differs from the registry's."""


def available(folder: str | Path = WEIGHTS_DIR) -> dict[str, dict[str, Any]]:
    """The registry: name -> ``{"file", "sha256", "description", "metrics", ...}``.

    Args:
        folder: a weights folder (default: the package's).
    """
    path = Path(folder) / "registry.json"
    return json.loads(path.read_text()) if path.is_file() else {}


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
    registry = available(folder)
    if name not in registry:
        known = ", ".join(sorted(registry)) or "none"
        raise ValueError(f"no pretrained model named {name!r}; available: {known}")
    entry = registry[name]
    path = Path(folder) / entry["file"]
    if not path.is_file():
        raise ChecksumError(f"the weights of {name!r} are missing ({path}); reinstall the package")
    found = file_sha256(path)
    if found != entry["sha256"]:
        raise ChecksumError(
            f"the weights file of {name!r} ({path}) is damaged or was replaced: SHA-256 {found} "
            f"but the registry says {entry['sha256']}; reinstall the package"
        )
    saved = load_checkpoint(path)
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()
    }
    model = PixelCNN(PixelCNNConfig(**fields), device=device)
    model.load_state_dict(saved["model"])
    return model.eval()
