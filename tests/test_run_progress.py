"""examples/run_progress.py: a run's progress copied for committing, never its checkpoints."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

for _module in ("tqdm", "matplotlib", "torchvision"):  # the `examples` extra
    pytest.importorskip(_module)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "run_progress.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("run_progress", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_progress_is_copied_with_relative_paths_and_without_checkpoints(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    epochs = [{"epoch": e, "train_nll": 90.0 - e, "test_nll": 88.0 - e} for e in (1, 2)]
    metrics = {
        "args": {"out": str(run), "data_dir": str(REPO.parent / "shared"), "epochs": 30},
        "epochs": epochs,
        "initial_test_nll": None,
        "pictures": ["samples_epoch002.png"],
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "samples_epoch002.png").write_bytes(b"\x89PNG picture")
    (run / "checkpoint.pt").write_bytes(b"weights")
    results = tmp_path / "results"
    assert _load_script().main([str(run), str(results)]) == 0
    copied = json.loads((results / "metrics.json").read_text())
    assert copied["args"]["data_dir"] == "../shared"
    assert not Path(copied["args"]["out"]).is_absolute()
    assert copied["epochs"] == epochs
    assert (results / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (results / "samples_epoch002.png").read_bytes() == b"\x89PNG picture"
    assert not (results / "checkpoint.pt").exists()


def test_a_folder_without_metrics_is_refused(tmp_path):
    with pytest.raises(SystemExit) as err:
        _load_script().main([str(tmp_path), str(tmp_path / "results")])
    assert err.value.code == 2
