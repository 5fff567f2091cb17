"""Tests of autoregressive.data: binarization, seeded batches and MNIST loading.

MNIST loading is tested on tiny synthetic IDX files written in torchvision's layout, so the
tests need neither the real data set nor the network.
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autoregressive import Conditioning
from autoregressive.data import (
    MNIST_FILES,
    BinarizedBatches,
    IDXError,
    SeededBatches,
    derive_seed,
    dynamic_binarize,
    load_mnist,
    read_idx,
    threshold_binarize,
)

needs_torchvision = pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed"
)


def write_idx(path: Path, array: torch.Tensor, *, gz: bool = False) -> None:
    """Write a uint8 tensor as an IDX file (big-endian header: magic 0x0000080<ndim>, dims)."""
    assert array.dtype == torch.uint8
    header = struct.pack(">I", 0x0800 + array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    data = header + array.contiguous().numpy().tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def synthetic_digits(n: int, size: int = 28, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uint8 images ``(n, size, size)`` with a grey-level bar each, and labels 0..9.

    The label decides the bar (vertical for even, horizontal for odd labels, at a position that
    grows with the label), so a model has something to learn; intensities are graded to make
    dynamic binarization matter.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.zeros(n, size, size, dtype=torch.uint8)
    ramp = torch.linspace(80, 255, size).to(torch.uint8)
    for i, label in enumerate(labels.tolist()):
        start = 2 + (label // 2) * (size - 8) // 5
        width = 3 + int(torch.randint(0, 3, (), generator=g))
        if label % 2 == 0:
            images[i, 3:-3, start : start + width] = ramp[3:-3, None]
        else:
            images[i, start : start + width, 3:-3] = ramp[None, 3:-3]
    return images, labels.to(torch.uint8)


def write_mnist(root: Path, n_train: int, n_test: int, size: int = 28, *, gz: bool = False):
    """Synthetic MNIST in ``root/MNIST/raw/``; returns the four arrays (uint8)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_digits(n_train, size, seed=1)
    test_x, test_y = synthetic_digits(n_test, size, seed=2)
    suffix = ".gz" if gz else ""
    for name, array in zip(MNIST_FILES, (train_x, train_y, test_x, test_y), strict=True):
        write_idx(raw / (name + suffix), array, gz=gz)
    return train_x, train_y, test_x, test_y


# ---------------------------------------------------------------------------- binarization
def test_threshold_binarize_cuts_strictly_above():
    x = torch.tensor([0.0, 0.49, 0.5, 0.51, 1.0])
    assert threshold_binarize(x).tolist() == [0, 0, 0, 1, 1]
    assert threshold_binarize(x, threshold=0.0).tolist() == [0, 1, 1, 1, 1]
    assert threshold_binarize(x.double()).dtype == torch.float64


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.tensor([0, 255], dtype=torch.uint8), "floating-point"),
        (torch.tensor([0.0, 2.0]), r"\[0, 1\]"),
        (torch.tensor([-0.1, 0.5]), r"\[0, 1\]"),
        (torch.tensor([float("nan")]), r"\[0, 1\]"),
    ],
)
def test_binarization_rejects_bad_intensities(x, match):
    with pytest.raises(ValueError, match=match):
        threshold_binarize(x)
    with pytest.raises(ValueError, match=match):
        dynamic_binarize(x)


def test_threshold_out_of_range():
    with pytest.raises(ValueError, match="threshold"):
        threshold_binarize(torch.rand(3), threshold=1.0)


def test_dynamic_binarize_is_seeded_and_has_the_right_mean():
    x = torch.full((200, 1, 28, 28), 0.3)
    a = dynamic_binarize(x, torch.Generator().manual_seed(5))
    b = dynamic_binarize(x, torch.Generator().manual_seed(5))
    c = dynamic_binarize(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    # 156,800 Bernoulli(0.3) draws: standard deviation of the mean ~0.0012
    assert abs(a.mean().item() - 0.3) < 0.006
    edges = torch.tensor([0.0, 1.0]).repeat(1000)
    assert torch.equal(dynamic_binarize(edges, torch.Generator().manual_seed(0)), edges)


def test_derive_seed_separates_streams():
    seeds = {derive_seed(s, e, k) for s in range(3) for e in range(3) for k in ("a", "b")}
    assert len(seeds) == 18
    assert all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(1, 2, "a") == derive_seed(1, 2, "a")


# ---------------------------------------------------------------------------- batches
def _ids(n: int) -> torch.Tensor:
    """Binary 4x4 images that encode their own index (n <= 2**16)."""
    bits = (torch.arange(n)[:, None] >> torch.arange(16)) & 1  # (n, 16)
    return bits.float().view(n, 1, 4, 4)


def _decode(images: torch.Tensor) -> list[int]:
    return (images.view(-1, 16).long() << torch.arange(16)).sum(1).tolist()


def _epoch(batches: BinarizedBatches, epoch: int) -> list:
    batches.set_epoch(epoch)
    return list(batches)


def test_batches_visit_every_image_once_per_epoch_in_a_seeded_order():
    batches = BinarizedBatches(_ids(50), batch_size=8, binarize=None, shuffle=True, seed=3)
    assert len(batches) == 7
    orders = []
    for epoch in (1, 2, 1):
        got = _epoch(batches, epoch)
        assert [b.total for b in got] == [8] * 6 + [2]
        order = [i for b in got for i in _decode(b.images)]
        assert sorted(order) == list(range(50))
        orders.append(order)
    assert orders[0] == orders[2] != orders[1]
    other_seed = BinarizedBatches(_ids(50), batch_size=8, binarize=None, shuffle=True, seed=4)
    assert [i for b in _epoch(other_seed, 1) for i in _decode(b.images)] != orders[0]


def test_batches_without_shuffle_keep_order_and_drop_last():
    batches = BinarizedBatches(_ids(10), batch_size=4, binarize=None, drop_last=True)
    got = _epoch(batches, 7)
    assert len(batches) == len(got) == 2
    assert [i for b in got for i in _decode(b.images)] == list(range(8))


def test_dynamic_batches_depend_only_on_seed_and_epoch():
    x = torch.rand(37, 1, 6, 6)

    def make() -> BinarizedBatches:
        return BinarizedBatches(x, batch_size=5, binarize="dynamic", shuffle=True, seed=9)

    a, b = make(), make()
    e1 = torch.cat([t.images for t in _epoch(a, 1)])
    e2 = torch.cat([t.images for t in _epoch(a, 2)])
    assert torch.equal(e1, torch.cat([t.images for t in _epoch(b, 1)]))  # fresh object
    assert torch.equal(e1, torch.cat([t.images for t in _epoch(a, 1)]))  # repeated epoch
    assert not torch.equal(e1, e2)
    assert set(e1.unique().tolist()) <= {0.0, 1.0}


def test_threshold_batches_are_fixed_images():
    x = torch.rand(20, 1, 4, 4)
    labels = torch.arange(20)
    batches = BinarizedBatches(x, labels, batch_size=6, binarize="threshold", shuffle=True)
    for epoch in (1, 2):
        for b in _epoch(batches, epoch):
            assert torch.equal(b.images, (x[b.labels] > 0.5).float())


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("binarize", ["dynamic", "threshold"])
def test_shards_of_all_ranks_make_the_single_process_batch(world_size, binarize):
    x, labels = torch.rand(29, 1, 5, 5), torch.arange(29)
    kwargs = {"batch_size": 8, "binarize": binarize, "shuffle": True, "seed": 1}
    single = _epoch(BinarizedBatches(x, labels, **kwargs), 4)
    ranks = [
        _epoch(BinarizedBatches(x, labels, rank=r, world_size=world_size, **kwargs), 4)
        for r in range(world_size)
    ]
    for i, whole in enumerate(single):
        shares = [r[i] for r in ranks]
        assert all(s.total == whole.total for s in shares)
        assert torch.equal(torch.cat([s.images for s in shares]), whole.images)
        assert torch.equal(torch.cat([s.labels for s in shares]), whole.labels)
        sizes = [s.images.shape[0] for s in shares]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2, "world_size": 4, "rank": 0}, "smaller than the number of processes"),
        ({"batch_size": 4, "rank": 2, "world_size": 2}, "rank"),
        ({"batch_size": 4, "binarize": "otsu"}, "binarize"),
    ],
)
def test_batches_reject_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BinarizedBatches(torch.rand(8, 1, 4, 4), **kwargs)


def test_batches_reject_bad_images():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        BinarizedBatches(torch.rand(8, 4, 4), batch_size=2)
    with pytest.raises(ValueError, match="binary"):
        BinarizedBatches(torch.rand(8, 1, 4, 4), batch_size=2, binarize=None)
    with pytest.raises(ValueError, match="labels"):
        BinarizedBatches(torch.rand(8, 1, 4, 4), torch.arange(7), batch_size=2)


# ---------------------------------------------------------------------------- MNIST files
def test_torchvision_is_imported_lazily():
    code = (
        "import sys, autoregressive, autoregressive.data, autoregressive.training; "
        "assert 'torchvision' not in sys.modules, 'torchvision imported at import time'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@needs_torchvision
def test_load_mnist_reads_torchvision_layout(tmp_path):
    train_x, train_y, test_x, test_y = write_mnist(tmp_path, 30, 12)
    images, labels = load_mnist(tmp_path, train=True, download=False)
    assert images.shape == (30, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert torch.equal(images, train_x.unsqueeze(1).float() / 255)
    assert torch.equal(labels, train_y.long())
    images, labels = load_mnist(str(tmp_path), train=False, download=False)
    assert torch.equal(images, test_x.unsqueeze(1).float() / 255)
    assert torch.equal(labels, test_y.long())


@needs_torchvision
def test_load_mnist_does_not_check_md5_of_extracted_files(tmp_path):
    """torchvision 0.17+ checks md5 sums only of downloaded .gz archives, not of raw files."""
    write_mnist(tmp_path, 3, 2, size=12)
    images, _ = load_mnist(tmp_path, train=True, download=True)  # found: no download attempt
    assert images.shape == (3, 1, 12, 12)


def _assert_names_files(message: str, root: Path) -> None:
    for name in MNIST_FILES:
        assert f"{name}(.gz)" in message
    assert str(root / "MNIST" / "raw") in message


@needs_torchvision
def test_missing_files_without_download_name_the_files(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path / "nowhere", download=False)
    _assert_names_files(str(info.value), tmp_path / "nowhere")
    assert "download disabled" in str(info.value)


@needs_torchvision
def test_partial_files_name_what_is_missing(tmp_path):
    write_mnist(tmp_path, 3, 2)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, train=True, download=False)


@needs_torchvision
def test_failed_download_gives_the_same_clear_error(tmp_path, monkeypatch):
    """A download that fails (no network) must end in the message, never hang or leak."""
    from torchvision.datasets import MNIST

    calls = []

    def offline(self):
        calls.append(self.root)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: network unreachable")

    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, train=True, download=True)
    assert calls, "load_mnist should have asked torchvision to download"
    _assert_names_files(str(info.value), tmp_path)
    assert "network unreachable" in str(info.value)


def test_gzipped_files_alone_are_extracted_and_read_without_download(tmp_path):
    train_x, train_y, _, _ = write_mnist(tmp_path, 3, 2, size=6, gz=True)
    images, labels = load_mnist(tmp_path, download=False)
    assert torch.equal(images, train_x.unsqueeze(1).float() / 255)
    assert torch.equal(labels, train_y.long())
    assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_a_damaged_gzip_is_reported_as_damaged_not_missing(tmp_path):
    write_mnist(tmp_path, 3, 2, size=6, gz=True)
    packed = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[:12])
    with pytest.raises(IDXError, match=r"t10k-labels-idx1-ubyte.gz is damaged"):
        load_mnist(tmp_path, train=False, download=False)


# ---------------------------------------------------------------------------- damaged IDX files
def _replace(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda b: b[:2] + b"\x09" + b[3:], r"magic number 0x00000903"),  # signed bytes
        (lambda b: b[:3] + b"\x02" + b[4:], r"magic number 0x00000802"),  # wrong dimensions
        (lambda b: b[:-1], "truncated or damaged"),
        (lambda b: b + b"\x00", "truncated or damaged"),
        (lambda b: b[:6], "shorter than its header"),
        (lambda b: b[:4] + bytes(4) + b[8:], r"each size >= 1"),  # zero images
    ],
)
def test_damaged_idx_files_are_refused_naming_the_file(tmp_path, damage, match):
    write_mnist(tmp_path, 3, 2, size=6)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    _replace(path, damage(path.read_bytes()))
    with pytest.raises(IDXError, match=match) as info:
        load_mnist(tmp_path, download=False)
    assert isinstance(info.value, ValueError) and str(path) in str(info.value)


def test_image_and_label_counts_must_agree(tmp_path):
    write_mnist(tmp_path, 3, 2, size=6)
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    write_idx(labels, torch.zeros(4, dtype=torch.uint8))
    with pytest.raises(IDXError, match="holds 4 labels but the image file beside it holds 3"):
        load_mnist(tmp_path, download=False)
    write_idx(labels, torch.full((3,), 10, dtype=torch.uint8))
    with pytest.raises(IDXError, match="labels above 9"):
        load_mnist(tmp_path, download=False)


def test_read_idx_returns_the_header_sizes(tmp_path):
    array = torch.arange(24, dtype=torch.uint8).view(2, 3, 4)
    write_idx(tmp_path / "a", array)
    assert torch.equal(read_idx(tmp_path / "a", ndim=3), array)
    with pytest.raises(IDXError, match="expected 0x00000801"):
        read_idx(tmp_path / "a", ndim=1)


REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.mark.skipif(
    not (REAL_MNIST / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
    reason=f"the real MNIST files are not in {REAL_MNIST}/MNIST/raw",
)
def test_the_real_mnist_test_set_passes_the_checks():
    images, labels = load_mnist(REAL_MNIST, train=False, download=False)
    assert images.shape == (10_000, 1, 28, 28) and labels.shape == (10_000,)
    assert torch.bincount(labels).tolist()[:3] == [980, 1135, 1032]


@pytest.mark.parametrize("world_size", [1, 3])
def test_vectors_and_maps_travel_with_their_images(world_size):
    """Each image is its own index, as are its label, vector and map: every batch must agree."""
    n = 17
    index = torch.arange(n)
    x = index.float().view(n, 1, 1, 1).expand(n, 1, 3, 3)
    cond = Conditioning(
        labels=index, vector=index.float()[:, None].repeat(1, 2), spatial=x.repeat(1, 2, 1, 1)
    )
    kwargs = {"batch_size": 6, "shuffle": True, "seed": 2, "world_size": world_size}
    ranks = [_epoch(SeededBatches(x, cond, rank=r, **kwargs), 3) for r in range(world_size)]
    seen = []
    for shares in zip(*ranks, strict=True):
        for b in shares:
            i = b.images[:, 0, 0, 0].long()
            assert torch.equal(b.labels, i) and torch.equal(b.vector[:, 0].long(), i)
            assert torch.equal(b.spatial, b.images.repeat(1, 2, 1, 1))
            assert isinstance(b.cond, Conditioning) and b.total == sum(
                len(s.images) for s in shares
            )
            seen += i.tolist()
    assert sorted(seen) == list(range(n)) and seen != list(range(n))  # all, shuffled
    with pytest.raises(
        ValueError, match=r"the conditioning map must have one row per image, \(17, ...\)"
    ):
        SeededBatches(x, Conditioning(spatial=x[:3]), batch_size=2)
