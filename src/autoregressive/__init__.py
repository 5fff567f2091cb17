"""autoregressive: PixelCNN-style autoregressive image-model layers for PyTorch.

Masked convolutions, residual and gated blocks, :class:`AutoregressiveModel` (any causal network
and an output distribution as a model with exact likelihoods and sampling), a configurable
:class:`PixelCNN`, a naive reference sampler, an exact cached sampler, lossless compression
driven by any model (:func:`compress`, :func:`decompress`), and out-of-distribution scores
(:func:`likelihood_ratio`, :func:`perturb`).
"""

from ._version import __version__ as __version__
from .coding import compress, decompress
from .conditioning import Conditioning
from .distributions.base import Bernoulli, Categorical, Distribution, DrawPlan, nats_to_bits_per_dim
from .distributions.logistic_mixture import DiscretizedLogisticMixture
from .layers.attention import CausalSelfAttention2d
from .layers.conv import MaskedConv2d
from .layers.embedding import CategoricalEmbedding
from .layers.gated import GatedBlock, GatedStack, gate
from .layers.gated_residual import GatedResidualBlock
from .layers.masks import causal_mask, channel_groups, mask_groups
from .layers.residual import ResidualBlock
from .layers.sequential import CausalSequential
from .layers.snail import SnailStack
from .models.config import PRESETS, PixelCNNConfig
from .models.model import AutoregressiveModel
from .models.pixelcnn import PixelCNN, build_network
from .sampling.cached import CachedSampler, cached_sample
from .sampling.checks import check_causal
from .sampling.conv_stepper import ConvKernel, ConvStepper
from .sampling.naive import NaiveSampler, draw_noise, naive_sample
from .sampling.sampler import Sampler
from .sampling.stepping import ElementwiseStepper, Stepper, stepper_for
from .sampling.verify import check_stepper
from .scoring import likelihood_ratio, log_likelihood, perturb

__all__ = [
    "PRESETS",
    "AutoregressiveModel",
    "Bernoulli",
    "CachedSampler",
    "Categorical",
    "CategoricalEmbedding",
    "CausalSelfAttention2d",
    "CausalSequential",
    "Conditioning",
    "ConvKernel",
    "ConvStepper",
    "DiscretizedLogisticMixture",
    "Distribution",
    "DrawPlan",
    "ElementwiseStepper",
    "GatedBlock",
    "GatedResidualBlock",
    "GatedStack",
    "MaskedConv2d",
    "NaiveSampler",
    "PixelCNN",
    "PixelCNNConfig",
    "ResidualBlock",
    "Sampler",
    "SnailStack",
    "Stepper",
    "build_network",
    "cached_sample",
    "causal_mask",
    "channel_groups",
    "check_causal",
    "check_stepper",
    "compress",
    "decompress",
    "draw_noise",
    "gate",
    "likelihood_ratio",
    "log_likelihood",
    "mask_groups",
    "naive_sample",
    "nats_to_bits_per_dim",
    "perturb",
    "stepper_for",
]
