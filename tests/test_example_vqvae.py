"""End-to-end tests of examples/vqvae_prior.py: a VQ-VAE and a class-conditional prior.

The script runs as a subprocess on tiny synthetic IDX files in torchvision's layout (so the real
MNIST loading code runs), with a tiny VQ-VAE and prior; everything is written under pytest's
tmp_path. The prior's conditioning checks are exercised on the model the script builds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from example_scripts import LINUX, NO_CUDA, bad, load_script, main_caller, stop_when
from test_data import write_mnist

for _module in ("torchvision", "tqdm", "matplotlib", "vector_quantize_pytorch"):
    pytest.importorskip(_module)  # the `examples` extra

from autoregressive import NaiveSampler, PixelCNN  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "vqvae_prior.py"
CODEBOOK = 8


def tiny_flags(data_dir: Path, out: Path) -> list[str]:
    """A VQ-VAE of 8 channels and a 1-block prior, 3 steps per epoch: seconds per run."""
    return [
        *("--data-dir", str(data_dir), "--no-download", "--out", str(out), "--seed", "3"),
        *("--codebook-size", str(CODEBOOK), "--code-dim", "4", "--vq-channels", "8"),
        *("--vq-epochs", "1", "--vq-batch-size", "32", "--prior-epochs", "2"),
        *("--prior-blocks", "1", "--prior-channels", "8", "--prior-head", "0"),
        *("--prior-batch-size", "32", "--limit-train-batches", "3", "--eval-batch-size", "64"),
        *("--samples-per-class", "2", "--input-embedding", "learned", "--threads", "1"),
    ]


def test_the_vqvae_phase_starts_alike_whichever_prior_is_built(synthetic, tmp_path):
    script = _load_script()
    device = torch.device("cpu")
    starts = {}
    for kind in ("gated", "snail"):
        args = script.parse_args([*tiny_flags(synthetic, tmp_path / kind), "--prior", kind])
        phases = script.build_phases(args, device)
        starts[kind] = phases.runs["vqvae"].model.state_dict(), torch.get_rng_state()
    (gated, gated_rng), (snail, snail_rng) = starts["gated"], starts["snail"]
    assert gated.keys() == snail.keys()
    assert all(torch.equal(gated[k], snail[k]) for k in gated)
    assert torch.equal(gated_rng, snail_rng)  # the VQ-VAE's training draws alike too


def run_script(args: list[str], expect: int = 0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == expect, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result


def _load_script():
    return load_script(SCRIPT)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(root, 256, 64)
    return root


@pytest.fixture(scope="module")
def finished_run(synthetic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prior")
    run_script(tiny_flags(synthetic, out))
    return out


@pytest.fixture(scope="module")
def snail_run(synthetic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("snail")
    run_script([*tiny_flags(synthetic, out), "--prior", "snail"])
    return out


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _check_png(path: Path) -> tuple[int, ...]:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    image = mpimg.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 50
    return image.shape


@pytest.mark.slow
def test_end_to_end_outputs(finished_run):
    out = finished_run
    for name in ("samples.png", "reconstructions.png", "loss_curves.png"):
        _check_png(out / name)
    m = metrics(out)
    assert m["finished"] is True and m["codebook_size"] == CODEBOOK
    assert [e["epoch"] for e in m["history"]["prior"]] == [1, 2]
    assert len(m["history"]["vqvae"]) == 1 and m["images"] == {"train": 256, "test": 64}
    vq, prior = m["vqvae"], m["prior"]
    assert 1 <= vq["test_codes_used"] <= CODEBOOK
    assert 1 <= vq["test_perplexity"] <= vq["test_codes_used"] + 1e-9
    assert 0 < vq["test_mse_per_pixel"] < 1 and vq["test_bce"] > 0
    assert vq["test_sse"] == pytest.approx(784 * vq["test_mse_per_pixel"])
    assert m["baselines"]["uniform_nll"] == pytest.approx(49 * math.log(CODEBOOK))
    assert math.isfinite(prior["test_nll"]) and prior["test_nll"] > 0
    assert prior["test_bits_per_code"] == pytest.approx(prior["test_nll"] / (49 * math.log(2)))
    for phase in ("vqvae_train", "encode_seconds", "prior_train", "prior_eval", "sample_seconds"):
        assert m["seconds"][phase] > 0, phase
    assert m["prior_config"]["levels"] == CODEBOOK and m["prior_config"]["num_classes"] == 10
    assert m["prior_config"]["image_size"] == [7, 7] and m["prior_config"]["block"] == "gated"
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


@pytest.mark.slow
def test_a_snail_prior_runs_end_to_end(snail_run, finished_run):
    out = snail_run
    for name in ("samples.png", "reconstructions.png", "loss_curves.png"):
        _check_png(out / name)
    m, gated = metrics(out), metrics(finished_run)
    assert m["finished"] is True and m["args"]["prior_kind"] == "snail"
    config = m["prior_config"]
    assert (config["block"], config["num_blocks"], config["attention_every"]) == ("snail", 1, 1)
    assert (config["num_classes"], config["levels"], config["image_size"]) == (10, CODEBOOK, [7, 7])
    assert [e["epoch"] for e in m["history"]["prior"]] == [1, 2]
    assert math.isfinite(m["prior"]["test_nll"]) and m["prior"]["test_nll"] > 0
    assert m["seconds"]["sample_seconds"] > 0
    assert m["parameters"]["prior"] > gated["parameters"]["prior"]  # the attention layers


@pytest.mark.slow
@pytest.mark.parametrize(("saved", "asked"), [("gated", "snail"), ("snail", "gated")])
def test_resume_refuses_a_prior_of_the_other_kind(
    synthetic, finished_run, snail_run, tmp_path, saved, asked
):
    out = tmp_path / "other"
    out.mkdir()
    source = finished_run if saved == "gated" else snail_run
    (out / "checkpoint.pt").write_bytes((source / "checkpoint.pt").read_bytes())
    result = run_script([*tiny_flags(synthetic, out), "--prior", asked, "--resume"], expect=2)
    assert f"holds a {saved} prior, not a {asked} one" in result.stderr
    assert f"pass --prior {saved}" in result.stderr
    assert not (out / "metrics.json").exists()


@pytest.mark.slow
def test_stop_and_resume_reproduces_the_straight_run(synthetic, finished_run, tmp_path):
    """One prior epoch, then --resume for the second: the same numbers as two in one go."""
    out = tmp_path / "split"
    run_script([*tiny_flags(synthetic, out), "--prior-epochs", "1"])
    log = run_script([*tiny_flags(synthetic, out), "--resume"]).stdout
    assert "resumed from" in log and "prior epoch 2:" in log and "prior epoch 1:" not in log
    split, straight = metrics(out)["history"], metrics(finished_run)["history"]
    keys = ("train_bce", "test_bce", "test_sse", "test_codes_used", "test_perplexity")
    assert [{k: e[k] for k in keys} for e in split["vqvae"]] == [
        {k: e[k] for k in keys} for e in straight["vqvae"]
    ]
    keys = ("train_nll", "test_nll")
    assert [{k: e[k] for k in keys} for e in split["prior"]] == [
        {k: e[k] for k in keys} for e in straight["prior"]
    ]
    assert (out / "samples.png").read_bytes() == (finished_run / "samples.png").read_bytes()


@pytest.mark.slow
def test_a_kill_mid_vqvae_epoch_resumes_bit_identical(synthetic, tmp_path):
    """Killed a few steps into the VQ-VAE's second epoch (a checkpoint after every step), the
    resumed run ends with the numbers, weights and samples of an uninterrupted one."""
    from autoregressive.training import load_checkpoint

    flags = ["--vq-epochs", "2", "--limit-train-batches", "8", "--prior-epochs", "1"]
    straight, out = tmp_path / "straight", tmp_path / "killed"
    run_script([*tiny_flags(synthetic, straight), *flags])
    cmd = [sys.executable, str(SCRIPT), *tiny_flags(synthetic, out), *flags]
    cmd += ["--checkpoint-minutes", "0"]

    def ready(seen: dict) -> bool:
        progress = seen.get("progress") or {}
        return (
            progress.get("phase") == "vqvae"
            and len(seen["history"]["vqvae"]) == 1
            and (progress["steps"] >= 3)
        )

    last = stop_when(cmd, out / "checkpoint.pt", ready, REPO)
    steps = last["progress"]["steps"]
    assert 3 <= steps < 8 and metrics(out)["in_progress"]["steps"] == steps, "killed mid-epoch 2"

    log = run_script([*tiny_flags(synthetic, out), *flags, "--resume"]).stdout
    assert f"at step {steps} of vqvae epoch 2" in log and "VQ-VAE epoch 1:" not in log
    resumed, uninterrupted = metrics(out), metrics(straight)
    for phase in ("vqvae", "prior"):
        drop = ("seconds", "per_second")  # wall times differ
        keep = [k for k in uninterrupted["history"][phase][0] if not k.endswith(drop)]
        assert [{k: e[k] for k in keep} for e in resumed["history"][phase]] == [
            {k: e[k] for k in keep} for e in uninterrupted["history"][phase]
        ], phase
    a, b = load_checkpoint(out / "checkpoint.pt"), load_checkpoint(straight / "checkpoint.pt")
    for phase in ("vqvae", "prior"):
        for key, value in a[phase].items():
            assert torch.equal(value, b[phase][key]), f"{phase}.{key}"
    assert (out / "samples.png").read_bytes() == (straight / "samples.png").read_bytes()


@pytest.mark.slow
def test_a_checkpoint_saved_only_at_epoch_ends_still_resumes(synthetic, finished_run, tmp_path):
    """The earlier layout (the VQ-VAE's optimizer under ``vq_optimizer``, no ``progress``, no
    wall times, no sums) resumes after its last epoch, as an uninterrupted run goes on."""
    from autoregressive.training import load_checkpoint, save_checkpoint

    out = tmp_path / "earlier"
    run_script([*tiny_flags(synthetic, out), "--prior-epochs", "1"])
    ckpt = load_checkpoint(out / "checkpoint.pt")
    ckpt["vq_optimizer"] = ckpt.pop("vqvae_optimizer")
    del ckpt["progress"], ckpt["extra"]["vqvae_sums"]
    for record in [*ckpt["history"]["vqvae"], *ckpt["history"]["prior"]]:
        del record["epoch_seconds"]
    save_checkpoint(out / "checkpoint.pt", ckpt)
    log = run_script([*tiny_flags(synthetic, out), "--resume"]).stdout
    assert "resumed from" in log and "prior epoch 2:" in log and "prior epoch 1:" not in log
    resumed, straight = metrics(out)["history"]["prior"], metrics(finished_run)["history"]["prior"]
    assert [e["test_nll"] for e in resumed] == [e["test_nll"] for e in straight]


@pytest.mark.slow
def test_resume_refuses_a_different_run(synthetic, finished_run, tmp_path):
    out = tmp_path / "other"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes((finished_run / "checkpoint.pt").read_bytes())
    result = run_script([*tiny_flags(synthetic, out), "--resume", "--vq-lr", "1e-2"], expect=2)
    assert "different run" in result.stderr and "vq_lr" in result.stderr


def test_missing_data_gives_a_clear_error(tmp_path):
    flags = ["--data-dir", str(tmp_path / "none"), "--no-download", "--out", str(tmp_path)]
    result = run_script(flags, expect=2)
    assert "train-images-idx3-ubyte(.gz)" in result.stderr


def tiny_prior(script) -> PixelCNN:
    args = script.parse_args(tiny_flags(Path("unused"), Path("unused")))
    return PixelCNN(script.prior.config(args))


def test_prior_is_the_class_conditional_gated_model_over_codes():
    script = _load_script()
    prior = tiny_prior(script)
    c = prior.config
    assert (c.block, c.distribution, c.levels) == ("gated", "categorical", CODEBOOK)
    assert (c.num_classes, c.image_size) == (10, (7, 7))
    assert (c.input_embedding, c.embedding_dim) == ("learned", 16)
    y = torch.tensor([0, 9, 4])
    codes = prior.sample(3, y, size=(7, 7), generator=torch.Generator().manual_seed(0))
    assert codes.shape == (3, 1, 7, 7) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < CODEBOOK
    assert prior.log_prob(codes, y).shape == (3,)


@pytest.mark.parametrize("embedding", ["learned", "onehot", "scaled"])
def test_every_input_embedding_scores_and_samples(embedding):
    script = _load_script()
    flags = [*tiny_flags(Path("unused"), Path("unused")), "--input-embedding", embedding]
    prior = PixelCNN(script.prior.config(script.parse_args(flags)))
    assert prior.config.input_embedding == embedding
    y = torch.arange(4)
    codes = prior.sample(4, y, size=(7, 7), generator=torch.Generator().manual_seed(1))
    naive = prior.sample(
        4, y, size=(7, 7), generator=torch.Generator().manual_seed(1), sampler=NaiveSampler()
    )
    assert torch.equal(codes, naive)
    assert torch.isfinite(prior.log_prob(codes, y)).all()


def test_snail_prior_is_class_conditional_and_samples_as_the_naive_sampler():
    script = _load_script()
    flags = [*tiny_flags(Path("unused"), Path("unused")), "--prior", "snail"]
    prior = PixelCNN(script.prior.config(script.parse_args(flags)))
    c = prior.config
    assert (c.block, c.distribution, c.levels, c.num_classes) == ("snail", "categorical", 8, 10)
    assert (c.attention_every, c.attention_heads) == (1, 2)
    y = torch.tensor([0, 9, 4])
    codes = prior.sample(3, y, size=(7, 7), generator=torch.Generator().manual_seed(2))
    naive = prior.sample(
        3, y, size=(7, 7), generator=torch.Generator().manual_seed(2), sampler=NaiveSampler()
    )
    assert codes.shape == (3, 1, 7, 7) and torch.equal(codes, naive)
    other = prior.log_prob(codes, torch.tensor([1, 2, 3]))
    assert not torch.equal(prior.log_prob(codes, y), other), "the labels reach the prior"


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (None, r"class-conditional: pass labels of shape \(3,\)"),
        (torch.zeros(3, 1, dtype=torch.long), r"labels must have shape \(3,\)"),
        (torch.zeros(2, dtype=torch.long), r"labels must have shape \(3,\)"),
        (torch.zeros(3), "integer tensor"),
        (torch.tensor([0, 10, 1]), r"labels must lie in \[0, 10\)"),
    ],
)
def test_prior_rejects_bad_conditioning(y, match):
    prior = tiny_prior(_load_script())
    codes = torch.randint(0, CODEBOOK, (3, 1, 7, 7))
    with pytest.raises(ValueError, match=match):
        prior.log_prob(codes, y)
    with pytest.raises(ValueError, match=match):
        prior.sample(3, y, size=(7, 7))


def test_vqvae_shapes_and_ranges():
    script = _load_script()
    torch.manual_seed(0)
    vqvae = script.VQVAE(CODEBOOK, 4, 8, 0.9, 1.0)
    x = torch.rand(5, 1, 28, 28)
    logits, codes, commitment = vqvae(x)
    assert logits.shape == x.shape and codes.shape == (5, 7, 7) and commitment.dim() == 0
    vqvae.eval()
    encoded = vqvae.encode(x)
    assert encoded.dtype == torch.long and 0 <= int(encoded.min()) < CODEBOOK
    images = vqvae.decode(encoded)
    assert images.shape == x.shape and 0 <= float(images.min()) <= float(images.max()) <= 1
    # decoding the codes gives exactly the reconstruction of the full forward pass
    torch.testing.assert_close(images, torch.sigmoid(vqvae(x)[0]))


def test_codebook_use_and_baselines_against_hand_counts():
    script = _load_script()
    codes = torch.tensor([0, 0, 1, 3])
    use = script.codebook_use(codes, 4)
    assert use["codes_used"] == 3
    assert use["perplexity"] == pytest.approx(
        math.exp(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))
    )
    train = torch.zeros(2, 1, 7, 7, dtype=torch.long)  # only code 0
    test = torch.ones(1, 1, 7, 7, dtype=torch.long)  # only code 1
    b = script.baselines(train, test, 2)
    assert b["uniform_nll"] == pytest.approx(49 * math.log(2))
    assert b["unigram_nll"] == pytest.approx(-49 * math.log(0.5 / 99))  # add-1/2 smoothing


def test_help_and_profiles():
    script = _load_script()
    demo, full = script.parse_args(["--demo"]), script.parse_args([])
    assert demo.out == Path("runs/prior-demo") and demo.input_embedding == "learned"
    assert demo.prior_epochs < full.prior_epochs and demo.data_dir == script.default_data_dir()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    for flag in ("--demo", "--resume", "--input-embedding", "--temperature", "--codebook-size"):
        assert flag in result.stdout
    assert "--prior {gated,snail}" in result.stdout and "self-attention" in result.stdout
    assert demo.prior_kind == full.prior_kind == "gated"
    assert script.parse_args(["--prior", "snail"]).prior_kind == "snail"


def test_resume_accepts_a_checkpoint_from_before_a_config_field_existed():
    script = _load_script()
    args = script.parse_args(tiny_flags(Path("unused"), Path("unused")))
    config = dataclasses.asdict(script.prior.config(args))
    identity = {"prior": config, **{k: getattr(args, k) for k in script.RUN_KEYS}}
    older = {**identity, "prior": {k: v for k, v in config.items() if k != "embedding_dim"}}
    script.check_resumable({"run": older}, identity)  # the missing field takes its default, 16
    older["prior"]["num_blocks"] = 2
    with pytest.raises(ValueError, match="different run"):
        script.check_resumable({"run": older}, identity)


def test_a_checkpoint_that_does_not_record_the_prior_kind_holds_a_gated_prior():
    script = _load_script()
    identity = {}
    for kind in ("gated", "snail"):
        flags = [*tiny_flags(Path("unused"), Path("unused")), "--prior", kind]
        args = script.parse_args(flags)
        config = dataclasses.asdict(script.prior.config(args))
        identity[kind] = {"prior": config, **{k: getattr(args, k) for k in script.RUN_KEYS}}
    unrecorded = {k: v for k, v in identity["gated"].items() if k != "prior_kind"}
    script.check_resumable({"run": unrecorded}, identity["gated"])
    with pytest.raises(ValueError, match="holds a gated prior, not a snail one"):
        script.check_resumable({"run": unrecorded}, identity["snail"])


# ---------------------------------------------------------------------- start-up checks
#: Bad flags (added after tiny_flags; the last value of a flag wins) and the flag the message
#: must name. ``{file}`` stands for an existing file. The data has 256 training, 64 test images.
BAD_FLAGS = [
    bad("--seed", "-1"),
    bad("--device", "cuda", marks=NO_CUDA),
    bad("--threads", "0"),
    bad("--checkpoint-minutes", "-1"),
    bad("--checkpoint-minutes", "nan"),
    bad("--codebook-size", "1"),
    bad("--code-dim", "0"),
    bad("--vq-channels", "1"),
    bad("--vq-epochs", "0"),
    bad("--vq-lr", "0"),
    bad("--vq-lr", "nan"),
    bad("--vq-batch-size", "0"),
    bad("--commitment", "-0.1"),
    bad("--commitment", "inf"),
    bad("--ema-decay", "0"),
    bad("--ema-decay", "1"),
    bad("--ema-decay", "nan"),
    bad("--dead-code-threshold", "-1"),
    bad("--prior", "pixelsnail"),
    bad("--prior-blocks", "0"),
    bad("--prior-channels", "0"),
    bad("--prior-head", "-1"),
    bad("--input-embedding", "sinusoidal"),
    bad("--embedding-dim", "0"),
    bad("--prior-epochs", "0"),
    bad("--prior-lr", "inf"),
    bad("--prior-lr", "-1"),
    bad("--prior-batch-size", "0"),
    bad("--train-images", "0"),
    bad("--train-images", "-5"),
    bad("--train-images", "257"),  # more than the data set
    bad("--limit-train-batches", "0"),
    bad("--limit-test-images", "0"),
    bad("--limit-test-images", "65"),  # more than the test set
    bad("--eval-batch-size", "0"),
    bad("--samples-per-class", "0"),
    bad("--temperature", "0"),
    bad("--temperature", "nan"),
    bad("--out", "{file}"),
    bad("--out", "{file}/run"),
    bad("--out", "/proc/autoregressive-out", marks=LINUX),  # cannot be created
]


@pytest.fixture
def call_main(capsys):
    """``main(argv)`` of the script in this process: ``(exit code, stderr)``."""
    yield from main_caller(SCRIPT, capsys)


@pytest.mark.parametrize(("flags", "flag"), BAD_FLAGS)
def test_bad_flags_stop_the_run_before_training(synthetic, tmp_path, call_main, flags, flag):
    file = tmp_path / "a-file"
    file.write_text("not a folder")
    flags = [f.format(file=file) for f in flags]
    code, err = call_main([*tiny_flags(synthetic, tmp_path / "out"), *flags])
    assert code == 2, err
    assert flag in err and "error: " in err, err
    assert not list(tmp_path.rglob("checkpoint.pt")) and not list(tmp_path.rglob("metrics.json"))
    assert file.read_text() == "not a folder"


@pytest.mark.parametrize("empty", ["train", "test"])
def test_a_run_that_would_train_or_score_nothing_is_refused(tmp_path, empty):
    script = _load_script()
    args = script.parse_args(tiny_flags(Path("unused"), tmp_path / "out"))
    x = {k: torch.zeros(0 if k == empty else 4, 1, 28, 28) for k in ("train", "test")}
    y = {k: torch.zeros(len(v), dtype=torch.long) for k, v in x.items()}
    data = script.Data(x["train"], y["train"], x["test"], y["test"])
    with pytest.raises(
        ValueError, match="would train on nothing" if empty == "train" else "would score nothing"
    ):
        script.check_start(args, data)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("done", "flags", "match"),
    [
        ((1, 1), ["--vq-epochs", "2"], "trained on the codes of a VQ-VAE after 1 epoch"),
        ((2, 0), ["--vq-epochs", "1"], "past --vq-epochs 1; pass --vq-epochs 2 or more"),
        ((1, 2), ["--prior-epochs", "1"], "past --prior-epochs 1; pass --prior-epochs 2 or more"),
    ],
)
def test_resume_refuses_epochs_the_checkpoint_contradicts(done, flags, match):
    script = _load_script()
    args = script.parse_args([*tiny_flags(Path("unused"), Path("unused")), *flags])
    history = {"vqvae": [{}] * done[0], "prior": [{}] * done[1]}
    with pytest.raises(ValueError, match=match):
        script.prior.check_phases(history, args)
    same = script.parse_args(tiny_flags(Path("unused"), Path("unused")))  # 1 + 2 epochs
    script.prior.check_phases({"vqvae": [{}], "prior": [{}]}, same)  # what a resume continues


def test_only_phases_that_saw_images_count_as_trained():
    trained = _load_script().trained
    vq, prior = {"train_bce": 90.0, "test_bce": 95.0}, {"train_nll": 60.0, "test_nll": 62.0}
    assert trained({"vqvae": [vq], "prior": [prior, prior]})
    assert not trained({"vqvae": [vq], "prior": []})
    assert not trained({"vqvae": [vq], "prior": [{**prior, "test_nll": math.nan}]})
    assert not trained({"vqvae": [{**vq, "train_bce": math.nan}], "prior": [prior]})


@pytest.mark.slow
def test_a_diverging_vqvae_stops_with_the_library_error(synthetic, tmp_path):
    out = tmp_path / "diverged"
    result = run_script([*tiny_flags(synthetic, out), "--vq-lr", "1e30"], expect=3)
    assert "error: training diverged at step" in result.stderr
    assert "learning rate 1e+30" in result.stderr
    assert not (out / "checkpoint.pt").exists(), "no checkpoint of a diverged epoch"
