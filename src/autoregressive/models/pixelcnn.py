"""The PixelCNN model: a causal network, an output distribution, likelihoods and sampling.

PixelCNN: van den Oord et al., 2016, https://arxiv.org/abs/1601.06759.
Gated PixelCNN: van den Oord et al., 2016, https://arxiv.org/abs/1606.05328.
PixelSNAIL: Chen et al., 2018, https://arxiv.org/abs/1712.09763.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..layers.conv import MaskedConv2d
from ..layers.embedding import CategoricalEmbedding
from ..layers.gated import GatedStack
from ..layers.residual import ResidualBlock
from ..layers.sequential import CausalSequential
from ..layers.snail import SnailStack
from .config import PixelCNNConfig
from .model import AutoregressiveModel
from .serialization import read_pretrained, write_pretrained

__all__ = ["PixelCNN", "build_network"]


def build_network(
    config: PixelCNNConfig,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> CausalSequential:
    r"""Build the causal network a config describes.

    Residual: a mask-A :class:`MaskedConv2d`, ``num_blocks`` :class:`ResidualBlock` s, head.
    Gated: a :class:`GatedStack` of ``num_blocks`` blocks, head. Snail: a :class:`SnailStack` of
    ``num_blocks`` blocks of ``attention_every`` residual blocks and an attention layer, head.
    The head is ReLU and a mask-B 1x1 convolution (with an extra ReLU + 1x1 layer when
    ``head_channels > 0``). With an ``input_embedding`` other than ``"scaled"`` a
    :class:`CategoricalEmbedding` comes first, and the first masked layer reads its ``d``
    channels per data channel. Every mask has ``config.mask_groups`` colour groups:
    channel-wise, or one (pixel-wise) for a distribution that models whole pixels (see
    :mod:`autoregressive.layers.masks`).

    Args:
        config: the architecture.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Returns:
        A :class:`CausalSequential` mapping preprocessed images :math:`(N, C, H, W)` (codes
        when the input is embedded) and an optional conditioning to raw parameters
        :math:`(N, C \cdot P, H, W)`, ``P`` being the distribution's parameters per channel
        (``num_params(C)`` channels for a joint distribution).

    Shape:
        - Input: :math:`(N, C, H, W)`
        - Output: :math:`(N, C \cdot P, H, W)`

    Example:
        >>> net = build_network(PixelCNNConfig(num_blocks=2, hidden_channels=8))
        >>> net(torch.zeros(2, 1, 5, 5)).shape
        torch.Size([2, 1, 5, 5])
    """
    factory: dict[str, Any] = {"device": device, "dtype": dtype}
    embedding = _input_embedding(config, **factory)
    in_channels = config.data_channels if embedding is None else embedding.out_channels
    layers: list[nn.Module] = [] if embedding is None else [embedding]
    layers += _body(config, in_channels, factory)
    dc, width = config.mask_groups, config.hidden_channels
    if config.head_channels:
        head = MaskedConv2d(width, config.head_channels, 1, "B", data_channels=dc, **factory)
        layers += [nn.ReLU(), head]
        width = config.head_channels
    out = MaskedConv2d(width, config.out_channels, 1, "B", data_channels=dc, **factory)
    return CausalSequential(*layers, nn.ReLU(), out)


def _body(config: PixelCNNConfig, in_channels: int, factory: dict[str, Any]) -> list[nn.Module]:
    """The layers between the input (embedding) and the head, as ``config.block`` names them."""
    return _BODIES[config.block](config, in_channels, factory)


def _block_options(config: PixelCNNConfig) -> dict[str, Any]:
    """What every block takes from the config: the masks' colour groups and the conditioning."""
    return {
        "data_channels": config.mask_groups,  # data_channels, or 1 for pixel-wise masks
        "cond_channels": config.cond_channels,
        "spatial_channels": config.spatial_channels,
    }


def _residual_body(c: PixelCNNConfig, in_channels: int, factory: dict[str, Any]) -> list[nn.Module]:
    """A mask-A :class:`MaskedConv2d`, then ``num_blocks`` :class:`ResidualBlock` s."""
    first = MaskedConv2d(
        in_channels, c.hidden_channels, c.input_kernel_size, "A", c.mask_groups, **factory
    )
    options = _block_options(c)
    blocks = [
        ResidualBlock(c.hidden_channels, c.kernel_size, **options, **factory)
        for _ in range(c.num_blocks)
    ]
    return [first, *blocks]


def _gated_body(c: PixelCNNConfig, in_channels: int, factory: dict[str, Any]) -> list[nn.Module]:
    """A :class:`GatedStack` of ``num_blocks`` blocks."""
    stack = GatedStack(
        in_channels, c.hidden_channels, num_blocks=c.num_blocks, kernel_size=c.kernel_size,
        input_kernel_size=c.input_kernel_size, **_block_options(c), **factory,
    )  # fmt: skip
    return [stack]


def _snail_body(c: PixelCNNConfig, in_channels: int, factory: dict[str, Any]) -> list[nn.Module]:
    """A :class:`SnailStack`: ``num_blocks`` of ``attention_every`` residual blocks + attention."""
    snail = SnailStack(
        in_channels, c.hidden_channels, num_blocks=c.num_blocks, kernel_size=c.kernel_size,
        input_kernel_size=c.input_kernel_size, residual_blocks=c.attention_every,
        heads=c.attention_heads, key_channels=c.attention_key_channels,
        **_block_options(c), **factory,
    )  # fmt: skip
    return [snail]


#: ``config.block`` -> the function that builds the body (the config checks the name)
_BODIES: dict[str, Callable[[PixelCNNConfig, int, dict[str, Any]], list[nn.Module]]] = {
    "residual": _residual_body,
    "gated": _gated_body,
    "snail": _snail_body,
}


def _input_embedding(
    config: PixelCNNConfig, *, device: torch.device | str | None, dtype: torch.dtype | None
) -> CategoricalEmbedding | None:
    """The layer that embeds categorical inputs, when ``config.input_embedding`` asks for one."""
    if config.embedding_width is None:
        return None
    return CategoricalEmbedding(
        config.levels,
        config.embedding_width,
        config.data_channels,
        learned=config.input_embedding == "learned",
        device=device,
        dtype=dtype,
    )


class PixelCNN(AutoregressiveModel):
    r"""A PixelCNN or Gated PixelCNN over images of any size.

    The :class:`~autoregressive.AutoregressiveModel` of the network :func:`build_network` builds
    from a config and the distribution the config names. Its likelihoods, sampling, completion
    and conditioning are the wrapper's, documented there
    (:meth:`~autoregressive.AutoregressiveModel.log_prob` with ``chunk_size``,
    :meth:`~autoregressive.AutoregressiveModel.bits_per_dim`,
    :meth:`~autoregressive.AutoregressiveModel.sample`,
    :meth:`~autoregressive.AutoregressiveModel.condition`); the config adds the presets and
    saving and loading.

    Args:
        config: the architecture (default: the ``"reference"`` preset, the seed MNIST model).
        device: device of the parameters.
        dtype: dtype of the parameters.
        validate_args: check the *values* of inputs (binary, in range, finite, labels in
            range) on every call, as ``torch.distributions`` does. Shapes are always checked.
            Turn it off for GPU training loops: reading values forces a device sync (the
            checks are also skipped inside ``torch.compile``).

    Shape:
        - ``x``: :math:`(N, C, H, W)`, binary for Bernoulli, integers in ``[0, levels)`` for
          categorical and logistic mixture.
        - ``cond``: labels :math:`(N,)` (integers; one ``int`` or 0-d tensor labels every
          image) when ``num_classes`` is set, or a :class:`~autoregressive.Conditioning` of
          ``labels`` :math:`(N,)`, ``vector`` :math:`(N, D)` when ``vector_size`` is set and
          ``spatial`` :math:`(N, C_{map}, H, W)` (or a lower resolution that divides
          ``(H, W)``, upsampled by nearest neighbour) when ``spatial_channels`` is set, in any
          combination the config declares. Every
          method (``forward``, ``log_prob``, ``bits_per_dim``, ``sample``) takes it as ``cond``
          and converts it once (:meth:`condition`).
        - ``forward``: Bernoulli logits :math:`(N, C, H, W)`, categorical logits
          :math:`(N, C, L, H, W)`, logistic-mixture parameters :math:`(N, P, H, W)` (see
          :class:`~autoregressive.DiscretizedLogisticMixture`); the last two dimensions are
          always ``(H, W)``.
        - ``log_prob``: :math:`(N,)` in nats.

    Example:
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=16))
        >>> x = torch.randint(0, 2, (4, 1, 8, 8)).float()
        >>> model(x).shape, model.log_prob(x).shape
        (torch.Size([4, 1, 8, 8]), torch.Size([4]))
        >>> model.sample(2, size=(8, 8), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        config: PixelCNNConfig | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        validate_args: bool = True,
    ) -> None:
        if config is not None and not isinstance(config, PixelCNNConfig):
            raise TypeError(f"config must be a PixelCNNConfig or None, got {config!r}")
        c = config if config is not None else PixelCNNConfig()
        super().__init__(
            build_network(c, device=device, dtype=dtype),
            c.make_distribution(),
            data_channels=c.data_channels,
            image_size=c.image_size,
            num_classes=c.num_classes,
            vector_size=c.vector_size,
            spatial_channels=c.spatial_channels,
            validate_args=validate_args,
        )
        self.config = c

    @classmethod
    def from_preset(cls, name: str, **changes: object) -> PixelCNN:
        """A model of a named preset (see :data:`~autoregressive.PRESETS`), fields overridable."""
        return cls(PixelCNNConfig.preset(name, **changes))

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | os.PathLike[str],
        *,
        device: torch.device | str | None = None,
    ) -> PixelCNN:
        """A trained model: shipped with the package, or saved by :meth:`save_pretrained`.

        A ``str`` that names a shipped model (see :func:`autoregressive.models.pretrained.available`
        for the names and their figures) loads it after checking its SHA-256; a
        :class:`~pathlib.Path`, or any other ``str``, is a directory written by
        :meth:`save_pretrained`, whose weights are checked against the checksum and the config
        it recorded. Loading imports no training or data code.

        Args:
            name_or_dir: a shipped name, e.g. ``"mnist-demo"``, or a directory.
            device: where to put the model (default CPU).

        Returns:
            The model in eval mode, in the dtype its weights were saved in.

        Raises:
            TypeError: ``name_or_dir`` is not a ``str`` or a path.
            ValueError: unknown name (the message lists the known ones), or a shipped file
                whose SHA-256 does not match the registry
                (:class:`~autoregressive.models.pretrained.ChecksumError`).
            ~autoregressive.checkpoint.CheckpointError: (a ``ValueError``) the directory is
                missing, is a file, or its files are missing, damaged, of another format or of
                another model; the message says what to do.

        Example:
            >>> PixelCNN.from_pretrained("mnist-demo").config.block
            'gated'
            >>> PixelCNN.from_pretrained("no-such-model")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: no pretrained model named 'no-such-model'; available: ...
        """
        return read_pretrained(name_or_dir).build(cls, device=device)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Save the config and the weights for :meth:`from_pretrained`.

        Writes ``directory/config.json`` (the config, the format and the library version,
        the weights' SHA-256) and ``directory/model.safetensors`` (the ``state_dict``), each
        atomically, so an interrupted save never leaves a half-written file; see
        :mod:`autoregressive.models.serialization`. The directory is created if needed; other
        files in it are left alone.

        Args:
            directory: where to save, e.g. ``"runs/my-model"``.

        Returns:
            The directory.

        Raises:
            TypeError: ``directory`` is not a ``str`` or a path.
            ValueError: ``directory``, or a folder above it, is a file.
            PermissionError: the directory cannot be written to.

        Example:
            >>> import tempfile
            >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8))
            >>> folder = model.save_pretrained(tempfile.mkdtemp())
            >>> sorted(p.name for p in folder.iterdir())
            ['config.json', 'model.safetensors']
            >>> x = torch.randint(0, 2, (2, 1, 8, 8)).float()
            >>> loaded = PixelCNN.from_pretrained(folder)
            >>> torch.equal(loaded.log_prob(x), model.eval().log_prob(x))
            True
        """
        return write_pretrained(directory, self.config, self.state_dict())
