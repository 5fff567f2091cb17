"""The benchmark suite (``benchmarks/``) runs end to end and writes well-formed results.

The suite is a program, not a test: these checks run it in its hidden ``--tiny`` mode (tiny
models, 8x8 images, batches of 1 and 2) into a temporary folder and look at what it wrote,
without asserting anything about the timings themselves.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = [
    "layer",
    "train",
    "sampling",
    "scaling",
    "precision",
    "precision-nll",
    "prior",
    "colour",
    "attention",
    "attention-train",
    "coding",
    "memory",
]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    """The ``benchmarks`` package, importable from the repository root."""
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("benchmarks")


def _report():
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module("benchmarks.report")
    finally:
        sys.path.remove(str(ROOT))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    results = ROOT / "benchmarks" / "results"
    before = sorted(results.iterdir()) if results.exists() else []
    # one thread: on a shared machine torch's OpenMP threads can wait on each other for far
    # longer than the tiny models compute
    args = ["--tiny", "--device", "cpu", "--threads", "1", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    after = sorted(results.iterdir()) if results.exists() else []
    assert after == before, "the smoke test must not write into the repository"
    return out, proc.stdout


@pytest.mark.slow
def test_tiny_run_writes_json_markdown_and_plot(tiny_run: tuple[Path, str]) -> None:
    out, stdout = tiny_run
    jsons = sorted(out.glob("*.json"))
    assert len(jsons) == 1
    stem = jsons[0].stem
    assert stem.endswith(f"-torch{torch.__version__.replace('+', '-').lower()}-tiny")
    assert f"-cpu-{_report().cpu_tag()}-torch" in stem
    assert {p.name for p in out.iterdir()} == {f"{stem}.json", f"{stem}.md", f"{stem}-sampling.png"}

    png = (out / f"{stem}-sampling.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000

    data = json.loads(jsons[0].read_text())
    assert {"schema", "stem", "machine", "settings", "models", "sections"} <= set(data)
    assert data["stem"] == stem and data["settings"]["mode"] == "tiny"
    machine = data["machine"]
    assert {"platform", "processor", "cpu_count", "torch", "torch_threads", "device"} <= set(
        machine
    )
    assert machine["torch_threads"] == 1
    assert set(data["models"]) == {"reference", "gated"}
    for model in data["models"].values():
        assert model["params"] > 0 and "block" in model["config"]
    assert list(data["sections"]) == SECTIONS

    md = (out / f"{stem}.md").read_text()
    for name in SECTIONS:
        section = data["sections"][name]
        assert section["rows"] or section["notes"], name  # a skipped section says why
        keys = [key for _, key in section["columns"]]
        for row in section["rows"]:
            assert "error" not in row, row.get("error")
            assert set(keys) <= set(row), (name, set(keys) - set(row))
        # the markdown has this section's heading, header row and one line per row
        assert f"## {section['title']}" in md and f"## {section['title']}" in stdout
        header = "| " + " | ".join(h for h, _ in section["columns"]) + " |"
        assert header in md
        table = md.split(f"## {section['title']}")[1].split("\n## ")[0]
        assert table.count("\n| ") == 1 + len(section["rows"])


def _timing_ok(s: dict) -> bool:
    return s["n"] == len(s["times"]) >= 1 and s["min"] <= s["median"] <= s["max"]


@pytest.mark.slow
def test_tiny_run_records_every_measurement(tiny_run: tuple[Path, str]) -> None:
    out, _ = tiny_run
    data = json.loads(next(out.glob("*.json")).read_text())
    s = data["sections"]
    assert len(s["layer"]["rows"]) == 6  # 3 convolutions x (forward, forward+backward)
    for row in s["layer"]["rows"]:
        assert _timing_ok(row["masked"]) and _timing_ok(row["plain"])

    assert [r["model"] for r in s["train"]["rows"]] == ["reference", "gated"]
    for row in s["train"]["rows"]:
        assert row["twin_check"]["params"] == row["twin_check"]["twin_params"]
        assert row["twin_check"]["max_abs_logit_diff"] <= 1e-4
        assert _timing_ok(row["lib"]) and _timing_ok(row["twin"])
        assert row["lib_peak_bytes"] == "n/a"  # no allocator statistics on the CPU

    rows = s["sampling"]["rows"]
    assert [(r["model"], r["batch"]) for r in rows] == [
        (m, b) for m in ("reference", "gated") for b in (1, 2)
    ]
    for row in rows:
        assert _timing_ok(row["forward"]) and _timing_ok(row["cached"])
        assert _timing_ok(row["cached_steps"]) and row["steps_over_forward"] > 0
        assert 8 <= row["passes_count"] < 64  # 8 rows: whole-row passes at these batches
        assert _timing_ok(row["naive_k_steps"]) and row["naive_steps_total"] == 64
        assert row["naive_measured"] and _timing_ok(row["naive_full"])  # tiny: all affordable
        assert row["cache_bytes"] > 0

    rows = s["scaling"]["rows"]
    assert {(r["axis"], r["size"], r["num_blocks"]) for r in rows if r["model"] == "reference"} == {
        ("size", 6, 2),
        ("size", 8, 2),
        ("depth", 6, 1),
        ("depth", 6, 2),
    }
    for row in rows:
        assert _timing_ok(row["cached"]) and _timing_ok(row["train"]) and row["cache_bytes"] > 0

    from autoregressive.training import Capabilities

    rows = s["precision"]["rows"]  # compiled set-ups are left out in --tiny mode
    assert [r["variant"] for r in rows] == [
        "fp32 + channels_last", "fp32 + fused Adam", "bf16 autocast", "bf16 + channels_last"
    ]  # fmt: skip
    native = Capabilities.detect("cpu").native_bf16
    for row in rows:
        assert _timing_ok(row["variant_time"]) and _timing_ok(row["fp32_time"])
        assert row["speedup"]["median"] > 0
        assert row["emulated_bf16"] == (row["variant"].startswith("bf16") and not native)
    nll = s["precision-nll"]
    if native:
        assert [r["precision"] for r in nll["rows"]] == ["fp32", "bf16"]
        assert all(math.isfinite(r["test_nll"]) for r in nll["rows"])
    else:
        assert nll["rows"] == [] and "emulates bf16" in nll["notes"][0]

    _check_prior_rows(s["prior"]["rows"])


def _check_prior_rows(rows: list[dict]) -> None:
    """The prior suite's rows in tiny mode: scaled and embedded input, grids 4x4 and 6x6."""
    models = (("prior", "scaled"), ("prior-embedded", "learned"))
    want = [(m, i, g) for m, i in models for g in ("4x4", "6x6")]
    assert [(r["model"], r["input"], r["grid"]) for r in rows] == want
    for row in rows:
        assert _timing_ok(row["forward"]) and _timing_ok(row["cached"])
        assert _timing_ok(row["naive_k_steps"]) and row["naive_steps_total"] == row["side"] ** 2
        assert row["naive_measured"] and _timing_ok(row["naive_full"])  # tiny: all affordable
        assert row["cached_over_forward"] > 0 and row["cache_bytes"] > 0
        assert row["aten_calls_per_step"] > 0
    assert rows[2]["params"] > rows[0]["params"]  # the embedding and a wider first block


def test_prior_suite_runs_scaled_and_embedded_priors(bench) -> None:
    """The prior suite alone, in-process, in tiny mode (the subprocess run is slow)."""
    prior = importlib.import_module("benchmarks.prior")
    settings = importlib.import_module("benchmarks.settings")
    section = prior.run(settings.MODES["tiny"], torch.device("cpu"))
    _check_prior_rows(section.rows)
    assert "| prior-embedded | learned |" in section.markdown()


def test_coding_suite_times_encode_and_decode_against_sampling(bench) -> None:
    """The compression suite alone, in-process, in tiny mode."""
    pytest.importorskip("constriction", reason='needs pip install ".[compression]"')
    coding = importlib.import_module("benchmarks.coding")
    settings = importlib.import_module("benchmarks.settings")
    section = coding.run(settings.MODES["tiny"], torch.device("cpu"))
    assert [(r["model"], r["batch"]) for r in section.rows] == [
        (m, b) for m in ("reference", "gated") for b in (1, 2)
    ]
    for row in section.rows:
        for key in ("cached", "cached_steps", "encode", "decode"):
            assert _timing_ok(row[key])
        assert row["decode_images_per_s"] > 0 and row["decode_over_cached"] > 0
        assert 0 < row["bits_per_image"] < 8 * 54 / row["batch"] + 64 + 8 * 8  # 8x8 binary
    assert "| gated | 2 |" in section.markdown()


def test_memory_suite_compares_one_call_with_chunks(bench) -> None:
    """The memory suite in tiny mode: one call, then chunks, each from its own process."""
    memory = importlib.import_module("benchmarks.memory")
    settings = importlib.import_module("benchmarks.settings")
    section = memory.run(settings.MODES["tiny"], torch.device("cpu"))
    assert [r["chunk"] for r in section.rows] == [None, 4]
    for row in section.rows:
        assert row["images"] == 16 and _timing_ok(row["time"])
        assert row["peak_mb"] >= row["above_start_mb"] >= 0 and row["peak_mb"] > 0
    assert section.rows[0]["time_over_one_call"] == 1.0


def test_prior_models_are_issue_13s_prior(bench) -> None:
    """567,232 parameters with scaled input, as issue 13 measured; the same with an embedding."""
    from autoregressive import PixelCNN

    settings = importlib.import_module("benchmarks.settings")
    models = settings.MODES["full"].prior_models
    assert settings.MODES["quick"].prior_models == models
    count = {
        k: sum(p.numel() for p in PixelCNN(c, device="meta").parameters())
        for k, c in models.items()
    }
    assert count["prior"] == 567_232
    assert models["prior-embedded"] == models["prior"].replace(input_embedding="learned")


def test_attention_training_step_runs_snail_and_gated(bench) -> None:
    """Issue 23's training table, in-process, in tiny mode: each model against the gated one."""
    attention = importlib.import_module("benchmarks.attention")
    settings = importlib.import_module("benchmarks.settings")
    section = attention.run_train(settings.MODES["tiny"], torch.device("cpu"))
    assert [r["model"] for r in section.rows] == ["snail-small", "gated-small"]
    for row in section.rows:
        assert _timing_ok(row["step"]) and row["params"] > 0
    assert section.rows[1]["ratio"]["median"] == 1.0
    assert "| snail-small |" in section.markdown()


@pytest.mark.slow
def test_attention_sampling_table_runs_snail_and_gated(bench) -> None:
    """Issue 23's sampling table in tiny mode: forward, cached, naive and the KV cache."""
    attention = importlib.import_module("benchmarks.attention")
    settings = importlib.import_module("benchmarks.settings")
    section = attention.run(settings.MODES["tiny"], torch.device("cpu"))
    want = [(m, b) for m in ("snail-small", "gated-small") for b in (1, 2)]
    assert [(r["model"], r["batch"]) for r in section.rows] == want
    for row in section.rows:
        assert _timing_ok(row["forward"]) and _timing_ok(row["cached"])
        assert row["cache_bytes"] > 0 and row["cached_over_forward"] > 0
    snail = section.rows[1]["cache_bytes"]  # batch 2: the keys and values double
    assert snail == 2 * section.rows[0]["cache_bytes"]


@pytest.mark.slow
def test_attention_table_times_a_runs_trained_weights(bench, tmp_path: Path) -> None:
    """``--trained``: a run's weights.pt is timed beside the presets, with its own weights."""
    from dataclasses import replace

    from autoregressive import PixelCNN, PixelCNNConfig
    from autoregressive.checkpoint import save_checkpoint

    attention = importlib.import_module("benchmarks.attention")
    settings = importlib.import_module("benchmarks.settings")
    config = PixelCNNConfig.preset("snail-small", num_blocks=1, hidden_channels=4)
    model = PixelCNN(config)
    (tmp_path / "my-run").mkdir()
    weights = tmp_path / "my-run" / "weights.pt"
    save_checkpoint(weights, {"config": config.to_dict(), "model": model.state_dict()})
    tiny = replace(settings.MODES["tiny"], trained=(str(weights),))
    section = attention.run(tiny, torch.device("cpu"))
    rows = [r for r in section.rows if r["model"] == "my-run (trained)"]
    assert [r["batch"] for r in rows] == [1, 2]
    assert rows[0]["params"] == sum(p.numel() for p in model.parameters())
    save_checkpoint(weights, {"model": model.state_dict()})
    with pytest.raises(ValueError, match="no config and weights"):
        attention.run(tiny, torch.device("cpu"))


def test_stats_match_numpy(bench) -> None:
    np = pytest.importorskip("numpy")
    timing = importlib.import_module("benchmarks.timing")
    times = [0.5, 0.1, 0.4, 0.3, 0.2, 0.9]
    s = timing.stats(times)
    assert s["median"] == pytest.approx(np.median(times))
    assert s["q1"] == pytest.approx(np.quantile(times, 0.25))
    assert s["q3"] == pytest.approx(np.quantile(times, 0.75))
    assert (s["min"], s["max"], s["n"], s["times"]) == (0.1, 0.9, 6, times)


def test_result_names_are_sanitised(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    report = importlib.import_module("benchmarks.report")
    assert report.sanitise("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert report.sanitise("2.4.1+cu121") == "2.4.1-cu121"
    stem = report.result_stem(torch.device("cpu"), "quick")
    assert stem.endswith("-quick") and "-cpu-" in stem and "/" not in stem
    assert report.result_stem(torch.device("cpu"), "full") + "-quick" == stem
    for model, tag in {
        "Intel(R) Xeon(R) Processor": "intel-xeon",
        "AMD EPYC": "amd-epyc",
        "Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz": "intel-core-i7-8700k",
    }.items():
        monkeypatch.setattr(report, "_cpu_model", lambda m=model: m)
        assert report.cpu_tag() == tag


@pytest.mark.parametrize("preset", ["reference", "gated"])
def test_twin_matches_the_library(bench, preset: str) -> None:
    from autoregressive import PixelCNN, PixelCNNConfig

    twins = importlib.import_module("benchmarks.twins")
    settings = importlib.import_module("benchmarks.settings")
    cfg = settings.MODES["full"].models[preset]
    torch.manual_seed(0)
    model = PixelCNN(cfg)
    if preset == "reference":
        assert cfg == PixelCNNConfig.preset("reference")
    twin = twins.make_twin(model)
    x = torch.randint(0, 2, (2, 1, 9, 7)).float()
    check = twins.check_twin(model, twin, x)
    assert check["params"] == check["twin_params"]
    assert check["params"] == (488_065 if preset == "reference" else check["params"])
    twin.network[-1].bias.data += 1  # a different function must be caught
    with pytest.raises(RuntimeError, match="does not match"):
        twins.check_twin(model, twin, x)


def test_naive_steps_stop_after_the_limit(bench) -> None:
    from autoregressive import PixelCNN, PixelCNNConfig, draw_noise

    sampling = importlib.import_module("benchmarks.sampling")
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4)).eval()
    wrapper = sampling._StopAfter(model.network, 3)
    with pytest.raises(sampling._Stop):
        from autoregressive import naive_sample

        naive_sample(wrapper, model.distribution, draw_noise((1, 1, 4, 4)))
    assert wrapper.calls == 3


def test_cli_rejects_unknown_measurements(bench, capsys: pytest.CaptureFixture) -> None:
    cli = importlib.import_module("benchmarks.cli")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--only", "layer,bogus"])
    assert "bogus" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["--only", "scaling,layer", "--batch-sizes", "1,4"])
    assert args.only == ["layer", "scaling"] and args.batch_sizes == (1, 4)
