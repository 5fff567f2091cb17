"""Output distributions: how a network's outputs become likelihoods, and the plan of each draw.

- :mod:`~autoregressive.distributions.base`: the :class:`Distribution` interface, its
  :class:`DrawPlan`, :class:`Bernoulli` and :class:`Categorical`.
- :mod:`~autoregressive.distributions.logistic_mixture`: PixelCNN++'s
  :class:`DiscretizedLogisticMixture`, a likelihood over whole pixels.
"""

from .base import (
    Bernoulli,
    Categorical,
    ColourMode,
    Distribution,
    DrawPlan,
    nats_to_bits_per_dim,
)
from .logistic_mixture import DiscretizedLogisticMixture

__all__ = [
    "Bernoulli",
    "Categorical",
    "ColourMode",
    "DiscretizedLogisticMixture",
    "Distribution",
    "DrawPlan",
    "nats_to_bits_per_dim",
]
