"""The sampling engine: the naive reference sampler, the exact cached sampler and its steppers.

Generic machinery only: it never imports :mod:`autoregressive.layers` (a layer's ``stepper()``
hook folds its weights and builds one of the steppers here), as torch keeps ``F.conv2d`` apart
from ``nn.Conv2d``.

- :mod:`~autoregressive.sampling.sampler`: :class:`Sampler`, what every sampler is: an object
  that holds its options, whose ``sample(network, distribution, noise, ...)`` draws images
  (``sample_with_params`` also returns the parameters; ``sample_with_choice`` lets a
  :data:`Choose` function pick each sub-step's value, the hook of :mod:`autoregressive.coding`).
- :mod:`~autoregressive.sampling.naive`: :func:`draw_noise` and :class:`NaiveSampler`;
  :mod:`~autoregressive.sampling.checks`: what both samplers check at their boundary;
  :mod:`~autoregressive.sampling.verify`: whether a network's steppers agree with its forward.
- :mod:`~autoregressive.sampling.cached`: :class:`CachedSampler`, the driver.
- :mod:`~autoregressive.sampling.stepping`: the :class:`Stepper` protocol.
- :mod:`~autoregressive.sampling.rows`: ring buffers of input rows and the products over them.
- :mod:`~autoregressive.sampling.conv_stepper`, :mod:`~autoregressive.sampling.residual_stepper`,
  :mod:`~autoregressive.sampling.gated_stepper`: the steppers of the masked convolution, the
  residual block and the gated stack.
- :mod:`~autoregressive.sampling.attention_stepper`, :mod:`~autoregressive.sampling.snail_stepper`,
  :mod:`~autoregressive.sampling.gated_residual_stepper`: causal self-attention with a cache of
  keys and values, the PixelSNAIL stack's stepper and its gated residual block's.
- :mod:`~autoregressive.sampling.memo`: values folded from weights, kept until they change.
"""

from .cached import CachedSampler, cached_sample
from .checks import check_causal
from .conv_stepper import ConvKernel, ConvStepper
from .naive import NaiveSampler, draw_noise, naive_sample
from .sampler import Choose, SampleInputs, Sampler
from .stepping import ElementwiseStepper, Stepper, stepper_for
from .verify import check_stepper

__all__ = [
    "CachedSampler",
    "Choose",
    "ConvKernel",
    "ConvStepper",
    "ElementwiseStepper",
    "NaiveSampler",
    "SampleInputs",
    "Sampler",
    "Stepper",
    "cached_sample",
    "check_causal",
    "check_stepper",
    "draw_noise",
    "naive_sample",
    "stepper_for",
]
