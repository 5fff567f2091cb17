"""Training utilities for likelihood models: a training step and epoch, evaluation, checkpoints.

Kept apart from the layers and the model: nothing in them imports this package, and it imports
neither of them.

- :mod:`~autoregressive.training.loop`: :class:`NegLogLikelihood`, :func:`train_step`,
  :func:`train_epoch`, :func:`evaluate`, the RNG state and :class:`DivergenceError`.
- :mod:`~autoregressive.training.precision`: float32 or bf16 autocast, chosen for the hardware.
- Checkpoints (re-exported from :mod:`autoregressive.checkpoint`, a floor below, because the
  model's ``save_pretrained`` writes through it too): :func:`save_checkpoint` writes atomically
  (temporary file in the same folder, ``fsync``, ``os.replace``), so a crash while saving never
  damages the previous checkpoint; :func:`load_checkpoint` reads with
  ``torch.load(weights_only=True)``, so a crafted file cannot run code, and turns every kind of
  damage into a :class:`CheckpointError` that says what to do.
"""

from ..checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    atomic_write,
    load_checkpoint,
    save_checkpoint,
)
from .loop import (
    BatchLike,
    DivergenceError,
    EpochProgress,
    EpochStats,
    NegLogLikelihood,
    as_batch,
    check_step,
    distributed_sum,
    evaluate,
    get_rng_state,
    set_rng_state,
    train_epoch,
    train_step,
    unused_parameters,
)
from .precision import (
    PRECISIONS,
    Capabilities,
    Precision,
    choose_precision,
    full_float32,
    resolve_precision,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "PRECISIONS",
    "BatchLike",
    "Capabilities",
    "CheckpointError",
    "DivergenceError",
    "EpochProgress",
    "EpochStats",
    "NegLogLikelihood",
    "Precision",
    "as_batch",
    "atomic_write",
    "check_step",
    "choose_precision",
    "distributed_sum",
    "evaluate",
    "full_float32",
    "get_rng_state",
    "load_checkpoint",
    "resolve_precision",
    "save_checkpoint",
    "set_rng_state",
    "train_epoch",
    "train_step",
    "unused_parameters",
]
