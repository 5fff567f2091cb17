"""Tests of autoregressive.training: steps, evaluation, RNG capture and safe checkpoints."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import pickle
import random

import pytest
import torch
from helpers import read_only

from autoregressive import Conditioning, PixelCNN, PixelCNNConfig
from autoregressive.checksums import file_sha256, seal, tensors_sha256
from autoregressive.data import Batch, BinarizedBatches, derive_seed, dynamic_binarize
from autoregressive.training import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    DivergenceError,
    EpochProgress,
    NegLogLikelihood,
    as_batch,
    atomic_write,
    check_step,
    distributed_sum,
    evaluate,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    train_epoch,
    train_step,
    unused_parameters,
)

CPU = torch.device("cpu")
TINY = PixelCNNConfig(block="gated", num_blocks=2, hidden_channels=8, image_size=(8, 8))


def tiny_model(seed: int = 0) -> PixelCNN:
    torch.manual_seed(seed)
    return PixelCNN(TINY)


def intensities(n: int = 48, seed: int = 0) -> torch.Tensor:
    """Smooth-ish synthetic intensities ``(n, 1, 8, 8)`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, 2, 2, generator=g)
    return torch.nn.functional.interpolate(base, size=(8, 8), mode="bilinear")


# ---------------------------------------------------------------------------- steps
def test_train_step_follows_the_mean_nll_and_returns_the_sum():
    model, twin = tiny_model(), tiny_model()
    x = dynamic_binarize(intensities(10), torch.Generator().manual_seed(1))
    batch = BinarizedBatches(x, batch_size=10, binarize=None)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    total = train_step(NegLogLikelihood(model), opt, next(iter(batch)), device=CPU)

    expected = -twin.log_prob(x)
    assert torch.allclose(total, expected.sum())
    expected.mean().backward()
    with torch.no_grad():
        for p in twin.parameters():
            if p.grad is not None:  # (a layer whose output is unused gets no gradient)
                p -= 0.1 * p.grad
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_evaluate_is_the_mean_nll_in_nats_and_bits():
    model = tiny_model()
    x = dynamic_binarize(intensities(23), torch.Generator().manual_seed(2))
    model.train()
    stats = evaluate(model, BinarizedBatches(x, batch_size=5, binarize=None), device=CPU)
    assert model.training, "evaluate must restore the training mode"
    nll = -model.log_prob(x).double()
    assert stats.images == 23
    assert stats.nll == pytest.approx(nll.mean().item(), rel=1e-6)
    assert stats.bits_per_dim == pytest.approx(stats.nll / (64 * math.log(2)), rel=1e-9)
    calls = []
    limited = evaluate(model, BinarizedBatches(x, batch_size=5, binarize=None), device=CPU,
                       max_steps=2, progress=lambda *a: calls.append(a))  # fmt: skip
    assert limited.images == 10
    assert calls == [(1, 5), (2, 10)]


def test_train_epoch_reports_progress_and_lowers_the_nll():
    model = tiny_model()
    batches = BinarizedBatches(intensities(64), batch_size=16, binarize="dynamic", shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    calls = []
    objective = NegLogLikelihood(model)
    first = None
    for epoch in range(1, 4):
        batches.set_epoch(epoch)
        stats = train_epoch(
            objective, opt, batches, device=CPU, progress=lambda *a: calls.append(a), log_every=3
        )
        first = first if first is not None else stats.nll
        assert stats.images == 64 and stats.images_per_second > 0
    assert stats.nll < first
    assert [c[:2] for c in calls[:2]] == [(3, 48), (4, 64)]
    stopped = train_epoch(objective, opt, batches, device=CPU, max_steps=1)
    assert stopped.images == 16


def test_unused_parameters_finds_layers_without_gradient():
    model = tiny_model()
    objective = NegLogLikelihood(model)
    head = model.network[-1]  # the output layer: always used
    head.weight.grad = torch.ones_like(head.weight)
    x = torch.zeros(1, 1, 8, 8)
    unused = unused_parameters(objective, x)
    assert all(n.startswith("model.") for n in unused)
    assert torch.equal(head.weight.grad, torch.ones_like(head.weight)), "grads must be restored"
    dead = torch.nn.Linear(2, 2)
    model.dead = dead  # a module the forward pass never calls
    assert unused_parameters(objective, x)[-2:] == ["model.dead.weight", "model.dead.bias"]


def test_distributed_sum_without_a_process_group():
    assert distributed_sum([1.5, torch.tensor(2.0), 3], CPU) == [1.5, 2.0, 3.0]


# ---------------------------------------------------------------------------- RNG state
def _draws():
    np = pytest.importorskip("numpy")
    return (torch.rand(3).tolist(), random.random(), np.random.rand(2).tolist())


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    pytest.importorskip("numpy")
    torch.manual_seed(1)
    random.seed(1)
    data = torch.Generator().manual_seed(7)
    state = get_rng_state({"data": data})
    expected, expected_data = _draws(), torch.rand(2, generator=data)
    _draws(), torch.rand(5, generator=data)  # move every generator on
    save_checkpoint(tmp_path / "c.pt", {"rng": state})
    loaded = load_checkpoint(tmp_path / "c.pt")["rng"]
    set_rng_state(loaded, {"data": data})
    assert _draws() == expected
    assert torch.equal(torch.rand(2, generator=data), expected_data)
    with pytest.raises(ValueError, match="no state for the generator 'other'"):
        set_rng_state(loaded, {"other": torch.Generator()})


# ---------------------------------------------------------------------------- checkpoints
def _checkpoint(value: float) -> dict:
    return {"epoch": 1, "model": {"w": torch.full((4,), value)}, "metrics": [{"nll": value}]}


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "checkpoint.pt"
    save_checkpoint(path, _checkpoint(1.0))
    loaded = load_checkpoint(path)
    assert loaded["format"] == CHECKPOINT_FORMAT
    assert torch.equal(loaded["model"]["w"], torch.ones(4))
    assert loaded["metrics"] == [{"nll": 1.0}]
    assert os.listdir(path.parent) == ["checkpoint.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "not the mode of an ordinary file"


def test_saving_onto_a_directory_or_under_a_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"cannot write .*: it is a directory; pass the path of"):
        save_checkpoint(tmp_path, {"w": torch.zeros(2)})
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ValueError, match=r"taken is a file, not a folder"):
        save_checkpoint(tmp_path / "taken" / "c.pt", {"w": torch.zeros(2)})
    assert (tmp_path / "taken").read_text() == "x"
    save_checkpoint(tmp_path / "new" / "c.pt", {"w": torch.ones(2)})  # missing folders: made
    assert torch.equal(load_checkpoint(tmp_path / "new" / "c.pt")["w"], torch.ones(2))


def test_saving_into_a_read_only_folder_is_a_clear_error(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    save_checkpoint(folder / "c.pt", {"w": torch.zeros(2)})
    before = (folder / "c.pt").read_bytes()
    refused = pytest.raises(PermissionError, match=r"cannot write .*c.pt: no permission to write")
    with read_only(folder, monkeypatch), refused:
        save_checkpoint(folder / "c.pt", {"w": torch.ones(2)})
    assert (folder / "c.pt").read_bytes() == before


def test_a_precision_of_the_wrong_kind_is_refused_before_the_step():
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(TypeError, match=r"precision must be a Precision or None, got str 'bf16'"):
        train_step(NegLogLikelihood(model), optimizer, x, device=torch.device("cpu"),
                   precision="bf16")  # fmt: skip
    assert all(map(torch.equal, before, model.parameters()))


def test_save_refuses_objects_that_would_not_load(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint\['args'\]\['out'\] is a \w*Path"):
        save_checkpoint(tmp_path / "c.pt", {"args": {"out": tmp_path}})
    assert not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize("where", ["during torch.save", "at fsync", "at os.replace"])
def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _checkpoint(1.0))
    before = path.read_bytes()

    class Crash(Exception):
        pass

    if where == "during torch.save":

        def partial_save(obj, f, *args, **kwargs):
            f.write(b"PK\x03\x04 half a zip")
            raise Crash

        monkeypatch.setattr(torch, "save", partial_save)
    elif where == "at fsync":
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(Crash()))
    else:
        monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        save_checkpoint(path, _checkpoint(2.0))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(4))
    assert os.listdir(tmp_path) == ["checkpoint.pt"], "the temporary file must be removed"


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "f.json"
    with atomic_write(path) as f:
        f.write(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_write(path) as f:
        f.write(b"new but interrupted")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"old"


def _damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif how == "flipped byte in the pickle":
        i = data.index(b"data.pkl") + 40  # inside the pickle record of the zip archive
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "flipped byte in the pickle"])
def test_a_damaged_checkpoint_is_rejected_clearly(tmp_path, how):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _checkpoint(1.0))
    _damage(path, how)
    damaged = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"truncated or corrupted|not a checkpoint") as info:
        load_checkpoint(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    assert path.read_bytes() == damaged, "loading must never modify the file"


def test_missing_and_foreign_files_are_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="has no SHA-256 checksum"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint of format"):
        load_checkpoint(tmp_path / "foreign.pt", require_checksum=False)


def test_an_unsealed_checkpoint_loads_only_when_asked(tmp_path):
    """Checkpoints of autoregressive 0.1 (no checksum) are refused unless require_checksum=False."""
    path = tmp_path / "old.pt"
    torch.save({"format": CHECKPOINT_FORMAT, **_checkpoint(1.0)}, path)
    with pytest.raises(CheckpointError, match=r"require_checksum=False\) and save it again"):
        load_checkpoint(path)
    old = load_checkpoint(path, require_checksum=False)
    save_checkpoint(path, {k: v for k, v in old.items() if k != "format"})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(4))


def _flip(path, offset: int, mask: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def test_every_single_byte_flip_is_detected_and_the_good_copy_untouched(tmp_path):
    """Flip each byte of a checkpoint in turn (two bit patterns): every load must fail."""
    good = tmp_path / "good.pt"
    weights = torch.linspace(-1, 1, 256)
    save_checkpoint(good, {"model": {"w": weights}, "epoch": 7})
    blob = good.read_bytes()
    start = blob.index(weights.numpy().tobytes())
    tensor_data = range(start, start + weights.numel() * 4)
    damaged = tmp_path / "damaged.pt"
    undetected = []
    for offset in range(len(blob)):  # the tensor data, the pickle, zip headers and the seal
        for mask in (0x01, 0xFF):
            damaged.write_bytes(blob)
            _flip(damaged, offset, mask)
            try:
                load_checkpoint(damaged)
            except CheckpointError as err:
                assert str(damaged) in str(err)
            else:
                undetected.append((offset, mask))
    assert not undetected, f"flips not detected at {undetected[:10]}"
    assert len(tensor_data) == 1024 and len(blob) > 2 * len(tensor_data)
    assert good.read_bytes() == blob
    assert torch.equal(load_checkpoint(good)["model"]["w"], weights)


def test_tensor_byte_flips_without_the_seal_would_go_unnoticed(tmp_path):
    """Why the seal exists: torch.load itself returns the changed numbers without an error."""
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(16)}})
    blob = path.read_bytes()
    _flip(path, blob.index(bytes(64)) + 5, 0x40)
    loaded = torch.load(path, weights_only=True)
    assert not torch.equal(loaded["model"]["w"], torch.zeros(16))
    with pytest.raises(CheckpointError, match="checksum does not match"):
        load_checkpoint(path)


def test_file_and_tensor_checksums(tmp_path):
    path = tmp_path / "w.pt"
    state = {"b": torch.ones(3, dtype=torch.float64), "a": torch.arange(4)}
    torch.save(state, path)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    reordered = {"a": torch.arange(4), "b": torch.ones(3, dtype=torch.float64)}
    assert tensors_sha256(state) == tensors_sha256(reordered)
    assert tensors_sha256(state) != tensors_sha256({**state, "b": torch.ones(3)})  # dtype
    assert tensors_sha256(state) != tensors_sha256({**state, "a": torch.arange(4).view(2, 2)})
    with pytest.raises(ValueError, match="no file at"):
        file_sha256(tmp_path / "absent")
    with pytest.raises(TypeError, match=r"must map a str to a torch\.Tensor"):
        tensors_sha256({"a": [1, 2]})


class _Payload:
    """Unpickling this would create a file: the shape of an arbitrary-code-execution attack."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2", "pickle protocol 4"])
def test_a_malicious_pickle_is_refused_without_running_code(tmp_path, writer):
    target = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    payload = {"format": CHECKPOINT_FORMAT, "epoch": 1, "model": _Payload(str(target))}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=int(writer[-1]))
    assert not target.exists()
    with pytest.raises(CheckpointError, match="no SHA-256 checksum"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, require_checksum=False)
    assert not target.exists(), "loading the checkpoint ran code from the file"
    if writer != "pickle protocol 4":  # protocol 4 framing fails even before the global
        assert "arbitrary code" in str(info.value)
    if writer == "torch.save":  # a valid seal is no licence to run code
        path.write_bytes(seal(path.read_bytes()))
        with pytest.raises(CheckpointError, match="arbitrary code") as info:
            load_checkpoint(path)
        assert not target.exists()
        assert "io.open" in str(info.value), "the refused callable is named"
        assert "corrupted" not in str(info.value), "a sealed file is intact"


# ---------------------------------------------------------------------------- resumption
def _run(tmp_path, epochs: int, *, stop_after: int | None = None, resume: bool = False):
    """A miniature training script: dynamic binarization, Adam, a checkpoint per epoch."""
    seed = 3
    x, test = intensities(40, seed=0), intensities(16, seed=1)
    test = dynamic_binarize(test, torch.Generator().manual_seed(derive_seed(0, "test")))
    train_batches = BinarizedBatches(x, batch_size=8, binarize="dynamic", shuffle=True, seed=seed)
    test_batches = BinarizedBatches(test, batch_size=8, binarize=None)
    torch.manual_seed(seed)
    random.seed(seed)
    model = PixelCNN(TINY)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    path = tmp_path / "checkpoint.pt"
    metrics, start = [], 0
    if resume:
        ckpt = load_checkpoint(path)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        metrics, start = ckpt["metrics"], ckpt["epoch"]
    for epoch in range(start + 1, epochs + 1):
        train_batches.set_epoch(epoch)
        train = train_epoch(NegLogLikelihood(model), opt, train_batches, device=CPU)
        # something that draws from the global generator, as dropout or noise would
        jitter = torch.rand(()).item()
        test_stats = evaluate(model, test_batches, device=CPU)
        metrics.append({"epoch": epoch, "train": train.nll, "test": test_stats.nll, "j": jitter})
        rng = get_rng_state()
        save_checkpoint(
            path,
            {"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "rng": rng, "metrics": metrics},
        )  # fmt: skip
        if stop_after == epoch:
            torch.manual_seed(12345)  # a new process would start from other RNG states
            random.seed(12345)
            break
    return metrics, model


def test_resume_reproduces_an_uninterrupted_run_bit_for_bit(tmp_path):
    straight, model = _run(tmp_path / "a", 3)
    _run(tmp_path / "b", 3, stop_after=1)
    resumed, resumed_model = _run(tmp_path / "b", 3, resume=True)
    assert resumed == straight  # exact float equality, epoch by epoch
    for p, q in zip(model.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert straight[0]["train"] > straight[-1]["train"]


def _steps_of_an_epoch(model, opt, batches, *, start=None, stop_at=None):
    """Train one epoch; returns its stats and the progress saved after step ``stop_at``."""
    saved = {}

    def after_step(progress: EpochProgress) -> None:
        if progress.steps == stop_at:
            saved["progress"] = progress
            saved["state"] = pickle.dumps((model.state_dict(), opt.state_dict()))
            raise KeyboardInterrupt  # the process is stopped here

    try:
        stats = train_epoch(NegLogLikelihood(model), opt, batches, device=CPU, start=start,
                            after_step=after_step if stop_at else None)  # fmt: skip
    except KeyboardInterrupt:
        return None, saved
    return stats, saved


@pytest.mark.parametrize("stop_at", [1, 3, 4])
def test_an_epoch_continued_mid_way_ends_bit_identical(stop_at):
    x = intensities(40, seed=0)
    batches = BinarizedBatches(x, batch_size=8, binarize="dynamic", shuffle=True, seed=5)
    batches.set_epoch(2)
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    straight, _ = _steps_of_an_epoch(model, opt, batches)

    stopped, opt2 = tiny_model(), None
    opt2 = torch.optim.Adam(stopped.parameters(), lr=3e-3)
    _, saved = _steps_of_an_epoch(stopped, opt2, batches, stop_at=stop_at)
    progress = EpochProgress.from_dict(saved["progress"].to_dict())  # as a checkpoint keeps it
    assert progress.steps == stop_at and progress.images == 8 * stop_at

    resumed = tiny_model(seed=99)  # a new process: other weights until the state is loaded
    opt3 = torch.optim.Adam(resumed.parameters(), lr=3e-3)
    model_state, opt_state = pickle.loads(saved["state"])
    resumed.load_state_dict(model_state)
    opt3.load_state_dict(opt_state)
    stats, _ = _steps_of_an_epoch(resumed, opt3, batches, start=progress)

    assert (stats.nll, stats.bits_per_dim, stats.images) == (
        straight.nll,
        straight.bits_per_dim,
        straight.images,
    )
    for p, q in zip(model.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_epoch_progress_refuses_a_foreign_dict():
    with pytest.raises(ValueError, match="needs exactly the keys"):
        EpochProgress.from_dict({"steps": 1})


@pytest.mark.parametrize("poison", ["loss", "gradient"])
def test_a_non_finite_step_raises_and_leaves_the_weights(poison):
    model = tiny_model()
    x = dynamic_binarize(intensities(8), torch.Generator().manual_seed(1))
    batches = BinarizedBatches(x, batch_size=4, binarize=None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_epoch(NegLogLikelihood(model), opt, batches, device=CPU, max_steps=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    if poison == "loss":  # an infinite bias makes the loss infinite
        model.network[-1].bias.data.fill_(math.inf)
        before = {k: v.clone() for k, v in model.state_dict().items()}
    else:  # a hook makes one gradient NaN with a finite loss
        model.network[-1].weight.register_hook(lambda g: torch.full_like(g, math.nan))
    with pytest.raises(DivergenceError, match=r"diverged at step 1: loss .* learning rate 0.001"):
        train_epoch(NegLogLikelihood(model), opt, batches, device=CPU)
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), f"{key} changed by a refused step"


def test_check_step_guards_a_loop_of_ones_own():
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    loss = (w * torch.tensor([1.0, math.inf, 1.0])).sum()
    loss.backward()
    with pytest.raises(DivergenceError, match="step 4: loss inf"):
        check_step(loss, opt, 4)
    (w.sum()).backward()
    w.grad = torch.ones(3)
    check_step(w.sum(), opt)  # finite: no error


def test_divergence_error_names_step_loss_and_rate():
    err = DivergenceError(7, math.nan, math.inf, 0.5)
    assert (err.step, err.lr) == (7, 0.5)
    assert "step 7" in str(err) and "loss nan" in str(err) and "learning rate 0.5" in str(err)


# ------------------------------------------------------------------- what the helpers refuse
def test_the_model_passed_as_the_objective_is_refused_before_any_step():
    model = tiny_model()
    before = [p.clone() for p in model.parameters()]
    x = dynamic_binarize(intensities(4), torch.Generator().manual_seed(1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"the objective is the model itself.*NegLogLikelihood"):
        train_step(model, opt, (x, None), device=CPU)
    with pytest.raises(ValueError, match=r"one negative log-likelihood per image, shape \(4,\)"):
        train_step(lambda x, y: NegLogLikelihood(model)(x).sum(), opt, x, device=CPU)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_pairs_and_tensors_from_a_data_loader_train_and_score_as_batches():
    x = dynamic_binarize(intensities(12), torch.Generator().manual_seed(1))
    runs = {}
    for kind in ("batches", "pairs", "tensors"):
        model = tiny_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        if kind == "batches":
            data = list(BinarizedBatches(x, batch_size=4, binarize=None))
        elif kind == "pairs":
            data = list(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), 4))
        else:
            data = list(x.split(4))
        trained = train_epoch(NegLogLikelihood(model), opt, data, device=CPU)
        runs[kind] = (trained.nll, evaluate(model, data, device=CPU).nll)
    assert runs["pairs"] == runs["batches"] == runs["tensors"]
    with pytest.raises(TypeError, match=r"a batch must be an autoregressive.data.Batch"):
        evaluate(tiny_model(), [{"pixels": x}], device=CPU)


@pytest.mark.parametrize("helper", ["train_epoch", "evaluate"])
def test_an_empty_data_set_is_an_error_not_a_nan(helper):
    model = tiny_model()
    empty = BinarizedBatches(torch.zeros(0, 1, 8, 8), batch_size=4, binarize=None)
    with pytest.raises(ValueError, match=r"the pass saw no images \(0 batches\)"):
        if helper == "evaluate":
            evaluate(model, empty, device=CPU)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            train_epoch(NegLogLikelihood(model), opt, empty, device=CPU)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_evaluate_scores_a_low_precision_model_in_float32(dtype):
    x = dynamic_binarize(intensities(8), torch.Generator().manual_seed(1))
    low = tiny_model().to(dtype)  # the same seed: the same weights, rounded
    batches = BinarizedBatches(x, batch_size=4, binarize=None)
    rounded = tiny_model().to(dtype).float()  # the rounded weights, computed in float32
    expected = evaluate(rounded, batches, device=CPU).nll
    assert evaluate(low, batches, device=CPU).nll == pytest.approx(expected, abs=1e-5)
    assert next(low.parameters()).dtype == dtype  # the model itself is left as it was


# ------------------------------------------------------------- conditioning through the helpers
def _conditioned(kind: str, seed: int = 0) -> tuple[PixelCNN, torch.Tensor, Conditioning]:
    """A tiny model conditioned on ``kind``, and 32 images ``(32, 1, 8, 8)`` decided by it.

    Each image is all ones or all zeros by the sign of its vector, or each pixel is the sign of
    the map there (the labels are noise).
    """
    g = torch.Generator().manual_seed(seed)
    if kind == "vector":
        v = torch.randn(32, 2, generator=g)
        x = (v[:, :1, None, None] > 0).float().expand(32, 1, 8, 8)
        cond, changes = Conditioning(vector=v), {"vector_size": 2}
    else:
        s = torch.randn(32, 1, 8, 8, generator=g)
        labels = torch.randint(0, 3, (32,), generator=g)
        x, cond = (s > 0).float(), Conditioning(spatial=s, labels=labels)
        changes = {"spatial_channels": 1, "num_classes": 3}
    torch.manual_seed(seed)
    return PixelCNN(dataclasses.replace(TINY, **changes)), x, cond


def _each(cond: Conditioning, f) -> Conditioning:
    """``f`` applied to each part of ``cond`` that is given."""
    parts = (cond.vector, cond.spatial, cond.labels)
    return Conditioning(*(None if t is None else f(t) for t in parts))


def _rows(cond: Conditioning, rows: slice) -> Conditioning:
    """The conditioning of the images ``rows``."""
    return _each(cond, lambda t: t[rows])


@pytest.mark.parametrize("kind", ["vector", "labels and map"])
def test_conditioned_training_with_the_helpers_learns_the_conditioning(kind):
    model, x, cond = _conditioned(kind)
    objective = NegLogLikelihood(model)
    # every block's horizontal gate reads the conditioning (the last vertical one is unused)
    cond_layers = {n for n, _ in objective.named_parameters() if ".cond_h." in n}
    assert len(cond_layers) == 2 * (1 + (cond.spatial is not None))  # 2 blocks
    assert not cond_layers & set(unused_parameters(objective, x[:2], _rows(cond, slice(2))))
    pairs = [(x[i : i + 8], _rows(cond, slice(i, i + 8))) for i in range(0, 32, 8)]
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    first = train_epoch(objective, opt, pairs, device=CPU).nll
    for _ in range(14):
        last = train_epoch(objective, opt, pairs, device=CPU).nll
    given = evaluate(model, pairs, device=CPU).nll
    other = _each(cond, lambda t: t.roll(1, 0))  # each image gets the previous one's
    shuffled = [(x[i : i + 8], _rows(other, slice(i, i + 8))) for i in range(0, 32, 8)]
    model.eval()
    assert given == pytest.approx(-model.log_prob(x, cond).double().mean().item(), rel=1e-5)
    assert last < first
    assert given < 0.5 * evaluate(model, shuffled, device=CPU).nll, "the conditioning is unused"


def test_batches_pairs_and_dicts_carry_vectors_and_maps_alike():
    _, x, cond = _conditioned("labels and map")
    vector = torch.randn(32, 2, generator=torch.Generator().manual_seed(3))
    cond = dataclasses.replace(cond, vector=vector)
    rows = [slice(i, i + 8) for i in range(0, 32, 8)]
    dicts = torch.utils.data.StackDataset(
        images=x, labels=cond.labels, vector=vector, spatial=cond.spatial
    )
    data = {
        "batches": [Batch(x[r], cond.labels[r], 8, vector[r], cond.spatial[r]) for r in rows],
        "pairs": [(x[r], _rows(cond, r)) for r in rows],
        "dicts": list(torch.utils.data.DataLoader(dicts, batch_size=8)),
    }
    runs = {}
    for kind, batches in data.items():
        torch.manual_seed(0)
        model = PixelCNN(
            dataclasses.replace(TINY, vector_size=2, spatial_channels=1, num_classes=3)
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        trained = train_epoch(NegLogLikelihood(model), opt, batches, device=CPU)
        runs[kind] = (trained.nll, evaluate(model, batches, device=CPU).nll)
    assert runs["batches"] == runs["pairs"] == runs["dicts"]


@pytest.mark.parametrize(
    "batch",
    [
        {"pixels": torch.zeros(2, 1, 8, 8)},
        {"labels": torch.zeros(2)},
        ("images", None),
        (torch.zeros(2, 1, 8, 8), "labels"),
        (torch.zeros(2, 1, 8, 8), None, None),
    ],
    ids=["unknown key", "no images", "images not a tensor", "labels not a tensor", "triple"],
)
def test_what_is_not_a_batch_is_refused_with_the_forms_it_may_take(batch):
    with pytest.raises(TypeError, match=r"an \(images, labels\) or \(images, Conditioning\) pair"):
        as_batch(batch)
