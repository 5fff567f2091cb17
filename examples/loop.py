"""The training loop the example scripts share: epochs, progress bars, checkpoints, resume.

A run (:class:`Run`: model, optimizer, objective, precision and what has been recorded) trains
epoch by epoch (:func:`train_epochs`, :func:`train_one_epoch`) with a progress bar; the whole
state is saved after every epoch and, every ``--checkpoint-minutes``, mid-epoch
(:class:`MidEpochCheckpoints`), so that ``--resume`` (:func:`resume_run`) continues from the
step it holds, with the batches, running sums and random state of an uninterrupted run.
Nothing non-finite is ever saved (:class:`NonFiniteState`): a diverging run keeps its last good
checkpoint. A script that trains several models one after the other (the VQ-VAE, then its
prior) runs :func:`train_epochs` once for each, with a :class:`Phase` that says how many epochs
it has and how one is scored.

The checkpoint of a single run (:func:`save_run`) holds ``epoch`` (the last finished one),
``progress`` (how far the next one came, or ``None``), ``model``, ``optimizer``, ``rng``,
``metrics`` (one record per finished epoch), ``initial_test_nll``, ``pictures``, ``run`` (what a
resumed run must match) and ``args``; that of runs in phases, :func:`save_phases`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
import torch.distributed as dist
from tqdm import tqdm

from autoregressive import PixelCNN, PixelCNNConfig
from autoregressive.training import (
    Capabilities,
    EpochProgress,
    EpochStats,
    NegLogLikelihood,
    Precision,
    choose_precision,
    evaluate,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    train_epoch,
    unused_parameters,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
from common import pick_device
from outputs import describe, eta, plain_args, run_summary, write_json

Log = Callable[..., None]
#: What a run trains: a PixelCNN, or another model (the VQ-VAE of the prior example).
ModelT = TypeVar("ModelT", bound=torch.nn.Module)


# ---------------------------------------------------------------------------- progress bars
Postfix = Callable[[float], dict[str, str]]


def loss(nll: float) -> dict[str, str]:
    """The default postfix of a progress bar: the running loss."""
    return {"loss": f"{nll:.2f}"}


def progress_bar(
    steps: int, desc: str, start: EpochProgress | None = None, postfix: Postfix = loss
) -> tuple[tqdm, Callable[[int, int, float], None]]:
    """A tqdm bar (from ``start`` when resumed) and the ``progress`` callback that feeds it.

    The callback takes ``(steps done, images done, running loss)``, what ``train_epoch`` hands
    its ``progress``; the bar shows ``postfix(running loss)`` and the images per second. Only
    the chief process of a distributed run shows its bars.
    """
    done0, images0 = (start.steps, start.total) if start else (0, 0)
    bar = tqdm(total=steps, initial=done0, desc=desc, unit="step", disable=not chief(),
               mininterval=0.5, dynamic_ncols=True)  # fmt: skip
    tick = time.perf_counter()

    def progress(done: int, images: int, running: float) -> None:
        bar.update(done - bar.n)
        rate = (images - images0) / max(time.perf_counter() - tick, 1e-9)
        bar.set_postfix(postfix(running) | {"img_s": f"{rate:.0f}"}, refresh=False)

    return bar, progress


def steps_of(batches: Sized, limit: int | None) -> int:
    """The steps a pass over ``batches`` takes, at most ``limit``."""
    return len(batches) if limit is None else min(len(batches), limit)


def score_test_set(
    model: torch.nn.Module, batches: Any, device: torch.device, limit: int | None = None
) -> EpochStats:
    """The test NLL in fp32 (``evaluate``), at most ``limit`` batches, with a progress bar."""
    with tqdm(total=steps_of(batches, limit), desc="test set", unit="batch", disable=not chief(),
              mininterval=0.5, dynamic_ncols=True, leave=False) as bar:  # fmt: skip
        return evaluate(model, batches, device=device, max_steps=limit,
                        progress=lambda done, images: bar.update(done - bar.n))  # fmt: skip


# ------------------------------------------------------------------------------ checkpoints
class NonFiniteState(RuntimeError):
    """The weights or the optimizer's state hold a NaN or an infinity: nothing is saved."""


def non_finite(state: Any, where: str) -> list[str]:
    """Names of the floating-point tensors in a nested state that hold a NaN or infinity."""
    if isinstance(state, torch.Tensor):
        bad = state.is_floating_point() and not bool(torch.isfinite(state).all())
        return [where] if bad else []
    if isinstance(state, dict):
        return [n for k, v in state.items() for n in non_finite(v, f"{where}.{k}")]
    if isinstance(state, (list, tuple)):
        return [n for i, v in enumerate(state) for n in non_finite(v, f"{where}[{i}]")]
    return []


def check_finite(state: dict[str, Any], path: Path) -> None:
    """Raise :class:`NonFiniteState` when ``state`` holds a NaN or infinity (``path`` is kept)."""
    bad = non_finite(state, "state")
    if bad:
        raise NonFiniteState(
            f"not saving a checkpoint: {', '.join(bad[:3])} hold NaN or infinite values; "
            f"{path} keeps the last good state"
        )


class MidEpochCheckpoints:
    """``after_step`` of ``train_epoch``: calls ``save(progress)`` every ``minutes``."""

    def __init__(self, minutes: float, save: Callable[[EpochProgress], None]) -> None:
        self.seconds, self.save = minutes * 60, save
        self.last = time.monotonic()

    def __call__(self, progress: EpochProgress) -> None:
        if time.monotonic() - self.last >= self.seconds:
            self.save(progress)
            self.last = time.monotonic()


def stopped(err: Exception, out: Path, hint: str = "") -> int:
    """Report a diverged run (or a state that may not be saved); exit code 3."""
    print(f"error: {err}\n--resume restarts from the last checkpoint in {out}, if any{hint}",
          file=sys.stderr)  # fmt: skip
    return 3


# ------------------------------------------------------------------------------------- runs
@dataclass
class Run(Generic[ModelT]):
    """Everything that trains, and what has been recorded so far."""

    model: ModelT
    optimizer: torch.optim.Optimizer
    objective: torch.nn.Module  # the loss per image (the NLL), maybe wrapped in DDP, compiled
    precision: Precision
    identity: dict[str, Any]  # what a checkpoint must match to be resumed (RUN_KEYS, config)
    history: list[dict[str, Any]] = field(default_factory=list)
    initial: float | None = None
    pictures: list[str] = field(default_factory=list)
    start: int = 0  # the last finished epoch
    partial: EpochProgress | None = None  # how far epoch start + 1 had come, when resumed


def setup_distributed(device_arg: str) -> tuple[torch.device, int, int]:
    """Initialise torch.distributed under torchrun; returns ``(device, rank, world_size)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_arg)
    if world == 1:
        return device, 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device(f"cuda:{local_rank}")
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, dist.get_rank(), dist.get_world_size()


def world_size() -> int:
    """The number of processes of a distributed run (1 otherwise)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def chief() -> bool:
    """Whether this process reports and writes: rank 0 of a distributed run, or the only one."""
    return world_size() == 1 or dist.get_rank() == 0


def ddp(objective: torch.nn.Module, probe: torch.Tensor, log: Log) -> torch.nn.Module:
    """``objective`` in ``DistributedDataParallel`` on its device.

    DDP must be told when some parameters never get a gradient (e.g. an output layer whose
    result the network does not use); ``probe`` (one input image) finds them once.
    """
    unused = unused_parameters(objective, probe)
    if unused:
        log(f"note: parameters without gradient, DDP will look for them: {unused}")
    device = probe.device
    return torch.nn.parallel.DistributedDataParallel(
        objective,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=bool(unused),
    )


def new_run(
    config: PixelCNNConfig,
    args: argparse.Namespace,
    device: torch.device,
    run_keys: tuple[str, ...],
    wrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda objective: objective,
    *,
    lr: float | None = None,
    name: str = "config",
) -> Run[PixelCNN]:
    """A PixelCNN, Adam and the NLL in the ``--precision`` chosen for ``device``, seeded.

    ``wrap`` wraps the objective (DDP, ``torch.compile``); ``run_keys`` name the flags that,
    with the config (under ``name``), a checkpoint must match to be resumed. Adam's learning
    rate is ``lr``, by default ``--lr``.
    """
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed shapes: pick the fastest
    precision = choose_precision(args.precision, Capabilities.detect(device))
    # The batches are checked when they are built; on a GPU, skip the checks (device syncs).
    model = PixelCNN(config, device=device, validate_args=device.type != "cuda")
    model = model.to(memory_format=precision.memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr if lr is None else lr)
    identity = {name: dataclasses.asdict(config), **{k: getattr(args, k) for k in run_keys}}
    return Run(model, optimizer, wrap(NegLogLikelihood(model)), precision, identity)


def save_run(
    run: Run, args: argparse.Namespace, epoch: int, progress: EpochProgress | None = None
) -> None:
    """``<out>/checkpoint.pt`` after ``epoch``, with ``progress`` into the next one.

    Raises:
        NonFiniteState: the state holds a NaN or infinity (the last checkpoint is kept).
    """
    path = args.out / "checkpoint.pt"
    state = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict()}
    check_finite(state, path)
    save_checkpoint(
        path,
        {
            "epoch": epoch,
            "progress": progress.to_dict() if progress else None,
            **state,
            "rng": get_rng_state(),
            "metrics": run.history,
            "initial_test_nll": run.initial,
            "pictures": run.pictures,
            "run": run.identity,
            "args": plain_args(args),
        },
    )


def save_state(
    run: Run,
    args: argparse.Namespace,
    epoch: int,
    progress: EpochProgress | None,
    device: torch.device,
    *,
    final: tuple[str, ...],
    extra: dict[str, Any] | None = None,
) -> None:
    """:func:`save_run`, then ``metrics.json``: :func:`~outputs.run_summary` and ``extra``.

    Raises:
        NonFiniteState: the state holds a NaN or infinity (the last checkpoint is kept).
    """
    save_run(run, args, epoch, progress)
    summary = run_summary(run, args, epoch, progress, device, final)
    write_json(args.out / "metrics.json", summary | (extra or {}))


def checkpoint_to_resume(args: argparse.Namespace, device: torch.device, log: Log) -> Any:
    """``<out>/checkpoint.pt`` when ``--resume`` and it exists, else ``None`` (a fresh start)."""
    path = args.out / "checkpoint.pt"
    if not args.resume:
        if path.exists():
            log(f"note: starting afresh; {path} will be replaced (pass --resume to continue)")
        return None
    if not path.exists():
        log(f"--resume: no checkpoint at {path}, starting afresh")
        return None
    return load_checkpoint(path, map_location=device)


def check_resumable(
    checkpoint: dict[str, Any], identity: dict[str, Any], configs: tuple[str, ...] = ()
) -> None:
    """Raise ``ValueError`` when a checkpoint belongs to a different run.

    ``configs`` name the entries that are a :class:`~autoregressive.PixelCNNConfig`: fields
    added to it since the checkpoint was saved take their defaults there.
    """
    saved = json.loads(json.dumps(checkpoint.get("run", {})))
    for key in (k for k in configs if isinstance(saved.get(k), dict)):
        with contextlib.suppress(TypeError, ValueError):
            saved[key] = json.loads(json.dumps(dataclasses.asdict(PixelCNNConfig(**saved[key]))))
    current = json.loads(json.dumps(identity))
    diff = [k for k in current if saved.get(k) != current[k]]
    if diff:
        lines = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current[k]!r}" for k in diff)
        raise ValueError(
            f"--resume: the checkpoint belongs to a different run ({lines}); pass the same "
            "flags, or another --out to start another run"
        )


def check_not_past(
    path: Path, done: int, flag: str, limit: int, what: str = "epoch", partial: bool = False
) -> None:
    """Refuse to resume a checkpoint after ``done`` epochs with ``flag`` asking for fewer.

    ``partial``: the checkpoint is within epoch ``done + 1``, whose weights are past epoch
    ``done``'s, so that epoch counts too.
    """
    done, where = (done + 1, "within") if partial else (done, "after")
    if done > limit:
        raise ValueError(
            f"--resume: {path} is {where} {what} {done}, past {flag} {limit}; pass {flag} "
            f"{done} or more to continue it, or another --out to start a new run"
        )


def resume_run(run: Run, args: argparse.Namespace, device: torch.device, log: Log) -> None:
    """Load ``<out>/checkpoint.pt`` into ``run`` when ``--resume`` (raises on a foreign one)."""
    checkpoint = checkpoint_to_resume(args, device, log)
    if checkpoint is None:
        return
    path = args.out / "checkpoint.pt"
    check_resumable(checkpoint, run.identity)
    partial = checkpoint.get("progress")  # absent in checkpoints saved only at epoch ends
    check_not_past(path, int(checkpoint["epoch"]), "--epochs", args.epochs, partial=bool(partial))
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    set_rng_state(checkpoint["rng"])
    run.history, run.start = list(checkpoint["metrics"]), int(checkpoint["epoch"])
    run.initial, run.pictures = checkpoint.get("initial_test_nll"), list(checkpoint["pictures"])
    run.partial = EpochProgress.from_dict(partial) if partial else None
    where = f"step {run.partial.steps} of epoch {run.start + 1}" if run.partial else (
        f"the end of epoch {run.start}")  # fmt: skip
    log(f"resumed from {path} at {where}")


# ---------------------------------------------------------------------------- runs in phases
@dataclass
class Phases:
    """Runs that train one after the other into one checkpoint (a VQ-VAE, then a prior).

    Attributes:
        runs: the runs by name, in the order they train; they share one ``identity``.
        extra: what the script measures besides the epochs' records (saved with them).
    """

    runs: dict[str, Run]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def history(self) -> dict[str, list[dict[str, Any]]]:
        """Each run's records, one per finished epoch."""
        return {name: run.history for name, run in self.runs.items()}


def save_phases(
    phases: Phases, args: argparse.Namespace, progress: tuple[str, EpochProgress] | None
) -> None:
    """``<out>/checkpoint.pt`` of runs in phases; ``progress``: a run and how far its epoch came.

    The checkpoint holds each run's model under its name and its optimizer under
    ``<name>_optimizer``, ``progress`` (the run's ``name`` under ``phase``, or ``None``),
    ``history``, ``extra``, ``rng``, ``run`` and ``args``.

    Raises:
        NonFiniteState: the state holds a NaN or infinity (the last checkpoint is kept).
    """
    path, state = args.out / "checkpoint.pt", {}
    for name, run in phases.runs.items():
        state |= {name: run.model.state_dict(), f"{name}_optimizer": run.optimizer.state_dict()}
    check_finite(state, path)
    where = {"phase": progress[0], **progress[1].to_dict()} if progress else None
    identity = next(iter(phases.runs.values())).identity
    save_checkpoint(path, {**state, "progress": where, "history": phases.history,
                           "extra": phases.extra, "rng": get_rng_state(), "run": identity,
                           "args": plain_args(args)})  # fmt: skip


def load_phases(checkpoint: dict[str, Any], phases: Phases) -> str:
    """Load a checkpoint of :func:`save_phases` into ``phases``; returns where it stands.

    A checkpoint without ``progress`` continues after the last epoch of each run.
    """
    for name, run in phases.runs.items():
        run.model.load_state_dict(checkpoint[name])
        run.optimizer.load_state_dict(checkpoint[f"{name}_optimizer"])
        run.history = list(checkpoint["history"][name])
        run.start = len(run.history)
    phases.extra = dict(checkpoint["extra"])
    set_rng_state(checkpoint["rng"])
    progress = dict(checkpoint.get("progress") or {})
    if not progress:
        return "the end of " + ", ".join(f"{n} epoch {r.start}" for n, r in phases.runs.items())
    name = progress.pop("phase")
    run = phases.runs[name]
    run.partial = EpochProgress.from_dict(progress)
    return f"step {run.partial.steps} of {name} epoch {run.start + 1}"


# ----------------------------------------------------------------------------------- epochs
Record = Callable[[int, EpochStats], dict[str, Any]]


@dataclass
class Phase:
    """The epochs :func:`train_epochs` runs: how many, what they are called, how each is scored.

    Attributes:
        epochs: the phase's last epoch.
        name: what progress bars and log lines call one of its epochs.
        record: ``record(epoch, stats)`` scores a trained epoch (``stats``: its training pass)
            and returns the epoch's record; ``None``: the test NLL of ``data.test``
            (:func:`nll_record`).
        describe: the log line of a record.
    """

    epochs: int
    name: str = "epoch"
    record: Record | None = None
    describe: Callable[[dict[str, Any]], str] = describe


def train_one_epoch(
    run: Run,
    batches: Any,
    epoch: int,
    args: argparse.Namespace,
    device: torch.device,
    *,
    save: Callable[[EpochProgress], None] | None,
    postfix: Postfix = loss,
    desc: str = "",
) -> EpochStats:
    """Train epoch ``epoch`` (from where a resumed run stopped) with a progress bar ``desc``.

    ``save(progress)`` runs every ``--checkpoint-minutes`` mid-epoch (``None``: never); the
    bar shows ``postfix(running loss)``.
    """
    batches.set_epoch(epoch)
    run.model.train()  # scoring the last epoch may have left it in eval mode
    start, run.partial = run.partial, None
    steps = steps_of(batches, args.limit_train_batches)
    bar, progress = progress_bar(steps, desc or f"epoch {epoch}", start, postfix)
    try:
        return train_epoch(
            run.objective,
            run.optimizer,
            batches,
            device=device,
            precision=run.precision,
            max_steps=args.limit_train_batches,
            progress=progress,
            log_every=1 if device.type == "cpu" else 20,
            start=start,
            after_step=MidEpochCheckpoints(args.checkpoint_minutes, save) if save else None,
        )
    finally:
        bar.close()


def nll_record(
    run: Run,
    test: Any,
    limit: int | None,
    device: torch.device,
    epoch: int,
    stats: EpochStats,
) -> dict[str, Any]:
    """Score ``test`` (fp32, at most ``limit`` batches); the record of a trained epoch."""
    score = score_test_set(run.model, test, device, limit)
    return {
        "epoch": epoch,
        "train_nll": stats.nll,
        "train_bits_per_dim": stats.bits_per_dim,
        "test_nll": score.nll,
        "test_bits_per_dim": score.bits_per_dim,
        "train_images": stats.images,
        "train_seconds": stats.seconds,
        "train_images_per_second": stats.images_per_second,
        "eval_seconds": score.seconds,
        "precision": run.precision.name,
    }


def train_epochs(
    run: Run,
    args: argparse.Namespace,
    data: Any,
    device: torch.device,
    *,
    save: Callable[[int, EpochProgress | None], None],
    pictures: Callable[[int, dict[str, Any]], list[str]] | None = None,
    log: Log = print,
    postfix: Postfix = loss,
    phase: Phase | None = None,
) -> None:
    """The epochs from where the run stands to the phase's last (default: ``--epochs``).

    Each is trained on ``data.train`` (its progress bar shows ``postfix(running loss)``) and
    scored (``phase.record``; by default on ``data.test``), pictured at the sample epochs and
    the last (``pictures(epoch, record)`` returns the file names), recorded and saved:
    ``save(epoch, progress)`` saves the state after ``epoch`` and ``progress`` into the next,
    at each epoch's end (``progress`` is ``None``) and every ``--checkpoint-minutes``. Only
    single-process runs save mid-epoch: each process of a distributed run holds its own share
    of the running sums.
    """
    phase = phase or Phase(args.epochs)
    record = phase.record or functools.partial(
        nll_record, run, data.test, args.limit_test_batches, device
    )
    for epoch in range(run.start + 1, phase.epochs + 1):
        started = time.perf_counter() - (run.partial.seconds if run.partial else 0.0)
        mid = functools.partial(save, epoch - 1) if world_size() == 1 else None
        desc = f"{phase.name} {epoch}/{phase.epochs}"
        stats = train_one_epoch(
            run, data.train, epoch, args, device, save=mid, postfix=postfix, desc=desc
        )
        m = record(epoch, stats)
        log(phase.describe(m))
        if pictures is not None and epoch in set(args.sample_epochs) | {phase.epochs}:
            run.pictures += pictures(epoch, m)
        m["epoch_seconds"] = time.perf_counter() - started
        run.history.append(m)
        save(epoch, None)
        if epoch < phase.epochs:
            log(eta(run.history, phase.epochs))
