"""The registry of the library's user-facing errors: one case per documented refusal.

Each :class:`Case` is a line of code that must raise ``error`` with a message matching
``match``. ``tests/test_errors.py`` runs every case; the documentation's *Errors* page runs them
again at build time (``docs/_ext/errors_page.py``) and shows the messages they really raise, so
the page can list only errors that exist and that a test checks.

The code runs with the names of :data:`NAMESPACE` and a scratch folder ``tmp``.
"""

from __future__ import annotations

import dis
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy
import torch
from torch import nn

import autoregressive
from autoregressive import (
    CausalSelfAttention2d,
    CausalSequential,
    MaskedConv2d,
    PixelCNN,
    PixelCNNConfig,
)
from autoregressive.checksums import file_sha256
from autoregressive.coding import StreamError
from autoregressive.data import BinarizedBatches, IDXError, load_mnist, read_idx
from autoregressive.data.colour import CIFAR10_FOLDER, read_cifar10
from autoregressive.models.pretrained import ChecksumError, load_pretrained
from autoregressive.training import (
    CheckpointError,
    NegLogLikelihood,
    as_batch,
    load_checkpoint,
    save_checkpoint,
    train_step,
)

PACKAGE = Path(autoregressive.__file__).parent


@dataclass(frozen=True)
class Case:
    """One refusal: ``code`` raises ``error`` with a message matching ``match``."""

    area: str
    code: str
    error: type[Exception]
    match: str


# ------------------------------------------------------------------ helpers the cases call
def _net(first: str = "A", out: int = 1) -> nn.Module:
    """A small network, seeded: a mask-B one must show its leak to the causality probe."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return CausalSequential(MaskedConv2d(1, 4, 3, first), nn.ReLU(), MaskedConv2d(4, out, 1))


def conditioned() -> autoregressive.PixelCNN:
    """A small model taking labels (3 classes), a vector (4) and a map (2 channels)."""
    config = autoregressive.PixelCNNConfig(
        num_blocks=1, hidden_channels=4, num_classes=3, vector_size=4, spatial_channels=2
    )
    return autoregressive.PixelCNN(config)


def dlm() -> PixelCNN:
    """A tiny RGB model with a discretized logistic mixture output, 2 bits."""
    config = PixelCNNConfig(
        data_channels=3, distribution="logistic_mixture", levels=4, num_blocks=1, hidden_channels=4
    )
    return PixelCNN(config)


def small(seed: int = 0) -> PixelCNN:
    """A tiny Bernoulli model whose weights depend on ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4))


def strided(**change: object) -> MaskedConv2d:
    """A ``MaskedConv2d(1, 2, 3)`` with attributes changed after construction."""
    conv = MaskedConv2d(1, 2, 3)
    for name, value in change.items():
        setattr(conv, name, value)
    return conv


def checkpoint(tmp: Path, flip_at: int | None = None, seal: bool = True) -> Path:
    """A checkpoint file in ``tmp``, a byte of its tensor data flipped, or saved unsealed."""
    path = tmp / "checkpoint.pt"
    weights = torch.arange(16.0)
    if seal:
        save_checkpoint(path, {"model": {"w": weights}})
    else:
        torch.save({"format": "autoregressive.training/1", "model": {"w": weights}}, path)
    if flip_at is not None:
        data = bytearray(path.read_bytes())
        data[data.index(weights.numpy().tobytes()) + flip_at] ^= 0x10
        path.write_bytes(bytes(data))
    return path


def leaky() -> nn.Module:
    """A float64 network whose mask-B first layer reaches the attention's query: a weak leak."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return CausalSequential(
            MaskedConv2d(1, 6, 3, "B"), CausalSelfAttention2d(6, key_channels=1),
            MaskedConv2d(6, 1, 1),
        ).double()  # fmt: skip


def cifar(tmp: Path, keep: int) -> Path:
    """A CIFAR-10 folder in ``tmp`` whose ``test_batch`` holds only its first ``keep`` bytes."""
    folder = tmp / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"data": numpy.zeros((2, 3072), numpy.uint8), "labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(entry)[:keep])
    return tmp


def step(precision: object = None, batch: object = None) -> torch.Tensor:
    """One training step of a small model on ``batch`` (two blank images), in ``precision``."""
    model = small()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = torch.zeros(2, 1, 4, 4) if batch is None else batch
    return train_step(NegLogLikelihood(model), optimizer, batch,  # type: ignore[arg-type]
                      device=torch.device("cpu"), precision=precision)  # type: ignore[arg-type]  # fmt: skip


def registry(tmp: Path, text: str) -> Path:
    """A weights folder in ``tmp`` whose ``registry.json`` holds ``text``."""
    (tmp / "registry.json").write_text(text)
    return tmp


def mnist(tmp: Path, images: int = 3, labels: int = 3, magic: int = 0x0803, cut: int = 0) -> Path:
    """A folder with MNIST IDX files of ``images`` 4x4 images and ``labels`` labels."""
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    x = struct.pack(">4I", magic, images, 4, 4) + bytes(images * 16)
    y = struct.pack(">2I", 0x0801, labels) + bytes(labels)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(x[: len(x) - cut])
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(y)
    return tmp


NAMESPACE: dict[str, object] = {
    **{name: getattr(autoregressive, name) for name in autoregressive.__all__},
    "torch": torch,
    "nn": nn,
    "net": _net,
    "dlm": dlm,
    "small": small,
    "StreamError": StreamError,
    "strided": strided,
    "conditioned": conditioned,
    "checkpoint": checkpoint,
    "mnist": mnist,
    "registry": registry,
    "load_pretrained": load_pretrained,
    "load_checkpoint": load_checkpoint,
    "file_sha256": file_sha256,
    "load_mnist": load_mnist,
    "read_idx": read_idx,
    "BinarizedBatches": BinarizedBatches,
    "as_batch": as_batch,
    "train_step": train_step,
    "NegLogLikelihood": NegLogLikelihood,
    "leaky": leaky,
    "cifar": cifar,
    "read_cifar10": read_cifar10,
    "step": step,
    "save_checkpoint": save_checkpoint,
}

KIND, CFG, LAYER, SAMPLE, MODEL, TRAIN, CKPT, DATA, COLOUR, CODE, OOD = (
    "The same mistake, the same error",
    "Configuration",
    "Layers and blocks",
    "Samplers",
    "Model inputs",
    "Training helpers",
    "Checkpoints",
    "MNIST files",
    "CIFAR-10 and photo files",
    "Compression",
    "Out-of-distribution scores",
)
NOISE = "draw_noise((2, 1, 4, 4))"

CASES: list[Case] = [
    # a count of the wrong kind is a TypeError, a count out of range a ValueError, everywhere
    Case(
        KIND, "mask_groups(2.0)", TypeError, r"data_channels must be an int, got float 2.0; pass 2"
    ),
    Case(
        KIND,
        "MaskedConv2d(4, 4, 3, data_channels=2.0)",
        TypeError,
        r"data_channels must be an int, got float 2.0",
    ),
    Case(
        KIND, "Categorical(levels=True)", TypeError, r"Categorical: levels must be an int, got bool"
    ),
    Case(
        KIND,
        "DiscretizedLogisticMixture(mixtures='10')",
        TypeError,
        r"mixtures must be an int, got str '10'",
    ),
    Case(
        KIND,
        "BinarizedBatches(torch.rand(4, 1, 2, 2), batch_size=2.0)",
        TypeError,
        r"batch_size must be an int, got float 2.0; pass 2",
    ),
    Case(KIND, "mask_groups(0)", ValueError, r"data_channels must be >= 1, got 0"),
    Case(
        KIND,
        "BinarizedBatches(torch.rand(4, 1, 2, 2), batch_size=-1)",
        ValueError,
        r"batch_size must be >= 1, got -1",
    ),
    Case(KIND, "PixelCNN().log_prob([[0.0]])", TypeError, r"x must be a torch.Tensor .* got list"),
    Case(
        KIND,
        "Categorical(4, input=None)",
        ValueError,
        r"input must be 'scaled' .* or 'index' .*, got None",
    ),
    # configuration: types and ranges, named
    Case(CFG, "PixelCNNConfig(num_blocks=True)", TypeError, r"num_blocks must be an int, got bool"),
    Case(CFG, "PixelCNNConfig(hidden_channels=64.0)", TypeError, r"hidden_channels must be an int"),
    Case(CFG, "PixelCNNConfig(data_channels='3')", TypeError, r"data_channels must be an int"),
    Case(CFG, "PixelCNNConfig(image_size=28)", TypeError, r"image_size must be a pair \(H, W\)"),
    Case(CFG, "PixelCNNConfig(image_size=(28, 0))", ValueError, r"image_size must be >= 1"),
    Case(CFG, "PixelCNNConfig(block='dense')", ValueError, r"block must be one of"),
    Case(CFG, "PixelCNNConfig(hidden_channels=7)", ValueError, r"positive multiple of 2"),
    Case(CFG, "PixelCNNConfig(kernel_size=4)", ValueError, r"odd positive int"),
    Case(
        CFG,
        "PixelCNNConfig(block='snail', data_channels=3, hidden_channels=6, attention_heads=2)",
        ValueError,
        r"attention_heads=2 must be a multiple of 3",
    ),
    Case(CFG, "PixelCNNConfig(block='snail', num_blocks=0)", ValueError, r"too small for block"),
    Case(CFG, "PixelCNNConfig.preset('huge')", ValueError, r"unknown preset 'huge'"),
    Case(
        CFG,
        "PixelCNNConfig(input_embedding='learned')",
        ValueError,
        r"input_embedding='learned' embeds categories and needs distribution='categorical'",
    ),
    Case(CFG, "PixelCNNConfig(input_embedding='codes')", ValueError, r"input_embedding must be"),
    Case(
        CFG,
        "PixelCNNConfig(distribution='logistic_mixture', mixtures=0)",
        ValueError,
        r"mixtures must be >= 1",
    ),
    Case(
        CFG,
        "DiscretizedLogisticMixture(levels=1)",
        ValueError,
        r"levels must be >= 2, got 1 \(2 \*\* bits",
    ),
    Case(
        CFG,
        "PixelCNNConfig(distribution='categorical', levels=10**9)",
        ValueError,
        r"levels=1,000,000,000 is too many for a categorical output",
    ),
    # layers: arguments and settings changed after construction
    Case(LAYER, "MaskedConv2d(True, 8, 3)", TypeError, r"in_channels must be an int, got bool"),
    Case(LAYER, "MaskedConv2d(1, 8, 4)", ValueError, r"kernel_size must be odd"),
    Case(LAYER, "MaskedConv2d(1, 8, 3, 'C')", ValueError, r"mask_type must be 'A'"),
    Case(
        LAYER,
        "CausalSelfAttention2d(8, heads=2, data_channels=3)",
        ValueError,
        r"channels=8 is not divisible by data_channels=3",
    ),
    Case(
        LAYER,
        "CausalSelfAttention2d(6, heads=2, data_channels=3)",
        ValueError,
        r"heads=2 is not divisible by data_channels=3: .* use a multiple of 3",
    ),
    Case(LAYER, "CausalSelfAttention2d(8, heads=0)", ValueError, r"heads must be >= 1, got 0"),
    Case(LAYER, "CausalSelfAttention2d(8, mask_type='C')", ValueError, r"mask_type must be 'A'"),
    Case(
        LAYER,
        "CausalSelfAttention2d(8, extra_channels=1)(torch.zeros(1, 8, 3, 3))",
        ValueError,
        r"extra_channels=1 needs extra \(N, E, H, W\)",
    ),
    Case(
        LAYER,
        "CausalSelfAttention2d(8)(torch.zeros(1, 8, 3, 3), torch.zeros(1, 1, 3, 3))",
        ValueError,
        r"extra_channels=0 takes no extra input: leave it out",
    ),
    Case(
        LAYER,
        "CausalSelfAttention2d(8)(torch.zeros(1, 4, 3, 3))",
        ValueError,
        r"expects x of shape \(N, 8, H, W\), got \(1, 4, 3, 3\)",
    ),
    Case(LAYER, "GatedResidualBlock(4, kernel_size=2)", ValueError, r"kernel_size must be odd"),
    Case(
        LAYER,
        "GatedResidualBlock(4, data_channels=3)",
        ValueError,
        r"channels=4 is not divisible by data_channels=3",
    ),
    Case(LAYER, "SnailStack(1, 8, num_blocks=0)", ValueError, r"num_blocks must be >= 1, got 0"),
    Case(LAYER, "MaskedConv2d(3, 8, 3, data_channels=3)", ValueError, r"not divisible by data"),
    Case(
        LAYER, "MaskedConv2d(1, 8, 3, data_channels=0)", ValueError, r"data_channels must be >= 1"
    ),
    Case(
        LAYER,
        "strided(padding_mode='circular')(torch.zeros(1, 1, 4, 4))",
        ValueError,
        r"settings changed after construction",
    ),
    Case(
        LAYER,
        "strided(stride=(2, 2))(torch.zeros(1, 1, 4, 4))",
        ValueError,
        r"would see future pixels",
    ),
    Case(
        LAYER,
        "ResidualBlock(8)(torch.zeros(1, 8, 4, 4), Conditioning(torch.zeros(1, 3)))",
        ValueError,
        r"takes no conditioning vector \(cond_channels=None\) but got one",
    ),
    Case(
        LAYER,
        "ResidualBlock(8, cond_channels=3)(torch.zeros(1, 8, 4, 4), "
        "Conditioning(torch.zeros(1, 5)))",
        ValueError,
        r"vector must have shape \(1, 3\), got \(1, 5\)",
    ),
    Case(
        LAYER,
        "ResidualBlock(8, cond_channels=3)(torch.zeros(1, 8, 4, 4), torch.zeros(1, 3))",
        TypeError,
        r"got a tensor: wrap a vector as Conditioning\(vector=v\)",
    ),
    Case(
        LAYER,
        "GatedBlock(1, 4, mask_type='A', spatial_channels=2)(torch.zeros(1, 1, 4, 4), "
        "torch.zeros(1, 1, 4, 4), Conditioning(spatial=torch.zeros(1, 2, 3, 3)))",
        ValueError,
        r"spatial map must have the images' size: shape \(1, 2, 4, 4\)",
    ),
    Case(
        LAYER,
        "ResidualBlock(8, act_layer=lambda: nn.Softmax(dim=1))",
        ValueError,
        r"is not elementwise",
    ),
    Case(LAYER, "GatedBlock(1, 8, 1, 'A')", ValueError, r"at least 3 rows high"),
    Case(
        LAYER,
        "ConvKernel(MaskedConv2d(1, 2, 3, 'A').weight.detach())",
        ValueError,
        r"nonzero taps after the centre .* MaskedConv2d.masked_weight\(\)",
    ),
    Case(
        LAYER,
        "CategoricalEmbedding(512, embedding_dim=16, learned=False)",
        ValueError,
        r"a one-hot embedding has width levels=512",
    ),
    # samplers: network, noise and conditioning checked before H * W steps
    Case(SAMPLE, f"naive_sample(net('B'), Bernoulli(), {NOISE})", ValueError, r"not causal"),
    Case(
        SAMPLE,
        f"naive_sample(net(out=2), Bernoulli(), {NOISE})",
        ValueError,
        r"the distribution needs 1 channels",
    ),
    Case(
        SAMPLE,
        f"cached_sample(net(), Categorical(4), {NOISE})",
        ValueError,
        r"the distribution needs 4 channels",
    ),
    Case(
        SAMPLE,
        "cached_sample(net(), Bernoulli(), torch.full((2, 1, 4, 4), 1.0))",
        ValueError,
        r"noise must lie in \[0, 1\)",
    ),
    Case(
        SAMPLE,
        "naive_sample(net(), Bernoulli(), torch.rand(2, 4, 4))",
        ValueError,
        r"noise must have shape \(N, C, H, W\)",
    ),
    Case(
        SAMPLE,
        f"cached_sample(net(), Bernoulli(), {NOISE}, cond=Conditioning(torch.zeros(2, 3)))",
        ValueError,
        r"takes no such conditioning \(no layer has cond_channels\)",
    ),
    Case(SAMPLE, "draw_noise((2, 1, 0, 4))", ValueError, r"shape\[2\] must be >= 1"),
    Case(
        SAMPLE,
        "naive_sample(net(), Bernoulli(), torch.zeros(2, 1, 4, 4, dtype=torch.long))",
        ValueError,
        r"noise must be a floating-point tensor from draw_noise",
    ),
    Case(
        SAMPLE,
        f"cached_sample(net(out=3), DiscretizedLogisticMixture(1), {NOISE})",
        ValueError,
        r"has C \+ 1 channels \(one for the component",
    ),
    Case(
        SAMPLE,
        "dlm().sample(image=torch.zeros(1, 3, 2, 2), known=torch.tensor([True, False, False])"
        ".view(1, 3, 1, 1).expand(1, 3, 2, 2))",
        ValueError,
        r"completes whole pixels",
    ),
    Case(
        SAMPLE,
        "PixelCNN(PixelCNNConfig(num_blocks=1)).sample(1, size=(2, 2), "
        "sampler=CachedSampler(rows_at_once=1))",
        TypeError,
        r"rows_at_once must be None, True or False, got 1",
    ),
    Case(
        SAMPLE,
        "CachedSampler(progress='yes')",
        TypeError,
        r"progress must be True \(a tqdm bar\), False or a function progress\(rows_done, rows\)",
    ),
    Case(
        SAMPLE,
        "CachedSampler(cuda_graphs=True, rows_at_once=True)",
        ValueError,
        r"choose cuda_graphs=True or rows_at_once=True, not both",
    ),
    Case(
        SAMPLE,
        "naive_sample(CausalSequential(MaskedConv2d(1, 4, 3, 'A'), nn.Dropout(), "
        f"MaskedConv2d(4, 1, 1)), Bernoulli(), {NOISE})",
        ValueError,
        r"is in training mode, where it does not compute the model's distribution",
    ),
    Case(
        SAMPLE,
        "naive_sample(leaky(), Bernoulli(), draw_noise((2, 1, 1, 3)))",
        ValueError,
        r"the network is not causal",
    ),
    # model inputs
    Case(MODEL, "PixelCNN('reference')", TypeError, r"config must be a PixelCNNConfig"),
    Case(
        MODEL,
        "PixelCNN().log_prob(torch.full((2, 1, 4, 4), 0.5))",
        ValueError,
        r"binary images with values in \{0, 1\}",
    ),
    Case(
        MODEL,
        "conditioned().log_prob(torch.zeros(2, 1, 4, 4), "
        "Conditioning(labels=torch.zeros(2).long(), vector=torch.zeros(2, 4)))",
        ValueError,
        r"conditioned on a spatial map: pass Conditioning\(spatial=...\) of shape \(2, 2, 4, 4\)",
    ),
    Case(
        MODEL,
        "conditioned().sample(2, Conditioning(labels=torch.zeros(2).long(), "
        "vector=torch.zeros(2, 4), spatial=torch.zeros(2, 2, 5, 5)), size=(4, 4))",
        ValueError,
        r"spatial must have shape \(2, 2, 4, 4\), got \(2, 2, 5, 5\)",
    ),
    Case(
        MODEL,
        "PixelCNN().log_prob(torch.zeros(2, 1, 4, 4), Conditioning(vector=torch.zeros(2, 4)))",
        ValueError,
        r"takes no vector \(vector_size=None\): leave Conditioning.vector unset",
    ),
    Case(
        MODEL,
        "dlm().log_prob(torch.full((1, 3, 2, 2), 1.5))",
        ValueError,
        r"DiscretizedLogisticMixture model needs integer pixel values in \[0, 4\)",
    ),
    Case(MODEL, "PixelCNN().sample('3')", TypeError, r"n must be an int, got str"),
    Case(
        MODEL,
        "AutoregressiveModel(nn.ReLU(), Bernoulli())",
        ValueError,
        r"the network has no parameters; they fix the model's device and dtype",
    ),
    Case(
        MODEL,
        "AutoregressiveModel(net(), 'bernoulli')",
        TypeError,
        r"distribution must be a Distribution, e\.g\. Bernoulli\(\) or Categorical\(levels\)",
    ),
    Case(
        MODEL,
        "PixelCNN().log_prob(torch.zeros(2, 1, 4, 4), chunk_size=0)",
        ValueError,
        r"log_prob: chunk_size must be >= 1, got 0",
    ),
    Case(
        MODEL,
        "conditioned().log_prob(torch.zeros(2, 1, 6, 6), Conditioning("
        "labels=torch.zeros(2).long(), vector=torch.zeros(2, 4), spatial=torch.zeros(2, 2, 4, 4)))",
        ValueError,
        r"a map's \(h, w\) must be the images' \(6, 6\) or divide them \(a lower resolution, "
        r"upsampled by nearest neighbour\)",
    ),
    Case(
        MODEL,
        "PixelCNN().sample(2, sampler='naive')",
        TypeError,
        r"sampler must be a Sampler, e\.g\. CachedSampler\(\) or NaiveSampler\(\)",
    ),
    Case(
        MODEL,
        "conditioned().network(torch.zeros(2, 1, 4, 4), "
        "Conditioning(labels=torch.zeros(2).long()))",
        ValueError,
        r"takes no labels: a layer or a sampler takes Conditioning\(vector=..., spatial=...\)",
    ),
    Case(MODEL, "PixelCNN().sample(2, size=[4])", TypeError, r"size must be an int or a pair"),
    Case(MODEL, "PixelCNN()(torch.zeros(1, 1, 0, 5))", ValueError, r"at least one row and one"),
    Case(MODEL, "PixelCNN().sample(2, temperature=True)", TypeError, r"temperature must be a posi"),
    Case(
        MODEL,
        "PixelCNN().sample(2, temperature=torch.tensor([0.5, 2.0]))",
        TypeError,
        r"temperature must be a positive float, got a tensor",
    ),
    Case(
        MODEL,
        "dlm().sample(image=torch.zeros(3, 3, 2, 2), known=torch.ones(3, 2, 2, dtype=torch.bool))",
        ValueError,
        r"for a 3-D mask say which it is: known\[:, None\] masks each image",
    ),
    # training
    Case(TRAIN, "step('bf16')", TypeError, r"precision must be a Precision or None, got str"),
    Case(
        TRAIN,
        "step(batch=torch.zeros(2, 4, 4))",
        ValueError,
        r"images must be a tensor \(n, C, H, W\), got shape \(2, 4, 4\); add a channel dim",
    ),
    Case(
        TRAIN,
        "step(batch=torch.zeros(0, 1, 4, 4))",
        ValueError,
        r"the global batch must hold this process's 0 images and at least one, got total=0",
    ),
    # training helpers: batches in the forms a DataLoader yields, an objective per image
    Case(
        TRAIN,
        "as_batch({'pixels': torch.zeros(2, 1, 4, 4)})",
        TypeError,
        r"a dict of 'images' and any of 'labels', 'vector', 'spatial'; got a dict of \['pixels'\]",
    ),
    Case(
        TRAIN,
        "train_step(small(), torch.optim.SGD(small().parameters(), 0.1), torch.ones(2, 1, 4, 4), "
        "device=torch.device('cpu'))",
        ValueError,
        r"the objective is the model itself.*pass NegLogLikelihood\(model\) as the objective",
    ),
    # checkpoints: every damaged byte, old files
    Case(
        CKPT,
        "load_checkpoint(checkpoint(tmp, flip_at=5))",
        CheckpointError,
        r"truncated or corrupted .*SHA-256 checksum does not match",
    ),
    Case(
        CKPT,
        "load_checkpoint(checkpoint(tmp, seal=False))",
        CheckpointError,
        r"has no SHA-256 checksum .*require_checksum=False",
    ),
    Case(CKPT, "load_checkpoint(tmp / 'absent.pt')", CheckpointError, r"no checkpoint at"),
    Case(
        CKPT,
        "load_pretrained('mnist-demo', folder=registry(tmp, '{not json'))",
        ChecksumError,
        r"registry.json is damaged .*reinstall the package",
    ),
    Case(
        CKPT,
        """load_pretrained('x', folder=registry(tmp, '{"x": {"file": "x.pt"}}'))""",
        ChecksumError,
        r"the entry 'x' must be an object with the strings file, sha256",
    ),
    Case(
        CKPT,
        "PixelCNN.from_pretrained('mnist-demo', device='cuda:7')",
        ValueError,
        r"device='cuda:7', but this machine has \d CUDA device",
    ),
    Case(
        CKPT,
        "PixelCNN.from_pretrained('mnist-demo', device='gpu')",
        ValueError,
        r"device='gpu' is not a device: use e.g. 'cpu', 'cuda' or 'cuda:0'",
    ),
    Case(CKPT, "file_sha256(tmp / 'absent.pt')", ValueError, r"no file at"),
    Case(
        CKPT,
        "save_checkpoint(tmp, {'w': torch.zeros(2)})",
        ValueError,
        r"cannot write .*: it is a directory; pass the path of a file",
    ),
    Case(
        CKPT,
        "save_checkpoint(checkpoint(tmp) / 'c.pt', {'w': torch.zeros(2)})",
        ValueError,
        r"checkpoint.pt is a file, not a folder",
    ),
    # MNIST files: header, sizes, counts, named
    Case(
        DATA,
        "load_mnist(mnist(tmp, labels=4), download=False)",
        IDXError,
        r"train-labels-idx1-ubyte holds 4 labels but the image file beside it holds 3",
    ),
    Case(
        DATA,
        "load_mnist(mnist(tmp, magic=0x0903), download=False)",
        IDXError,
        r"train-images-idx3-ubyte has magic number 0x00000903",
    ),
    Case(
        DATA,
        "load_mnist(mnist(tmp, cut=5), download=False)",
        IDXError,
        r"train-images-idx3-ubyte has 43 bytes of data .*truncated or damaged",
    ),
    # CIFAR-10 files read without checksums: the file and the fix named
    Case(
        COLOUR,
        "read_cifar10(cifar(tmp, keep=100), train=False)",
        ValueError,
        r"test_batch is not a CIFAR-10 batch file \(UnpicklingError: pickle data was truncated\)"
        r": it is truncated or damaged. Extract test_batch again",
    ),
    # compression: streams refused with what differs, never decoded into other images
    Case(CODE, "compress(small(), torch.full((1, 1, 2, 2), 2.0))", ValueError, r"binary images"),
    Case(CODE, "decompress(small(), b'GIF89a')", StreamError, r"not a stream written by"),
    Case(
        CODE,
        "decompress(small(), compress(small(), torch.ones(1, 1, 3, 3))[:-2])",
        StreamError,
        r"the stream is truncated",
    ),
    Case(
        CODE,
        "decompress(small(1), compress(small(0), torch.ones(1, 1, 3, 3)))",
        StreamError,
        r"compressed by another model \(config or weights\)",
    ),
    Case(
        CODE,
        "decompress(small().double(), compress(small(), torch.ones(1, 1, 3, 3)))",
        StreamError,
        r"a model in torch.float32, this one is in torch.float64",
    ),
    # out-of-distribution scores: a probability, values the levels hold, models of one kind
    Case(OOD, "perturb(torch.zeros(4), 1.5, 2)", ValueError, r"rate is a probability; pass a"),
    Case(OOD, "perturb(torch.zeros(4), -0.1, 2)", ValueError, r"rate must be a finite number"),
    Case(OOD, "perturb(torch.full((4,), 0.5), 0.1, 2)", ValueError, r"integer values in \[0, 2\)"),
    Case(OOD, "perturb(torch.full((4,), 2.0), 0.1, 2)", ValueError, r"integer values in \[0, 2\)"),
    Case(OOD, "perturb(torch.zeros(4).byte(), 0.1, 300)", ValueError, r"torch.uint8 cannot hold"),
    Case(OOD, "perturb(torch.zeros(4, dtype=torch.bool), 0.1, 3)", ValueError, r"pass 2"),
    Case(
        OOD,
        "likelihood_ratio(small(), dlm(), torch.zeros(1, 1, 3, 3))",
        ValueError,
        r"model different images \(distribution 'Bernoulli' vs 'DiscretizedLogisticMixture'",
    ),
    Case(
        OOD,
        "likelihood_ratio(small(), small().network, torch.zeros(1, 1, 3, 3))",
        TypeError,
        r"background must be an AutoregressiveModel such as a PixelCNN",
    ),
    Case(
        OOD,
        "log_likelihood(small(), torch.zeros(1, 1, 3, 3), chunk_size=0)",
        ValueError,
        r"log_likelihood: chunk_size must be",
    ),
]


def run(case: Case, tmp: Path) -> BaseException | None:
    """Run ``case.code`` in a scratch folder; the exception it raised, or ``None``."""
    try:
        eval(case.code, {**NAMESPACE, "tmp": tmp})  # the code is ours, from the table above
    except Exception as err:
        return err
    return None


# --------------------------------------------------------------------------- the oracle
def _innermost(tb: TracebackType | None) -> TracebackType | None:
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def is_library_error(err: BaseException, caller: str | None = None) -> bool:
    """A ``ValueError``/``TypeError`` with a message, raised by a ``raise`` in the library.

    Python's own argument binding of a call made in the file ``caller`` (an unexpected
    keyword) counts too: it names the argument.
    """
    if not isinstance(err, (ValueError, TypeError)) or not str(err).strip():
        return False
    tb = _innermost(err.__traceback__)
    if tb is None:
        return False
    filename = Path(tb.tb_frame.f_code.co_filename)
    if caller is not None and filename == Path(caller):
        return isinstance(err, TypeError) and "argument" in str(err)
    if PACKAGE not in filename.parents:
        return False
    code, offset = tb.tb_frame.f_code, tb.tb_lasti  # the instruction that raised: a `raise`?
    return any(
        i.offset == offset and i.opname == "RAISE_VARARGS" for i in dis.get_instructions(code)
    )


#: for the docs page: each area's cases, in table order
def by_area() -> dict[str, list[Case]]:
    areas: dict[str, list[Case]] = {}
    for case in CASES:
        areas.setdefault(case.area, []).append(case)
    return areas
