"""Data for the examples and the training loop: seeded batches, binarized MNIST, colour images.

Kept apart from the layers and the model: nothing here imports them.

- :mod:`~autoregressive.data.batches`: :class:`SeededBatches`, whose order is a pure function of
  ``(seed, epoch)`` and is shared among processes, and :func:`derive_seed`.
- :mod:`~autoregressive.data.mnist`: binarized MNIST (loading, binarization, IDX files,
  :class:`BinarizedBatches`).
- :mod:`~autoregressive.data.colour`: 8-bit colour images (CIFAR-10, offline photo patches,
  :class:`ImageBatches`).
"""

from .batches import Batch, BatchOrder, SeededBatches, derive_seed
from .mnist import (
    MNIST_FILES,
    BinarizedBatches,
    IDXError,
    dynamic_binarize,
    load_mnist,
    read_idx,
    threshold_binarize,
)

__all__ = [
    "MNIST_FILES",
    "Batch",
    "BatchOrder",
    "BinarizedBatches",
    "IDXError",
    "SeededBatches",
    "derive_seed",
    "dynamic_binarize",
    "load_mnist",
    "read_idx",
    "threshold_binarize",
]
