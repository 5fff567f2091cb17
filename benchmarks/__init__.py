"""Benchmark suite of ``autoregressive``: run it with ``python -m benchmarks`` (``--help``).

Four measurements, each a module here: ``layer`` (the cost of masking on every call),
``train`` (a full training step against a hand-written twin), ``sampling`` (naive vs cached
sampler vs one forward pass) and ``scaling`` (image size and depth). Results are written to
``benchmarks/results/<machine>-<device>-torch<version>.{json,md}`` plus a ``-sampling.png``
plot; see :mod:`benchmarks.report` for the naming.
"""
