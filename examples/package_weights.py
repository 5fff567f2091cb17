"""Package a finished run's weights for ``PixelCNN.from_pretrained``.

    python examples/package_weights.py runs/mnist mnist-reference --description "..."

Copies ``<run>/weights.pt`` (written by ``mnist_pixelcnn.py`` after its last epoch) to
``src/autoregressive/models/weights/<name>.pt`` and records its SHA-256, the run's final test
NLL, precision, hardware and wall time in ``src/autoregressive/models/weights/registry.json``.
Commit both files; the wheel ships them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from autoregressive.checksums import file_sha256
from autoregressive.models.pretrained import WEIGHTS_DIR, available, load_pretrained
from autoregressive.training import load_checkpoint

REPO_WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "autoregressive" / "models" / "weights"


def entry(run: Path, name: str, description: str) -> dict:
    """The registry entry of ``<run>/weights.pt`` (its metrics from the run's metrics.json)."""
    weights = load_checkpoint(run / "weights.pt")
    metrics = json.loads((run / "metrics.json").read_text())
    if not metrics.get("finished"):
        raise SystemExit(f"error: the run in {run} has not finished (metrics.json)")
    return {
        "file": f"{name}.pt",
        "sha256": file_sha256(run / "weights.pt"),
        "description": description,
        "parameters": metrics["parameters"],
        "data": {k: weights["metrics"][k] for k in ("binarize", "threshold")},
        "test_nll": weights["metrics"]["test_nll"],
        "test_bits_per_dim": weights["metrics"]["test_bits_per_dim"],
        "epochs": weights["metrics"]["epoch"],
        "precision": metrics["precision"]["name"],
        "hardware": metrics["hardware"],
        "wall_seconds": metrics["wall_seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="the run's --out folder (holds weights.pt)")
    p.add_argument("name", help="the name for from_pretrained, e.g. mnist-reference")
    p.add_argument("--description", default="", help="one line for the registry")
    p.add_argument("--folder", type=Path, default=REPO_WEIGHTS, help="the weights folder")
    args = p.parse_args(argv)
    new = entry(args.run, args.name, args.description)
    args.folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run / "weights.pt", args.folder / new["file"])
    registry = available(args.folder) | {args.name: new}
    text = json.dumps(dict(sorted(registry.items())), indent=2) + "\n"
    (args.folder / "registry.json").write_text(text)
    load_pretrained(args.name, folder=args.folder)  # the checksum and the weights load
    where = "the package" if args.folder.resolve() == WEIGHTS_DIR else args.folder
    print(f"packaged {args.name!r} into {where}: test NLL {new['test_nll']:.2f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
