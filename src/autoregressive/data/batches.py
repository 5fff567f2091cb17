"""Seeded batches: an epoch's order is a pure function of ``(seed, epoch)``, shared among processes.

Every random choice here comes from a generator seeded by ``(seed, epoch)``: an epoch's batches
are a pure function of those two numbers, so a run resumed from a checkpoint sees exactly the
batches an uninterrupted run would, and a run split over several processes sees the same global
batches as a single process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

import torch

from ..conditioning import Conditioning
from ..validation import check_int, check_tensor

__all__ = ["Batch", "BatchOrder", "SeededBatches", "derive_seed"]


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (e.g. an epoch and a stream name).

    Different keys give unrelated streams; the same keys always give the same seed.

    Args:
        seed: the run's seed.
        *keys: what the stream is for, e.g. ``(epoch, "batches")``.

    Returns:
        An int in ``[0, 2**63)``.

    Example:
        >>> from autoregressive.data import derive_seed
        >>> derive_seed(0, 1, "train") == derive_seed(0, 1, "train") != derive_seed(0, 2, "train")
        True
    """
    digest = hashlib.sha256(repr((int(seed), *keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class Batch:
    """One process's share of a global batch, with what the model is conditioned on.

    Attributes:
        images: images ``(n, C, H, W)`` of this process (``n`` may be 0 when the global
            batch has fewer images than processes).
        labels: their class labels ``(n,)``, or ``None``.
        total: number of images in the global batch, over all processes.
        vector: their conditioning vectors ``(n, D)``, or ``None``.
        spatial: their conditioning maps ``(n, C_map, H, W)``, or ``None``.

    Example:
        >>> from autoregressive.data import Batch
        >>> b = Batch(torch.zeros(2, 1, 4, 4), torch.tensor([3, 7]), total=2)
        >>> b.cond
        tensor([3, 7])
        >>> Batch(torch.zeros(2, 1, 4, 4), None, 2, spatial=torch.ones(2, 3, 4, 4)).cond.batch
        2
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    total: int
    vector: torch.Tensor | None = None
    spatial: torch.Tensor | None = None

    @property
    def cond(self) -> torch.Tensor | Conditioning | None:
        """What the model's ``cond`` takes: the labels, or a Conditioning of all the parts.

        The labels ``(n,)`` (or ``None``) when no vector and no map is given, else a
        :class:`~autoregressive.Conditioning` of the labels, the vector and the map.
        """
        if self.vector is None and self.spatial is None:
            return self.labels
        return Conditioning(vector=self.vector, spatial=self.spatial, labels=self.labels)


class BatchOrder(TypedDict, total=False):
    """The keyword arguments of :class:`SeededBatches` that fix the order and the sharing.

    Subclasses take them as ``**order`` and hand them on, so they are declared once.
    """

    shuffle: bool
    seed: int
    rank: int
    world_size: int
    drop_last: bool


class SeededBatches:
    """Batches of images whose order depends only on ``(seed, epoch)``, shared among processes.

    Each epoch's order is a permutation drawn from one generator seeded with
    ``derive_seed(seed, epoch, "batches")`` (the identity without ``shuffle``). With
    ``world_size`` processes every process builds the same global batch and keeps its own
    contiguous share (``torch.tensor_split``), so the union over processes is the
    single-process batch. Subclasses refuse images they cannot yield in :meth:`_check_images`
    and change what a batch's images become in :meth:`_transform`, which may draw from the same
    generator.

    Args:
        images: ``(N, C, H, W)``.
        labels: ``(N,)`` labels, a :class:`~autoregressive.Conditioning` of the images'
            labels ``(N,)``, vectors ``(N, D)`` and/or maps ``(N, C_map, H, W)`` (each batch
            takes the rows of its images), or ``None``.
        batch_size: images per global batch (over all processes).
        shuffle: draw a new order every epoch.
        seed: base seed of the generator.
        rank: this process's index in ``[0, world_size)``.
        world_size: number of processes sharing each batch.
        drop_last: skip a last, incomplete global batch.

    Example:
        >>> from autoregressive.data import SeededBatches
        >>> batches = SeededBatches(torch.zeros(10, 1, 4, 4), batch_size=4, shuffle=True)
        >>> [b.images.shape[0] for b in batches], len(batches)
        ([4, 4, 2], 3)
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | Conditioning | None = None,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        check_tensor("images", images, ndim=4, like=" (N, C, H, W)")
        self.cond = _per_image(labels, images.shape[0])
        batch_size = check_int("batch_size", batch_size, 1)
        rank, world_size = check_int("rank", rank, 0), check_int("world_size", world_size, 1)
        if rank >= world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, {world_size=}")
        if batch_size < world_size:
            raise ValueError(
                f"batch_size={batch_size} is smaller than the number of processes "
                f"({world_size}); batch_size counts images over all processes"
            )
        self.images, self.labels = images, self.cond.labels
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self._check_images(images)

    def _check_images(self, images: torch.Tensor) -> None:
        """Refuse ``images`` ``(N, C, H, W)`` that a subclass cannot yield (any by default)."""

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order (and draws) the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """What a global batch's images ``(B, C, H, W)`` become (themselves by default)."""
        return x

    def _share(self, t: torch.Tensor | None) -> Any:
        """This process's contiguous share ``(b, ...)`` of a global batch's ``(B, ...)``."""
        return None if t is None else t.tensor_split(self.world_size)[self.rank]

    def __iter__(self) -> Iterator[Batch]:
        n = self.images.shape[0]
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, "batches"))
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self._transform(self.images[index], generator)  # (B, C, H, W)
            c = self.cond
            y, v, s = (None if t is None else t[index] for t in (c.labels, c.vector, c.spatial))
            # this process's contiguous share of the global batch, (b, ...), b ~ B / world_size
            x, y, v, s = (self._share(t) for t in (x, y, v, s))
            yield Batch(x, y, len(index), vector=v, spatial=s)


def _per_image(labels: torch.Tensor | Conditioning | None, n: int) -> Conditioning:
    """``labels`` as a :class:`~autoregressive.Conditioning`, each part checked to be per image.

    Raises:
        TypeError: ``labels`` is neither a tensor, a ``Conditioning`` nor ``None``.
        ValueError: labels not ``(n,)``, or a vector or map without ``n`` rows.
    """
    if labels is not None and not isinstance(labels, torch.Tensor | Conditioning):
        raise TypeError(
            f"labels must be a tensor ({n},), a Conditioning or None, got {type(labels).__name__}"
        )
    cond = labels if isinstance(labels, Conditioning) else Conditioning(labels=labels)
    if cond.labels is not None:
        check_tensor("labels", cond.labels, like=f" ({n},)")
        if cond.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(cond.labels.shape)}")
    for name, t in (("vector", cond.vector), ("map", cond.spatial)):
        if t is not None:
            check_tensor(f"the conditioning {name}", t, like=f" ({n}, ...)")
            if t.dim() == 0 or t.shape[0] != n:
                raise ValueError(
                    f"the conditioning {name} must have one row per image, ({n}, ...), got "
                    f"{tuple(t.shape)}"
                )
    return cond
