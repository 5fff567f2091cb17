"""The PixelCNN model, its configuration, and saving and loading it.

- :mod:`~autoregressive.models.config`: the frozen :class:`PixelCNNConfig` and its
  :data:`PRESETS`.
- :mod:`~autoregressive.models.model`: :class:`AutoregressiveModel`, any causal network and an
  output distribution as a model (likelihoods, sampling, completion, conditioning).
- :mod:`~autoregressive.models.pixelcnn`: :class:`PixelCNN` (a causal network, an output
  distribution, likelihoods and sampling) and :func:`build_network`.
- :mod:`~autoregressive.models.serialization`: the ``save_pretrained`` directory and the
  shipped weights' registry; :mod:`~autoregressive.models.pretrained`: the weights that ship in
  ``models/weights/``.
"""

from .config import PRESETS, PixelCNNConfig
from .model import AutoregressiveModel
from .pixelcnn import PixelCNN, build_network

__all__ = ["PRESETS", "AutoregressiveModel", "PixelCNN", "PixelCNNConfig", "build_network"]
