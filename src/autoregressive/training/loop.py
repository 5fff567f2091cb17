"""The training loop of a likelihood model: a training step and epoch, evaluation, RNG state.

- :class:`NegLogLikelihood` wraps a model as a module whose ``forward`` returns the per-image
  negative log-likelihood, so that ``DistributedDataParallel`` and ``torch.compile`` can wrap
  the objective itself (DDP only synchronises gradients of what runs through ``forward``).
- :func:`train_step`, :func:`train_epoch` and :func:`evaluate` work the same in one process and
  under ``torch.distributed``: losses are sums over images divided by the global batch size, and
  the reported numbers are reduced over all processes. Training runs in a
  :class:`~autoregressive.training.Precision` (float32, or bf16 autocast where the hardware
  computes it); evaluation always runs in float32, so reported likelihoods never depend on it.
- :func:`get_rng_state` / :func:`set_rng_state` capture every random number generator a run
  uses, for bit-for-bit resumption; :class:`EpochProgress` is where a pass over the batches
  stands, so that a checkpoint written mid-epoch continues the epoch exactly.
- :func:`train_step` refuses to step on a non-finite loss or gradient
  (:class:`DivergenceError`), so a diverging run stops with finite weights.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import itertools
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..conditioning import Conditioning
from ..data import Batch
from ..distributions.base import nats_to_bits_per_dim
from .precision import Precision, full_float32

#: what the training helpers take as a batch (see :func:`as_batch`)
BatchLike = (
    Batch
    | tuple[torch.Tensor | Conditioning | None, ...]
    | list[torch.Tensor]
    | Mapping[str, torch.Tensor]
    | torch.Tensor
)

#: the keys of a batch given as a dict (see :func:`as_batch`)
_BATCH_KEYS = ("images", "labels", "vector", "spatial")

__all__ = [
    "BatchLike",
    "DivergenceError",
    "EpochProgress",
    "EpochStats",
    "NegLogLikelihood",
    "as_batch",
    "check_step",
    "distributed_sum",
    "evaluate",
    "get_rng_state",
    "set_rng_state",
    "train_epoch",
    "train_step",
    "unused_parameters",
]


class NegLogLikelihood(nn.Module):
    """The per-image negative log-likelihood of a model with a ``log_prob(x, cond)`` method.

    Args:
        model: e.g. a :class:`~autoregressive.PixelCNN`.

    Shape:
        - ``x``: :math:`(N, C, H, W)`.
        - ``cond``: what the model's ``log_prob`` takes: ``None``, labels :math:`(N,)`, or a
          :class:`~autoregressive.Conditioning` of labels :math:`(N,)`, a vector
          :math:`(N, D)` and/or a map :math:`(N, C_{map}, H, W)`.
        - output: :math:`(N,)`, nats.

    Example:
        >>> from autoregressive import Conditioning, PixelCNN, PixelCNNConfig
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=8, vector_size=3))
        >>> x, v = torch.randint(0, 2, (4, 1, 8, 8)).float(), torch.randn(4, 3)
        >>> NegLogLikelihood(model)(x, Conditioning(vector=v)).shape
        torch.Size([4])
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | Conditioning | None = None
    ) -> torch.Tensor:
        return -self.model.log_prob(x, cond)  # type: ignore[operator]  # (N,)


def unused_parameters(
    objective: nn.Module, x: torch.Tensor, cond: torch.Tensor | Conditioning | None = None
) -> list[str]:
    """Names of the parameters that get no gradient from ``objective(x, cond).sum()``.

    ``DistributedDataParallel`` needs ``find_unused_parameters=True`` exactly when this list
    is not empty. The probe leaves every ``.grad`` as it was.

    Args:
        objective: e.g. :class:`NegLogLikelihood`.
        x: a small input batch, e.g. one image.
        cond: its labels or :class:`~autoregressive.Conditioning`, if the model is
            conditional.

    Returns:
        The names, in ``named_parameters`` order.
    """
    params = [(n, p) for n, p in objective.named_parameters() if p.requires_grad]
    saved = [p.grad for _, p in params]
    for _, p in params:
        p.grad = None
    try:
        objective(x, cond).sum().backward()
        return [n for n, p in params if p.grad is None]
    finally:
        for (_, p), g in zip(params, saved, strict=True):
            p.grad = g


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def distributed_sum(values: Iterable[float | torch.Tensor], device: torch.device) -> list[float]:
    """Sum numbers over all processes (float64); the numbers themselves without distribution.

    Args:
        values: this process's numbers.
        device: where the reduction runs (the CUDA device for NCCL, CPU for gloo).

    Returns:
        The sums, one per value, identical on every process.
    """
    t = torch.stack([torch.as_tensor(v, dtype=torch.float64).reshape(()) for v in values])
    t = t.to(device)
    if _world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def _max_over_processes(value: int, device: torch.device) -> int:
    if _world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


class DivergenceError(RuntimeError):
    """A training step met a non-finite loss or gradient; its optimizer step was not taken.

    The weights are those before the step, so they are finite unless they already were not.

    Attributes:
        step: the step's number in its pass (1 for the first), or ``None`` when not known.
        loss: the step's summed loss, nats.
        grad_norm: the 2-norm of all gradients (non-finite when any gradient is).
        lr: the optimizer's (first parameter group's) learning rate.
    """

    def __init__(self, step: int | None, loss: float, grad_norm: float, lr: float) -> None:
        self.step, self.loss, self.grad_norm, self.lr = step, loss, grad_norm, lr
        at = f"step {step}" if step is not None else "a step"
        super().__init__(
            f"training diverged at {at}: loss {loss:.6g}, gradient norm {grad_norm:.6g}, "
            f"learning rate {lr:.6g}. The optimizer step was not taken, so the weights are "
            "those before it. Lower the learning rate, or restart from the last checkpoint."
        )


def check_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, step: int | None = None
) -> None:
    """The divergence guard: call it between ``loss.backward()`` and ``optimizer.step()``.

    :func:`train_step` calls it; a training loop of your own can too. It reads one number
    from the device (so it synchronises with it).

    Args:
        loss: the step's loss (0-dim).
        optimizer: the optimizer about to step; the gradients of its parameters are checked.
        step: the step's number, for the message.

    Raises:
        DivergenceError: the loss or a gradient is not finite.
    """
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    norms = [torch.linalg.vector_norm(g.detach(), dtype=torch.float32) for g in grads]
    grad_norm = torch.linalg.vector_norm(torch.stack(norms)) if norms else loss.new_zeros(())
    loss_and_norm = torch.stack([loss.detach().float().reshape(()), grad_norm.to(loss.device)])
    if not bool(torch.isfinite(loss_and_norm).all()):
        value, norm = loss_and_norm.tolist()
        raise DivergenceError(step, value, norm, float(optimizer.param_groups[0]["lr"]))


def train_step(
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: BatchLike,
    *,
    device: torch.device,
    precision: Precision | None = None,
    step: int | None = None,
) -> torch.Tensor:
    """One optimisation step on the mean negative log-likelihood of a global batch.

    The loss of each process is ``sum(nll) * world_size / batch.total``; DDP averages gradients
    over processes, so the step follows the gradient of the mean over the whole global batch,
    also when processes hold unequal shares. The forward pass runs in ``precision``; the loss
    is summed in float32 whatever the precision. A non-finite loss or gradient raises
    :class:`DivergenceError` before the optimizer steps (this reads one number from the
    device, so it synchronises with it).

    Args:
        objective: :class:`NegLogLikelihood`, possibly wrapped in DDP or ``torch.compile``.
        optimizer: the optimizer of the model's parameters.
        batch: this process's share of the global batch: a :class:`~autoregressive.data.Batch`,
            or in one process what a ``DataLoader`` yields: bare images, an ``(images,
            labels)`` or ``(images, Conditioning)`` pair, or a dict (see :func:`as_batch`). Its
            conditioning reaches the objective as ``objective(images, batch.cond)``.
        device: device of the model.
        precision: autocast and memory format (see
            :func:`~autoregressive.training.precision.resolve_precision`); default plain float32.
        step: the step's number, for the message of a :class:`DivergenceError`.

    Returns:
        The summed NLL of this process's images, nats (a detached 0-dim tensor on ``device``).

    Raises:
        DivergenceError: the loss or a gradient is not finite; the weights are left as they
            were.
        ValueError: ``objective`` does not return one NLL per image (e.g. the model itself
            was passed: wrap it as ``NegLogLikelihood(model)``), or the global batch holds no
            images (or fewer than this process's).
        TypeError: ``batch`` is not a batch (see :func:`as_batch`), or ``precision`` not a
            :class:`~autoregressive.training.Precision`.
    """
    batch = as_batch(batch)
    _check_step_inputs(batch, precision)
    x, cond = _to_device(batch, device, precision)
    with precision.autocast(device) if precision else contextlib.nullcontext():
        nll = objective(x, cond)  # (n,)
    _check_objective_output(objective, nll, x.shape[0])
    total = nll.float().sum()
    loss = total * (_world_size() / batch.total)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    check_step(total, optimizer, step)
    optimizer.step()
    return total.detach()


def _check_step_inputs(batch: Batch, precision: object) -> None:
    """Refuse a precision that is not a :class:`Precision` or ``None``, and an empty batch."""
    if precision is not None and not isinstance(precision, Precision):
        raise TypeError(
            f"precision must be a Precision or None, got {type(precision).__name__} "
            f"{precision!r}; build one with resolve_precision('fp32' or 'bf16', device)"
        )
    if not batch.total >= max(batch.images.shape[0], 1):
        raise ValueError(
            f"the global batch must hold this process's {batch.images.shape[0]} images and at "
            f"least one, got total={batch.total}: there is no mean loss to step on; skip empty "
            "batches (Batch.total counts the images of all processes)"
        )


def _check_objective_output(objective: nn.Module, nll: object, n: int) -> None:
    """Raise ``ValueError`` unless the objective returned one value per image, ``(n,)``."""
    if isinstance(nll, torch.Tensor) and nll.shape == (n,):
        return
    got = f"shape {tuple(nll.shape)}" if isinstance(nll, torch.Tensor) else type(nll).__name__
    inner = getattr(objective, "module", objective)  # under DistributedDataParallel
    if hasattr(inner, "log_prob"):
        raise ValueError(
            f"the objective is the model itself: its forward returns {got}, not one negative "
            f"log-likelihood per image ({n},); pass NegLogLikelihood(model) as the objective"
        )
    raise ValueError(
        f"the objective must return one negative log-likelihood per image, shape ({n},), got "
        f"{got}; e.g. NegLogLikelihood(model)"
    )


def as_batch(batch: BatchLike) -> Batch:
    """``batch`` as a :class:`~autoregressive.data.Batch`.

    Besides a ``Batch``, a single process takes what a ``torch.utils.data.DataLoader`` yields,
    as a whole global batch:

    - bare images ``(n, C, H, W)``, or a one-element tuple of them;
    - an ``(images, labels)`` pair, ``labels`` ``(n,)`` or ``None``;
    - an ``(images, cond)`` pair, ``cond`` a :class:`~autoregressive.Conditioning` of labels,
      a vector and/or a map;
    - a dict of ``"images"`` and any of ``"labels"``, ``"vector"`` and ``"spatial"``, which is
      what a data set of dicts collates to (e.g. ``torch.utils.data.StackDataset(images=x,
      spatial=s)``).

    Under ``torch.distributed`` only a ``Batch`` says how large the global batch is.

    Raises:
        TypeError: anything else, or anything but a ``Batch`` under ``torch.distributed``.
        ValueError: images that are not 4-D ``(n, C, H, W)``.

    Example:
        >>> from autoregressive import Conditioning
        >>> x, s = torch.zeros(4, 1, 8, 8), torch.ones(4, 2, 8, 8)
        >>> as_batch((x, Conditioning(spatial=s))).spatial.shape
        torch.Size([4, 2, 8, 8])
        >>> as_batch({"images": x, "labels": torch.arange(4)}).cond
        tensor([0, 1, 2, 3])
    """
    if isinstance(batch, Batch):
        return _check_images(batch)
    images, cond = _batch_parts(batch)
    if _world_size() > 1:
        raise TypeError(
            "under torch.distributed a batch must be an autoregressive.data.Batch, which says "
            "how large the global batch is: use SeededBatches(..., rank=, world_size=)"
        )
    batch = Batch(images, cond.labels, images.shape[0], vector=cond.vector, spatial=cond.spatial)
    return _check_images(batch)


def _batch_parts(batch: object) -> tuple[torch.Tensor, Conditioning]:
    """The images and the conditioning of a tensor, a pair or a dict; ``TypeError`` else."""
    images, cond = _split_batch(batch)
    parts = (cond.vector, cond.spatial, cond.labels)
    if isinstance(images, torch.Tensor) and all(
        t is None or isinstance(t, torch.Tensor) for t in parts
    ):
        return images, cond
    got = f"a dict of {sorted(batch)}" if isinstance(batch, Mapping) else type(batch).__name__
    raise TypeError(
        "a batch must be an autoregressive.data.Batch, an image tensor (n, C, H, W), an "
        "(images, labels) or (images, Conditioning) pair (labels may be None), or a dict of "
        f"'images' and any of 'labels', 'vector', 'spatial'; got {got}"
    )


@functools.singledispatch
def _split_batch(batch: object) -> tuple[object, Conditioning]:
    """``(images, cond)`` of a DataLoader's batch, by its type.

    One function per form that :func:`as_batch` takes; ``(None, Conditioning())`` for anything
    else, which :func:`_batch_parts` refuses.
    """
    return None, Conditioning()


@_split_batch.register(torch.Tensor)
def _split_images(batch: torch.Tensor) -> tuple[object, Conditioning]:
    """Bare images ``(n, C, H, W)``."""
    return batch, Conditioning()


@_split_batch.register(tuple)
@_split_batch.register(list)
def _split_pair(batch: tuple[Any, ...] | list[Any]) -> tuple[object, Conditioning]:
    """``(images,)``, or ``(images, labels)`` with labels ``(n,)``, a Conditioning or ``None``."""
    if len(batch) not in (1, 2):
        return None, Conditioning()
    given = batch[1] if len(batch) == 2 else None
    return batch[0], given if isinstance(given, Conditioning) else Conditioning(labels=given)


@_split_batch.register(Mapping)
def _split_dict(batch: Mapping[Any, Any]) -> tuple[object, Conditioning]:
    """A dict of ``"images"`` and any of ``"labels"``, ``"vector"`` and ``"spatial"``."""
    if not set(batch) <= set(_BATCH_KEYS):
        return None, Conditioning()
    parts = (batch.get("vector"), batch.get("spatial"), batch.get("labels"))
    return batch.get("images"), Conditioning(*parts)


def _check_images(batch: Batch) -> Batch:
    """``batch``, if its images are a 4-D tensor ``(n, C, H, W)``."""
    images = batch.images
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return batch
    tensor = isinstance(images, torch.Tensor)
    got = f"shape {tuple(images.shape)}" if tensor else type(images).__name__
    flat = tensor and images.dim() == 3
    hint = "; add a channel dimension with images.unsqueeze(1)" if flat else ""
    raise ValueError(f"a batch's images must be a tensor (n, C, H, W), got {got}{hint}")


def _to_device(
    batch: Batch, device: torch.device, precision: Precision | None
) -> tuple[torch.Tensor, torch.Tensor | Conditioning | None]:
    """The batch's images ``(n, C, H, W)`` and ``cond`` on ``device``.

    The images and the map ``(n, C_map, H, W)`` are in the precision's memory format.
    """
    channels_last = precision is not None and precision.channels_last
    layout = torch.channels_last if channels_last else torch.preserve_format

    def move(t: torch.Tensor | None, fmt: torch.memory_format = torch.preserve_format) -> Any:
        return None if t is None else t.to(device, non_blocking=True, memory_format=fmt)

    moved = Batch(move(batch.images, layout), move(batch.labels), batch.total,
                  vector=move(batch.vector), spatial=move(batch.spatial, layout))  # fmt: skip
    return moved.images, moved.cond


@dataclass(frozen=True)
class EpochStats:
    """What one pass over a dataset measured, reduced over all processes.

    Attributes:
        nll: mean negative log-likelihood per image, nats.
        bits_per_dim: the same in bits per dimension.
        images: number of images, over all processes.
        seconds: wall time of the pass (of this process).
        images_per_second: ``images / seconds``.
    """

    nll: float
    bits_per_dim: float
    images: int
    seconds: float
    images_per_second: float


@dataclass
class EpochProgress:
    """Where a pass over the batches stands: what a mid-epoch checkpoint keeps to continue it.

    :func:`train_epoch` hands one to ``after_step`` after every step and continues from one
    given as ``start``; the continued pass ends with the same statistics, to the bit, as an
    uninterrupted one. Every field is a plain number, so ``to_dict()`` goes into a checkpoint.

    Attributes:
        steps: batches done.
        images: images done by this process.
        total: images done by all processes (from the batches' global sizes).
        nll: summed negative log-likelihood of this process's images, nats.
        dims: dimensions of one image.
        seconds: time spent on the pass so far, by this process, earlier runs' parts included.
    """

    steps: int = 0
    images: int = 0
    total: int = 0
    nll: float = 0.0
    dims: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, int | float]:
        """The fields as a dict of plain numbers."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> EpochProgress:
        """The progress saved by :meth:`to_dict` (``ValueError`` when keys are missing)."""
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(state, Mapping) or sorted(state) != sorted(names):
            raise ValueError(f"an EpochProgress needs exactly the keys {names}, got {state!r}")
        return cls(**dict(state))


@dataclass
class _Tally:
    """Running sums of one pass: summed NLL (float64, on the device) and counts."""

    nll: torch.Tensor
    steps: int = 0
    local: int = 0  # images of this process
    total: int = 0  # images of all processes (from the batches' global sizes)
    dims: int = 0  # dimensions of one image
    earlier: float = 0.0  # seconds spent before this run resumed the pass

    @classmethod
    def starting(cls, start: EpochProgress | None, device: torch.device) -> _Tally:
        s = start or EpochProgress()
        nll = torch.tensor(s.nll, dtype=torch.float64, device=device)
        return cls(nll, s.steps, s.images, s.total, s.dims, s.seconds)

    def progress(self, seconds: float) -> EpochProgress:
        """A snapshot; ``seconds`` is the time since this run started the pass (reads the NLL)."""
        return EpochProgress(self.steps, self.local, self.total, self.nll.item(), self.dims,
                             self.earlier + seconds)  # fmt: skip


def _run_pass(
    batches: Iterable[BatchLike],
    score: Callable[[Batch, int], torch.Tensor],
    *,
    device: torch.device,
    max_steps: int | None,
    start: EpochProgress | None = None,
    after_step: Callable[[_Tally, float], None] | None = None,
) -> tuple[EpochStats, _Tally]:
    """The batch loop shared by training and evaluation; reduces the sums over processes.

    ``score(batch, step)`` returns the summed NLL of the batch's images (0-dim, nats); ``step``
    counts from 1. A pass continued from ``start`` skips the batches it has done (they are
    drawn again, not scored, so a seeded order continues where it stopped). Returns the
    statistics over all processes and this process's own tally.
    """
    begin = time.perf_counter()
    tally = _Tally.starting(start, device)
    for given in itertools.islice(batches, tally.steps, None):
        if max_steps is not None and tally.steps >= max_steps:
            break
        batch = as_batch(given)
        tally.nll += score(batch, tally.steps + 1)
        tally.steps += 1
        tally.local += batch.images.shape[0]
        tally.total += batch.total
        tally.dims = math.prod(batch.images.shape[1:])
        if after_step is not None:
            after_step(tally, time.perf_counter() - begin)
    seconds = tally.earlier + time.perf_counter() - begin
    summed, images = distributed_sum([tally.nll, tally.local], device)
    if not images:
        raise ValueError(
            f"the pass saw no images ({tally.steps} batches): the data set is empty, or "
            "max_steps=0; there is no likelihood to report"
        )
    dims = _max_over_processes(tally.dims, device)
    stats = EpochStats(
        nll=summed / images,
        bits_per_dim=float(nats_to_bits_per_dim(summed / images, dims)),
        images=int(images),
        seconds=seconds,
        images_per_second=images / seconds if seconds > 0 else math.nan,
    )
    return stats, tally


def train_epoch(
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[BatchLike],
    *,
    device: torch.device,
    precision: Precision | None = None,
    max_steps: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    log_every: int = 10,
    start: EpochProgress | None = None,
    after_step: Callable[[EpochProgress], None] | None = None,
) -> EpochStats:
    """Train for one pass over ``batches`` and return the mean training NLL.

    Args:
        objective: see :func:`train_step`.
        optimizer: see :func:`train_step`.
        batches: this process's batches, e.g. a :class:`~autoregressive.data.BinarizedBatches`.
        device: device of the model.
        precision: see :func:`train_step`.
        max_steps: stop after this many steps (for tests and smoke runs).
        progress: called every ``log_every`` steps and after the last with ``(steps, images of
            all processes, running mean NLL of this process's images)``.
        log_every: steps between ``progress`` calls (each call synchronises with the device).
        start: continue the pass from a mid-epoch checkpoint: its first ``start.steps`` batches
            are skipped, so ``batches`` must repeat the saved run's (a seeded order).
        after_step: called after every step with where the pass stands, e.g. to save a
            mid-epoch checkpoint (each call reads the running NLL from the device).

    Returns:
        The statistics; ``nll`` is the mean over all images of all processes, each scored by
        the weights of its step; ``seconds`` includes the parts of the pass before ``start``.

    Raises:
        DivergenceError: a step met a non-finite loss or gradient (see :func:`train_step`).
        ValueError: no images, or the objective's output is not one NLL per image.
    """

    def report(t: _Tally) -> None:
        if progress is not None:
            progress(t.steps, t.total, t.nll.item() / max(t.local, 1))

    def step(batch: Batch, number: int) -> torch.Tensor:
        return train_step(
            objective, optimizer, batch, device=device, precision=precision, step=number
        )

    def each_step(t: _Tally, seconds: float) -> None:
        if t.steps % log_every == 0:
            report(t)
        if after_step is not None:
            after_step(t.progress(seconds))

    stats, tally = _run_pass(batches, step, device=device, max_steps=max_steps, start=start,
                             after_step=each_step)  # fmt: skip
    if tally.steps % log_every != 0:
        report(tally)
    assert _world_size() == 1 or stats.images == tally.total, "processes disagree on batches"
    return stats


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[BatchLike],
    *,
    device: torch.device,
    max_steps: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EpochStats:
    """Mean negative log-likelihood of a dataset, in nats and bits per dimension.

    Always computed in float32 (no autocast, whatever precision the model trained in; no TF32
    in cuDNN's convolutions; a model whose weights are in a lower precision, such as
    ``model.bfloat16()``, is scored through a float32 copy) and summed in float64, so that
    reported likelihoods never depend on the training precision. Under ``torch.distributed``
    each process scores its share and the sums are reduced, so the result is the mean over
    the whole dataset on every process.

    Args:
        model: a model with ``log_prob(x, cond)`` (not a DDP wrapper); switched to eval mode and
            back.
        batches: this process's batches (e.g. :class:`~autoregressive.data.BinarizedBatches`
            with ``binarize=None`` over a fixed binarization of the test set).
        device: device of the model.
        max_steps: score only this many batches.
        progress: called after every batch with ``(batches, images)`` done by this process,
            e.g. to move a progress bar (it does not synchronise with the device).

    Returns:
        The statistics; ``images_per_second`` is the scoring throughput.

    Raises:
        ValueError: the batches held no images.
    """
    scored = _in_float32(model)

    def score(batch: Batch, step: int) -> torch.Tensor:
        x, cond = _to_device(batch, device, None)
        if x.shape[0] == 0:
            return torch.zeros((), dtype=torch.float64, device=device)
        return -scored.log_prob(x, cond).double().sum()  # type: ignore[operator]

    def report(t: _Tally, seconds: float) -> None:
        if progress is not None:
            progress(t.steps, t.local)

    was_training = model.training
    model.eval()
    scored.eval()
    try:
        with full_float32(device):
            return _run_pass(batches, score, device=device, max_steps=max_steps,
                             after_step=report)[0]  # fmt: skip
    finally:
        model.train(was_training)


def _in_float32(model: nn.Module) -> nn.Module:
    """``model``, or a float32 copy of it if a floating weight or buffer is in less precision."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    low = any(t.is_floating_point() and t.dtype in _BELOW_FLOAT32 for t in tensors)
    return copy.deepcopy(model).float() if low else model


_BELOW_FLOAT32 = frozenset({torch.float16, torch.bfloat16})


# --------------------------------------------------------------------------- random state
def get_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Capture every random number generator a run may use.

    Torch's CPU generator, every initialised CUDA device's, Python's ``random``, NumPy's
    legacy global generator (when NumPy is imported) and the ``generators`` given. The result
    holds only tensors and plain Python values, so it loads with ``weights_only=True``.

    Args:
        generators: named extra generators (e.g. of a data pipeline).

    Returns:
        A dict for :func:`set_rng_state`.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    np = sys.modules.get("numpy")
    if np is not None:
        name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
        state["numpy"] = {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype("int64")),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    if generators:
        state["generators"] = {k: g.get_state() for k, g in generators.items()}
    return state


def set_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Restore the generators captured by :func:`get_rng_state`.

    Args:
        state: the captured state.
        generators: the same named generators that were captured; each is restored in place.

    Raises:
        ValueError: a generator in ``generators`` has no captured state.
    """
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    np = sys.modules.get("numpy")
    if np is not None and "numpy" in state:
        s = state["numpy"]
        keys = s["keys"].numpy().astype("uint32")
        np.random.set_state((s["name"], keys, s["pos"], s["has_gauss"], s["cached_gaussian"]))
    saved = state.get("generators", {})
    for name, generator in (generators or {}).items():
        if name not in saved:
            raise ValueError(f"the checkpoint has no state for the generator {name!r}")
        generator.set_state(saved[name])
