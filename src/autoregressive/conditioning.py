"""What a model or a conditional layer is given besides the image: labels, a vector, a map.

The Gated PixelCNN paper (van den Oord et al., 2016, https://arxiv.org/abs/1606.05328, eq. 4
and 5) conditions every gate on a vector ``h`` (a class, an embedding) through ``V^T h`` and on
a map ``s`` aligned with the image (the upper level of a VQ-VAE-2, a segmentation) through a 1x1
convolution ``V * s``. Layers take both as one argument ``cond``, a :class:`Conditioning`
holding a vector ``(N, D)``, a map ``(N, C_map, H, W)``, or both (``None`` for neither); a bare
tensor is refused with the hint to wrap it, ``Conditioning(vector=v)``.

A model (:class:`~autoregressive.PixelCNN`) takes one argument ``cond`` at its boundary too:
class labels ``(N,)``, or a :class:`Conditioning` whose ``labels``, ``vector`` and ``spatial``
travel together; it checks them once and hands its layers a :class:`Conditioning` without
labels (they become the one-hot start of the vector). A layer given labels refuses them.

The map is *given*, not generated, so its value at any position may influence any output. For
cached sampling the sampler hands each layer's stepper a :class:`RowConditioning` instead: the
vector, and a buffer that holds the current row of the map (refreshed before every
``begin_row``, so that one recorded row replays for all of them).

The rules a layer checks its ``cond`` against live here too (:func:`check_cond`): a part the
layer takes must be given, of its width; a part it does not take must be absent.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import nn

from .validation import check_tensor

__all__ = [
    "ConditionalLayer",
    "Conditioning",
    "RowConditioning",
    "check_cond",
    "check_conditioning",
    "fit_map",
    "map_image_size",
    "refuse_labels",
]


@dataclass(frozen=True)
class Conditioning:
    r"""Class labels, a conditioning vector and/or a spatial map for a batch of images.

    Labels are for a model's boundary (:class:`~autoregressive.PixelCNN` turns them into the
    one-hot start of the vector); layers take the vector and the map only.

    Args:
        vector: ``(N, D)`` floating-point, or ``None``.
        spatial: ``(N, C_map, H, W)`` floating-point, aligned with the images, or ``None``.
        labels: ``(N,)`` integer class labels, one label for every image (an ``int``, kept as a
            0-d tensor, or a 0-d tensor), or ``None``.

    Example:
        >>> c = Conditioning(vector=torch.zeros(2, 3), spatial=torch.zeros(2, 4, 5, 5))
        >>> c.batch, c.first(3).spatial.shape
        (2, torch.Size([3, 4, 5, 5]))
        >>> Conditioning(labels=torch.tensor([3, 7]), vector=torch.zeros(2, 3)).batch
        2
    """

    vector: torch.Tensor | None = None
    spatial: torch.Tensor | None = None
    labels: torch.Tensor | None = None  # an int given is stored as a 0-d tensor

    def __post_init__(self) -> None:
        labels: object = self.labels
        if isinstance(labels, numbers.Integral) and not isinstance(labels, bool):
            object.__setattr__(self, "labels", torch.tensor(int(labels)))

    @property
    def batch(self) -> int | None:
        """``N``, from whichever part is given (``None`` if none is)."""
        for t in (self.vector, self.spatial, self.labels):
            if isinstance(t, torch.Tensor) and t.dim() > 0:
                return t.shape[0]
        return None

    def first(self, n: int) -> Conditioning:
        """The first item's conditioning repeated ``n`` times (for probes of ``n`` images)."""
        return self._map(lambda t: _repeat_first(t, n))

    def crop(self, rows: int) -> Conditioning:
        """The first ``rows`` rows of the map (for probes of fewer rows); the rest as it is."""
        spatial = None if self.spatial is None else self.spatial[:, :, :rows]
        return replace(self, spatial=spatial)

    def take(self, start: int, stop: int) -> Conditioning:
        """Images ``start`` to ``stop - 1`` of the batch, every part cut alike (for chunks)."""
        return self._map(lambda t: t[start:stop] if t.dim() > 0 else t)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Conditioning:
        """Every part moved to ``device``; the vector and the map cast to ``dtype`` too."""
        moved = self._map(lambda t: t.to(device=device, dtype=dtype))
        labels = None if self.labels is None else torch.as_tensor(self.labels).to(device)
        return replace(moved, labels=labels)

    def _map(self, f: Callable[[torch.Tensor], torch.Tensor]) -> Conditioning:
        parts = (self.vector, self.spatial, self.labels)  # labels: a tensor after __post_init__
        return Conditioning(*(None if t is None else f(torch.as_tensor(t)) for t in parts))


def _repeat_first(t: torch.Tensor, n: int) -> torch.Tensor:
    return t[:1].expand(n, *t.shape[1:])


@dataclass(frozen=True)
class RowConditioning:
    r"""What a stepper is given: the vector, and the current row of the map.

    Args:
        vector: ``(N, D)`` or ``None``.
        spatial_row: ``(N, W, C_map)`` buffer or ``None``; the sampler writes row ``i`` of the
            map into it before calling ``begin_row(i)``, so read it there, never keep a copy.

    Example:
        >>> from autoregressive.conditioning import RowConditioning
        >>> RowConditioning(vector=None, spatial_row=torch.zeros(2, 5, 4)).spatial_row.shape
        torch.Size([2, 5, 4])
    """

    vector: torch.Tensor | None = None
    spatial_row: torch.Tensor | None = None


def map_image_size(map_size: tuple[int, int], image_size: tuple[int, int]) -> tuple[int, int]:
    """The images' ``(H, W)`` that a map of ``map_size`` implies for a model of ``image_size``.

    The rule :meth:`~autoregressive.AutoregressiveModel.sample` follows when it is given
    neither ``size`` nor ``image``: ``image_size`` when the map's ``(h, w)`` divide it (a map at
    that resolution, or a lower one that :func:`fit_map` upsamples), else the map's own size (a
    map at the resolution of images of another size).

    Example:
        >>> from autoregressive.conditioning import map_image_size
        >>> map_image_size((7, 7), (28, 28)), map_image_size((32, 32), (28, 28))
        ((28, 28), (32, 32))
    """
    h, w = map_size
    height, width = image_size
    return image_size if height % h == 0 and width % w == 0 else (h, w)


def fit_map(spatial: torch.Tensor, size: tuple[int, int], name: str = "spatial") -> torch.Tensor:
    """A map ``(N, C_map, h, w)`` at the images' ``size`` ``(H, W)``.

    A map at the images' size is returned as it is. A map at a lower resolution is accepted when
    ``H`` and ``W`` are integer multiples of ``h`` and ``w`` (``H = a h``, ``W = b w``): it is
    upsampled by nearest neighbour, each map cell covering an ``a x b`` block of pixels (as
    ``F.interpolate(spatial, size=(H, W), mode="nearest")`` does). Any other size is refused:
    resize such a map yourself, e.g. with ``mode="bilinear"``.

    Args:
        spatial: the map, ``(N, C_map, h, w)``.
        size: the images' ``(H, W)``.
        name: the argument's name, for the message.

    Returns:
        The map ``(N, C_map, H, W)``.

    Raises:
        ValueError: ``(h, w)`` is neither ``(H, W)`` nor a divisor of it.

    Example:
        >>> from autoregressive.conditioning import fit_map
        >>> fit_map(torch.arange(4.0).view(1, 1, 2, 2), (4, 4))[0, 0]
        tensor([[0., 0., 1., 1.],
                [0., 0., 1., 1.],
                [2., 2., 3., 3.],
                [2., 2., 3., 3.]])
    """
    h, w = spatial.shape[-2:]
    height, width = size
    if (h, w) == (height, width):
        return spatial
    if height % h or width % w:
        want = (*spatial.shape[:2], height, width)
        raise ValueError(
            f"{name} must have shape {want}, got {tuple(spatial.shape)}: a map's (h, w) must be "
            f"the images' ({height}, {width}) or divide them (a lower resolution, upsampled by "
            f"nearest neighbour); resize it first, e.g. F.interpolate({name}, "
            f"size=({height}, {width}), mode='bilinear')"
        )
    rows = spatial.repeat_interleave(height // h, dim=2)  # (N, C_map, H, w)
    return rows.repeat_interleave(width // w, dim=3)  # (N, C_map, H, W)


def check_conditioning(cond: object, owner: str) -> Conditioning | None:
    """``cond`` itself after checking that it is a :class:`Conditioning` or ``None``.

    The check of a layer's or a sampler's public entry; a bare tensor is refused with the hint
    to wrap it, so that every layer below sees one type.

    Raises:
        TypeError: ``cond`` is neither ``None`` nor a :class:`Conditioning`.

    Example:
        >>> try:
        ...     check_conditioning(torch.ones(2, 3), "a layer")
        ... except TypeError as err:
        ...     print(str(err).split(": ")[-1])
        wrap a vector as Conditioning(vector=v)
    """
    if cond is None or isinstance(cond, Conditioning):
        return cond
    if isinstance(cond, torch.Tensor):
        raise TypeError(
            f"{owner}: cond must be a Conditioning or None, got a tensor: wrap a vector as "
            "Conditioning(vector=v)"
        )
    raise TypeError(
        f"{owner}: cond must be a Conditioning(vector=..., spatial=...) or None, got "
        f"{type(cond).__name__}"
    )


def check_cond(
    cond: Conditioning | None,
    cond_channels: int | None,
    owner: str,
    batch: int | None = None,
    *,
    spatial_channels: int | None = None,
    size: tuple[int, ...] | None = None,
) -> Conditioning | None:
    """``cond`` after checking its type and both its parts against a layer.

    ``cond`` is ``None`` or a :class:`Conditioning`; a part the
    layer does not take must be absent and a part it takes must be present. ``N`` must be
    ``batch`` and the map's ``(H, W)`` must be ``size`` when those are given. Only shapes and
    dtypes are read (no device sync).

    Args:
        cond: what the layer was given.
        cond_channels: the width of the vector the layer takes, ``None`` for none.
        owner: the layer's name, for the messages.
        batch: the images' ``N``.
        spatial_channels: the channels of the map the layer takes, ``None`` for none.
        size: the images' ``(H, W)``.

    Returns:
        ``cond``: its vector ``(N, cond_channels)`` and map ``(N, spatial_channels, H, W)``
        are each ``None`` when the layer does not take it.

    Raises:
        TypeError: ``cond`` or one of its parts is of the wrong kind.
        ValueError: a part missing, unexpected, or of the wrong shape or dtype.
    """
    parts = check_conditioning(cond, owner)
    refuse_labels(parts, owner)
    vector = None if parts is None else parts.vector
    spatial = None if parts is None else parts.spatial
    _check_part(vector, cond_channels, owner, "cond_channels", "vector", batch)
    _check_part(spatial, spatial_channels, owner, "spatial_channels", "spatial map", batch)
    if spatial is not None and size is not None and tuple(spatial.shape[2:]) != tuple(size):
        raise ValueError(
            f"{owner}: the spatial map must have the images' size: shape ({batch or 'N'}, "
            f"{spatial_channels}, {size[0]}, {size[1]}), got {tuple(spatial.shape)}"
        )
    return parts


class ConditionalLayer(nn.Module):
    """A layer whose ``forward`` takes ``(x, cond)``, so that a container hands it ``cond``.

    :class:`~autoregressive.CausalSequential` calls a module as ``module(x, cond)`` when its
    class sets :attr:`conditional`, as this one does. A subclass sets :attr:`cond_channels`
    and :attr:`spatial_channels` (``None`` for a part it does not take) and checks ``cond`` at
    the top of ``forward`` with ``self._check_cond(x, cond)``.
    """

    conditional: ClassVar[bool] = True
    cond_channels: int | None
    spatial_channels: int | None

    def _check_cond(self, x: torch.Tensor, cond: Conditioning | None) -> Conditioning | None:
        """``cond`` checked (:func:`check_cond`) for this layer and its input ``(N, C, H, W)``."""
        return check_cond(
            cond, self.cond_channels, type(self).__name__, x.shape[0],
            spatial_channels=self.spatial_channels, size=tuple(x.shape[2:]),
        )  # fmt: skip


def refuse_labels(cond: Conditioning | None, owner: str) -> None:
    """Raise ``ValueError`` if ``cond`` holds labels: they are for a model's boundary only."""
    if cond is not None and cond.labels is not None:
        raise ValueError(
            f"{owner} takes no labels: a layer or a sampler takes Conditioning(vector=..., "
            "spatial=...); labels are for a model (PixelCNN makes them one-hot vectors), so "
            "pass model.condition(cond, n) or the vectors F.one_hot(labels, classes)"
        )


def _check_part(
    t: object, channels: int | None, owner: str, field: str, kind: str, batch: int | None
) -> None:
    """One part of the conditioning: absent iff ``channels`` is ``None``, else of its shape."""
    if channels is None:
        if t is not None:
            raise ValueError(
                f"{owner} takes no conditioning {kind} ({field}=None) but got one: do not pass "
                f"it, or build the module with {field} set"
            )
        return
    if t is None:
        raise ValueError(f"{owner} is conditioned on a {kind} ({field}={channels}): pass it")
    n = "N" if batch is None else batch
    dims = 2 if kind == "vector" else 4
    shape = f"({n}, {channels})" if dims == 2 else f"({n}, {channels}, H, W)"
    t = check_tensor(f"the conditioning {kind}", t, floating=True, owner=owner, like=f" {shape}")
    wrong_batch = batch is not None and t.shape[:1] != (batch,)
    if t.dim() != dims or t.shape[1] != channels or wrong_batch:
        raise ValueError(
            f"{owner}: the conditioning {kind} must have shape {shape}, got {tuple(t.shape)}"
        )
