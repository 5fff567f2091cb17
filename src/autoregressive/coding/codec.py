"""Lossless compression of images with a model's own conditionals, by range coding.

An entropy coder driven by a model stores an image in about ``-log2 p(x)`` bits, its negative
log-likelihood; a PixelCNN gives every sub-pixel's conditional distribution one step at a time,
which is what the cached sampler computes. :func:`decompress` is therefore sampling with the
coder choosing each value instead of the noise
(:meth:`CachedSampler.sample_with_choice <autoregressive.Sampler.sample_with_choice>`), and
:func:`compress` runs the very same steps, the choice handing back the known values: the two
compute bit-identical probabilities because they perform the same operations on the same
inputs. The range coder is `constriction <https://bamler-lab.github.io/constriction/>`_'s
(Bamler, *Understanding Entropy Coding With Asymmetric Numeral Systems (ANS): a Statistician's
Perspective*, 2022, https://arxiv.org/abs/2201.01741), installed by the ``compression`` extra.

Each channel's table of probabilities (float64, from
:meth:`Distribution.pick_channels <autoregressive.Distribution.pick_channels>`) is quantised
by constriction's leaky categorical model (``perfect=False``) to integer frequencies of 24
bits: deterministic, and every value keeps at least one count, so a value the model all but
rules out costs at most about 24 bits and any image can be coded.

What must match for a stream to decode: the model's config and weights, its dtype and the
device type (checked, from the header), the conditioning (checked by a fingerprint), and the
batch the images were coded in (stored). The rest of the arithmetic (the torch version, the
kernels of a device type) is expected to match too; if it does not, the decoded images' digest
differs from the stored one and :func:`decompress` raises rather than return other images.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from types import ModuleType

import numpy as np
import torch

from ..conditioning import Conditioning
from ..models.pixelcnn import PixelCNN
from ..sampling.cached import CachedSampler
from ..validation import check_int
from .format import (
    DTYPES,
    StreamError,
    StreamHeader,
    device_type,
    digest,
    fingerprint,
    read_stream,
)

__all__ = ["compress", "decompress"]

#: the default number of images coded together (one network step serves all of them)
BATCH = 64
#: what ``pick`` receives and returns: a channel's probabilities (N, L) -> its values (N,)
Pick = Callable[[torch.Tensor], torch.Tensor]


def constriction() -> ModuleType:
    """The ``constriction`` package, or an ``ImportError`` that names the extra to install."""
    try:
        return importlib.import_module("constriction")
    except ImportError as err:
        raise ImportError(
            "compression needs the constriction package: pip install "
            '"autoregressive[compression]" (or pip install constriction)'
        ) from err


def compress(
    model: PixelCNN,
    images: torch.Tensor,
    cond: torch.Tensor | Conditioning | None = None,
    *,
    batch_size: int = BATCH,
) -> bytes:
    """Compress ``images`` losslessly with ``model``'s conditionals (see the module docstring).

    The stream takes about the images' negative log-likelihood under the model in bits, plus
    54 bytes of header and checksum and a few bytes of the coder's last words.

    Args:
        model: a :class:`~autoregressive.PixelCNN` (any distribution); decompress with the
            same model, dtype and device type.
        images: ``(N, C, H, W)`` values the model scores: binary for Bernoulli, integers in
            ``[0, levels)`` otherwise.
        cond: the model's conditioning of the images (labels ``(N,)`` or a
            :class:`~autoregressive.Conditioning`), as for :meth:`PixelCNN.log_prob`; pass the
            same to :func:`decompress`.
        batch_size: images coded together; larger batches run faster per image, and
            :func:`decompress` uses the same (it is stored).

    Returns:
        The stream.

    Raises:
        TypeError: ``model`` is not a PixelCNN, or ``images`` not a tensor.
        ValueError: images or conditioning that the model cannot score, or sizes beyond the
            format's (``N < 2**32``; ``C``, ``H``, ``W`` ``< 2**16``).
        ImportError: constriction is not installed.

    Shape:
        - ``images``: :math:`(N, C, H, W)`

    Example:
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8))
        >>> x = torch.randint(0, 2, (3, 1, 6, 6)).float()
        >>> torch.equal(decompress(model, compress(model, x)), x)
        True
    """
    coder = constriction()  # first: a missing extra is the first thing to fix
    batch_size = check_int("batch_size", batch_size, 1, owner="compress")
    _check_model(model)
    model.check_input(images)
    model.distribution.validate(images)  # whatever validate_args says: a stream is exact
    n, c, h, w = images.shape
    shape = (n, c, h, w)
    if n < 1:
        raise ValueError("compress: images must hold at least one image, got N = 0")
    if n >= 2**32 or max(c, h, w) >= 2**16:
        raise ValueError(
            f"compress: images of shape {shape} exceed the format's N < 2**32, C, H, W < 2**16"
        )
    parts = model.condition(cond, n, size=(h, w))
    header = _header(model, shape, batch_size, parts, images)
    return header.pack(_encode(coder, model, images, parts, batch_size))


def decompress(
    model: PixelCNN,
    data: bytes,
    cond: torch.Tensor | Conditioning | None = None,
) -> torch.Tensor:
    """The images that :func:`compress` stored in ``data``, exactly.

    Args:
        model: the model that compressed them (same config, weights, dtype, device type).
        data: the stream.
        cond: the conditioning passed to :func:`compress`.

    Returns:
        The images ``(N, C, H, W)`` on the model's device: float ``{0, 1}`` in the model's
        dtype for Bernoulli, ``long`` otherwise (what :meth:`PixelCNN.sample` returns).

    Raises:
        TypeError: ``model`` is not a PixelCNN, or ``data`` not bytes.
        ~autoregressive.coding.format.StreamError: (a ``ValueError``) the stream is damaged,
            truncated, of another format, of another model, dtype or device type, or of other
            conditioning; or the decoded images differ from those compressed.
        ImportError: constriction is not installed.

    Shape:
        - Output: :math:`(N, C, H, W)`

    Example:
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8))
        >>> data = compress(model, torch.ones(1, 1, 4, 4))
        >>> decompress(model, data).shape
        torch.Size([1, 1, 4, 4])
    """
    coder = constriction()
    _check_model(model)
    stream = read_stream(data)
    header = stream.header
    parts = _check_header(model, header, cond)
    chunks = _decode(coder, model, header, stream.payload, parts)
    param = next(model.network.parameters())
    images = torch.cat(chunks).to(model.distribution.output_dtype(param.dtype))
    if digest({"images": images.long().cpu()}, 8) != header.images:
        raise StreamError(
            "the decoded images differ from those compressed: the stream was made by other "
            "arithmetic (another torch version or device) or it was altered; decompress it "
            "where it was compressed"
        )
    return images


def _encode(
    coder: ModuleType,
    model: PixelCNN,
    images: torch.Tensor,
    parts: Conditioning | None,
    batch_size: int,
) -> bytes:
    """The payload of ``images`` ``(N, C, H, W)``: range-coded batch by batch, in order."""
    encoder = coder.stream.queue.RangeEncoder()
    family = coder.stream.model.Categorical(perfect=False)
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size]
        values = iter(_symbols(chunk))

        def pick(
            probabilities: torch.Tensor, values: Iterator[torch.Tensor] = values
        ) -> torch.Tensor:
            value = next(values)
            encoder.encode(value.numpy().astype(np.int32), family, _table(probabilities))
            return value

        coded = _run(model, chunk.shape, _slice(parts, start, batch_size), pick)
        if not torch.equal(coded.long().cpu(), chunk.long().cpu()):
            raise RuntimeError("compress: the coding run did not reproduce its images")
    return encoder.get_compressed().astype("<u4").tobytes()


def _table(probabilities: torch.Tensor) -> np.ndarray:
    """A channel's probabilities ``(N, L)`` as the coder takes them: C-contiguous float64."""
    return np.ascontiguousarray(probabilities.numpy(), dtype=np.float64)


def _decode(
    coder: ModuleType,
    model: PixelCNN,
    header: StreamHeader,
    payload: bytes,
    parts: Conditioning | None,
) -> list[torch.Tensor]:
    """The images of a checked stream, batch by batch as they were coded, ``(B, C, H, W)``."""
    n = header.shape[0]
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    decoder = coder.stream.queue.RangeDecoder(words)
    family = coder.stream.model.Categorical(perfect=False)

    def pick(probabilities: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(decoder.decode(family, _table(probabilities)).astype(np.int64))

    chunks = []
    for start in range(0, n, header.batch):
        shape = (min(header.batch, n - start), *header.shape[1:])
        try:
            chunks.append(_run(model, shape, _slice(parts, start, header.batch), pick))
        except (ValueError, RuntimeError) as err:  # the coder's refusal of its words
            raise StreamError(f"the stream's payload cannot be decoded ({err})") from err
    return chunks


def _check_model(model: object) -> None:
    if not isinstance(model, PixelCNN):
        raise TypeError(
            f"model must be a PixelCNN (e.g. PixelCNN.from_pretrained(...)), got "
            f"{type(model).__name__}"
        )


def _run(
    model: PixelCNN, shape: tuple[int, ...], parts: Conditioning | None, pick: Pick
) -> torch.Tensor:
    """One batch of images ``(N, C, H, W)``, each channel's value chosen by ``pick``.

    The cached sampler's step-by-step path, the coder choosing instead of the noise; the
    tables are computed on the CPU in float64 from the step's raw parameters.
    """
    dist = model.distribution
    param = next(model.network.parameters())
    n, c, h, w = shape
    noise = torch.full((n, dist.noise_channels(c), h, w), 0.5, dtype=torch.float64)

    def choose(raw: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return dist.pick_channels(raw.to("cpu", torch.float64), pick).to(raw.device)

    was_training = model.training
    model.eval()
    try:
        return CachedSampler().sample_with_choice(
            model.network, dist, noise.to(param.device), choose, cond=parts
        )
    finally:
        model.train(was_training)


def _symbols(images: torch.Tensor) -> list[torch.Tensor]:
    """The values of ``(N, C, H, W)`` images in coding order: ``H * W * C`` tensors ``(N,)``."""
    order = images.long().cpu().permute(2, 3, 1, 0)  # (H, W, C, N)
    return list(order.reshape(-1, images.shape[0]).unbind(0))


def _slice(parts: Conditioning | None, start: int, size: int) -> Conditioning | None:
    """The conditioning of images ``start .. start + size``."""
    if parts is None:
        return None
    vector, spatial = (
        None if t is None else t[start : start + size] for t in (parts.vector, parts.spatial)
    )
    return Conditioning(vector, spatial)


def _cond_print(parts: Conditioning | None) -> bytes:
    """4 bytes that change with the network's conditioning (labels as their one-hot vector)."""
    given = {} if parts is None else {"vector": parts.vector, "spatial": parts.spatial}
    return digest({k: t for k, t in given.items() if t is not None}, 4)


def _model_print(model: PixelCNN) -> bytes:
    param = next(model.network.parameters())
    config = model.config.to_dict()
    return fingerprint(config, model.distribution, model.state_dict(), param.dtype)


def _header(
    model: PixelCNN,
    shape: tuple[int, int, int, int],
    batch: int,
    parts: Conditioning | None,
    images: torch.Tensor,
) -> StreamHeader:
    """The header of a stream of ``images``, after checking that the format can name it."""
    param = next(model.network.parameters())
    if param.dtype not in DTYPES:
        raise ValueError(f"compress: a model in {param.dtype} cannot be coded; use float32")
    return StreamHeader(
        model.config.distribution,
        param.dtype,
        device_type(param.device),
        shape,
        min(batch, shape[0]),
        _model_print(model),
        _cond_print(parts),
        digest({"images": images.long().cpu()}, 8),
    )


def _check_header(
    model: PixelCNN, header: StreamHeader, cond: torch.Tensor | Conditioning | None
) -> Conditioning | None:
    """The network's conditioning, after checking the stream was made by this model with it."""
    param = next(model.network.parameters())
    again = "decompress it with the model that compressed it"
    if header.distribution != model.config.distribution:
        raise StreamError(
            f"the stream was compressed by a {header.distribution} model, this model is "
            f"{model.config.distribution}: {again}"
        )
    if header.dtype != param.dtype:
        raise StreamError(
            f"the stream was compressed by a model in {header.dtype}, this one is in "
            f"{param.dtype}: convert it with model.to({header.dtype})"
        )
    if header.device_type != device_type(param.device):
        raise StreamError(
            f"the stream was compressed on a {header.device_type} device, this model is on "
            f"{param.device}: decompress on a device of the same type"
        )
    if header.model != _model_print(model):
        raise StreamError(
            f"the stream was compressed by another model (config or weights): {again}"
        )
    n, _, height, width = header.shape
    parts = model.condition(cond, n, size=(height, width))
    if header.cond != _cond_print(parts):
        raise StreamError(
            "the conditioning differs from the one the images were compressed with: pass the "
            "same cond to decompress as to compress"
        )
    return parts
