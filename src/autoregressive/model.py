"""The PixelCNN model: a causal network, an output distribution, likelihoods and sampling.

PixelCNN: van den Oord et al., 2016, https://arxiv.org/abs/1601.06759.
Gated PixelCNN: van den Oord et al., 2016, https://arxiv.org/abs/1606.05328.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .cached import cached_sample
from .checks import check_int, check_pair
from .config import PixelCNNConfig
from .conv import MaskedConv2d
from .distributions import nats_to_bits_per_dim
from .gated import GatedStack
from .residual import ResidualBlock
from .sampling import draw_noise, naive_sample
from .sequential import CausalSequential

__all__ = ["PixelCNN", "build_network"]


def build_network(
    config: PixelCNNConfig,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> CausalSequential:
    r"""Build the causal network a config describes.

    Residual: a mask-A :class:`MaskedConv2d`, ``num_blocks`` :class:`ResidualBlock` s, head.
    Gated: a :class:`GatedStack` of ``num_blocks`` blocks, head. The head is ReLU and a mask-B
    1x1 convolution (with an extra ReLU + 1x1 layer when ``head_channels > 0``). Every mask
    has ``config.mask_groups`` colour groups: channel-wise, or one (pixel-wise) for a
    distribution that models whole pixels (see :mod:`autoregressive.masks`).

    Args:
        config: the architecture.
        device: device of the parameters.
        dtype: dtype of the parameters.

    Returns:
        A :class:`CausalSequential` mapping preprocessed images :math:`(N, C, H, W)` and an
        optional conditioning vector to raw parameters :math:`(N, C \cdot P, H, W)`, ``P``
        being the distribution's parameters per channel (``num_params(C)`` channels for a
        joint distribution).

    Shape:
        - Input: :math:`(N, C, H, W)`
        - Output: :math:`(N, C \cdot P, H, W)`

    Example:
        >>> net = build_network(PixelCNNConfig(num_blocks=2, hidden_channels=8))
        >>> net(torch.zeros(2, 1, 5, 5)).shape
        torch.Size([2, 1, 5, 5])
    """
    c = config
    dc = c.mask_groups  # colour groups of every mask: data_channels, or 1 pixel-wise
    layers: list[nn.Module]
    if c.block == "residual":
        layers = [
            MaskedConv2d(c.data_channels, c.hidden_channels, c.input_kernel_size, "A",
                         data_channels=dc, device=device, dtype=dtype),
        ]  # fmt: skip
        layers += [
            ResidualBlock(c.hidden_channels, c.kernel_size, data_channels=dc,
                          cond_channels=c.num_classes, device=device, dtype=dtype)
            for _ in range(c.num_blocks)
        ]  # fmt: skip
    else:
        stack = GatedStack(
            in_channels=c.data_channels,
            channels=c.hidden_channels,
            num_blocks=c.num_blocks,
            kernel_size=c.kernel_size,
            input_kernel_size=c.input_kernel_size,
            data_channels=dc,
            cond_channels=c.num_classes,
            device=device,
            dtype=dtype,
        )
        layers = [stack]
    width = c.hidden_channels
    if c.head_channels:
        head = MaskedConv2d(width, c.head_channels, 1, "B", data_channels=dc, device=device,
                            dtype=dtype)  # fmt: skip
        layers += [nn.ReLU(), head]
        width = c.head_channels
    out = MaskedConv2d(width, c.out_channels, 1, "B", data_channels=dc, device=device, dtype=dtype)
    layers += [nn.ReLU(), out]
    return CausalSequential(*layers)


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
          categorical and logistic mixture; ``y``: :math:`(N,)` integer labels when
          ``num_classes`` is set.
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
    def from_pretrained(cls, name: str, *, device: torch.device | str | None = None) -> PixelCNN:
        """A trained model that ships with the package, checksum-verified, in eval mode.

        See :func:`autoregressive.pretrained.available` for the names and their figures.

        Args:
            name: e.g. ``"mnist-demo"``.
            device: where to put the model (default CPU).

        Raises:
            ValueError: unknown name (the message lists the known ones), or a file whose
                SHA-256 does not match the registry.

        Example:
            >>> PixelCNN.from_pretrained("no-such-model")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: no pretrained model named 'no-such-model'; available: ...
        """
        from .pretrained import load_pretrained  # the registry module imports this one

        return load_pretrained(name, device=device)

    # ------------------------------------------------------------------ inputs
    def _param(self) -> torch.Tensor:
        return next(self.network.parameters())

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a batch of images this model can score."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
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
        if self.validate_args and not torch.compiler.is_compiling():
            self.distribution.validate(x)  # reads values: a device sync on GPU

    def condition(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        """Validate labels ``y`` ``(N,)`` and return their conditioning vectors ``(N, classes)``."""
        k = self.config.num_classes
        if k is None:
            if y is not None:
                raise ValueError("this model is unconditional (num_classes=None): do not pass y")
            return None
        if y is None:
            raise ValueError(f"this model is class-conditional: pass labels y of shape ({n},)")
        if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError("y must be an integer tensor of class labels, e.g. torch.long")
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},), got {tuple(y.shape)}")
        checked = self.validate_args and not torch.compiler.is_compiling()
        if checked and (bool((y < 0).any()) or bool((y >= k).any())):
            raise ValueError(f"labels must lie in [0, {k}), got min {y.min()} and max {y.max()}")
        param = self._param()
        return F.one_hot(y.to(param.device), k).to(param.dtype)  # (N, classes)

    # ------------------------------------------------------------ likelihood
    def _raw(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        self.check_input(x)
        cond = self.condition(y, x.shape[0])
        dtype = self._param().dtype
        return self.network(self.distribution.preprocess(x, dtype), cond)  # (N, C*P, H, W)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The output distribution's parameters (logits) at every pixel; see the class Shape."""
        return self.distribution.shape_params(self._raw(x, y), self.config.data_channels)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Log-likelihood of each image in nats, ``(N, C, H, W) -> (N,)``."""
        return self.distribution.log_prob(self._raw(x, y), x)

    def bits_per_dim(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood of each image in bits per dimension, ``(N,)``."""
        return nats_to_bits_per_dim(-self.log_prob(x, y), math.prod(x.shape[1:]))  # type: ignore[return-value]

    # --------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        y: torch.Tensor | None = None,
        *,
        size: tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
        method: Literal["cached", "naive"] = "cached",
        image: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        cuda_graphs: bool | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Draw ``n`` images, or complete ``image`` where ``known`` is ``False``.

        Both methods consume the same noise (one uniform number per sub-pixel, and one more
        per pixel for the mixture component of a logistic mixture, drawn up front
        from ``generator``), so with the same seed they return the same images.

        Args:
            n: number of images (taken from ``image`` when completing).
            y: labels ``(n,)`` for a class-conditional model.
            size: ``(H, W)``; default ``config.image_size`` (or ``image``'s size).
            generator: source of randomness (on the model's device or the CPU).
            method: ``"cached"`` (fast, default) or ``"naive"`` (one forward pass per sub-pixel,
                or per pixel for a logistic mixture).
            image: an image batch ``(n, C, H, W)`` to complete.
            known: bool mask broadcastable to ``image``'s shape, ``True`` where pixels are given
                (whole pixels for a logistic mixture, which draws a pixel's channels together).
            cuda_graphs: for ``method="cached"``, replay rows as CUDA graphs (default: when the
                model is on a CUDA device; ``False`` opts out).
            temperature: divide the logits by it (1: the model as trained, exactly; below 1
                sharpens, above 1 flattens). Both methods still agree for the same seed.

        Returns:
            Images ``(n, C, H, W)``: float ``{0, 1}`` for Bernoulli, ``long`` for categorical
            and logistic mixture.
        """
        if method not in ("cached", "naive"):
            raise ValueError(f"method must be 'cached' or 'naive', got {method!r}")
        param = self._param()
        if image is not None:
            self.check_input(image)
            n = image.shape[0] if n is None else n
            size = tuple(image.shape[-2:]) if size is None else size  # type: ignore[assignment]
            image = image.to(device=param.device)
        if n is not None:
            n = check_int("n", n)
        if n is None or n < 1:
            raise ValueError(f"n must be a positive number of images, got {n}")
        height, width = check_pair("size", size) if size is not None else self.config.image_size
        if height < 1 or width < 1:
            raise ValueError(f"size must be (H, W) with H, W >= 1, got {size}")
        if known is not None and not isinstance(known, torch.Tensor):
            raise TypeError(f"known must be a bool tensor, got {type(known).__name__}")
        known = known.to(param.device) if known is not None else None
        cond = self.condition(y, n)
        dist = self.distribution
        dist = dist if temperature == 1.0 else dist.with_temperature(temperature)
        channels = dist.noise_channels(self.config.data_channels)  # C, or C + 1 for a mixture
        noise = draw_noise((n, channels, height, width), generator, device=param.device)
        was_training = self.training
        self.eval()
        try:
            if method == "cached":
                x = cached_sample(
                    self.network,
                    dist,
                    noise,
                    cond=cond,
                    image=image,
                    known=known,
                    cuda_graphs=cuda_graphs,
                )
            else:
                x = naive_sample(self.network, dist, noise, cond=cond, image=image, known=known)
        finally:
            self.train(was_training)
        return x.to(self.distribution.output_dtype(x.dtype))
