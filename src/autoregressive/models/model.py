"""Any causal network and an output distribution as one model: likelihoods and sampling.

:class:`AutoregressiveModel` is the model-level API of the library. It owns the one place where
data become the network's input, ``distribution.preprocess(x)``: :meth:`~AutoregressiveModel.
log_prob` trains and scores through it, and the samplers feed the network through it too, so a
network trained through the model is sampled on the inputs it was trained on, whatever the
distribution (a ``Categorical`` network sees ``x`` rescaled to ``[-1, 1]``, never the raw
levels). :class:`~autoregressive.PixelCNN` is this model with a network built from a config.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning import Conditioning, fit_map, map_image_size
from ..distributions.base import Distribution, nats_to_bits_per_dim
from ..sampling.cached import CachedSampler
from ..sampling.naive import draw_noise
from ..sampling.sampler import Sampler
from ..validation import (
    check_bool,
    check_float,
    check_int,
    check_optional_int,
    check_pair,
    check_tensor,
)

__all__ = ["AutoregressiveModel", "Cond"]

#: what every model method takes as ``cond``: labels ``(N,)`` (or one label for every image: an
#: ``int`` or a 0-d tensor), a :class:`~autoregressive.Conditioning`, or ``None``
Cond = torch.Tensor | Conditioning | int | None


class AutoregressiveModel(nn.Module):
    r"""A causal network and an output distribution as a model with likelihoods and sampling.

    The network maps preprocessed images and an optional conditioning to raw parameters,
    ``network(distribution.preprocess(x, dtype), cond) -> (N, C * P, H, W)``, and must be causal
    (a :class:`~autoregressive.CausalSequential` of the public layers, a block of your own). The
    model feeds it ``distribution.preprocess(x)`` in :meth:`forward`, :meth:`log_prob` and
    :meth:`bits_per_dim`, and its samplers do the same, so training and sampling can never see
    different inputs.

    Args:
        network: the causal network, with parameters (they fix the device and dtype).
        distribution: the output distribution, e.g. :class:`~autoregressive.Categorical`.
        data_channels: the images' channels ``C``.
        image_size: the ``(H, W)`` that :meth:`sample` draws when not told otherwise.
        num_classes: class-conditional on labels ``0 .. num_classes - 1`` (the network is given
            them one-hot, at the start of ``cond.vector``).
        vector_size: conditioned on a vector of this size (after the one-hot labels).
        spatial_channels: conditioned on a map ``(N, spatial_channels, H, W)``.
        validate_args: check the *values* of inputs (in range, finite, labels in range) on every
            call, as ``torch.distributions`` does; shapes are always checked. Reading values
            forces a device sync; the checks are skipped inside ``torch.compile``.

    Shape:
        - ``x``: :math:`(N, C, H, W)`, values the distribution models (binary for Bernoulli,
          integers in ``[0, levels)`` for categorical and logistic mixture).
        - ``cond``: labels :math:`(N,)` (or one label, an ``int`` or a 0-d tensor, for every
          image) when ``num_classes`` is set, or a :class:`~autoregressive.Conditioning` of
          ``labels``, ``vector`` :math:`(N, D)` and ``spatial`` :math:`(N, C_{map}, h, w)`, the
          map at the images' size or at a lower one that divides it (see
          :func:`~autoregressive.conditioning.fit_map`), as declared. Converted once, by
          :meth:`condition`.
        - ``forward``: the parameters as ``distribution.shape_params`` arranges them, e.g.
          Bernoulli logits :math:`(N, C, H, W)`, categorical logits :math:`(N, C, L, H, W)`.
        - ``log_prob``, ``bits_per_dim``: :math:`(N,)`.
        - ``sample``: :math:`(N, C, H, W)`.

    Example:
        >>> network = CausalSequential(
        ...     MaskedConv2d(1, 16, 5, "A"), nn.ReLU(), MaskedConv2d(16, 4, 1, "B"))
        >>> model = AutoregressiveModel(network, Categorical(4), image_size=(6, 6))
        >>> x = torch.randint(0, 4, (8, 1, 6, 6))
        >>> model(x).shape, model.log_prob(x).shape
        (torch.Size([8, 1, 4, 6, 6]), torch.Size([8]))
        >>> model.sample(2, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 6, 6])
    """

    def __init__(
        self,
        network: nn.Module,
        distribution: Distribution,
        *,
        data_channels: int = 1,
        image_size: tuple[int, int] = (28, 28),
        num_classes: int | None = None,
        vector_size: int | None = None,
        spatial_channels: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be an nn.Module, got {type(network).__name__}")
        if next(network.parameters(), None) is None:
            raise ValueError(
                f"{owner}: the network has no parameters; they fix the model's device and dtype"
            )
        if not isinstance(distribution, Distribution):
            raise TypeError(
                "distribution must be a Distribution, e.g. Bernoulli() or Categorical(levels), "
                f"got {type(distribution).__name__}"
            )
        self.network = network
        self.distribution = distribution
        self.data_channels = check_int("data_channels", data_channels, 1, owner=owner)
        self.image_size = check_pair("image_size", image_size, 1, single=False, owner=owner)
        self.num_classes = check_optional_int("num_classes", num_classes, 1, owner=owner)
        self.vector_size = check_optional_int("vector_size", vector_size, 1, owner=owner)
        self.spatial_channels = check_optional_int(
            "spatial_channels", spatial_channels, 1, owner=owner
        )
        self.validate_args = check_bool("validate_args", validate_args)

    # ------------------------------------------------------------------ inputs
    def _param(self) -> torch.Tensor:
        return next(self.network.parameters())

    def _checks_values(self) -> bool:
        return self.validate_args and not torch.compiler.is_compiling()

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a batch of images this model can score.

        Raises:
            TypeError: ``x`` is not a tensor.
            ValueError: ``x`` is not ``(N, C, H, W)`` with this model's ``C``, or (with
                ``validate_args``) holds values the distribution cannot model.
        """
        check_tensor("x", x, like=" (N, C, H, W)")
        c = self.data_channels
        if x.dim() != 4:
            raise ValueError(
                f"x must have 4 dimensions (N, C, H, W) with C={c}, got shape {tuple(x.shape)}"
                + ("; add a channel dimension with x.unsqueeze(1)" if x.dim() == 3 else "")
            )
        if x.shape[1] != c:
            raise ValueError(
                f"x has {x.shape[1]} channels but the model expects data_channels={c}: "
                f"shape (N, {c}, H, W), got {tuple(x.shape)}"
            )
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"x must have at least one row and one column, got {tuple(x.shape)}")
        if self._checks_values():
            self.distribution.validate(x)  # reads values: a device sync on GPU

    def condition(
        self, cond: Cond, n: int, *, size: tuple[int, int] | None = None
    ) -> Conditioning | None:
        """Check the model-level conditioning of ``n`` images; return what the network takes.

        The one boundary every method goes through: ``cond`` is converted here, once.

        Args:
            cond: class labels ``(N,)`` (one label for all: an ``int`` or a 0-d tensor), a
                :class:`Conditioning` of ``labels``, ``vector`` ``(N, vector_size)`` and/or
                ``spatial`` ``(N, spatial_channels, h, w)``, as declared, or ``None``.
            n: number of images ``N``.
            size: the images' ``(H, W)``; a map must have it, or divide it (then it is
                upsampled, see :func:`~autoregressive.conditioning.fit_map`).

        Returns:
            ``None`` for an unconditional model, else the layers' :class:`Conditioning` (no
            labels): its vector is the one-hot labels followed by ``vector``
            ``(N, num_classes + vector_size)``, its map ``spatial`` ``(N, C_map, H, W)``, on
            the model's device and dtype.

        Raises:
            TypeError: ``cond`` is not labels, a :class:`Conditioning` or ``None``.
            ValueError: a part missing, unexpected or of the wrong shape or values.
        """
        given = _as_conditioning(cond)
        labels = self._labels(given.labels, n)
        vector = self._part("vector", given.vector, self.vector_size, (n, self.vector_size))
        spatial = self._map(given.spatial, n, size)
        vectors = [t for t in (labels, vector) if t is not None]
        if not vectors and spatial is None:
            return None
        return Conditioning(torch.cat(vectors, 1) if vectors else None, spatial)

    def _labels(self, y: torch.Tensor | int | None, n: int) -> torch.Tensor | None:
        """Labels ``(N,)``, or one for all, as one-hot vectors ``(N, classes)``, checked."""
        k = self.num_classes
        if k is None:
            if y is not None:
                raise ValueError(
                    "this model takes no labels (num_classes=None): do not pass them in cond"
                )
            return None
        if y is None:
            raise ValueError(
                f"this model is class-conditional: pass labels of shape ({n},) as cond, or "
                "Conditioning(labels=...)"
            )
        y = check_tensor("labels", y, like=f" ({n},) of class labels")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError("labels must be an integer tensor of class labels, e.g. torch.long")
        y = y.expand(n) if y.dim() == 0 else y  # one label for every image
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
        if self._checks_values() and n > 0 and (y.min().item() < 0 or y.max().item() >= k):
            raise ValueError(f"labels must lie in [0, {k}), got min {y.min()} and max {y.max()}")
        param = self._param()
        labels = y.to(device=param.device, dtype=torch.long)  # one_hot takes int64 only
        return F.one_hot(labels, k).to(param.dtype)  # (N, classes)

    def _map(
        self, t: torch.Tensor | None, n: int, size: tuple[int, int] | None
    ) -> torch.Tensor | None:
        """The map ``(N, C_map, h, w)`` checked and brought to the images' ``size``."""
        c = self.spatial_channels
        if c is not None and size is None:
            raise ValueError("condition(cond, n) of a map needs the images' size=(H, W)")
        if c is None or t is None or size is None:
            return self._part("spatial", t, c, (n, c, *(size or ())))
        if isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[:2] == (n, c):
            t = fit_map(t, size)  # a lower resolution that divides (H, W), upsampled
        return self._part("spatial", t, c, (n, c, *size))

    def _part(
        self, name: str, t: torch.Tensor | None, width: int | None, shape: tuple
    ) -> torch.Tensor | None:
        """A conditioning ``vector`` or ``spatial`` map checked against ``shape``, cast."""
        field = "vector_size" if name == "vector" else "spatial_channels"
        if width is None:
            if t is not None:
                raise ValueError(
                    f"this model takes no {name} ({field}=None): leave Conditioning.{name} unset"
                )
            return None
        want = "(" + ", ".join(map(str, shape)) + ")"
        if t is None:
            kind = "vector" if name == "vector" else "spatial map"
            raise ValueError(
                f"this model is conditioned on a {kind}: pass Conditioning({name}=...) of "
                f"shape {want} as cond"
            )
        t = check_tensor(name, t, floating=True, like=f" of shape {want}")
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
        if self._checks_values() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        param = self._param()
        return t.to(device=param.device, dtype=param.dtype)

    # ------------------------------------------------------------ likelihood
    def _raw(self, x: torch.Tensor, parts: Conditioning | None) -> torch.Tensor:
        """Raw parameters ``(N, C * P, H, W)`` of checked images: the network's one input."""
        dtype = self._param().dtype
        return self.network(self.distribution.preprocess(x, dtype), parts)

    def _checked(self, x: torch.Tensor, cond: Cond) -> Conditioning | None:
        self.check_input(x)
        return self.condition(cond, x.shape[0], size=(x.shape[2], x.shape[3]))

    def forward(self, x: torch.Tensor, cond: Cond = None) -> torch.Tensor:
        """The output distribution's parameters (logits) at every pixel; see the class Shape."""
        raw = self._raw(x, self._checked(x, cond))
        return self.distribution.shape_params(raw, self.data_channels)

    def log_prob(
        self, x: torch.Tensor, cond: Cond = None, *, chunk_size: int | None = None
    ) -> torch.Tensor:
        """Log-likelihood of each image in nats, ``(N, C, H, W) -> (N,)``.

        Args:
            x: the images ``(N, C, H, W)``.
            cond: their conditioning, see the class Shape.
            chunk_size: run the network on at most this many images at a time (default: all
                at once). Under ``torch.no_grad()`` the activations of one chunk are alive at a
                time, so memory is bounded by the chunk, not by ``N`` (with autograd each chunk
                keeps its graph for backward). The results are one call's, to rounding: as
                for any two batch sizes, torch may pick other kernels (convolutions, matrix
                products) for a chunk than for the whole batch.

        Returns:
            ``(N,)`` nats.
        """
        parts = self._checked(x, cond)
        n = x.shape[0]
        if chunk_size is not None:
            chunk_size = check_int("chunk_size", chunk_size, 1, owner="log_prob")
        if chunk_size is None or n <= chunk_size:
            return self.distribution.log_prob(self._raw(x, parts), x)
        pieces = []
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            part = None if parts is None else parts.take(start, stop)
            piece = x[start:stop]  # (chunk, C, H, W)
            pieces.append(self.distribution.log_prob(self._raw(piece, part), piece))
        return torch.cat(pieces)  # (N,)

    def bits_per_dim(
        self, x: torch.Tensor, cond: Cond = None, *, chunk_size: int | None = None
    ) -> torch.Tensor:
        """Negative log-likelihood of each image in bits per dimension, ``(N,)``.

        ``chunk_size`` bounds memory as for :meth:`log_prob`.
        """
        nats = -self.log_prob(x, cond, chunk_size=chunk_size)
        return nats_to_bits_per_dim(nats, math.prod(x.shape[1:]))  # type: ignore[return-value]

    # --------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        cond: Cond = None,
        *,
        size: tuple[int, int] | None = None,
        temperature: float = 1.0,
        image: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        sampler: Sampler | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` images, or complete ``image`` where ``known`` is ``False``.

        Every sampler consumes the same noise (one uniform number per sub-pixel, one more per
        pixel for a logistic mixture's component, drawn up front from ``generator``), so with
        the same seed :class:`~autoregressive.CachedSampler` and
        :class:`~autoregressive.NaiveSampler` return the same images. The sampler feeds the
        network ``distribution.preprocess(x)``, as :meth:`log_prob` does.

        Args:
            n: number of images (taken from ``image`` when completing).
            cond: labels ``(n,)``, or one label for all (``sample(4, 3)``: four images of
                class 3), or a :class:`~autoregressive.Conditioning` of ``labels``, ``vector``
                ``(n, vector_size)`` and ``spatial`` ``(n, spatial_channels, h, w)``, as
                declared; a map of a lower resolution that divides the images' size is
                upsampled (:func:`~autoregressive.conditioning.fit_map`).
            size: ``(H, W)``. Default: ``image``'s size; else, given a map, ``image_size`` when
                the map's size divides it and the map's own size otherwise
                (:func:`~autoregressive.conditioning.map_image_size`); else ``image_size``.
            temperature: divide the logits by it (1: the model as trained, exactly; below 1
                sharpens, above 1 flattens). The samplers still agree for the same seed.
            image: an image batch ``(n, C, H, W)`` to complete.
            known: bool mask ``(H, W)`` or 4-D broadcastable to ``image``'s shape (e.g.
                ``(n, 1, H, W)`` per image), ``True`` where pixels are given
                (whole pixels for a logistic mixture, which draws a pixel's channels together).
            generator: source of randomness (on the model's device or the CPU).
            sampler: how to sample, with its own options: default ``CachedSampler()`` (fast,
                exact); ``NaiveSampler()`` runs the network once per sub-pixel (per pixel for a
                logistic mixture); e.g. ``CachedSampler(progress=True)`` shows a progress bar.

        Returns:
            Images ``(n, C, H, W)``: float ``{0, 1}`` for Bernoulli, ``long`` for categorical
            and logistic mixture.
        """
        sampler = _sampler_or_default(sampler)
        temperature = check_float("temperature", temperature, positive=True, owner="sample")
        param = self._param()
        n, (height, width) = self._sample_size(n, size, image, cond)
        if known is not None and not isinstance(known, torch.Tensor):
            raise TypeError(f"known must be a bool tensor, got {type(known).__name__}")
        parts = self.condition(cond, n, size=(height, width))
        dist = self.distribution
        dist = dist if temperature == 1.0 else dist.with_temperature(temperature)
        channels = dist.noise_channels(self.data_channels)  # C, or C + 1 for a mixture
        noise = draw_noise((n, channels, height, width), generator, device=param.device)
        image, known = (t if t is None else t.to(param.device) for t in (image, known))
        with eval_mode(self):
            x = sampler.sample(self.network, dist, noise, cond=parts, image=image, known=known)
        return x.to(self.distribution.output_dtype(x.dtype))

    def _sample_size(
        self, n: int | None, size: object, image: torch.Tensor | None, cond: Cond
    ) -> tuple[int, tuple[int, int]]:
        """``sample``'s ``n`` and ``(H, W)``: as given, else ``image``'s, else the map's rule."""
        if image is not None:
            self.check_input(image)
            n = image.shape[0] if n is None else n
            size = tuple(image.shape[-2:]) if size is None else size
        if n is not None:
            n = check_int("n", n)
        if n is None or n < 1:
            raise ValueError(f"n must be a positive number of images, got {n}")
        height, width = check_pair("size", size) if size is not None else self._size_for(cond)
        if height < 1 or width < 1:
            raise ValueError(f"size must be (H, W) with H, W >= 1, got {size}")
        return n, (height, width)

    def _size_for(self, cond: Cond) -> tuple[int, int]:
        """The images' size when none is given: from a map (see ``sample``), else image_size."""
        spatial = cond.spatial if isinstance(cond, Conditioning) else None
        if not isinstance(spatial, torch.Tensor) or spatial.dim() != 4 or 0 in spatial.shape:
            return self.image_size
        h, w = spatial.shape[-2:]
        return map_image_size((h, w), self.image_size)


def _as_conditioning(cond: Cond) -> Conditioning:
    """``cond`` as a :class:`Conditioning`: labels (a tensor or an ``int``) wrapped."""
    if cond is None or isinstance(cond, Conditioning):
        return cond or Conditioning()
    is_label = isinstance(cond, numbers.Integral) and not isinstance(cond, bool)
    if isinstance(cond, torch.Tensor) or is_label:
        return Conditioning(labels=cond)  # type: ignore[arg-type]
    raise TypeError(
        "cond must be class labels (N,), a Conditioning(labels=..., vector=..., spatial=...), "
        f"one label for every image (an int) or None, got {type(cond).__name__}"
    )


def _sampler_or_default(sampler: Sampler | None) -> Sampler:
    """``sampler``, or a default :class:`~autoregressive.CachedSampler`; ``TypeError`` else."""
    if sampler is None:
        return CachedSampler()
    if not isinstance(sampler, Sampler):
        raise TypeError(
            "sampler must be a Sampler, e.g. CachedSampler() or NaiveSampler(), got "
            f"{type(sampler).__name__}"
        )
    return sampler


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode within the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
