"""The compressed stream's layout: a fixed header, the coder's words, a checksum.

Every number is little-endian::

    offset  size  field
         0     3  magic b"ARc"
         3     1  format version (1)
         4     1  distribution: 0 bernoulli, 1 categorical, 2 logistic_mixture
         5     1  the model's dtype: 0 float16, 1 bfloat16, 2 float32, 3 float64
         6     1  the device type that ran the model: 0 cpu, 1 cuda, 2 another
         7     1  reserved (0)
         8     4  N, the images
        12     2  C
        14     2  H
        16     2  W
        18     4  the batch the images were coded in (the last one may be smaller)
        22     8  the model's fingerprint: config, distribution, dtype and weights
        30     4  the conditioning's fingerprint
        34     8  the images' digest: checked after decoding
        42     4  the payload's length in bytes, a multiple of 4
        46     -  the payload: the range coder's 32-bit words
       end    -8  checksum: the first 8 bytes of the SHA-256 of everything before it

Fingerprints and digests are the first bytes of SHA-256 digests (:mod:`hashlib`). The header
is :data:`HEADER_BYTES` + :data:`CHECKSUM_BYTES` = 54 bytes per stream, whatever its images.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

import torch

from ..checksums import tensors_sha256

__all__ = ["HEADER_BYTES", "StreamError", "StreamHeader", "fingerprint", "read_stream"]

MAGIC = b"ARc"
VERSION = 1
#: the distributions a stream may hold, by their index in the header
DISTRIBUTIONS = ("bernoulli", "categorical", "logistic_mixture")
#: the model dtypes a stream may name, by their index in the header
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: the device types a stream may name; any other is stored as the last
DEVICE_TYPES = ("cpu", "cuda", "another")
_LAYOUT = struct.Struct("<3sBBBBBIHHHI8s4s8sI")
#: bytes before the payload
HEADER_BYTES = _LAYOUT.size
#: bytes of the checksum after it
CHECKSUM_BYTES = 8


class StreamError(ValueError):
    """A stream that cannot be decompressed: damaged, truncated, or of another model or input.

    Example:
        >>> import autoregressive.coding
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4))
        >>> data = compress(model, torch.zeros(1, 1, 3, 3))
        >>> try:
        ...     decompress(model, data[:-1])
        ... except autoregressive.coding.StreamError as err:
        ...     print(err)  # doctest: +ELLIPSIS
        the stream is truncated: ... bytes, its header says ...
    """


@dataclass(frozen=True)
class StreamHeader:
    """What a stream's header records (see the module docstring for the layout).

    Example:
        >>> from autoregressive.coding.format import StreamHeader, read_stream
        >>> header = StreamHeader("bernoulli", torch.float32, "cpu", (2, 1, 4, 4), 2,
        ...                       b"m" * 8, b"c" * 4, b"i" * 8)
        >>> read_stream(header.pack(b"")).header == header
        True
    """

    distribution: str  # a name of DISTRIBUTIONS
    dtype: torch.dtype  # the model's
    device_type: str  # a name of DEVICE_TYPES
    shape: tuple[int, int, int, int]  # (N, C, H, W)
    batch: int  # images coded together
    model: bytes  # 8 bytes, fingerprint()
    cond: bytes  # 4 bytes
    images: bytes  # 8 bytes, digest of the images

    def pack(self, payload: bytes) -> bytes:
        """The whole stream: header, ``payload`` and checksum."""
        head = _LAYOUT.pack(
            MAGIC, VERSION, DISTRIBUTIONS.index(self.distribution), DTYPES.index(self.dtype),
            DEVICE_TYPES.index(self.device_type), 0, *self.shape, self.batch, self.model,
            self.cond, self.images, len(payload),
        )  # fmt: skip
        body = head + payload
        return body + hashlib.sha256(body).digest()[:CHECKSUM_BYTES]


@dataclass(frozen=True)
class Stream:
    """A stream read back: its header and its payload."""

    header: StreamHeader
    payload: bytes


def read_stream(data: bytes) -> Stream:
    """Parse and verify a stream (magic, version, length, checksum).

    Args:
        data: what :func:`~autoregressive.compress` returned.

    Returns:
        The header and the payload.

    Raises:
        TypeError: ``data`` is not ``bytes``.
        StreamError: (a ``ValueError``) not a stream of this format, truncated or damaged.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be the bytes compress returned, got {type(data).__name__}")
    data = bytes(data)
    if data[:3] != MAGIC:
        raise StreamError("data is not a stream written by autoregressive.compress (no magic)")
    if len(data) < HEADER_BYTES + CHECKSUM_BYTES:
        raise StreamError(f"the stream is truncated: {len(data)} bytes, shorter than a header")
    fields = _LAYOUT.unpack_from(data)
    if fields[1] != VERSION:
        raise StreamError(
            f"the stream has format version {fields[1]}; this autoregressive reads version "
            f"{VERSION}: decompress it with the version that wrote it"
        )
    size = fields[-1]
    expected = HEADER_BYTES + size + CHECKSUM_BYTES
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "followed by other bytes"
        raise StreamError(f"the stream is {what}: {len(data)} bytes, its header says {expected}")
    body, checksum = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    if hashlib.sha256(body).digest()[:CHECKSUM_BYTES] != checksum:
        raise StreamError("the stream is damaged: its checksum does not match its bytes")
    if size % 4:
        raise StreamError(f"the stream's payload of {size} bytes is not of 32-bit words")
    return Stream(_header(fields), body[HEADER_BYTES:])


def _header(fields: tuple) -> StreamHeader:
    """The header of checked ``fields``; ``StreamError`` for an index out of its table."""
    _, _, dist, dtype, device, _, n, c, h, w, batch, model, cond, images, _ = fields
    if dist >= len(DISTRIBUTIONS) or dtype >= len(DTYPES) or device >= len(DEVICE_TYPES):
        raise StreamError("the stream's header names an unknown distribution, dtype or device")
    if min(n, c, h, w, batch) < 1:
        raise StreamError("the stream's header names no images (a size or the batch is 0)")
    return StreamHeader(
        DISTRIBUTIONS[dist], DTYPES[dtype], DEVICE_TYPES[device], (n, c, h, w), batch,
        model, cond, images,
    )  # fmt: skip


def device_type(device: torch.device) -> str:
    """``device``'s type as a stream names it: ``"cpu"``, ``"cuda"`` or ``"another"``."""
    return device.type if device.type in DEVICE_TYPES else "another"


def fingerprint(
    config: dict, distribution: object, weights: dict[str, torch.Tensor], dtype: torch.dtype
) -> bytes:
    """8 bytes that change with the config, the distribution, the dtype or any weight.

    Args:
        config: the model's ``config.to_dict()``.
        distribution: the model's distribution (its ``repr``, temperature included).
        weights: the model's ``state_dict()``.
        dtype: the model's dtype.

    Returns:
        The first 8 bytes of a SHA-256.
    """
    text = json.dumps([config, repr(distribution), str(dtype)], sort_keys=True)
    digest = hashlib.sha256(text.encode())
    digest.update(bytes.fromhex(tensors_sha256(weights)))
    return digest.digest()[:8]


def digest(tensors: dict[str, torch.Tensor], size: int) -> bytes:
    """The first ``size`` bytes of :func:`~autoregressive.checksums.tensors_sha256`."""
    return bytes.fromhex(tensors_sha256(tensors))[:size]
