"""Saving and loading trained models: the ``save_pretrained`` directory and the shipped weights.

:meth:`PixelCNN.save_pretrained <autoregressive.PixelCNN.save_pretrained>` writes a directory
of two files, the layout diffusers and transformers use::

    my-model/
        config.json         {"format": "autoregressive.pretrained/1", "library_version": ...,
                             "weights_sha256": ..., "config": {... PixelCNNConfig.to_dict() ...}}
        model.safetensors   the state_dict, in the safetensors format (tensors only, no pickle)

``weights_sha256`` is :func:`~autoregressive.checksums.tensors_sha256` of the weights, so a
damaged ``model.safetensors``, or a pair of files from two different saves, is detected when
the directory is read. Each file is written atomically
(:func:`~autoregressive.checkpoint.atomic_write`), the weights first: an interrupted save leaves
the previous pair or a detectable mismatch.

:meth:`PixelCNN.from_pretrained <autoregressive.PixelCNN.from_pretrained>` reads such a
directory, or a *shipped name*: weights inside the package (``autoregressive/models/weights/``),
listed in ``registry.json`` with their SHA-256, stored as sealed checkpoints
(:func:`~autoregressive.checkpoint.save_checkpoint`, the ``weights.pt`` the MNIST example writes).

Nothing here imports the model: ``pixelcnn.py`` imports this module, and the caller passes the class
to build (:meth:`SavedModel.build`), so there is no import circle and loading a model imports
no training or data code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import safetensors
import safetensors.torch
import torch
from torch import nn

from .._version import __version__
from ..checkpoint import CheckpointError, atomic_write, load_checkpoint
from ..checksums import file_sha256, tensors_sha256
from ..validation import check_device
from .config import PixelCNNConfig

__all__ = [
    "CONFIG_NAME",
    "PRETRAINED_FORMAT",
    "WEIGHTS_DIR",
    "WEIGHTS_NAME",
    "ChecksumError",
    "SavedModel",
    "available",
    "read_pretrained",
    "write_pretrained",
]

#: Value of the ``"format"`` entry of every ``config.json`` that ``save_pretrained`` writes.
PRETRAINED_FORMAT = "autoregressive.pretrained/1"
#: The file of a saved directory that holds the format, the versions and the config.
CONFIG_NAME = "config.json"
#: The file of a saved directory that holds the weights.
WEIGHTS_NAME = "model.safetensors"
#: The folder of the packaged weights and their ``registry.json``, inside the installed package.
#:
#: :meta hide-value:
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

M = TypeVar("M", bound=nn.Module)


class ChecksumError(ValueError):
    """A packaged weights file whose SHA-256 differs from the registry's."""


def available(folder: str | Path = WEIGHTS_DIR) -> dict[str, dict[str, Any]]:
    """The registry: name -> ``{"file", "sha256", "description", "metrics", ...}``.

    Args:
        folder: a weights folder (default: the package's).

    Returns:
        The entries by name; empty when the folder has no ``registry.json``.

    Example:
        >>> "mnist-demo" in available()
        True
    """
    path = Path(folder) / "registry.json"
    if not path.is_file():
        return {}
    try:
        registry = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ChecksumError(f"{path} is damaged ({err}); reinstall the package") from err
    _check_registry(registry, path)
    return registry


#: what every entry of ``registry.json`` holds at least
_ENTRY_KEYS = ("file", "sha256")


def _check_registry(registry: object, path: Path) -> None:
    """Raise :class:`ChecksumError` unless ``registry`` maps names to entries with the keys."""
    if not isinstance(registry, dict):
        raise ChecksumError(
            f"{path} must map names to entries, got a {type(registry).__name__}; reinstall the "
            "package"
        )
    for name, entry in registry.items():
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in _ENTRY_KEYS
        ):
            raise ChecksumError(
                f"{path}: the entry {name!r} must be an object with the strings "
                f"{', '.join(_ENTRY_KEYS)}, got {entry!r}; reinstall the package"
            )


# ----------------------------------------------------------------------------------- saving
def write_pretrained(
    directory: str | os.PathLike[str],
    config: PixelCNNConfig,
    state_dict: Mapping[str, torch.Tensor],
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (see the module doc).

    The directory is created if needed; other files in it are left alone, and the two files
    are replaced atomically, the weights first.

    Args:
        directory: where to write.
        config: the model's config.
        state_dict: the model's weights (any device; saved from the CPU).

    Returns:
        The directory, as a :class:`~pathlib.Path`.

    Raises:
        TypeError: ``directory`` is not a path, ``config`` not a
            :class:`~autoregressive.PixelCNNConfig`, or ``state_dict`` not of tensors.
        ValueError: ``directory`` (or a folder above it) is a file.
        PermissionError: the directory cannot be written to.
        OSError: another error of the file system (e.g. the disk is full).
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(
            f"save_pretrained: directory must be a str or a Path, got {type(directory).__name__}"
        )
    if not isinstance(config, PixelCNNConfig):
        raise TypeError(f"save_pretrained: config must be a PixelCNNConfig, got {config!r}")
    path = Path(directory)
    tensors = _cpu_tensors(state_dict)
    header = {
        "format": PRETRAINED_FORMAT,
        "library_version": __version__,
        "weights_sha256": tensors_sha256(tensors),
        "config": config.to_dict(),
    }
    weights = safetensors.torch.save(tensors, metadata={"format": "pt"})
    text = json.dumps(header, indent=2) + "\n"
    f: BinaryIO
    try:
        _make_directory(path)
        with atomic_write(path / WEIGHTS_NAME) as f:  # first: config.json marks a whole save
            f.write(weights)
        with atomic_write(path / CONFIG_NAME) as f:
            f.write(text.encode())
    except PermissionError as err:
        cause = err.__cause__ if isinstance(err.__cause__, PermissionError) else err  # the OS's
        raise PermissionError(
            f"save_pretrained: cannot write to {path} ({cause.strerror or cause}); choose a "
            "directory you may write to"
        ) from err
    return path


def _make_directory(path: Path) -> None:
    """``mkdir -p path``, with a ``ValueError`` naming the file that stands in the way."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == path else f" ({folder}, above it, is a file)"
                raise ValueError(
                    f"save_pretrained: {path} is not a directory{where}; pass the path of a new "
                    "or an existing directory"
                )
            break
    path.mkdir(parents=True, exist_ok=True)


def _cpu_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors; those sharing memory copied (safetensors refuses them)."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"save_pretrained: state_dict must be a mapping, got {state_dict!r}")
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, t in state_dict.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise TypeError(
                f"save_pretrained: state_dict entry {name!r} must map a str to a tensor"
            )
        t = t.detach().to("cpu").contiguous()
        storage = t.untyped_storage().data_ptr()
        if storage in seen and t.numel():
            t = t.clone()
        seen.add(storage)
        tensors[name] = t
    return tensors


# ---------------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class SavedModel:
    """What :func:`read_pretrained` read: a config and its weights, not yet a model.

    Attributes:
        config: the architecture.
        weights: the ``state_dict``, on the CPU.
        sha256: the weights' :func:`~autoregressive.checksums.tensors_sha256` that the directory
            recorded, checked by :meth:`build`; ``None`` for shipped weights (their file's
            checksum was checked against the registry already).
        source: where it came from, for messages.
    """

    config: PixelCNNConfig
    weights: dict[str, torch.Tensor]
    sha256: str | None
    source: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The floating dtype of the weights when they share one (the model is built in it)."""
        dtypes = {t.dtype for t in self.weights.values() if t.is_floating_point()}
        return dtypes.pop() if len(dtypes) == 1 else None

    def build(
        self, model_class: Callable[..., M], *, device: torch.device | str | None = None
    ) -> M:
        """``model_class(config, device=..., dtype=...)`` with these weights, in eval mode.

        Args:
            model_class: e.g. :class:`~autoregressive.PixelCNN`.
            device: where to put the model (default CPU).

        Returns:
            The model, in the dtype the weights were saved in.

        Raises:
            ~autoregressive.checkpoint.CheckpointError: (a ``ValueError``) the weights do not
                fit the config (names and shapes listed), or their SHA-256 differs from the one
                the directory recorded.
        """
        device = check_device("device", device, owner="from_pretrained")
        model = model_class(self.config, device=device, dtype=self.dtype)
        self._check_fits(model.state_dict())
        if self.sha256 is not None and tensors_sha256(self.weights) != self.sha256:
            raise CheckpointError(
                f"the weights in {self.source} are damaged or were replaced: their SHA-256 differs "
                f"from the one in {CONFIG_NAME} (the two files may come from different saves); "
                "save the model again with save_pretrained, or restore the directory from a copy"
            )
        model.load_state_dict(self.weights)
        return model.eval()

    def _check_fits(self, expected: Mapping[str, torch.Tensor]) -> None:
        """``CheckpointError`` unless the weights have exactly the model's names and shapes."""
        missing = [k for k in expected if k not in self.weights]
        extra = [k for k in self.weights if k not in expected]
        shapes = [
            f"{k}: {tuple(self.weights[k].shape)} but the model's is {tuple(t.shape)}"
            for k, t in expected.items()
            if k in self.weights and self.weights[k].shape != t.shape
        ]
        if not (missing or extra or shapes):
            return
        problems = [
            f"{label} {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for label, items in (
                ("missing weights", missing),
                ("unexpected weights", extra),
                ("wrong shapes", shapes),
            )
            if items
        ]
        raise CheckpointError(
            f"the weights in {self.source} do not fit its config ({'; '.join(problems)}): "
            "they belong to another model. Save the model with save_pretrained, which writes "
            "its config and weights together"
        )


def read_pretrained(
    name_or_dir: str | os.PathLike[str], *, folder: str | Path = WEIGHTS_DIR
) -> SavedModel:
    """Read a shipped model by name, or a directory written by ``save_pretrained``.

    A ``str`` that is a name in the registry (:func:`available`) is a shipped model; a
    :class:`~pathlib.Path`, or any other ``str``, is a directory. A ``str`` that is both a name
    and an existing directory is refused as ambiguous (pass ``Path(...)`` for the directory).

    Args:
        name_or_dir: e.g. ``"mnist-demo"`` or ``"runs/my-model"``.
        folder: the folder of shipped weights (default: the package's).

    Returns:
        The config and weights, checked: build the model with :meth:`SavedModel.build`.

    Raises:
        TypeError: ``name_or_dir`` is not a ``str`` or a path.
        ValueError: an unknown name that is no directory either (the message lists the names),
            or an ambiguous one.
        ChecksumError: (a ``ValueError``) a shipped file is missing or its SHA-256 differs from
            the registry's: reinstall the package.
        ~autoregressive.checkpoint.CheckpointError: (a ``ValueError``) the directory is
            missing, is a file, or its files are missing, damaged or of another format; the
            message says what to do.

    Example:
        >>> read_pretrained("mnist-demo").config.block
        'gated'
    """
    if not isinstance(name_or_dir, (str, os.PathLike)):
        raise TypeError(
            "from_pretrained: name_or_dir must be a shipped name (str) or a directory (str or "
            f"Path), got {type(name_or_dir).__name__} {name_or_dir!r}"
        )
    registry = available(folder)
    if isinstance(name_or_dir, str) and name_or_dir in registry:
        if Path(name_or_dir).is_dir():
            raise ValueError(
                f"{name_or_dir!r} is both a shipped model and a directory here; pass "
                f"Path({name_or_dir!r}) to load the directory"
            )
        return _read_shipped(name_or_dir, registry[name_or_dir], Path(folder))
    path = Path(name_or_dir)
    if isinstance(name_or_dir, str) and not path.exists() and len(path.parts) == 1:
        known = ", ".join(sorted(registry)) or "none"
        raise ValueError(
            f"no pretrained model named {name_or_dir!r}; available: {known}; nor is there a "
            f"directory {name_or_dir!r} here (a model saved with save_pretrained loads from "
            "its directory)"
        )
    return _read_directory(path)


def _read_shipped(name: str, entry: Mapping[str, Any], folder: Path) -> SavedModel:
    """A registered sealed checkpoint, after checking its SHA-256 against the registry."""
    path = folder / entry["file"]
    if not path.is_file():
        raise ChecksumError(f"the weights of {name!r} are missing ({path}); reinstall the package")
    found = file_sha256(path)
    if found != entry["sha256"]:
        raise ChecksumError(
            f"the weights file of {name!r} ({path}) is damaged or was replaced: SHA-256 {found} "
            f"but the registry says {entry['sha256']}; reinstall the package"
        )
    saved = load_checkpoint(path)
    if not isinstance(saved.get("config"), Mapping) or not isinstance(saved.get("model"), dict):
        raise CheckpointError(
            f"{path} holds no 'config' and 'model' entries: it is a checkpoint, but not of "
            "weights (package the weights.pt that the MNIST example writes)"
        )
    config = _config(saved["config"], f"the config in {path}")
    return SavedModel(config, saved["model"], None, f"{path} ({name!r})")


def _read_directory(path: Path) -> SavedModel:
    """The config and weights of a directory written by ``save_pretrained``, checked."""
    redo = "save the model again with save_pretrained, or restore the directory from a copy"
    if not path.exists():
        raise CheckpointError(
            f"no saved model at {path}: pass a directory written by save_pretrained, or the "
            f"name of a shipped model ({', '.join(sorted(available())) or 'none'})"
        )
    if not path.is_dir():
        raise CheckpointError(
            f"{path} is a file; from_pretrained takes the directory that save_pretrained wrote "
            f"({CONFIG_NAME} and {WEIGHTS_NAME}), or a shipped name"
        )
    config_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
    if not config_path.is_file():
        half = " (its weights are there: the save was interrupted)" if weights_path.exists() else ""
        raise CheckpointError(
            f"{path} has no {CONFIG_NAME}{half}: it was not written by save_pretrained; {redo}"
        )
    header = _read_header(config_path, redo)
    config = _config(header.get("config"), f"the config in {config_path}")
    sha256 = header.get("weights_sha256")
    if not isinstance(sha256, str):
        raise CheckpointError(f"{config_path} has no 'weights_sha256' string; {redo}")
    if not weights_path.is_file():
        raise CheckpointError(f"{path} has {CONFIG_NAME} but no {WEIGHTS_NAME}; {redo}")
    try:
        weights = safetensors.torch.load(weights_path.read_bytes())
    except (safetensors.SafetensorError, OSError) as err:
        raise CheckpointError(
            f"{weights_path} cannot be read ({err}): it is damaged; {redo}"
        ) from err
    return SavedModel(config, weights, sha256, str(weights_path))


def _read_header(path: Path, redo: str) -> dict[str, Any]:
    """``config.json``, checked to be a JSON object of this format."""
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}): it is damaged; {redo}") from err
    found = header.get("format") if isinstance(header, dict) else type(header).__name__
    if found != PRETRAINED_FORMAT:
        version = header.get("library_version") if isinstance(header, dict) else None
        raise CheckpointError(
            f"{path} has format {found!r}, not {PRETRAINED_FORMAT!r}: it was not written by "
            "PixelCNN.save_pretrained of this version of autoregressive"
            + (f" (it was written by autoregressive {version})" if version else "")
        )
    return header


def _config(data: object, where: str) -> PixelCNNConfig:
    """``PixelCNNConfig.from_dict(data)``, its errors as a ``CheckpointError`` naming ``where``."""
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{where} is missing or not a JSON object: {data!r}")
    try:
        return PixelCNNConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where} is invalid: {err}") from err
