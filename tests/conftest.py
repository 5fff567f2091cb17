"""Hypothesis profiles: how many examples each property test draws.

- ``dev`` (the default outside CI): a few examples per property, for a loop of a few minutes
  (``make check``).
- ``ci`` (the default when ``CI`` is set, and ``make test``): thorough and derandomized, so
  CI draws the same examples every run.
- ``hunt``: thousands per property, to look for new failures (``pytest
  --hypothesis-profile=hunt tests/test_fuzz.py``).

Choose one with ``--hypothesis-profile=NAME`` or ``HYPOTHESIS_PROFILE=NAME``. Tests state no
example counts of their own.
"""

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
    "print_blob": True,
}
settings.register_profile("dev", max_examples=10, **_COMMON)
settings.register_profile("ci", max_examples=80, derandomize=True, **_COMMON)
settings.register_profile("hunt", max_examples=2000, **_COMMON)
_default = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))
