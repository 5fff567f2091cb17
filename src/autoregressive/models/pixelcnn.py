"""The PixelCNN model: a causal network, an output distribution, likelihoods and sampling.

PixelCNN: van den Oord et al., 2016, https://arxiv.org/abs/1601.06759.
Gated PixelCNN: van den Oord et al., 2016, https://arxiv.org/abs/1606.05328.
PixelSNAIL: Chen et al., 2018, https://arxiv.org/abs/1712.09763.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning import Conditioning
from ..distributions.base import nats_to_bits_per_dim
from ..layers.conv import MaskedConv2d
from ..layers.embedding import CategoricalEmbedding
from ..layers.gated import GatedStack
from ..layers.residual import ResidualBlock
from ..layers.sequential import CausalSequential
from ..layers.snail import SnailStack
from ..sampling.cached import CachedSampler
from ..sampling.naive import draw_noise
from ..sampling.sampler import Sampler
from ..validation import check_float, check_int, check_pair, check_tensor
from .config import PixelCNNConfig
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


class PixelCNN(nn.Module):
    r"""A PixelCNN or Gated PixelCNN over images of any size.

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
        - ``cond``: labels :math:`(N,)` (integers) when ``num_classes`` is set, or a
          :class:`~autoregressive.Conditioning` of ``labels`` :math:`(N,)`, ``vector``
          :math:`(N, D)` when ``vector_size`` is set and ``spatial`` :math:`(N, C_{map}, H, W)`
          when ``spatial_channels`` is set, in any combination the config declares. Every
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
        super().__init__()
        if config is not None and not isinstance(config, PixelCNNConfig):
            raise TypeError(f"config must be a PixelCNNConfig or None, got {config!r}")
        self.validate_args = validate_args
        self.config = config if config is not None else PixelCNNConfig()
        self.distribution = self.config.make_distribution()
        self.network = build_network(self.config, device=device, dtype=dtype)

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

    # ------------------------------------------------------------------ inputs
    def _param(self) -> torch.Tensor:
        return next(self.network.parameters())

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a batch of images this model can score.

        Raises:
            TypeError: ``x`` is not a tensor.
            ValueError: ``x`` is not ``(N, C, H, W)`` with this model's ``C``, or (with
                ``validate_args``) holds values the distribution cannot model.
        """
        check_tensor("x", x, like=" (N, C, H, W)")
        c = self.config.data_channels
        if x.dim() != 4:
            raise ValueError(
                f"x must have 4 dimensions (N, C, H, W) with C={c}, got shape {tuple(x.shape)}"
                + ("; add a channel dimension with x.unsqueeze(1)" if x.dim() == 3 else "")
            )
        if x.shape[1] != c:
            raise ValueError(
                f"x has {x.shape[1]} channels but the model expects data_channels={c}: "
                f"shape (N, {c}, H, W), got {tuple(x.shape)}"
            )
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"x must have at least one row and one column, got {tuple(x.shape)}")
        if self.validate_args and not torch.compiler.is_compiling():
            self.distribution.validate(x)  # reads values: a device sync on GPU

    def condition(
        self,
        cond: torch.Tensor | Conditioning | None,
        n: int,
        *,
        size: tuple[int, int] | None = None,
    ) -> Conditioning | None:
        """Check the model-level conditioning of ``n`` images; return what the network takes.

        The one boundary every method goes through: ``cond`` is converted here, once.

        Args:
            cond: class labels ``(N,)``, a :class:`Conditioning` of ``labels`` ``(N,)``,
                ``vector`` ``(N, vector_size)`` and/or ``spatial``
                ``(N, spatial_channels, H, W)``, as the config declares, or ``None``.
            n: number of images ``N``.
            size: the images' ``(H, W)``, which the maps must have.

        Returns:
            ``None`` for an unconditional model, else the layers' :class:`Conditioning` (no
            labels): its vector is the one-hot labels followed by ``vector``
            ``(N, num_classes + vector_size)``, its map ``spatial``, on the model's device and
            dtype.

        Raises:
            TypeError: ``cond`` is not a tensor of labels, a :class:`Conditioning` or ``None``.
            ValueError: a part missing, unexpected or of the wrong shape or values.
        """
        if cond is None or isinstance(cond, Conditioning):
            given = cond or Conditioning()
        elif isinstance(cond, torch.Tensor):
            given = Conditioning(labels=cond)
        else:
            raise TypeError(
                "cond must be class labels (N,), a Conditioning(labels=..., vector=..., "
                f"spatial=...) or None, got {type(cond).__name__}"
            )
        c = self.config
        labels = self._labels(given.labels, n)
        vector = self._part("vector", given.vector, c.vector_size, (n, c.vector_size))
        if c.spatial_channels is not None and size is None:
            raise ValueError("condition(cond, n) of a map needs the images' size=(H, W)")
        map_shape = (n, c.spatial_channels, *(size or ()))
        spatial = self._part("spatial", given.spatial, c.spatial_channels, map_shape)
        vectors = [t for t in (labels, vector) if t is not None]
        if not vectors and spatial is None:
            return None
        return Conditioning(torch.cat(vectors, 1) if vectors else None, spatial)

    def _labels(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """Labels ``(N,)`` as one-hot vectors ``(N, classes)``, after checking them."""
        k = self.config.num_classes
        if k is None:
            if y is not None:
                raise ValueError(
                    "this model takes no labels (num_classes=None): do not pass them in cond"
                )
            return None
        if y is None:
            raise ValueError(
                f"this model is class-conditional: pass labels of shape ({n},) as cond, or "
                "Conditioning(labels=...)"
            )
        y = check_tensor("labels", y, like=f" ({n},) of class labels")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError("labels must be an integer tensor of class labels, e.g. torch.long")
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
        checked = self.validate_args and not torch.compiler.is_compiling()
        if checked and n > 0 and (y.min().item() < 0 or y.max().item() >= k):
            raise ValueError(f"labels must lie in [0, {k}), got min {y.min()} and max {y.max()}")
        param = self._param()
        labels = y.to(device=param.device, dtype=torch.long)  # one_hot takes int64 only
        return F.one_hot(labels, k).to(param.dtype)  # (N, classes)

    def _part(
        self, name: str, t: torch.Tensor | None, width: int | None, shape: tuple
    ) -> torch.Tensor | None:
        """A conditioning ``vector`` or ``spatial`` map checked against ``shape``, cast."""
        field = "vector_size" if name == "vector" else "spatial_channels"
        if width is None:
            if t is not None:
                raise ValueError(
                    f"this model takes no {name} ({field}=None): leave Conditioning.{name} unset"
                )
            return None
        want = "(" + ", ".join(map(str, shape)) + ")"
        if t is None:
            kind = "vector" if name == "vector" else "spatial map"
            raise ValueError(
                f"this model is conditioned on a {kind}: pass Conditioning({name}=...) of "
                f"shape {want} as cond"
            )
        t = check_tensor(name, t, floating=True, like=f" of shape {want}")
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
        checked = self.validate_args and not torch.compiler.is_compiling()
        if checked and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        param = self._param()
        return t.to(device=param.device, dtype=param.dtype)

    # ------------------------------------------------------------ likelihood
    def _raw(self, x: torch.Tensor, cond: torch.Tensor | Conditioning | None) -> torch.Tensor:
        self.check_input(x)
        parts = self.condition(cond, x.shape[0], size=(x.shape[2], x.shape[3]))
        dtype = self._param().dtype
        return self.network(self.distribution.preprocess(x, dtype), parts)  # (N, C*P, H, W)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | Conditioning | None = None
    ) -> torch.Tensor:
        """The output distribution's parameters (logits) at every pixel; see the class Shape."""
        raw = self._raw(x, cond)
        return self.distribution.shape_params(raw, self.config.data_channels)

    def log_prob(
        self, x: torch.Tensor, cond: torch.Tensor | Conditioning | None = None
    ) -> torch.Tensor:
        """Log-likelihood of each image in nats, ``(N, C, H, W) -> (N,)``."""
        return self.distribution.log_prob(self._raw(x, cond), x)

    def bits_per_dim(
        self, x: torch.Tensor, cond: torch.Tensor | Conditioning | None = None
    ) -> torch.Tensor:
        """Negative log-likelihood of each image in bits per dimension, ``(N,)``."""
        nats = -self.log_prob(x, cond)
        return nats_to_bits_per_dim(nats, math.prod(x.shape[1:]))  # type: ignore[return-value]

    # --------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        cond: torch.Tensor | Conditioning | None = None,
        *,
        size: tuple[int, int] | None = None,
        temperature: float = 1.0,
        image: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        sampler: Sampler | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` images, or complete ``image`` where ``known`` is ``False``.

        Every sampler consumes the same noise (one uniform number per sub-pixel, one more per
        pixel for a logistic mixture's component, drawn up front from ``generator``), so with
        the same seed :class:`~autoregressive.CachedSampler` and
        :class:`~autoregressive.NaiveSampler` return the same images.

        Args:
            n: number of images (taken from ``image`` when completing).
            cond: labels ``(n,)`` for a class-conditional model, or a
                :class:`~autoregressive.Conditioning` of ``labels``, ``vector``
                ``(n, vector_size)`` and ``spatial`` ``(n, spatial_channels, H, W)`` as the
                config declares.
            size: ``(H, W)``; default ``config.image_size`` (or ``image``'s size).
            temperature: divide the logits by it (1: the model as trained, exactly; below 1
                sharpens, above 1 flattens). The samplers still agree for the same seed.
            image: an image batch ``(n, C, H, W)`` to complete.
            known: bool mask ``(H, W)`` or 4-D broadcastable to ``image``'s shape (e.g.
                ``(n, 1, H, W)`` per image), ``True`` where pixels are given
                (whole pixels for a logistic mixture, which draws a pixel's channels together).
            generator: source of randomness (on the model's device or the CPU).
            sampler: how to sample, with its own options: default ``CachedSampler()`` (fast,
                exact); ``NaiveSampler()`` runs the network once per sub-pixel (per pixel for a
                logistic mixture); e.g. ``CachedSampler(cuda_graphs=False)``.

        Returns:
            Images ``(n, C, H, W)``: float ``{0, 1}`` for Bernoulli, ``long`` for categorical
            and logistic mixture.
        """
        sampler = _sampler_or_default(sampler)
        temperature = check_float("temperature", temperature, positive=True, owner="sample")
        param = self._param()
        n, (height, width) = self._sample_size(n, size, image)
        if known is not None and not isinstance(known, torch.Tensor):
            raise TypeError(f"known must be a bool tensor, got {type(known).__name__}")
        parts = self.condition(cond, n, size=(height, width))
        dist = self.distribution
        dist = dist if temperature == 1.0 else dist.with_temperature(temperature)
        channels = dist.noise_channels(self.config.data_channels)  # C, or C + 1 for a mixture
        noise = draw_noise((n, channels, height, width), generator, device=param.device)
        image, known = (t if t is None else t.to(param.device) for t in (image, known))
        with _eval_mode(self):
            x = sampler.sample(self.network, dist, noise, cond=parts, image=image, known=known)
        return x.to(self.distribution.output_dtype(x.dtype))

    def _sample_size(
        self, n: int | None, size: object, image: torch.Tensor | None
    ) -> tuple[int, tuple[int, int]]:
        """``sample``'s ``n`` and ``(H, W)``: as given, else ``image``'s, else the config's."""
        if image is not None:
            self.check_input(image)
            n = image.shape[0] if n is None else n
            size = tuple(image.shape[-2:]) if size is None else size
        if n is not None:
            n = check_int("n", n)
        if n is None or n < 1:
            raise ValueError(f"n must be a positive number of images, got {n}")
        height, width = check_pair("size", size) if size is not None else self.config.image_size
        if height < 1 or width < 1:
            raise ValueError(f"size must be (H, W) with H, W >= 1, got {size}")
        return n, (height, width)


def _sampler_or_default(sampler: Sampler | None) -> Sampler:
    """``sampler``, or a default :class:`~autoregressive.CachedSampler`; ``TypeError`` else."""
    if sampler is None:
        return CachedSampler()
    if not isinstance(sampler, Sampler):
        raise TypeError(
            "sampler must be a Sampler, e.g. CachedSampler() or NaiveSampler(), got "
            f"{type(sampler).__name__}"
        )
    return sampler


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode within the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
