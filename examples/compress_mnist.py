"""Compress the binarized MNIST test digits with a trained PixelCNN; compare with PNG and zip.

A model's negative log-likelihood is a promise about compression: a range coder driven by its
conditionals (:func:`autoregressive.compress`) stores each digit in about ``-log2 p(x)`` bits.
This script binarizes the 10,000 test digits as the model's training run did (the shipped
model's registry entry says how), compresses them in streams of ``--stream-images`` digits,
decompresses every stream and checks that the digits come back exactly, and compares the
bits per digit with the model's NLL and with general-purpose compressors of the same bits:
one 1-bit PNG per digit and one for all of them (Pillow, when installed), gzip, bz2 and lzma of
the packed bits (8 pixels a byte).

Run it with ``make compress-demo``, or::

    .venv/bin/python examples/compress_mnist.py --limit 500 --out runs/compress-mnist

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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoregressive import PixelCNN, compress, decompress
from autoregressive.coding.format import CHECKSUM_BYTES, HEADER_BYTES
from autoregressive.data import derive_seed, dynamic_binarize, load_mnist, threshold_binarize
from autoregressive.models.pretrained import available

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` also when loaded by path
import common
import outputs

#: the test digits
TEST_IMAGES = 10_000


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter)
    p.add_argument("--model", default="mnist-demo", help="a shipped model's name")
    p.add_argument("--data-dir", type=Path, help=common.MNIST_DIR_HELP)
    p.add_argument("--no-download", action="store_true", help="never fetch MNIST")
    p.add_argument("--limit", type=common.positive_int, help="compress the first N test digits")
    p.add_argument(
        "--stream-images", type=common.positive_int, default=1000, help="digits per stream"
    )
    p.add_argument(
        "--batch-size", type=common.positive_int, default=250, help="digits coded together"
    )
    p.add_argument("--threads", type=common.positive_int, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("runs/compress-mnist"), help="output folder")
    args = p.parse_args(argv)
    if args.model not in available():
        p.error(f"--model {args.model}: not a shipped model; choose one of {sorted(available())}")
    try:
        common.check_out(args.out)
    except ValueError as err:
        p.error(str(err))
    args.data_dir = args.data_dir or common.default_mnist_dir()
    return args


def test_digits(args: argparse.Namespace) -> torch.Tensor:
    """The test digits ``(N, 1, 28, 28)``, binarized as the model's registry entry says."""
    data = available()[args.model].get("data", {})
    images, _ = load_mnist(args.data_dir, train=False, download=not args.no_download)
    images = images[: args.limit]
    if data.get("binarize") == "dynamic":  # the training example's one fixed draw
        return dynamic_binarize(images, torch.Generator().manual_seed(derive_seed(0, "test")))
    return threshold_binarize(images, data.get("threshold", 0.5))


def model_nll_bits(model: PixelCNN, digits: torch.Tensor, batch: int) -> float:
    """The digits' total negative log-likelihood under the model, in bits."""
    with torch.no_grad():
        nats = sum(float(-model.log_prob(x).sum()) for x in digits.split(batch))
    return nats / math.log(2)


def round_trip(model: PixelCNN, digits: torch.Tensor, args: argparse.Namespace) -> dict[str, Any]:
    """Compress in streams, decompress each, check it is exact; sizes and times."""
    streams, seconds = [], {"encode": 0.0, "decode": 0.0}
    for start in range(0, digits.shape[0], args.stream_images):
        part = digits[start : start + args.stream_images]
        t0 = time.perf_counter()
        data = compress(model, part, batch_size=args.batch_size)
        t1 = time.perf_counter()
        back = decompress(model, data)
        t2 = time.perf_counter()
        if not torch.equal(back, part):
            raise SystemExit(f"error: digits {start}.. did not come back exactly")
        seconds["encode"] += t1 - t0
        seconds["decode"] += t2 - t1
        streams.append(len(data))
        done = start + part.shape[0]
        print(f"  {done:>6,} / {digits.shape[0]:,} digits: {len(data):,} bytes, exact", flush=True)
    return {"stream_bytes": streams, "seconds": seconds}


def png_bytes(bits: np.ndarray) -> dict[str, int] | None:
    """1-bit PNGs of the digits ``(N, 28, 28)``: one file per digit, and one of them all."""
    try:
        from PIL import Image
    except ImportError:
        return None

    def size(array: np.ndarray) -> int:
        buffer = io.BytesIO()
        Image.fromarray(array.astype(bool)).save(buffer, format="PNG", optimize=True)
        return len(buffer.getvalue())

    return {"png per digit": sum(size(d) for d in bits), "png of all": size(bits.reshape(-1, 28))}


def baselines(digits: torch.Tensor) -> dict[str, int | None]:
    """Bytes of the same bits by general-purpose compressors (``None``: Pillow missing)."""
    bits = digits.squeeze(1).numpy().astype(np.uint8)  # (N, 28, 28) in {0, 1}
    packed = np.packbits(bits.reshape(bits.shape[0], -1), axis=1).tobytes()  # 98 bytes a digit
    found: dict[str, int | None] = {"packed bits": len(packed)}
    found["gzip -9"] = len(gzip.compress(packed, compresslevel=9, mtime=0))
    found["bz2 -9"] = len(bz2.compress(packed, compresslevel=9))
    found["lzma -9e"] = len(lzma.compress(packed, preset=9 | lzma.PRESET_EXTREME))
    png = png_bytes(bits)
    found.update(png or {"png per digit": None, "png of all": None})
    return found


def table(results: dict[str, Any]) -> str:
    """The markdown table: bits per digit of each method, and against the model's NLL."""
    n, nll = results["digits"], results["nll_bits_per_digit"]
    rows = [("model NLL (the ideal)", nll)]
    rows.append(("autoregressive.compress", 8 * sum(results["stream_bytes"]) / n))
    rows += [(k, None if v is None else 8 * v / n) for k, v in results["baselines"].items()]
    lines = ["| method | bits per digit | vs NLL |", "|---|---:|---:|"]
    for name, bits in rows:
        shown = "not run (no Pillow)" if bits is None else f"{bits:.2f}"
        ratio = "" if bits is None else f"{bits / nll:.3f}x"
        lines.append(f"| {name} | {shown} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = PixelCNN.from_pretrained(args.model)
    digits = test_digits(args)
    n = digits.shape[0]
    print(f"{args.model}: {n:,} binarized test digits from {args.data_dir}; out {args.out}")
    nll = model_nll_bits(model, digits, args.batch_size)
    print(f"model NLL {nll / n:.2f} bits per digit; compressing", flush=True)
    results: dict[str, Any] = {"model": args.model, "digits": n, "nll_bits_per_digit": nll / n}
    results.update(round_trip(model, digits, args))
    overhead = HEADER_BYTES + CHECKSUM_BYTES  # bytes per stream besides the coder's words
    results["header_bits_per_digit"] = 8 * overhead * len(results["stream_bytes"]) / n
    results["baselines"] = baselines(digits)
    results["hardware"] = outputs.hardware(torch.device("cpu"))
    common.make_out(args.out)
    outputs.write_json(args.out / "results.json", results)
    text = table(results)
    (args.out / "results.md").write_text(text)
    coded = 8 * sum(results["stream_bytes"]) / n
    print(text + f"\nround trip exact; {coded / (nll / n) - 1:+.2%} against the NLL "
          f"({results['header_bits_per_digit']:.2f} bits per digit of headers)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
