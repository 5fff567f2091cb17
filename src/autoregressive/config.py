"""Configuration of a :class:`~autoregressive.PixelCNN`, with named presets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from .distributions import Bernoulli, Categorical, Distribution

__all__ = ["PRESETS", "PixelCNNConfig"]


@dataclass(frozen=True)
class PixelCNNConfig:
    """Everything that defines a PixelCNN's architecture. Immutable; validated on creation.

    Example:
        >>> cfg = PixelCNNConfig(block="gated", num_blocks=4, hidden_channels=32)
        >>> cfg.out_channels
        1
        >>> PixelCNNConfig.preset("reference").num_blocks
        9
    """

    data_channels: int = 1  # colour channels of the images: 1 (grey) or 3 (RGB), ...
    distribution: Literal["bernoulli", "categorical"] = "bernoulli"  # output likelihood
    levels: int = 2  # values per channel for "categorical" (256 for 8-bit images)
    block: Literal["residual", "gated"] = "residual"  # PixelCNN residual or Gated PixelCNN
    num_blocks: int = 9  # residual blocks after the input layer / gated blocks including the first
    hidden_channels: int = 128  # channels between blocks (2h in the PixelCNN paper)
    input_kernel_size: int = 7  # kernel of the mask-A input layer (or first gated block)
    kernel_size: int = 3  # kernel of every later block
    head_channels: int = 0  # 0: ReLU + one 1x1 output layer; > 0: an extra 1x1 layer this wide
    num_classes: int | None = None  # class-conditional on labels 0 .. num_classes - 1
    image_size: tuple[int, int] = (28, 28)  # (H, W) that sample() draws when not told otherwise

    def __post_init__(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"PixelCNNConfig: {msg}")

        if self.data_channels < 1:
            fail(f"data_channels must be >= 1, got {self.data_channels}")
        if self.distribution not in ("bernoulli", "categorical"):
            fail(f"distribution must be 'bernoulli' or 'categorical', got {self.distribution!r}")
        if self.distribution == "categorical" and self.levels < 2:
            fail(f"levels must be >= 2 for a categorical output, got {self.levels}")
        if self.block not in ("residual", "gated"):
            fail(f"block must be 'residual' or 'gated', got {self.block!r}")
        if self.num_blocks < (1 if self.block == "gated" else 0):
            fail(f"num_blocks={self.num_blocks} is too small for block={self.block!r}")
        step = 2 * self.data_channels if self.block == "residual" else self.data_channels
        if self.hidden_channels < step or self.hidden_channels % step != 0:
            fail(
                f"hidden_channels={self.hidden_channels} must be a positive multiple of {step} "
                f"(the colour groups of the channel-wise masks"
                + (", halved inside residual blocks)" if self.block == "residual" else ")")
            )
        for name in ("input_kernel_size", "kernel_size"):
            k = getattr(self, name)
            if not isinstance(k, int) or k < 1 or k % 2 == 0:
                fail(f"{name} must be an odd positive int, got {k!r}")
        if self.block == "gated" and min(self.input_kernel_size, self.kernel_size) < 3:
            fail("gated blocks need kernel sizes >= 3")
        if self.head_channels < 0 or self.head_channels % self.data_channels != 0:
            fail(
                f"head_channels must be 0 or a multiple of data_channels, got {self.head_channels}"
            )
        if self.num_classes is not None and self.num_classes < 1:
            fail(f"num_classes must be None or >= 1, got {self.num_classes}")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            fail(f"image_size must be (H, W) with H, W >= 1, got {self.image_size!r}")

    def make_distribution(self) -> Distribution:
        """The output distribution object this configuration describes."""
        return Bernoulli() if self.distribution == "bernoulli" else Categorical(self.levels)

    @property
    def out_channels(self) -> int:
        """The network's raw output channels, ``data_channels * params_per_channel``."""
        return self.data_channels * self.make_distribution().params_per_channel

    def replace(self, **changes: Any) -> PixelCNNConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **changes: Any) -> PixelCNNConfig:
        """A named configuration from :data:`PRESETS`, optionally with fields changed.

        Args:
            name: one of ``PRESETS``' keys.
            **changes: fields to override.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return replace(PRESETS[name], **changes)


#: Named configurations. ``"reference"`` is the seed project's binarized-MNIST model: a masked
#: 7x7 type-A input layer, 9 residual blocks of 128 channels, a 1x1 Bernoulli output layer;
#: 488,065 parameters. ``"gated-small"`` is a Gated PixelCNN sized for CPU training;
#: ``"gated"`` one sized for a GPU.
PRESETS: dict[str, PixelCNNConfig] = {
    "reference": PixelCNNConfig(),
    "gated-small": PixelCNNConfig(
        block="gated",
        num_blocks=6,
        hidden_channels=32,
        input_kernel_size=7,
        kernel_size=3,
        head_channels=64,
    ),
    "gated": PixelCNNConfig(
        block="gated",
        num_blocks=12,
        hidden_channels=96,
        input_kernel_size=7,
        kernel_size=3,
        head_channels=256,
    ),
}
