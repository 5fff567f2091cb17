"""Lossless compression driven by a model: :func:`compress` and :func:`decompress`.

- :mod:`~autoregressive.coding.codec`: the two functions; a range coder (the ``constriction``
  package, ``pip install "autoregressive[compression]"``) codes each sub-pixel with the model's
  conditional distribution, computed step by step by the cached sampler's
  :meth:`~autoregressive.Sampler.sample_with_choice`.
- :mod:`~autoregressive.coding.format`: the stream's bytes: header, payload, checksum.

Importing this package does not import ``constriction``; the first call does.
"""

from .codec import compress, decompress
from .format import StreamError

__all__ = ["StreamError", "compress", "decompress"]
