"""The stepping protocol: how a causal layer computes itself one pixel at a time.

Fast PixelCNN++ (Ramachandran et al., 2017, https://arxiv.org/abs/1704.06001) observed that in a
masked-convolution network a layer's activation at pixel ``p`` depends only on earlier pixels,
so once ``p``'s inputs are known it can be computed from cached activations and never again.
:class:`~autoregressive.CachedSampler` drives every layer of a network through that idea, and
this module is the contract between the sampler and the layers:

- a causal layer has a method ``stepper(batch, width, cond)`` that returns a :class:`Stepper`,
  an object that keeps what the layer needs of earlier rows and computes the layer's output at
  one pixel from its input there (:class:`~autoregressive.MaskedConv2d`,
  :class:`~autoregressive.ResidualBlock`, :class:`~autoregressive.GatedStack`,
  :class:`~autoregressive.CausalSelfAttention2d`, :class:`~autoregressive.GatedResidualBlock`,
  :class:`~autoregressive.SnailStack` and :class:`~autoregressive.CausalSequential` implement it
  next to their ``forward``);
- a module without parameters or buffers that maps every pixel's features on their own (an
  activation such as ``nn.ReLU``) needs nothing: it is applied to each pixel's ``(N, C)``
  features as they pass.

A stepper may also compute a whole row at once from a guess of its inputs there
(:meth:`Stepper.step_row`, announced by :attr:`Stepper.steps_rows`): the sampler then finds a
row as the fixed point of whole-row passes, usually in a few passes instead of ``W`` steps (see
:class:`~autoregressive.CachedSampler`). It is optional: without it the sampler steps pixels.
A stepper whose whole-row pass can also run for some of the images only (``images=``,
announced by :attr:`Stepper.steps_subsets`) lets the sampler pass again only the images whose
row has not settled.

A stepper that keeps something of every earlier pixel (the keys and values of an attention
layer, :class:`~autoregressive.sampling.attention_stepper.AttentionStepper`) allocates it in
:meth:`Stepper.begin_image`, which is told the image's height, and sets
:attr:`Stepper.replays_rows` to ``False``: its rows differ, so they are not replayed. If each
step reads all of it, it also sets :attr:`Stepper.attends_prefix`: whole-row passes then pay
at any batch.

A stepper whose output at a pixel depends only on its input at that pixel sets
:attr:`Stepper.pixelwise` (activations; :class:`~autoregressive.CategoricalEmbedding`). Such
layers may come before the network's first masked layer: a container then passes each drawn
pixel through them before the first layer that is not pixelwise stores it (:meth:`Stepper.write`).

:func:`stepper_for` is the one place that decides which of the two a module is; a block of your
own only has to implement the method (see the tutorial, *Write a block the sampler can step*).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import nn

from ..conditioning import RowConditioning
from ..validation import is_elementwise

__all__ = [
    "CompositeStepper", "ElementwiseStepper", "Stepper", "batch_index", "pass_row", "stepper_for",
]  # fmt: skip


class Stepper:
    """Computes a causal layer one pixel at a time, in raster order.

    For each row ``i`` the sampler calls :meth:`begin_row` once, then :meth:`step` for columns
    ``j = 0 .. W - 1`` in order (several times per pixel for colour images with channel-wise
    masks, once per channel, with the same column: a step must not assume it sees a pixel
    once; once per pixel with pixel-wise masks). The outputs of the
    layers below are the inputs of the layer above. Every row must run the same tensor
    operations on the same buffers (the sampler may record one row as a CUDA graph and replay
    it), so keep per-row state in preallocated tensors and update them in place.

    A layer that can be the network's first one (it reads the image itself, and its output at a
    pixel does not depend on that pixel's own value, like a mask-A convolution) sets
    :attr:`reads_image` and implements :meth:`write`. Only :attr:`pixelwise` layers (an input
    embedding, an activation) may come before it.

    Example:
        >>> class Doubled(Stepper):  # the stepper of a module computing 2 * x
        ...     def step(self, j, x):
        ...         return 2 * x
        >>> Doubled().step(0, torch.ones(1, 2))
        tensor([[2., 2.]])
    """

    #: whether the layer may come first: its output at a pixel ignores that pixel's value
    reads_image: bool = False
    #: whether its output at a pixel depends only on its input at that pixel (it keeps no rows
    #: and may precede the layer that reads the image, which then stores its output)
    pixelwise: bool = False
    #: whether :meth:`step_row` is implemented (the sampler may then compute rows at once)
    steps_rows: bool = False
    #: whether every row runs the same operations on the same buffers, so that one recorded row
    #: replays for all of them (an attention layer's attended prefix grows: it sets ``False``)
    replays_rows: bool = True
    #: whether a step reads a cache of every earlier pixel (an attention layer's keys and
    #: values): stepping then reads the whole prefix once per pixel, a whole-row pass once per
    #: row, so the sampler passes rows at any batch (see :class:`~autoregressive.CachedSampler`)
    attends_prefix: bool = False
    #: whether :meth:`step_row` takes ``images``: a pass for some of the images only, so that
    #: the sampler passes again only the images whose row has not settled
    steps_subsets: bool = False

    def begin_image(self, height: int) -> None:
        """Prepare to sample images of ``height`` rows, before ``begin_row(0)``.

        Called once per sampling call: allocate here the caches that hold the whole image.
        """

    def begin_row(self, i: int) -> None:
        """Prepare row ``i``: e.g. shift the cached rows up by one."""

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        """The layer's output ``(N, C_out)`` at column ``j``, from its input ``(N, C_in)`` there.

        ``x`` may be a view into another layer's buffer: copy it if it must be kept.
        """
        raise NotImplementedError

    def step_row(
        self, x: torch.Tensor, start: int = 0, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The layer's outputs ``(N, W - start, C_out)`` at columns ``start .. W - 1`` at once.

        ``x`` ``(N, W - start, C_in)`` holds the layer's inputs at those columns: a guess that
        the sampler refines, calling this several times per row (after :meth:`begin_row`) with
        a ``start`` that never decreases; the inputs stored at earlier columns are kept. The
        result must equal calling :meth:`step` for ``j = start .. W - 1`` with ``x[:, j - start]``
        (and, for the layer that :attr:`reads_image`, :meth:`write` after each). Optional: set
        :attr:`steps_rows` when implemented.

        ``images`` (only passed when :attr:`steps_subsets` is set): the increasing batch
        indices ``(N',)`` (int64) of the images ``x`` ``(N', W - start, C_in)`` holds; the pass
        reads and stores those images' rows only, and returns ``(N', W - start, C_out)``.
        ``None``: every image.
        """
        raise NotImplementedError(f"{type(self).__name__} steps one pixel at a time")

    def write(self, j: int, x: torch.Tensor) -> None:
        """Store the drawn pixel ``(N, C_in)`` at column ``j`` (only the first layer is asked)."""
        raise NotImplementedError(f"{type(self).__name__} does not read the image")

    def cache_nbytes(self) -> int:
        """Bytes held in caches (reported as ``CachedSampler.last_cache_nbytes``)."""
        return 0


def batch_index(images: torch.Tensor | None) -> torch.Tensor | slice:
    """The index of the images a pass is for along a batch dimension: ``images``, or all (``:``).

    Example:
        >>> t = torch.zeros(3, 2)
        >>> t[batch_index(torch.tensor([0, 2])), 1:] = 1.0
        >>> t.tolist()
        [[0.0, 1.0], [0.0, 0.0], [0.0, 1.0]]
    """
    return slice(None) if images is None else images


def pass_row(
    stepper: Stepper, x: torch.Tensor, start: int, images: torch.Tensor | None
) -> torch.Tensor:
    """``stepper.step_row(x, start, images)``, leaving ``images`` out when it is ``None``.

    How a composite stepper hands a pass on to a part: a part whose ``step_row`` has no
    ``images`` (a block of your own) is only ever called without it.
    """
    return stepper.step_row(x, start) if images is None else stepper.step_row(x, start, images)


class CompositeStepper(Stepper):
    """A stepper computed by other steppers, its :attr:`parts` (a block's layers, a stack's blocks).

    Every image and every row begins in each part (:meth:`begin_image`, :meth:`begin_row`), the
    caches are the parts' caches, and whole rows are stepped when every part can; a subclass
    computes :meth:`step` (and :meth:`step_row`) from the parts. It attends to the prefix
    (:attr:`Stepper.attends_prefix`) when any part does. A subclass whose :meth:`step_row`
    hands ``images`` on to its parts sets :attr:`Stepper.steps_subsets` from
    :meth:`parts_step_subsets`.

    Args:
        parts: the steppers, in any order.
    """

    def __init__(self, parts: Sequence[Stepper]) -> None:
        self.parts = list(parts)
        self.steps_rows = all(s.steps_rows for s in self.parts)
        self.attends_prefix = any(s.attends_prefix for s in self.parts)

    def parts_step_subsets(self) -> bool:
        """Whether every part's :meth:`~Stepper.step_row` takes ``images``."""
        return all(s.steps_subsets for s in self.parts)

    def begin_image(self, height: int) -> None:
        for s in self.parts:
            s.begin_image(height)

    def begin_row(self, i: int) -> None:
        for s in self.parts:
            s.begin_row(i)

    def cache_nbytes(self) -> int:
        return sum(s.cache_nbytes() for s in self.parts)


class ElementwiseStepper(Stepper):
    """Steps a module that maps each pixel's features on their own, such as ``nn.GELU``.

    Args:
        module: applied as it is to each pixel's ``(N, C)`` features.

    Example:
        >>> ElementwiseStepper(nn.ReLU()).step(0, torch.tensor([[-1.0, 2.0]]))
        tensor([[0., 2.]])
    """

    pixelwise = True
    steps_rows = True

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    steps_subsets = True  # it keeps nothing of any image

    def step_row(
        self, x: torch.Tensor, start: int = 0, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        n, w, c = x.shape  # the module sees (N * W, C) pixels, as in step
        return self.module(x.reshape(n * w, c)).view(n, w, -1)


#: probe results by module (a sampler is built for every call)
_probed: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def _is_pixelwise(module: nn.Module) -> bool:
    """Whether a module without parameters or buffers maps each pixel's channels on their own.

    Probed once per module by :func:`autoregressive.validation.is_elementwise` (per pixel): a
    softmax over the channels steps, a pooling does not.
    """
    if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
        return False
    if module not in _probed:
        _probed[module] = is_elementwise(module, per="pixel")
    return _probed[module]


def stepper_for(module: nn.Module, batch: int, width: int, cond: RowConditioning | None) -> Stepper:
    """The :class:`Stepper` that computes ``module`` one pixel at a time.

    Args:
        module: a layer with a ``stepper(batch, width, cond)`` method, or a parameter-free
            module that maps each pixel's features on their own (``nn.ReLU``, ``nn.GELU``, ...).
        batch: images sampled at once, ``N``.
        width: image width ``W``.
        cond: what the sampler hands every layer: a
            :class:`~autoregressive.conditioning.RowConditioning` (the vectors ``(N, C_cond)``
            and a buffer holding the current row of a conditioning map), or ``None``.

    Returns:
        The module's own stepper, or an :class:`ElementwiseStepper`.

    Raises:
        ValueError: if ``module`` is neither; the message says how to add the method.

    Example:
        >>> stepper_for(nn.GELU(), batch=2, width=5, cond=None).step(0, torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """
    make = getattr(module, "stepper", None)
    if callable(make):
        return make(batch, width, cond)
    if _is_pixelwise(module):
        return ElementwiseStepper(module)
    raise ValueError(
        f"cached sampling cannot step a {type(module).__name__}: it is not elementwise and has no "
        "`stepper(batch, width, cond)` method. Give it one that returns an "
        "autoregressive.Stepper (begin_row(i), step(j, x); see the tutorial section 'Write a "
        "block the sampler can step'; containers: CausalSequential), or sample with "
        "naive_sample / method='naive'"
    )
