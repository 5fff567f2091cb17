"""Compress test images with a trained PixelCNN; compare with PNG and general-purpose compressors.

A model's negative log-likelihood is a promise about compression: a range coder driven by its
conditionals (:func:`autoregressive.compress`) stores each image in about ``-log2 p(x)`` bits.
This script compresses a test set in streams of ``--stream-images`` images, decompresses every
stream and checks that the images come back exactly, and compares the size with the model's NLL
(with and without the streams' headers) and with general-purpose compressors of the same values:
one PNG per image and one of all of them stacked in a column (Pillow ``optimize=True``, when
installed), and gzip, bz2 and lzma of the raw bytes, image by image and of the whole set.

- ``--data mnist`` (``make compress-demo``): the 10,000 binarized MNIST test digits, binarized
  as the model's training run did (a shipped model's registry entry, or the run's record, says
  how); 1-bit PNGs, the raw bytes are the bits packed 8 a byte.
- ``--data colour`` (``make compress-colour-demo``): the 342 test photo patches
  (:func:`autoregressive.data.colour.load_photo_patches`), or the ``uint8`` array
  ``(N, C, H, W)`` of a ``.npy`` file (``--images``); 24-bit RGB (or 8-bit grey) PNGs, the raw
  bytes are the sub-pixels, one byte each, in pixel order (R, G, B, R, ...).

The model is a shipped one (``--model``) or a run's sealed checkpoint (``--weights``): the
``weights.pt`` of ``mnist_pixelcnn.py``, or the ``checkpoint.pt`` any example's run writes (the
colour demo's: ``runs/colour-demo/checkpoint.pt``). Run it with ``make compress-demo``, or::

    .venv/bin/python examples/compress_images.py --limit 500 --out runs/compress-mnist
    .venv/bin/python examples/compress_images.py --data colour \\
        --weights runs/colour-demo/checkpoint.pt --out runs/compress-colour

It writes ``results.json`` and ``results.md`` (the table) into ``--out``.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import lzma
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoregressive import PixelCNN, PixelCNNConfig, compress, decompress
from autoregressive.coding.format import CHECKSUM_BYTES, HEADER_BYTES
from autoregressive.data import derive_seed, dynamic_binarize, load_mnist, threshold_binarize
from autoregressive.data.colour import load_photo_patches
from autoregressive.models.pretrained import available
from autoregressive.training import CheckpointError, load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
import common
import outputs


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter)
    p.add_argument("--data", choices=("mnist", "colour"), default="mnist", help="the test set")
    p.add_argument("--model", default="mnist-demo", help="a shipped model's name")
    p.add_argument("--weights", type=Path, help="a run's weights.pt or checkpoint.pt instead")
    p.add_argument("--images", type=Path, help="--data colour: a .npy of uint8 (N, C, H, W)")
    p.add_argument("--data-dir", type=Path, help=common.MNIST_DIR_HELP)
    p.add_argument("--no-download", action="store_true", help="never fetch MNIST")
    p.add_argument("--limit", type=common.positive_int, help="compress the first N images")
    p.add_argument(
        "--stream-images", type=common.positive_int, default=1000, help="images per stream"
    )
    p.add_argument(
        "--batch-size", type=common.positive_int, default=250, help="images coded together"
    )
    p.add_argument("--threads", type=common.positive_int, help="torch CPU threads")
    p.add_argument("--out", type=Path, help="output folder (default: runs/compress-<data>)")
    args = p.parse_args(argv)
    if args.weights is None and args.model not in available():
        p.error(f"--model {args.model}: not a shipped model; choose one of {sorted(available())}")
    if args.data == "colour" and args.weights is None:
        p.error("--data colour needs --weights: the checkpoint.pt of a colour_pixelcnn.py run")
    if args.images is not None and args.data != "colour":
        p.error("--images holds 8-bit images: pass --data colour with it")
    args.out = args.out or Path(f"runs/compress-{args.data}")
    try:
        common.check_out(args.out)
    except ValueError as err:
        p.error(str(err))
    args.data_dir = args.data_dir or common.default_mnist_dir()
    return args


# ------------------------------------------------------------------------------ the model
def load_model(args: argparse.Namespace) -> tuple[PixelCNN, Mapping[str, Any]]:
    """The model in eval mode and what its run recorded (how MNIST runs binarized).

    ``--weights`` is a sealed checkpoint with the weights under ``"model"`` and the config
    under ``"config"`` (a ``weights.pt``) or under ``"run"`` (a run's ``checkpoint.pt``).

    Raises:
        ValueError: the file holds no config and weights, or weights of another config.
    """
    if args.weights is None:
        return PixelCNN.from_pretrained(args.model), available()[args.model].get("data", {})
    saved = load_checkpoint(args.weights)
    about = saved.get("run", saved.get("metrics", {}))
    config = saved.get("config", about.get("config"))
    if not isinstance(config, Mapping) or not isinstance(saved.get("model"), Mapping):
        raise ValueError(
            f"--weights {args.weights}: no config and weights in it; pass the weights.pt or "
            "checkpoint.pt of an example's run"
        )
    model = PixelCNN(PixelCNNConfig.from_dict(config))
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as err:
        raise ValueError(f"--weights {args.weights}: the weights do not fit its config") from err
    return model.eval(), about


# ----------------------------------------------------------------------------- the images
@dataclass(frozen=True)
class ImageSet:
    """The images to compress: the model's values, and what the other compressors are given.

    Shape:
        - values: :math:`(N, C, H, W)`, what the model scores (float ``{0, 1}`` or ``long``).
        - raw: :math:`(N, B)` ``uint8``, each image's bytes.
        - pixels: :math:`(N, H, W)` ``bool`` (1-bit PNGs), or :math:`(N, H, W)` / :math:`(N, H,
          W, 3)` ``uint8`` (grey or RGB PNGs).
    """

    values: torch.Tensor
    raw: np.ndarray
    pixels: np.ndarray
    unit: str  # what one image is called in the table: "digit", "patch", "image"
    raw_name: str  # what the raw bytes are called in the table

    @property
    def units(self) -> str:
        """The plural of ``unit``."""
        return f"{self.unit}es" if self.unit.endswith("ch") else f"{self.unit}s"


def binary_set(bits: torch.Tensor, unit: str) -> ImageSet:
    """Binary images ``(N, 1, H, W)`` in ``{0, 1}``: bits packed 8 a byte, 1-bit PNGs."""
    plain = bits.squeeze(1).numpy().astype(np.uint8)  # (N, H, W) in {0, 1}
    packed = np.packbits(plain.reshape(plain.shape[0], -1), axis=1)  # (N, ceil(H W / 8))
    return ImageSet(bits, packed, plain.astype(bool), unit, "packed bits")


def byte_set(images: torch.Tensor, unit: str) -> ImageSet:
    """8-bit images ``(N, C, H, W)``, ``C`` 1 or 3: a byte per sub-pixel, grey or RGB PNGs."""
    pixels = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    raw = np.ascontiguousarray(pixels).reshape(pixels.shape[0], -1)  # (N, H W C), R, G, B, R..
    if pixels.shape[3] == 1:
        pixels = pixels[..., 0]  # (N, H, W): Pillow's grey
    return ImageSet(images.long(), raw, np.ascontiguousarray(pixels), unit, "raw bytes")


def mnist_set(args: argparse.Namespace, about: Mapping[str, Any]) -> ImageSet:
    """The MNIST test digits, binarized as ``about`` (the model's run) says."""
    images, _ = load_mnist(args.data_dir, train=False, download=not args.no_download)
    images = images[: args.limit]
    if about.get("binarize") == "dynamic":  # the training example's one fixed draw
        bits = dynamic_binarize(images, torch.Generator().manual_seed(derive_seed(0, "test")))
    else:
        bits = threshold_binarize(images, about.get("threshold", 0.5))
    return binary_set(bits, "digit")


def colour_set(args: argparse.Namespace, about: Mapping[str, Any]) -> ImageSet:
    """The test photo patches, or the ``--images`` file's.

    Raises:
        ValueError: the file does not hold ``uint8`` images ``(N, 1 or 3, H, W)``.
    """
    if args.images is None:
        return byte_set(load_photo_patches(train=False)[0][: args.limit], "patch")
    array = np.load(args.images, allow_pickle=False)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(
            f"--images {args.images}: holds {array.dtype} {array.shape}; save uint8 images "
            "(N, C, H, W) with C = 1 or 3 (np.save)"
        )
    return byte_set(torch.from_numpy(array[: args.limit]), "image")


#: ``--data`` -> its loader
LOADERS: dict[str, Callable[[argparse.Namespace, Mapping[str, Any]], ImageSet]] = {
    "mnist": mnist_set,
    "colour": colour_set,
}


# ----------------------------------------------------------------------------- measuring
def model_nll_bits(model: PixelCNN, images: torch.Tensor, batch: int) -> float:
    """The images' total negative log-likelihood under the model, in bits."""
    with torch.no_grad():
        nats = -model.log_prob(images, chunk_size=batch).double().sum()  # (N,) -> total
    return float(nats) / math.log(2)


def round_trip(model: PixelCNN, images: ImageSet, args: argparse.Namespace) -> dict[str, Any]:
    """Compress in streams, decompress each, check it is exact; sizes and times."""
    values, n = images.values, images.values.shape[0]
    streams, seconds = [], {"encode": 0.0, "decode": 0.0}
    for start in range(0, n, args.stream_images):
        part = values[start : start + args.stream_images]
        t0 = time.perf_counter()
        data = compress(model, part, batch_size=args.batch_size)
        t1 = time.perf_counter()
        back = decompress(model, data)
        t2 = time.perf_counter()
        if not torch.equal(back, part):
            raise SystemExit(f"error: {images.units} {start}.. did not come back exactly")
        seconds["encode"] += t1 - t0
        seconds["decode"] += t2 - t1
        streams.append(len(data))
        done = start + part.shape[0]
        print(f"  {done:>6,} / {n:,} {images.units}: {len(data):,} bytes, exact", flush=True)
    return {"stream_bytes": streams, "seconds": seconds}


def lzma_9e(data: bytes) -> bytes:
    """``lzma -9e`` with its dictionary cut to the input's size (at least 4 KiB).

    The same matches and the same size as the 64 MiB dictionary of ``preset=9e`` (the input
    fits either), without allocating 64 MiB for each of thousands of small images.
    """
    size = min(max(len(data), 4096), 64 << 20)
    lzma2 = {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": size}
    return lzma.compress(data, filters=[lzma2])


#: the general-purpose compressors, at their strongest settings
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip -9": lambda data: gzip.compress(data, compresslevel=9, mtime=0),
    "bz2 -9": lambda data: bz2.compress(data, compresslevel=9),
    "lzma -9e": lzma_9e,
}


def png_bytes(images: ImageSet) -> dict[str, int | None]:
    """PNGs of the images: one file per image, and one of them all stacked in a column."""
    names = (f"png per {images.unit}", "png of all")
    try:
        from PIL import Image
    except ImportError:
        return dict.fromkeys(names)

    def size(array: np.ndarray) -> int:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG", optimize=True)
        return len(buffer.getvalue())

    column = images.pixels.reshape(-1, *images.pixels.shape[2:])  # (N H, W[, 3])
    return {names[0]: sum(size(p) for p in images.pixels), names[1]: size(column)}


def baselines(images: ImageSet) -> dict[str, int | None]:
    """Bytes of the same images by other means (``None``: Pillow missing)."""
    found: dict[str, int | None] = {images.raw_name: images.raw.size}
    for name, squeeze in COMPRESSORS.items():
        found[f"{name} per {images.unit}"] = sum(len(squeeze(r.tobytes())) for r in images.raw)
        found[f"{name} of all"] = len(squeeze(images.raw.tobytes()))
    found.update(png_bytes(images))
    return found


# ------------------------------------------------------------------------------- results
def table(results: dict[str, Any]) -> str:
    """The markdown table: bits per sub-pixel, bytes per image, and the ratio to the NLL."""
    n, unit, nll = results["images"], results["unit"], results["nll_bits_per_image"]
    rows = [("model NLL (the ideal)", nll)]
    rows.append(("model NLL + stream headers", nll + results["header_bits_per_image"]))
    rows.append(("autoregressive.compress", 8 * sum(results["stream_bytes"]) / n))
    rows += [(k, None if v is None else 8 * v / n) for k, v in results["baselines"].items()]
    dims = results["sub_pixels_per_image"]
    lines = [f"| method | bits per sub-pixel | bytes per {unit} | vs NLL |", "|---|---:|---:|---:|"]
    for name, bits in rows:
        if bits is None:
            lines.append(f"| {name} | not run (no Pillow) | | |")
        else:
            lines.append(f"| {name} | {bits / dims:.4f} | {bits / 8:.2f} | {bits / nll:.3f}x |")
    return "\n".join(lines) + "\n"


def measure(model: PixelCNN, images: ImageSet, args: argparse.Namespace) -> dict[str, Any]:
    """NLL, the round trip and the baselines of ``images``: what ``results.json`` holds."""
    n, dims = images.values.shape[0], images.values[0].numel()
    nll = model_nll_bits(model, images.values, args.batch_size) / n
    print(f"model NLL {nll / dims:.4f} bits per sub-pixel; compressing", flush=True)
    results: dict[str, Any] = {
        "data": args.data if args.images is None else str(args.images),
        "model": str(args.weights or args.model),
        "unit": images.unit,
        "images": n,
        "sub_pixels_per_image": dims,
        "nll_bits_per_image": nll,
    }
    results.update(round_trip(model, images, args))
    overhead = HEADER_BYTES + CHECKSUM_BYTES  # bytes per stream besides the coder's words
    results["header_bits_per_image"] = 8 * overhead * len(results["stream_bytes"]) / n
    results["baselines"] = baselines(images)
    results["hardware"] = outputs.hardware(torch.device("cpu"))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, about = load_model(args)
        images = LOADERS[args.data](args, about)
        model.check_input(images.values)
        model.distribution.validate(images.values)
    except (FileNotFoundError, ImportError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n = images.values.shape[0]
    print(f"{args.weights or args.model}: {n:,} test {images.units} ({args.data}); out {args.out}")
    results = measure(model, images, args)
    common.make_out(args.out)
    outputs.write_json(args.out / "results.json", results)
    text = table(results)
    (args.out / "results.md").write_text(text)
    coded, nll = 8 * sum(results["stream_bytes"]) / n, results["nll_bits_per_image"]
    headers = f"{results['header_bits_per_image']:.2f} bits per {images.unit} of headers"
    print(f"{text}\nround trip exact; {coded / nll - 1:+.2%} against the NLL ({headers})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
