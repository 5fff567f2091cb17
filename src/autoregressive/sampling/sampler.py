"""What every sampler is: an object that holds its options and samples any network.

As diffusers keeps a scheduler apart from the model, a sampler here is an object of its own:
its constructor takes its options, and :meth:`Sampler.sample` takes the network, the output
distribution and the noise that fixes the result.
:meth:`PixelCNN.sample <autoregressive.PixelCNN.sample>` takes one
(``sampler=CachedSampler(rows_at_once=False)``, ``sampler=NaiveSampler()``).

Both samplers take ``progress``: ``True`` shows a `tqdm <https://tqdm.github.io>`_ bar of the
rows drawn (tqdm is not a dependency of the library: ``pip install tqdm``, or the ``progress``
extra), a function ``progress(rows_done, rows)`` is called after each row, ``False`` (default)
reports nothing. The images are the same either way.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict

import torch
from torch import nn

from ..conditioning import Conditioning, check_conditioning
from ..distributions.base import Distribution

if TYPE_CHECKING:  # annotations only: typing.Unpack is Python 3.11+
    from typing_extensions import Unpack

__all__ = [
    "Choose",
    "Progress",
    "RowProgress",
    "SampleInputs",
    "SampleRequest",
    "Sampler",
    "check_progress",
]

#: who picks each sub-step's value: ``choose(raw, noise) -> value``, from the sub-step's raw
#: parameters ``(N, P)`` and prepared noise ``(N, *U)`` to its value ``(N, *V)`` (the shapes of
#: the distribution's :class:`~autoregressive.DrawPlan`). Sampling's is ``distribution.draw``,
#: the inverse CDF of the noise; an entropy decoder's reads the value from a stream instead.
Choose = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


#: a sampler's ``progress`` option: ``True`` (a tqdm bar), ``False`` (nothing), or a function
#: ``progress(rows_done, rows)`` called after each row of the images is drawn
Progress = bool | Callable[[int, int], object]


def check_progress(progress: object, owner: str) -> Progress:
    """``progress`` after checking it; with ``True``, that tqdm can be imported.

    Raises:
        TypeError: ``progress`` is neither a ``bool`` nor a function.
        ImportError: ``progress=True`` and tqdm is not installed.

    Example:
        >>> from autoregressive.sampling.sampler import check_progress
        >>> check_progress(lambda done, rows: None, "NaiveSampler") is not False
        True
    """
    if isinstance(progress, bool):
        if progress:
            _tqdm(owner)
        return progress
    if not callable(progress):
        raise TypeError(
            f"{owner}: progress must be True (a tqdm bar), False or a function "
            f"progress(rows_done, rows), got {type(progress).__name__}"
        )
    return progress  # type: ignore[return-value]


def _tqdm(owner: str) -> Any:
    """tqdm's bar class, or an ``ImportError`` that says how to get it."""
    try:
        return importlib.import_module("tqdm").tqdm
    except ImportError as err:
        raise ImportError(
            f"{owner}(progress=True) draws a tqdm bar, and tqdm is not installed: pip install "
            "tqdm (or autoregressive[progress]), or pass a function progress(rows_done, rows)"
        ) from err


class RowProgress:
    """A sampler's report of the rows drawn in one call, per its ``progress`` option.

    A context manager: ``report(done)`` after each row, closed (the bar finished) on exit.

    Args:
        progress: see :data:`Progress`.
        rows: the images' ``H``.
        owner: the sampler's name, the bar's label.

    Example:
        >>> from autoregressive.sampling.sampler import RowProgress
        >>> seen = []
        >>> with RowProgress(lambda done, rows: seen.append((done, rows)), 2, "x") as report:
        ...     report(1); report(2)
        >>> seen
        [(1, 2), (2, 2)]
    """

    def __init__(self, progress: Progress, rows: int, owner: str) -> None:
        self.rows = rows
        self._bar = _tqdm(owner)(total=rows, desc=owner, unit="row") if progress is True else None
        self._call = progress if callable(progress) else None

    def __call__(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
        elif self._call is not None:
            self._call(done, self.rows)

    def __enter__(self) -> RowProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()


class SampleInputs(TypedDict, total=False):
    """The keyword arguments of :meth:`Sampler.sample` besides the noise, as one type.

    :meth:`Sampler.sample_with_params`, :func:`~autoregressive.cached_sample` and
    :func:`~autoregressive.naive_sample` take them as ``**inputs``.
    """

    cond: Conditioning | None  # vectors (N, C_cond) and/or maps (N, C_map, H, W)
    image: torch.Tensor | None  # (N, C, H, W): with known, the pixels kept
    known: torch.Tensor | None  # bool (H, W) or 4-D, broadcast to (N, C, H, W): True = given


@dataclass(frozen=True)
class SampleRequest:
    """The arguments of one :meth:`Sampler.sample` call, as its hook ``_draw`` receives them.

    Built once by :meth:`Sampler.sample` after checking the kind of ``cond``; see there for
    each field.
    """

    network: nn.Module
    distribution: Distribution
    noise: torch.Tensor
    cond: Conditioning | None
    image: torch.Tensor | None
    known: torch.Tensor | None
    return_params: bool
    #: who picks each sub-step's value; ``None``: ``distribution.draw``, from the noise
    choose: Choose | None = None


class Sampler(ABC):
    """A way of drawing images from a causal network and its output distribution.

    A sampler keeps no state of a network between calls, so one object may serve several
    networks; :attr:`last_passes` reports on the most recent call.

    Example:
        >>> from autoregressive import PixelCNN, PixelCNNConfig, CachedSampler, NaiveSampler
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8))
        >>> noise = draw_noise((2, 1, 4, 4), torch.Generator().manual_seed(0))
        >>> images = [s.sample(model.network, model.distribution, noise)
        ...           for s in (CachedSampler(), NaiveSampler())]
        >>> torch.equal(*images)
        True
    """

    #: network passes of the most recent call (steps, or whole-row passes)
    last_passes: int = 0
    #: how each call reports the rows it has drawn (see :data:`Progress`); a constructor option
    progress: Progress = False

    def _row_progress(self, rows: int) -> RowProgress:
        """The report of one call of ``rows`` rows, per :attr:`progress`."""
        return RowProgress(self.progress, rows, type(self).__name__)

    def sample(
        self,
        network: nn.Module,
        distribution: Distribution,
        noise: torch.Tensor,
        *,
        cond: Conditioning | None = None,
        image: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw images ``(N, C, H, W)`` from ``noise`` ``(N, C', H, W)``.

        Args:
            network: a causal network, ``(N, C, H, W) -> (N, C * P, H, W)``.
            distribution: the output distribution.
            noise: uniform noise from :func:`~autoregressive.draw_noise`, with
                ``C' = distribution.noise_channels(C)``; fixes the result.
            cond: a layer-level :class:`~autoregressive.Conditioning` (vectors ``(N, C_cond)``
                and/or maps ``(N, C_map, H, W)``) or ``None``; a bare tensor is refused (wrap a
                vector as ``Conditioning(vector=v)``).
            image: with ``known``, an image ``(N, C, H, W)`` whose known pixels are kept.
            known: bool mask ``(H, W)`` or 4-D broadcastable to ``(N, C, H, W)``, ``True``
                where ``image`` is given.

        Returns:
            The images in the network's dtype.
        """
        cond = check_conditioning(cond, type(self).__name__)
        request = SampleRequest(network, distribution, noise, cond, image, known, False)
        return self._draw(request)[0]

    def sample_with_params(
        self,
        network: nn.Module,
        distribution: Distribution,
        noise: torch.Tensor,
        **inputs: Unpack[SampleInputs],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sample`, also returning the raw parameters ``(N, C * P, H, W)``.

        The parameters are those computed for each sub-pixel as it was drawn; when every pixel
        is known this is teacher forcing, and they equal one forward pass of the network.

        Args:
            network: as for :meth:`sample`.
            distribution: as for :meth:`sample`.
            noise: as for :meth:`sample`.
            inputs: ``cond``, ``image`` and ``known``, as for :meth:`sample`.

        Returns:
            ``(images, params)``: images ``(N, C, H, W)``, parameters ``(N, C * P, H, W)``.
        """
        cond = check_conditioning(inputs.get("cond"), type(self).__name__)
        image, known = inputs.get("image"), inputs.get("known")
        request = SampleRequest(network, distribution, noise, cond, image, known, True)
        images, params = self._draw(request)
        if params is None:
            raise RuntimeError(f"{type(self).__name__}._draw returned no parameters; see Sampler")
        return images, params

    def sample_with_choice(
        self,
        network: nn.Module,
        distribution: Distribution,
        noise: torch.Tensor,
        choose: Choose,
        **inputs: Unpack[SampleInputs],
    ) -> torch.Tensor:
        """:meth:`sample`, each sub-step's value picked by ``choose`` instead of drawn.

        The hook that turns a sampler into an entropy coder's driver (see
        :mod:`autoregressive.coding`): ``choose(raw, noise)`` is called once per sub-step of
        the distribution's :class:`~autoregressive.DrawPlan`, known ones included (their value
        is then replaced by the known one), in the order of the images' sub-steps: rows top to
        bottom, pixels left to right, a pixel's sub-steps in turn, each call for the whole
        batch. ``sample(...)`` is ``sample_with_choice(..., distribution.draw)``. A
        :class:`~autoregressive.CachedSampler` runs such a call step by step, eagerly (no
        whole-row passes, no CUDA graph), so ``choose`` runs once per sub-step and may keep
        state.

        Args:
            network: as for :meth:`sample`.
            distribution: as for :meth:`sample`.
            noise: as for :meth:`sample`; ``choose`` receives each sub-step's prepared part
                (any values in ``[0, 1)`` when it ignores them).
            choose: ``(raw (N, P), noise (N, *U)) -> value (N, *V)``, see :data:`Choose`.
            inputs: ``cond``, ``image`` and ``known``, as for :meth:`sample`.

        Returns:
            The images ``(N, C, H, W)`` in the network's dtype, holding the values it chose.

        Example:
            >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8))
            >>> ones = lambda raw, noise: torch.ones(raw.shape[0], dtype=torch.bool)
            >>> noise = draw_noise((2, 1, 3, 3))
            >>> CachedSampler().sample_with_choice(model.network, Bernoulli(), noise, ones).sum()
            tensor(18.)
        """
        cond = check_conditioning(inputs.get("cond"), type(self).__name__)
        image, known = inputs.get("image"), inputs.get("known")
        if not callable(choose):
            raise TypeError(
                f"choose must be a function (raw, noise) -> value, got {type(choose).__name__}"
            )
        request = SampleRequest(network, distribution, noise, cond, image, known, False, choose)
        return self._draw(request)[0]

    @abstractmethod
    def _draw(self, request: SampleRequest) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What a sampler implements: the images of one request, and its parameters.

        Returns:
            The images ``(N, C, H, W)``, and the raw parameters ``(N, C * P, H, W)`` if
            ``request.return_params`` (else ``None``).
        """
