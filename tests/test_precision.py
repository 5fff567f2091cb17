"""Tests of autoregressive.training.precision and of training in bf16: choice, run, report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoregressive import PixelCNN, PixelCNNConfig
from autoregressive.data import BinarizedBatches, dynamic_binarize
from autoregressive.training import (
    Capabilities,
    NegLogLikelihood,
    choose_precision,
    evaluate,
    full_float32,
    resolve_precision,
    train_epoch,
)

CPU = torch.device("cpu")
TINY = PixelCNNConfig(block="gated", num_blocks=2, hidden_channels=8, image_size=(8, 8))

AVX2 = Capabilities("cpu", native_bf16=False, name="CPU with AVX2")
AMX = Capabilities("cpu", native_bf16=True, name="CPU with AMX")
H200 = Capabilities("cuda", native_bf16=True, name="H200")
V100 = Capabilities("cuda", native_bf16=False, name="V100")


@pytest.mark.parametrize(
    ("choice", "caps", "name", "channels_last"),
    [
        ("auto", AVX2, "fp32", False),
        ("auto", AMX, "bf16", True),
        ("auto", H200, "bf16", True),
        ("auto", V100, "fp32", False),
        ("fp32", AMX, "fp32", False),
        ("fp32", H200, "fp32", False),
        ("bf16", AVX2, "bf16", True),
        ("bf16", V100, "bf16", True),
    ],
)
def test_choose_precision_table(choice, caps, name, channels_last):
    p = choose_precision(choice, caps)
    assert p.name == name
    assert p.autocast_dtype == (torch.bfloat16 if name == "bf16" else None)
    assert p.channels_last is channels_last
    assert p.memory_format == (torch.channels_last if channels_last else torch.contiguous_format)
    assert caps.name in p.reason or choice != "auto"


def test_asking_for_emulated_bf16_warns_in_the_reason():
    assert "slower" in choose_precision("bf16", AVX2).reason
    assert "slower" not in choose_precision("bf16", AMX).reason


@pytest.mark.parametrize("bad", ["fp16", "BF16", "", None])
def test_unknown_precision_is_a_value_error_listing_the_choices(bad):
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        choose_precision(bad, AVX2)


def _cpuinfo_has_bf16_units() -> bool:
    """An independent reading of the CPU flags (Linux only)."""
    text = Path("/proc/cpuinfo").read_text()
    flags = next(line for line in text.splitlines() if line.startswith("flags")).split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs Linux's /proc/cpuinfo")
def test_auto_on_this_cpu_follows_its_flags():
    caps = Capabilities.detect("cpu")
    assert caps.device_type == "cpu"
    assert caps.native_bf16 == _cpuinfo_has_bf16_units()
    expected = "bf16" if _cpuinfo_has_bf16_units() else "fp32"
    assert resolve_precision("auto", "cpu").name == expected


def test_cuda_capabilities_come_from_the_compute_capability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Fake GPU")
    for (major, minor), native in {(7, 0): False, (8, 0): True, (9, 0): True}.items():
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i, v=(major, minor): v)
        caps = Capabilities.detect("cuda")
        assert caps.native_bf16 is native
        assert f"{major}.{minor}" in caps.name


def test_autocast_context_computes_in_bf16_only_for_bf16():
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.rand(1, 1, 5, 5)
    with choose_precision("bf16", AVX2).autocast(CPU):
        assert conv(x).dtype == torch.bfloat16
    with choose_precision("fp32", AMX).autocast(CPU):
        assert conv(x).dtype == torch.float32


# ------------------------------------------------------------------- training in bf16
def _data(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, 2, 2, generator=g)
    smooth = torch.nn.functional.interpolate(base, size=(8, 8), mode="bilinear")
    return dynamic_binarize(smooth, torch.Generator().manual_seed(seed + 1))  # (n, 1, 8, 8)


@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_a_short_run_lowers_the_test_nll_in_either_precision(name):
    precision = choose_precision(name, AMX)
    train = BinarizedBatches(_data(96, 0), batch_size=16, binarize=None, shuffle=True, seed=0)
    test = BinarizedBatches(_data(32, 5), batch_size=16, binarize=None)
    torch.manual_seed(0)
    model = PixelCNN(TINY).to(memory_format=precision.memory_format)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = evaluate(model, test, device=CPU)
    for epoch in range(3):
        train.set_epoch(epoch)
        stats = train_epoch(NegLogLikelihood(model), opt, train, device=CPU, precision=precision)
        assert stats.nll == stats.nll  # finite, not NaN
    after = evaluate(model, test, device=CPU)
    assert after.nll < before.nll - 1.0, (before.nll, after.nll)
    assert all(p.dtype == torch.float32 for p in model.parameters()), "weights stay float32"


def test_evaluation_is_float32_even_inside_a_bf16_autocast():
    torch.manual_seed(0)
    model = PixelCNN(TINY)
    batches = BinarizedBatches(_data(20, 3), batch_size=8, binarize=None)
    plain = evaluate(model, batches, device=CPU)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = evaluate(model, batches, device=CPU)
        assert model.log_prob(_data(2, 3)).dtype == torch.float32  # the loss upcasts anyway
    assert inside.nll == plain.nll  # bit for bit: the forward pass did not run in bf16
    exact = -model.log_prob(_data(20, 3)).double().mean().item()
    assert plain.nll == pytest.approx(exact, rel=1e-6)


def test_full_float32_turns_off_autocast_and_tf32_and_restores_them():
    torch.backends.cudnn.allow_tf32 = True
    x = torch.ones(2, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16
        with full_float32("cpu"):
            assert (x @ x).dtype == torch.float32
            assert torch.backends.cudnn.allow_tf32 is False
        assert (x @ x).dtype == torch.bfloat16
    assert torch.backends.cudnn.allow_tf32 is True
