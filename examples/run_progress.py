"""Copy a training run's progress into a results folder: metrics, loss curve, pictures.

    python examples/run_progress.py ../runs/mnist examples/results/mnist-reference

What it copies is what may be committed: ``metrics.json`` (with the paths in its arguments made
relative to the checkout), ``loss_curve.png`` drawn afresh from those metrics, and every
picture the run lists; never ``checkpoint.pt`` or ``weights.pt``. A run still under way can be
copied as often as wanted (``make mnist-progress``): each copy replaces the last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO
from mnist_pixelcnn import save_loss_curve
from outputs import write_json


def relative(value: Any) -> Any:
    """An absolute path as a path relative to the checkout; anything else unchanged."""
    if isinstance(value, str) and os.path.isabs(value):
        try:
            return os.path.relpath(value, REPO)
        except ValueError:  # another drive (Windows)
            return value
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="run_progress.py", description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the run's --out folder (holds metrics.json)")
    p.add_argument("results", type=Path, help="where to copy it, e.g. examples/results/NAME")
    args = p.parse_args(argv)
    source = args.run / "metrics.json"
    if not source.is_file():
        p.error(f"{source} does not exist: pass the --out folder of a run that has saved")
    metrics = json.loads(source.read_text())
    metrics["args"] = {k: relative(v) for k, v in metrics.get("args", {}).items()}
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / "metrics.json", metrics)
    save_loss_curve(metrics["epochs"], metrics.get("initial_test_nll"),
                    args.results / "loss_curve.png")  # fmt: skip
    for name in metrics.get("pictures", []):
        shutil.copy2(args.run / name, args.results / name)
    done = metrics["epochs"][-1]["epoch"] if metrics["epochs"] else 0
    print(f"{args.results}: {done} epochs of {metrics['args'].get('epochs', '?')}, "
          f"{len(metrics.get('pictures', []))} pictures")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
