"""Colour data: CIFAR-10 through torchvision and from its pickles, photo patches, batches.

CIFAR-10 itself is not downloaded here: the tests write a few random images in the format of
the official python version (``cifar-10-batches-py/`` with pickled batches) and check that both
the checksum-verified torchvision path and the checksum-free reader return them exactly.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from autoregressive.data.colour import (
    CIFAR10_CLASSES,
    CIFAR10_FOLDER,
    PHOTO_SOURCES,
    ImageBatches,
    cut_patches,
    load_cifar10,
    load_photo_patches,
    read_cifar10,
)

CIFAR_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


def write_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> dict[str, tuple]:
    """Random images in CIFAR-10's pickle format under ``root/cifar-10-batches-py``.

    Returns ``{file name: (data (n, 3072) uint8, labels list)}`` of what was written.
    """
    rng = np.random.default_rng(seed)
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in CIFAR_FILES:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        entry = {"batch_label": name, "labels": labels, "data": data, "filenames": [""] * per_batch}
        (folder / name).write_bytes(pickle.dumps(entry))
        written[name] = (data, labels)
    meta = {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return written


def _expected(written: dict, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    data = np.concatenate([written[n][0] for n in names])
    labels = [label for n in names for label in written[n][1]]
    return torch.from_numpy(data).view(-1, 3, 32, 32), torch.tensor(labels)


@pytest.mark.parametrize("train", [True, False])
def test_read_cifar10_returns_the_pickled_images(tmp_path: Path, train: bool) -> None:
    written = write_cifar10(tmp_path)
    images, labels = read_cifar10(tmp_path, train=train)
    want_x, want_y = _expected(written, CIFAR_FILES[:5] if train else CIFAR_FILES[5:])
    assert images.dtype == torch.uint8 and labels.dtype == torch.long
    assert torch.equal(images, want_x) and torch.equal(labels, want_y)
    # channel planes: the first 1024 bytes of a row are the red plane of that image, row-major
    data = written["data_batch_1" if train else "test_batch"][0]
    assert images[0, 0, 0, :5].tolist() == data[0, :5].tolist()
    assert images[0, 2, 31, 31] == data[0, 3071]


def _torchvision_cifar():
    return pytest.importorskip("torchvision.datasets").CIFAR10


@pytest.mark.parametrize("train", [True, False])
def test_load_cifar10_goes_through_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, train: bool
) -> None:
    cifar = _torchvision_cifar()
    written = write_cifar10(tmp_path)
    folder = tmp_path / CIFAR10_FOLDER

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    # torchvision checks the official MD5 sums: make it expect those of our synthetic files
    monkeypatch.setattr(cifar, "train_list", [[n, md5(n)] for n in CIFAR_FILES[:5]])
    monkeypatch.setattr(cifar, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": md5("batches.meta")})
    images, labels = load_cifar10(tmp_path, train=train, download=False)
    want_x, want_y = _expected(written, CIFAR_FILES[:5] if train else CIFAR_FILES[5:])
    assert torch.equal(images, want_x) and torch.equal(labels, want_y)
    assert images.is_contiguous()
    assert torch.equal(images, read_cifar10(tmp_path, train=train)[0])


def test_load_cifar10_refuses_files_that_fail_the_checksums(tmp_path: Path) -> None:
    _torchvision_cifar()
    write_cifar10(tmp_path)  # not the official bytes
    with pytest.raises(FileNotFoundError, match="read_cifar10 reads the pickles"):
        load_cifar10(tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match=CIFAR10_FOLDER):
        load_cifar10(tmp_path / "empty", download=False)


def test_read_cifar10_names_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        read_cifar10(tmp_path)
    write_cifar10(tmp_path)
    bad = tmp_path / CIFAR10_FOLDER / "test_batch"
    bad.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"test_batch.*uint8"):
        read_cifar10(tmp_path, train=False)
    bad.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}))
    with pytest.raises(ValueError, match=r"ints in \[0, 10\)"):
        read_cifar10(tmp_path, train=False)
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 batch"):
        read_cifar10(tmp_path, train=False)


# ----------------------------------------------------------------------------- patches
@given(
    c=st.integers(1, 3),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    size=st.integers(1, 5),
    stride=st.integers(1, 5),
)
def test_cut_patches_matches_slicing(c: int, h: int, w: int, size: int, stride: int) -> None:
    image = torch.randint(0, 256, (c, h, w), dtype=torch.uint8)
    patches = cut_patches(image, size, stride)
    want = [
        image[:, i : i + size, j : j + size]
        for i in range(0, h - size + 1, stride)
        for j in range(0, w - size + 1, stride)
    ]  # row by row of the grid
    assert patches.shape == (len(want), c, size, size)
    for got, expected in zip(patches, want, strict=True):
        assert torch.equal(got, expected)


def test_cut_patches_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        cut_patches(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="stride"):
        cut_patches(torch.zeros(1, 4, 4), 2, 0)


@pytest.fixture(scope="module")
def photo_patches() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    pytest.importorskip("skimage", reason="the photo patches need scikit-image (test extra)")
    return {
        "train": load_photo_patches(train=True),
        "test": load_photo_patches(train=False),
    }


def test_photo_patches_are_split_by_source(photo_patches: dict) -> None:
    names = list(PHOTO_SOURCES)
    for split, (images, sources) in photo_patches.items():
        assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
        assert sources.shape == images.shape[:1]
        assert {PHOTO_SOURCES[names[i]] for i in sources.unique().tolist()} == {split}
        # each patch is a real patch: not flat (std >= 2), and not all images are the same
        assert float(images.flatten(1).float().std(1).min()) >= 2.0
        assert images.unique(dim=0).shape[0] == images.shape[0]
    train, test = photo_patches["train"][0], photo_patches["test"][0]
    assert train.shape[0] > 3000 and test.shape[0] > 300
    assert set(photo_patches["train"][1].tolist()) | set(photo_patches["test"][1].tolist()) == set(
        range(len(names))
    )


def test_photo_patches_are_cut_from_the_photographs(photo_patches: dict) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    images, sources = photo_patches["test"]
    cat = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)  # (3, 300, 451)
    first = images[sources == list(PHOTO_SOURCES).index("chelsea")]
    assert torch.equal(first[0], cat[:, :32, :32])
    assert torch.equal(first[1], cat[:, :32, 32:64])
    assert first.shape[0] == (300 // 32) * (451 // 32)  # no flat patch in the cat


def test_photo_patches_are_deterministic(photo_patches: dict) -> None:
    again = load_photo_patches(train=False)
    assert torch.equal(again[0], photo_patches["test"][0])
    assert torch.equal(again[1], photo_patches["test"][1])


# ----------------------------------------------------------------------------- batches
def test_image_batches_cover_the_data_once_per_epoch() -> None:
    x = torch.randint(0, 256, (10, 3, 2, 2), dtype=torch.uint8)
    y = torch.arange(10)
    batches = ImageBatches(x, y, batch_size=4, shuffle=True, seed=3)
    orders = []
    for epoch in (1, 2, 1):
        batches.set_epoch(epoch)
        got = list(batches)
        assert [b.total for b in got] == [4, 4, 2]
        labels = torch.cat([b.labels for b in got])
        assert sorted(labels.tolist()) == list(range(10))
        for b in got:
            assert b.images.dtype == torch.long and torch.equal(b.images, x[b.labels].long())
        orders.append(labels.tolist())
    assert orders[0] == orders[2] != orders[1]  # a pure function of (seed, epoch)


@pytest.mark.parametrize("world", [2, 3])
def test_image_batches_split_each_global_batch_over_processes(world: int) -> None:
    x = torch.randint(0, 256, (11, 3, 2, 2), dtype=torch.uint8)
    single = list(ImageBatches(x, batch_size=6, shuffle=True, seed=1))
    shares = [list(ImageBatches(x, batch_size=6, shuffle=True, seed=1, rank=r,
                                world_size=world)) for r in range(world)]  # fmt: skip
    for k, whole in enumerate(single):
        joined = torch.cat([shares[r][k].images for r in range(world)])
        assert torch.equal(joined, whole.images)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"images": torch.rand(2, 3, 4, 4)}, ValueError, "quantise"),
        ({"images": torch.zeros(2, 4, 4, dtype=torch.uint8)}, ValueError, r"\(N, C, H, W\)"),
        ({"images": [1, 2]}, TypeError, "tensor"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"rank": 2, "world_size": 2}, ValueError, "rank"),
        ({"labels": torch.zeros(3)}, ValueError, "labels"),
    ],
)
def test_image_batches_reject_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    args = {"images": torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "batch_size": 2, **kwargs}
    with pytest.raises(error, match=match):
        ImageBatches(**args)


class _RunsCode:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('ran').write_text('code ran')",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_read_cifar10_reads_any_protocol_and_refuses_code(tmp_path, protocol, monkeypatch):
    monkeypatch.chdir(tmp_path)
    written = write_cifar10(tmp_path)
    data, labels = written["test_batch"]
    path = tmp_path / CIFAR10_FOLDER / "test_batch"
    path.write_bytes(pickle.dumps({"labels": labels, "data": data}, protocol=protocol))
    expected = _expected(written, ["test_batch"])[0]
    assert torch.equal(read_cifar10(tmp_path, train=False)[0], expected)
    path.write_bytes(pickle.dumps({"labels": labels, "data": _RunsCode()}, protocol=protocol))
    refused = r"not a CIFAR-10 batch file \(UnpicklingError: it names \w+\.exec"
    with pytest.raises(ValueError, match=refused):
        read_cifar10(tmp_path, train=False)
    assert not (tmp_path / "ran").exists()


@given(
    protocol=st.sampled_from([2, 4, 5]),
    damage=st.sampled_from(["cut", "flip", "insert"]),
    at=st.floats(0, 1, exclude_max=True),
    xor=st.integers(1, 255),
)
def test_damaged_cifar_batches_load_or_name_the_file_and_the_fix(
    tmp_path_factory, protocol, damage, at, xor
):
    root = tmp_path_factory.mktemp("cifar")
    data, labels = write_cifar10(root, per_batch=2)["test_batch"]
    path = root / CIFAR10_FOLDER / "test_batch"
    blob = pickle.dumps({"labels": labels, "data": data}, protocol=protocol)
    i = int(at * len(blob))
    bad = {
        "cut": blob[:i],
        "flip": blob[:i] + bytes([blob[i] ^ xor]) + blob[i + 1 :],
        "insert": blob[:i] + b"\x00" + blob[i:],
    }[damage]
    path.write_bytes(bad)
    try:
        images, got = read_cifar10(root, train=False)
    except ValueError as err:  # anything else (TypeError, MemoryError, ...) fails the test
        assert str(path) in str(err) and "cifar-10-python.tar.gz" in str(err), str(err)
        return
    assert images.shape[1:] == (3, 32, 32) and images.shape[0] == got.shape[0]
    assert images.dtype == torch.uint8 and bool(((got >= 0) & (got < 10)).all())


def test_a_truncated_cifar_batch_names_the_file_and_the_fix(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / CIFAR10_FOLDER / "data_batch_3"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"data_batch_3 is not a CIFAR-10 batch file \(.*trunc"):
        read_cifar10(tmp_path)
    path.write_bytes(pickle.dumps(["a list, not a batch"]))
    with pytest.raises(ValueError, match=r"data_batch_3 .*no 'data' and 'labels' entries\): it is"):
        read_cifar10(tmp_path)


def test_photo_patches_without_scikit_image_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage now raises ImportError
    with pytest.raises(ImportError, match=r"needs scikit-image: pip install"):
        load_photo_patches()


@pytest.mark.parametrize(
    "broken",
    [
        lambda: (_ for _ in ()).throw(FileNotFoundError("chelsea.png")),
        lambda: np.zeros((300, 451), np.uint8),  # a grey image where a colour one belongs
    ],
    ids=["missing", "grey"],
)
def test_a_missing_or_damaged_photograph_is_named_with_the_fix(monkeypatch, broken):
    data = pytest.importorskip("skimage.data", reason="the photo patches need scikit-image")
    monkeypatch.setattr(data, "chelsea", broken)
    with pytest.raises(ValueError, match=r"skimage.data.chelsea\(\) cannot be read .*reinstall"):
        load_photo_patches(train=False)
