"""Checkpoint files: atomic writes, SHA-256 seals, and safe, verified reading.

:func:`save_checkpoint` writes atomically (temporary file in the same folder, ``fsync``,
``os.replace``), so a crash while saving never damages the previous checkpoint;
:func:`load_checkpoint` reads with ``torch.load(weights_only=True)``, so a crafted file cannot
run code, and turns every kind of damage into a :class:`CheckpointError` that says what to do.
:func:`atomic_write` is the primitive both this module and
:meth:`~autoregressive.PixelCNN.save_pretrained` write files with.

Only the file format lives here, no training code: loading a model imports this module, never
:mod:`autoregressive.training` (which re-exports these names).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .checksums import seal_trailer, verify_seal

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "atomic_write",
    "load_checkpoint",
    "save_checkpoint",
]

#: Value of the ``"format"`` entry of every checkpoint this module writes.
CHECKPOINT_FORMAT = "autoregressive.training/1"  # named after the module that first wrote it


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, damaged, unsafe or of another format.

    Raised for checkpoint files and for the directories ``PixelCNN.save_pretrained`` writes.
    """


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Any:
    """Open a temporary file beside ``path`` for binary writing; on success move it there.

    The data is flushed and ``fsync``-ed before ``os.replace`` renames it over ``path`` (atomic
    on POSIX and Windows). If the body raises (or the process dies), ``path`` keeps its old
    content; the temporary file is removed when Python still can.

    Args:
        path: the destination; its folder is created if needed.

    Yields:
        The open binary file.

    Raises:
        ValueError: ``path`` is a directory, or a folder above it is a file.
        PermissionError: its folder cannot be written to (the message names it).
    """
    path = Path(path)
    try:
        make_folder(path.parent, path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except PermissionError as err:
        raise PermissionError(
            f"cannot write {path}: no permission to write in {path.parent} "
            f"({err.strerror or err}); choose a folder you may write to"
        ) from err
    try:
        umask = os.umask(0)  # mkstemp makes the file private (0600): give it the usual mode
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def make_folder(folder: Path, path: Path | None = None) -> None:
    """``mkdir -p folder``, refusing a ``path`` inside it that is a directory, or a file above.

    Args:
        folder: the folder to create if needed.
        path: the file that will be written into ``folder``, for the messages.

    Raises:
        ValueError: ``path`` is a directory, or ``folder`` or a folder above it is a file.
    """
    target = folder if path is None else path
    if path is not None and path.is_dir():
        raise ValueError(
            f"cannot write {path}: it is a directory; pass the path of a file (e.g. "
            f"{path / 'checkpoint.pt'}) or remove the directory"
        )
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                raise ValueError(
                    f"cannot write {target}: {above} is a file, not a folder; choose a path "
                    "whose folders are folders"
                )
            break
    folder.mkdir(parents=True, exist_ok=True)


def save_checkpoint(path: str | Path, checkpoint: Mapping[str, Any]) -> None:
    """Write a checkpoint atomically (see :func:`atomic_write`), sealed with its SHA-256.

    The file is an ordinary ``torch.save`` archive whose zip comment holds the SHA-256 of all
    the bytes before it (:func:`~autoregressive.checksums.seal`), so :func:`load_checkpoint`
    detects any damaged byte.

    Args:
        path: destination file, e.g. ``out/checkpoint.pt``.
        checkpoint: tensors and plain Python values only (dicts, lists, tuples, numbers,
            strings, ``None``), as ``torch.load(weights_only=True)`` accepts; a ``"format"``
            entry is added.

    Raises:
        TypeError: ``path`` is not a path or ``checkpoint`` not a mapping.
        ValueError: ``checkpoint`` holds something ``weights_only`` loading would refuse, or
            ``path`` is a directory or lies under a file.
        PermissionError: the folder cannot be written to.
    """
    _check_load_args(path, None)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"checkpoint must be a dict of tensors and values, got {checkpoint!r}")
    payload = {"format": CHECKPOINT_FORMAT, **checkpoint}
    _check_plain(payload, "checkpoint")
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    archive = buffer.getbuffer()  # a view: no copy of a large checkpoint
    trailer = seal_trailer(archive)
    f: BinaryIO
    with atomic_write(path) as f:
        f.write(archive[:-2])
        f.write(trailer)


_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.Size)


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise ValueError(f"{where}: key {k!r} is not a str or int")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    else:
        raise ValueError(
            f"{where} is a {type(value).__name__}; checkpoints hold only tensors and plain "
            "Python values (convert it, e.g. a Path with str())"
        )


def load_checkpoint(
    path: str | Path,
    *,
    map_location: str | torch.device | None = "cpu",
    require_checksum: bool = True,
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, verified and safely.

    The file's SHA-256 seal is checked first, so any changed byte is detected before anything
    is unpickled. Then it loads with ``torch.load(weights_only=True)``: only tensors and plain
    Python values are rebuilt, so a crafted file cannot run code while it is read.

    Checkpoints written before checksums were added (autoregressive 0.1) carry no seal and are
    refused by default; pass ``require_checksum=False`` to load one you trust, then save it again
    with :func:`save_checkpoint` to seal it.

    Args:
        path: the checkpoint file.
        map_location: where to put its tensors (default CPU).
        require_checksum: refuse files without a seal (default). ``False`` loads them
            unverified; a seal that is present is always verified.

    Returns:
        The checkpoint dict (without the seal).

    Raises:
        CheckpointError: (a ``ValueError``) the file is missing, truncated or corrupted (its
            checksum does not match), has no checksum, holds objects that are not allowed, or
            was not written by :func:`save_checkpoint`.
    """
    _check_load_args(path, map_location)
    path = Path(path)
    data, sealed = _read_verified(path, require_checksum)
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused what the pickle asks for
        raise CheckpointError(_refused(path, data, sealed)) from err
    except RuntimeError as err:
        if sealed:  # the bytes are the ones written: the request, not the file, is at fault
            raise CheckpointError(
                f"checkpoint {path} is intact (its checksum matches) but torch.load failed with "
                f"map_location={map_location!r}: {str(err).strip().splitlines()[0][:200]}; "
                "load it to 'cpu' or to a device this machine has"
            ) from err
        raise CheckpointError(_corrupt(path, err)) from err
    except (EOFError, OSError, ValueError, KeyError, IndexError) as err:
        raise CheckpointError(_corrupt(path, err)) from err
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint)
        raise CheckpointError(
            f"{path} is not a checkpoint of format {CHECKPOINT_FORMAT!r} (found {found!r}); "
            "it was not written by autoregressive.training.save_checkpoint"
        )
    return checkpoint


def _check_load_args(path: object, map_location: object) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a Path, got {type(path).__name__} {path!r}")
    devices = (str, torch.device, dict)
    if not (map_location is None or isinstance(map_location, devices) or callable(map_location)):
        raise TypeError(
            "map_location must be None, a device ('cpu', 'cuda:0', torch.device), a dict "
            f"or a function, as for torch.load; got {map_location!r}"
        )


def _read_verified(path: Path, require_checksum: bool) -> tuple[bytes, bool]:
    """``(bytes, whether sealed)`` of ``path`` after checking its seal; ``CheckpointError``."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    status = verify_seal(data)
    if status == "mismatch":
        raise CheckpointError(_corrupt(path, ValueError("its SHA-256 checksum does not match")))
    if status == "missing" and require_checksum:
        raise CheckpointError(
            f"{path} has no SHA-256 checksum at its end: it is truncated or corrupted, or was "
            "written by torch.save or by autoregressive 0.1 (before checksums). If you trust "
            "it, load it with load_checkpoint(path, require_checksum=False) and save it again "
            "with save_checkpoint to add one."
        )
    return data, status == "ok"


def _refused(path: Path, data: bytes, sealed: bool) -> str:
    """Why ``torch.load(weights_only=True)`` refused the bytes ``data`` of ``path``.

    A sealed file is intact, so it holds what its writer pickled; without a seal, damage that
    makes an invalid pickle cannot be told apart from objects that are not allowed.
    """
    unsafe = _unsafe_globals(data)
    found = f" ({', '.join(sorted(unsafe)[:3])})" if unsafe else ""
    what = (
        f"it contains Python objects other than tensors and plain values{found}"
        if sealed or unsafe
        else "it is corrupted, or it contains Python objects other than tensors and plain "
        "values (it has no checksum to tell which)"
    )
    return (
        f"refused to load {path}: {what}, and unpickling such objects could run arbitrary code "
        "(weights_only=True). Only load checkpoints written by "
        "autoregressive.training.save_checkpoint."
    )


def _unsafe_globals(data: bytes) -> list[str]:
    """The classes and functions in a ``torch.save`` archive that ``weights_only`` refuses.

    Empty when ``data`` is no readable archive (an older pickle format, or damaged).
    """
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except (ValueError, RuntimeError, pickle.UnpicklingError, EOFError, KeyError):
        return []  # no archive to list: the caller reports the file without names


def _corrupt(path: Path, err: BaseException) -> str:
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return (
        f"checkpoint {path} is truncated or corrupted and cannot be read ({first}). "
        "Delete it to start afresh, or restore it from a copy; save_checkpoint never leaves a "
        "partial file under the final name, so the file was damaged after it was written."
    )
