"""8-bit colour images for colour PixelCNNs: CIFAR-10, an offline photo-patch set, seeded batches.

Two sources of ``(N, 3, 32, 32)`` ``uint8`` images with values in ``[0, 256)``:

- **CIFAR-10** (Krizhevsky, 2009, https://www.cs.toronto.edu/~kriz/cifar.html) through
  ``torchvision.datasets.CIFAR10``, which checks the files' MD5 sums and downloads them where
  the network allows (:func:`load_cifar10`); :func:`read_cifar10` reads the same pickle files
  without the checksums, for copies that are not byte-identical to the official ones.
- **Photo patches** (:func:`load_photo_patches`): 32x32 patches cut on a fixed grid from the
  colour photographs that ship inside scikit-image's wheel (``skimage.data``; no download).
  A small, real, offline colour data set for demos and tests on machines without network.
  **It is not CIFAR-10**: a few thousand patches of nine photographs (a portrait, a cat, a cup
  of coffee, a rocket, a stereo pair of a motorcycle, a Hubble deep field, a retina, a tissue
  micrograph), split into training and test sets *by source image*, so test patches come from
  photographs the model never saw. Bits/dim on it do not compare with CIFAR-10 figures.

:class:`ImageBatches` yields :class:`~autoregressive.data.Batch` es of such images in an order
fixed by ``(seed, epoch)``, as :class:`~autoregressive.data.BinarizedBatches` does for binary
images, so training on them resumes bit for bit.

``torchvision`` (``examples`` extra) and ``scikit-image`` (``examples`` / ``test`` extras) are
optional; they are imported only by the functions that need them.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from ..validation import check_int, check_tensor
from .batches import SeededBatches

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FOLDER",
    "PHOTO_SOURCES",
    "ImageBatches",
    "cut_patches",
    "load_cifar10",
    "load_photo_patches",
    "photo_patch_sources",
    "read_cifar10",
]

#: The folder torchvision's ``CIFAR10`` reads inside its ``root``.
CIFAR10_FOLDER = "cifar-10-batches-py"
#: CIFAR-10's label names, in label order.
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST = ("test_batch",)

Split = Literal["train", "test"]

#: The photographs of :func:`load_photo_patches`: ``skimage.data`` function -> split. The stereo
#: pair of the motorcycle (``stereo_motorcycle``, left and right views) counts as one source,
#: so both views fall in the same split. Every one ships in scikit-image's wheel (no download).
PHOTO_SOURCES: Mapping[str, Split] = {
    "astronaut": "train",  # Eileen Collins, NASA portrait, 512 x 512
    "rocket": "train",  # SpaceX Falcon 9 on the launch pad, 427 x 640
    "stereo_motorcycle": "train",  # Middlebury stereo pair, 2 x 500 x 741
    "hubble_deep_field": "train",  # galaxies, NASA, 872 x 1000
    "retina": "train",  # fundus photograph of a human retina, 1411 x 1411
    "immunohistochemistry": "train",  # stained tissue under a microscope, 512 x 512
    "chelsea": "test",  # a cat, 300 x 451
    "coffee": "test",  # a cup of coffee, 400 x 600
}


# ------------------------------------------------------------------------------- CIFAR-10
def _cifar_missing(root: Path, reason: str) -> str:
    return (
        f"CIFAR-10 not found in {root} ({reason}). torchvision needs the python version of "
        f"the data set in {root / CIFAR10_FOLDER}/ (data_batch_1..5, test_batch, batches.meta, "
        "with their official MD5 sums): allow the download (network access, a writable "
        "folder), extract cifar-10-python.tar.gz there, or pass another root. For a copy whose "
        "files differ from the official ones, read_cifar10 reads the pickles without checksums."
    )


def load_cifar10(
    root: str | Path, *, train: bool = True, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10's training or test set through ``torchvision.datasets.CIFAR10``.

    torchvision verifies the MD5 sum of every file and downloads the archive (163 MB) into
    ``root`` when a file is missing or different and ``download`` is true.

    Args:
        root: the folder that holds (or will hold) ``cifar-10-batches-py/``.
        train: the 50,000 training images, else the 10,000 test images.
        download: allow torchvision to download; with ``False`` nothing is fetched.

    Returns:
        ``(images, labels)``: ``uint8`` images and ``int64`` labels in ``[0, 10)``.

    Shape:
        - images: :math:`(N, 3, 32, 32)`.
        - labels: :math:`(N,)`.

    Raises:
        FileNotFoundError: the files are missing or differ from the official ones and could
            not be downloaded; the message says where they belong.
        ImportError: torchvision is not installed.
    """
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "CIFAR-10 needs torchvision: pip install 'autoregressive[examples]'"
        ) from err
    root = Path(root)
    try:
        dataset = CIFAR10(str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:  # failed checksum / download / extraction
        reason = f"{type(err).__name__}: {err}".strip()
        raise FileNotFoundError(_cifar_missing(root, reason)) from err
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    return images, torch.tensor(dataset.targets, dtype=torch.long)


def read_cifar10(root: str | Path, *, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Read CIFAR-10's pickle files from ``<root>/cifar-10-batches-py/`` without checksums.

    The format of the official "python version": each batch file is a pickled dict with
    ``"data"``, a ``uint8`` array ``(n, 3072)`` (red, green, then blue planes of each image,
    row-major), and ``"labels"``, a list of ``n`` ints in ``[0, 10)``. Use it for copies that
    are not byte-identical to the official files; :func:`load_cifar10` is the checked path.

    Args:
        root: the folder that holds ``cifar-10-batches-py/``.
        train: read ``data_batch_1`` .. ``data_batch_5``, else ``test_batch``.

    Returns:
        ``(images, labels)``: ``uint8`` images and ``int64`` labels.

    Shape:
        - images: :math:`(N, 3, 32, 32)`.
        - labels: :math:`(N,)`.

    Raises:
        FileNotFoundError: a batch file is missing.
        ValueError: a file is not a CIFAR-10 batch (the message names it).
    """
    folder = Path(root) / CIFAR10_FOLDER
    images, labels = [], []
    for name in _CIFAR10_TRAIN if train else _CIFAR10_TEST:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(_cifar_missing(Path(root), f"no file {path}"))
        x, y = _read_cifar_batch(path)
        images.append(x)
        labels.append(y)
    return torch.cat(images), torch.cat(labels)


#: the NumPy functions that rebuild arrays and scalars from their bytes, under numpy.core
_NUMPY_NAMES = (
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays, and nothing that runs code.

    A CIFAR-10 batch holds nothing else; any other class a pickle names (which unpickling
    would import and call) is refused with :class:`pickle.UnpicklingError`.
    """

    _ALLOWED = frozenset(
        (f"numpy.{core}.{module}", name)
        for core in ("core", "_core")  # NumPy 1 and 2
        for module, name in _NUMPY_NAMES
    ) | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # protocol 2: bytes

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"it names {module}.{name}, which a CIFAR-10 batch never holds (refused unread: "
            "unpickling it could run code)"
        )


def _not_a_batch(path: Path, reason: str) -> str:
    return (
        f"{path} is not a CIFAR-10 batch file ({reason[:200]}): it is truncated or damaged. "
        f"Extract {path.name} again from cifar-10-python.tar.gz, or delete the folder "
        f"{path.parent} and call load_cifar10(root) to download and check a fresh copy"
    )


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file: ``(n, 3, 32, 32)`` uint8 images and ``(n,)`` labels, checked."""
    import numpy as np  # a dependency of torchvision and scikit-image, as the pickles need

    with path.open("rb") as f:
        try:
            entry: Any = _ArraysOnly(f, encoding="latin1").load()
        except Exception as err:  # damaged bytes make the unpickler raise almost anything
            raise ValueError(_not_a_batch(path, f"{type(err).__name__}: {err}")) from err
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        raise ValueError(_not_a_batch(path, "no 'data' and 'labels' entries"))
    data = np.asarray(entry["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{path}: 'data' must be a uint8 array (n, 3072), got {data.dtype} {data.shape}"
        )
    labels = torch.tensor(list(entry["labels"]), dtype=torch.long)
    if labels.shape != (data.shape[0],) or (
        labels.numel() and not 0 <= labels.min() <= labels.max() < 10
    ):
        raise ValueError(f"{path}: 'labels' must be {data.shape[0]} ints in [0, 10)")
    images = torch.from_numpy(data.copy()).view(-1, 3, 32, 32)  # planes R, G, B, row-major
    return images, labels


# --------------------------------------------------------------------------- photo patches
def cut_patches(image: torch.Tensor, size: int = 32, stride: int = 32) -> torch.Tensor:
    """All ``size x size`` patches of ``image`` on a grid with step ``stride``, from the top left.

    Patches are taken row by row of the grid; the right and bottom margins that do not fill
    a patch are dropped.

    Args:
        image: one image ``(C, H, W)``.
        size: side of a patch.
        stride: step of the grid (``size``: non-overlapping patches).

    Returns:
        ``(P, C, size, size)`` patches, ``P = (1 + (H - size) // stride) * (1 + (W - size) //
        stride)`` (0 when the image is smaller than a patch).

    Shape:
        - image: :math:`(C, H, W)`
        - output: :math:`(P, C, s, s)`

    Example:
        >>> from autoregressive.data.colour import cut_patches
        >>> cut_patches(torch.arange(2 * 5 * 7).view(2, 5, 7), size=2, stride=2).shape
        torch.Size([6, 2, 2, 2])
    """
    check_tensor("image", image, ndim=3, like=" (C, H, W)")
    size, stride = check_int("size", size, 1), check_int("stride", stride, 1)
    c = image.shape[0]
    if min(image.shape[1:]) < size:
        return image.new_empty(0, c, size, size)
    grid = image.unfold(1, size, stride).unfold(2, size, stride)  # (C, gh, gw, s, s)
    return grid.permute(1, 2, 0, 3, 4).reshape(-1, c, size, size)  # (gh * gw, C, s, s)


def photo_patch_sources() -> dict[str, list[torch.Tensor]]:
    """The photographs of :data:`PHOTO_SOURCES` as ``uint8`` tensors, read from scikit-image.

    Returns:
        Source name -> its views (two for ``stereo_motorcycle``, else one), each
        ``(3, H, W)`` ``uint8``.

    Raises:
        ImportError: scikit-image is not installed.
        ValueError: a photograph's file is missing or damaged (the message names it).
    """
    try:
        from skimage import data
    except ImportError as err:
        raise ImportError(
            "the photo-patch data set needs scikit-image: pip install 'autoregressive[examples]'"
        ) from err
    sources: dict[str, list[torch.Tensor]] = {}
    for name in PHOTO_SOURCES:
        views = _read_photo(data, name)
        sources[name] = [torch.from_numpy(v[..., :3].copy()).permute(2, 0, 1) for v in views]
    return sources


def _read_photo(data: Any, name: str) -> list[Any]:
    """The views of ``skimage.data.<name>()``, each a ``uint8`` array ``(H, W, >= 3)``."""
    import numpy as np

    try:
        loaded = getattr(data, name)()
        views = loaded[:2] if name == "stereo_motorcycle" else (loaded,)  # (left, right, disp)
        bad = [np.shape(v) for v in views if np.ndim(v) != 3 or np.shape(v)[2] < 3]
        problem = f"got arrays of shape {bad}, not colour images" if bad else ""
    except Exception as err:  # the file is missing, damaged, or needs a download
        problem = f"{type(err).__name__}: {str(err)[:200]}"
    if problem:
        raise ValueError(
            f"scikit-image's photograph skimage.data.{name}() cannot be read ({problem}): its "
            f"file in {Path(data.__file__).parent} is missing or damaged; reinstall "
            "scikit-image (pip install --force-reinstall scikit-image)"
        )
    return list(views)


def load_photo_patches(
    *, train: bool = True, size: int = 32, stride: int = 32, min_std: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """32x32 colour patches of the photographs that ship with scikit-image (not CIFAR-10).

    Each photograph of :data:`PHOTO_SOURCES` in the chosen split is cut at full resolution
    into non-overlapping ``size x size`` patches on a grid from its top-left corner
    (:func:`cut_patches`); patches whose 3 * size * size values have a standard deviation below
    ``min_std`` (flat areas such as the black surround of the retina) are dropped. Sources go
    in the order of :data:`PHOTO_SOURCES`, patches row by row: the result is the same on every
    machine and for every call. With the defaults: 3,858 training patches (astronaut 244,
    rocket 260, motorcycle 690 from its two views, Hubble deep field 837, retina 1,573, tissue
    254) and 342 test patches (the cat ``chelsea`` 126, the coffee cup 216).

    Args:
        train: the training photographs, else the test photographs.
        size: side of a patch.
        stride: step of the grid.
        min_std: drop patches whose values' standard deviation (in 0..255 units) is below it;
            ``0`` keeps all.

    Returns:
        ``(images, sources)``: ``uint8`` patches and, for each, the index of its photograph in
        :data:`PHOTO_SOURCES` (``int64``), usable as a label.

    Shape:
        - images: :math:`(N, 3, s, s)`.
        - sources: :math:`(N,)`.

    Raises:
        ImportError: scikit-image is not installed.
        ValueError: a photograph's file is missing or damaged (the message names it).
    """
    split: Split = "train" if train else "test"
    images, labels = [], []
    for index, (name, views) in enumerate(photo_patch_sources().items()):
        if PHOTO_SOURCES[name] != split:
            continue
        for view in views:
            patches = cut_patches(view, size, stride)  # (P, 3, s, s)
            keep = patches.flatten(1).float().std(dim=1) >= min_std
            images.append(patches[keep])
            labels.append(torch.full((int(keep.sum()),), index, dtype=torch.long))
    return torch.cat(images), torch.cat(labels)


# --------------------------------------------------------------------------------- batches
class ImageBatches(SeededBatches):
    """Batches of integer-valued images whose order depends only on ``(seed, epoch)``.

    The colour counterpart of :class:`~autoregressive.data.BinarizedBatches` (without
    binarization): each epoch's order is a permutation drawn from a generator seeded with
    ``derive_seed(seed, epoch, "batches")``, and under ``world_size`` processes each keeps its
    contiguous share of every global batch. Images are stored as given (e.g. ``uint8``) and
    yielded as ``int64``, what a categorical or logistic-mixture PixelCNN scores.

    Args:
        images: integer images ``(N, C, H, W)`` (e.g. ``uint8`` in ``[0, 256)``).
        labels: ``(N,)`` labels, a :class:`~autoregressive.Conditioning` of per-image labels,
            vectors and/or maps, or ``None`` (see :class:`~autoregressive.data.SeededBatches`).
        batch_size: images per global batch (over all processes).
        shuffle, seed, rank, world_size, drop_last: as for
            :class:`~autoregressive.data.SeededBatches`.

    Example:
        >>> from autoregressive.data.colour import ImageBatches
        >>> x = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
        >>> batches = ImageBatches(x, batch_size=4, shuffle=True)
        >>> batches.set_epoch(1)
        >>> [b.images.shape[0] for b in batches], next(iter(batches)).images.dtype
        ([4, 4, 2], torch.int64)
    """

    def _check_images(self, images: torch.Tensor) -> None:
        """Refuse floating-point and boolean images: the likelihoods score integers."""
        if images.is_floating_point() or images.dtype == torch.bool:
            raise ValueError(
                f"images must hold integers (e.g. uint8 in [0, 256)), got {images.dtype}; "
                "quantise intensities in [0, 1] with (x * 255).round().to(torch.uint8)"
            )

    def _transform(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The stored images (e.g. ``uint8``) as ``int64``."""
        return x.long()
