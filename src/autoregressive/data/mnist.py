"""Binarized MNIST for training a Bernoulli PixelCNN: loading, binarization and seeded batches.

Two binarizations are common in the literature:

- **threshold** (``x > 0.5``): one fixed binary image per digit; the seed project's reference run.
- **dynamic** (``x ~ Bernoulli(intensity)``): a fresh draw of every training image in every
  epoch, and one fixed-seed draw of the test set (Salakhutdinov & Murray, 2008; the setting of
  the NLL figures reported for PixelCNN, van den Oord et al., 2016,
  https://arxiv.org/abs/1601.06759).

Every random choice here (shuffling, dynamic binarization) comes from a generator seeded by
``(seed, epoch)``: an epoch's batches are a pure function of those two numbers, so a run resumed
from a checkpoint sees exactly the batches an uninterrupted run would, and a run split over
several processes sees the same global batches as a single process.

``torchvision`` is optional (the ``examples`` extra); it is imported only when MNIST is loaded.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from ..conditioning import Conditioning
from ..validation import check_choice, check_float, check_tensor
from .batches import BatchOrder, SeededBatches

__all__ = [
    "MNIST_FILES",
    "BinarizedBatches",
    "IDXError",
    "dynamic_binarize",
    "load_mnist",
    "read_idx",
    "threshold_binarize",
]

if TYPE_CHECKING:  # annotations only: typing.Unpack is Python 3.11+
    from typing_extensions import Unpack

#: The four files torchvision's ``MNIST`` reads from ``<data_dir>/MNIST/raw/``.
MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

Binarization = Literal["threshold", "dynamic"]


def _check_intensities(x: torch.Tensor) -> None:
    check_tensor("x", x, like=" of intensities in [0, 1]")
    if not x.is_floating_point():
        raise ValueError(
            "binarization needs a floating-point tensor of intensities in [0, 1]; "
            "convert uint8 images with x.float() / 255"
        )
    if x.numel() and (bool(torch.isnan(x).any()) or x.min() < 0 or x.max() > 1):
        raise ValueError(
            "intensities must lie in [0, 1] (got values outside it or NaN); "
            "divide uint8 images by 255"
        )


def threshold_binarize(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Binarize intensities by a fixed threshold: ``1`` where ``x > threshold``.

    Args:
        x: intensities in ``[0, 1]``, any shape.
        threshold: the cut, in ``[0, 1)``.

    Returns:
        ``{0, 1}`` tensor of ``x``'s shape and dtype.

    Example:
        >>> from autoregressive.data import threshold_binarize
        >>> threshold_binarize(torch.tensor([0.2, 0.5, 0.7]))
        tensor([0., 0., 1.])
    """
    _check_intensities(x)
    check_float("threshold", threshold, minimum=0, below=1)
    return (x > threshold).to(x.dtype)


def dynamic_binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw binary images with ``P(pixel = 1) = intensity`` (dynamic binarization).

    The draw is ``u < x`` with ``u`` uniform from ``generator``, one number per pixel in the
    order of ``x.flatten()``; the same generator state always gives the same images.

    Args:
        x: intensities in ``[0, 1]``, any shape.
        generator: source of randomness (CPU, or on ``x``'s device).

    Returns:
        ``{0, 1}`` tensor of ``x``'s shape and dtype.

    Example:
        >>> from autoregressive.data import dynamic_binarize
        >>> g = torch.Generator().manual_seed(0)
        >>> dynamic_binarize(torch.tensor([0.0, 1.0]), g)
        tensor([0., 1.])
    """
    _check_intensities(x)
    device = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype)
    return (u.to(x.device) < x).to(x.dtype)


def _missing_files_message(data_dir: Path, reason: str) -> str:
    raw = data_dir / "MNIST" / "raw"
    names = "\n".join(f"  {name}(.gz)" for name in MNIST_FILES)
    return (
        f"MNIST not found in {data_dir} ({reason}).\n"
        f"Put these four files (the original IDX files, gzipped or not) in the folder {raw}/:\n"
        f"{names}\n"
        "or allow the download (network access, a writable folder), or pass another data_dir "
        "(the folder that contains MNIST/raw/)."
    )


def load_mnist(
    data_dir: str | Path, *, train: bool = True, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the MNIST training or test set from the IDX files in ``<data_dir>/MNIST/raw/``.

    The files are torchvision's layout. A missing file whose ``.gz`` lies beside it is
    decompressed there, with or without ``download``; files still missing are downloaded by
    ``torchvision.datasets.MNIST`` when ``download`` is true, and if that fails (no network,
    read-only folder) a ``FileNotFoundError`` names the four files and the folder they belong
    in. The files are then read and checked by
    :func:`read_idx` (header, sizes), and images and labels must agree in number.

    Args:
        data_dir: the folder that contains ``MNIST/raw/``.
        train: the 60,000 training images, else the 10,000 test images.
        download: allow torchvision to download missing files. With ``False``
            nothing is fetched and missing files raise at once.

    Returns:
        ``(images, labels)``: float32 intensities in ``[0, 1]`` and int64 labels.

    Shape:
        - images: :math:`(N, 1, H, W)` (``28 x 28`` for MNIST).
        - labels: :math:`(N,)`.

    Raises:
        FileNotFoundError: the files are missing and could not be obtained.
        IDXError: (a ``ValueError``) a file is damaged or not an MNIST IDX file, or the image
            and label files disagree; the message names the file.
    """
    data_dir = Path(data_dir)
    raw = data_dir / "MNIST" / "raw"
    _extract_gz(raw, [name for name in MNIST_FILES if not (raw / name).is_file()])
    missing = [name for name in MNIST_FILES if not (raw / name).is_file()]
    if missing and not download:
        raise FileNotFoundError(
            _missing_files_message(data_dir, f"missing {', '.join(missing)}; download disabled")
        )
    if missing:
        _fetch_mnist(data_dir)
    prefix = "train" if train else "t10k"
    images = read_idx(raw / f"{prefix}-images-idx3-ubyte", ndim=3)  # (N, H, W)
    labels_path = raw / f"{prefix}-labels-idx1-ubyte"
    labels = read_idx(labels_path, ndim=1)  # (N,)
    if labels.shape[0] != images.shape[0]:
        raise IDXError(
            f"{labels_path} holds {labels.shape[0]} labels but the image file beside it holds "
            f"{images.shape[0]} images; one of them is damaged or from another set: delete both "
            "and download them again"
        )
    if labels.numel() and int(labels.max()) > 9:
        raise IDXError(f"{labels_path} holds labels above 9: not MNIST labels")
    return images.unsqueeze(1).float().div_(255.0), labels.long()


def _extract_gz(raw: Path, names: list[str]) -> None:
    """Decompress ``<name>.gz`` where it lies beside a missing file: no download needed."""
    for name in names:
        packed = raw / f"{name}.gz"
        if not packed.is_file():
            continue
        try:
            data = gzip.decompress(packed.read_bytes())
        except (OSError, EOFError, zlib.error) as err:
            raise IDXError(
                f"{packed} is damaged ({err}); delete it and put the original file there"
            ) from err
        part = raw / f"{name}.part"
        part.write_bytes(data)
        part.replace(raw / name)  # whole or not at all


def _fetch_mnist(data_dir: Path) -> None:
    """Have torchvision extract or download the four files into ``data_dir/MNIST/raw``."""
    try:
        from torchvision.datasets import MNIST
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "downloading MNIST needs torchvision: pip install 'autoregressive[examples]'"
        ) from err
    try:
        MNIST(str(data_dir), train=True, download=True)
    except (RuntimeError, OSError) as err:  # failed download / extraction, unreadable folder
        raise FileNotFoundError(
            _missing_files_message(data_dir, f"{type(err).__name__}: {err}".strip())
        ) from err


class IDXError(ValueError):
    """An IDX file (the format of MNIST) that is damaged, truncated or not what was expected."""


def read_idx(path: str | Path, ndim: int) -> torch.Tensor:
    """Read an IDX file of unsigned bytes (the format of the MNIST files), checking it.

    The header is a magic number ``0x0000080<ndim>`` and ``ndim`` big-endian sizes; the data
    must have exactly as many bytes as the sizes promise, and every size must be >= 1.

    Args:
        path: the uncompressed IDX file.
        ndim: the number of dimensions expected (3 for images, 1 for labels).

    Returns:
        A ``uint8`` tensor of the sizes in the header.

    Raises:
        IDXError: (a ``ValueError``) the file is not such a file or is damaged; the message
            names it.
    """
    path = Path(path)
    data = path.read_bytes()
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{path} is not an IDX file: {len(data)} bytes, shorter than its header")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != 0x0800 + ndim:
        raise IDXError(
            f"{path} has magic number {magic:#010x}, expected {0x0800 + ndim:#010x} (unsigned "
            f"bytes in {ndim} dimensions): it is not an MNIST {('label', '', 'image')[ndim - 1]} "
            "file, or it is damaged; delete it and download it again"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if min(dims) < 1 or len(data) != header + math.prod(dims):
        raise IDXError(
            f"{path} has {len(data) - header} bytes of data but its header promises sizes "
            f"{dims} ({math.prod(dims)} bytes, each size >= 1): it is truncated or damaged; "
            "delete it and download it again"
        )
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).view(dims)


class BinarizedBatches(SeededBatches):
    """Batches of binarized images whose order and draw depend only on ``(seed, epoch)``.

    Each epoch the global batches are fixed by one generator seeded with
    ``derive_seed(seed, epoch, "batches")``: a permutation of the images (when ``shuffle``)
    and, for ``binarize="dynamic"``, the uniform numbers of each batch drawn in order. With
    ``world_size`` processes every process builds the same global batch and keeps its own
    contiguous share (``torch.tensor_split``), so the union over processes is the single-process
    batch, whatever the number of processes.

    Args:
        images: intensities in ``[0, 1]`` for ``"threshold"`` / ``"dynamic"``, or binary
            images for ``binarize=None``; shape ``(N, C, H, W)``.
        labels: ``(N,)`` labels, a :class:`~autoregressive.Conditioning` of per-image labels,
            vectors and/or maps, or ``None`` (see :class:`~autoregressive.data.SeededBatches`).
        batch_size: images per global batch (over all processes).
        binarize: ``"threshold"``, ``"dynamic"``, or ``None`` when ``images`` are binary.
        threshold: the cut of ``"threshold"``.
        **order: ``shuffle``, ``seed``, ``rank``, ``world_size``, ``drop_last``, as for
            :class:`~autoregressive.data.SeededBatches` (:class:`~autoregressive.data.BatchOrder`).

    Example:
        >>> from autoregressive.data import BinarizedBatches
        >>> x = torch.rand(10, 1, 4, 4)
        >>> batches = BinarizedBatches(x, batch_size=4, binarize="dynamic", shuffle=True)
        >>> batches.set_epoch(1)  # the epoch's draw: binary images, a new order
        >>> first = next(iter(batches)).images
        >>> first.shape, set(first.unique().tolist()) <= {0.0, 1.0}
        (torch.Size([4, 1, 4, 4]), True)
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | Conditioning | None = None,
        *,
        batch_size: int,
        binarize: Binarization | None = "threshold",
        threshold: float = 0.5,
        **order: Unpack[BatchOrder],
    ) -> None:
        binarize = check_choice(
            "binarize", binarize, ("threshold", "dynamic", None),
            describe="'threshold', 'dynamic' or None",
        )  # fmt: skip
        threshold = check_float("threshold", threshold, minimum=0, below=1)
        super().__init__(images, labels, batch_size=batch_size, **order)
        if binarize is None:
            if bool(((images != 0) & (images != 1)).any()):
                raise ValueError("binarize=None needs binary images in {0, 1}")
        else:
            _check_intensities(images)
        if binarize == "threshold":  # fixed for the whole run: binarize once
            self.images, binarize = threshold_binarize(images, threshold), None
        self.binarize = binarize

    def _transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``"dynamic"``: a fresh Bernoulli draw from the epoch's generator, batch by batch."""
        return dynamic_binarize(x, generator) if self.binarize == "dynamic" else x
