r"""SHA-256 checksums of files and tensors, and the seal that makes checkpoints self-verifying.

``torch.load`` does not verify the CRCs of the zip archive ``torch.save`` writes, so a few
damaged bytes in a tensor's data load without complaint and return other numbers. A *sealed*
file carries the SHA-256 of everything before the digest in the archive's comment (the last
bytes of a zip file), so it stays an ordinary ``torch.save`` archive that ``torch.load`` reads
as before, and any changed byte anywhere in it is detected::

    ... zip entries ... | end-of-central-directory record | b"autoregressive-sha256:" | 64 hex
    \__________________ hashed: SHA-256 of all of this _______________________/   the digest

:func:`file_sha256` and :func:`tensors_sha256` compute reference digests to publish with
released weights: the first of a file's bytes, the second of the tensors themselves (names,
dtypes, shapes and values), whatever file they were saved in.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch

__all__ = ["file_sha256", "seal", "seal_trailer", "tensors_sha256", "verify_seal"]

MARKER = b"autoregressive-sha256:"
_EOCD = b"PK\x05\x06"  # signature of the zip end-of-central-directory record (22 bytes + comment)
_DIGEST = 64  # hex characters of a SHA-256
_TRAILER = len(MARKER) + _DIGEST


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, as 64 hex characters (what ``sha256sum`` prints).

    Args:
        path: the file.
        chunk: bytes read at a time.

    Returns:
        The hex digest.

    Raises:
        ValueError: ``path`` is not a file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "empty"
        >>> _ = p.write_bytes(b"")
        >>> file_sha256(p)[:16]
        'e3b0c44298fc1c14'
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"file_sha256: no file at {path}; pass the path of an existing file")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors: their names, dtypes, shapes and values, in sorted name order.

    Independent of how the tensors were stored (file format, device, memory layout), so it
    identifies a ``state_dict``'s content, e.g. of released pretrained weights.

    Args:
        tensors: e.g. ``model.state_dict()``.

    Returns:
        The hex digest.

    Raises:
        TypeError: ``tensors`` is not a mapping of ``str`` to tensors.

    Example:
        >>> tensors_sha256({"w": torch.zeros(2)}) == tensors_sha256({"w": torch.zeros(2)})
        True
        >>> tensors_sha256({"w": torch.zeros(2)}) == tensors_sha256({"w": torch.ones(2)})
        False
    """
    if not isinstance(tensors, Mapping):
        raise TypeError(
            f"tensors_sha256: tensors must be a mapping (a state_dict), not {tensors!r}"
        )
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors_sha256: entry {name!r} must map a str to a torch.Tensor")
        t = t.detach().to("cpu").contiguous()
        header = f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode()
        digest.update(struct.pack("<Q", len(header)) + header)
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def seal(archive: bytes) -> bytes:
    """Append the SHA-256 seal to a zip archive written by ``torch.save`` (no comment yet).

    Args:
        archive: the bytes ``torch.save`` wrote.

    Returns:
        The same archive with the seal as its zip comment; ``torch.load`` reads it unchanged.
    """
    return bytes(archive[:-2]) + seal_trailer(archive)


def seal_trailer(archive: bytes | memoryview) -> bytes:
    """What replaces the last 2 bytes of ``archive`` to seal it (see :func:`seal`), no copy."""
    if archive[-22:-18] != _EOCD or archive[-2:] != b"\0\0":
        raise ValueError("seal: expected a zip archive without a comment, as torch.save writes")
    trailer = struct.pack("<H", _TRAILER) + MARKER  # the comment's length, then the comment
    digest = hashlib.sha256(memoryview(archive)[:-2])
    digest.update(trailer)
    return trailer + digest.hexdigest().encode()


def verify_seal(data: bytes) -> Literal["ok", "missing", "mismatch"]:
    """Whether ``data`` carries a seal (see :func:`seal`) and it matches the rest of the bytes."""
    end = len(data) - _TRAILER
    if end < 22 or data[end : end + len(MARKER)] != MARKER:
        return "missing"
    if data[end - 22 : end - 18] != _EOCD or data[end - 2 : end] != struct.pack("<H", _TRAILER):
        return "mismatch"
    expected = hashlib.sha256(memoryview(data)[:-_DIGEST]).hexdigest().encode()
    return "ok" if data[-_DIGEST:] == expected else "mismatch"
