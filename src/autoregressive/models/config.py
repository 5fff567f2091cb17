"""Configuration of a :class:`~autoregressive.PixelCNN`, with named presets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, NoReturn

from ..distributions.base import Bernoulli, Categorical, ColourMode, Distribution
from ..distributions.logistic_mixture import DiscretizedLogisticMixture
from ..layers.masks import mask_groups
from ..validation import check_choice, check_int, check_optional_int, check_pair

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
        >>> dlm = PixelCNNConfig(data_channels=3, distribution="logistic_mixture", levels=256)
        >>> dlm.out_channels, dlm.colour  # 10 mixture components, pixel-wise masks
        (100, 'pixel')
    """

    data_channels: int = 1  # colour channels of the images: 1 (grey) or 3 (RGB), ...
    distribution: Literal["bernoulli", "categorical", "logistic_mixture"] = "bernoulli"  # output
    levels: int = 2  # values per channel, categorical or logistic_mixture (256 for 8-bit images)
    # PixelCNN residual blocks, Gated PixelCNN, or PixelSNAIL (residual blocks and attention)
    block: Literal["residual", "gated", "snail"] = "residual"
    # residual blocks after the input layer / gated blocks including the first / snail: attention
    # blocks, each after `attention_every` residual blocks
    num_blocks: int = 9
    hidden_channels: int = 128  # channels between blocks (2h in the PixelCNN paper)
    input_kernel_size: int = 7  # kernel of the mask-A input layer (or first gated block)
    kernel_size: int = 3  # kernel of every later block
    head_channels: int = 0  # 0: ReLU + one 1x1 output layer; > 0: an extra 1x1 layer this wide
    num_classes: int | None = None  # class-conditional on labels 0 .. num_classes - 1
    vector_size: int | None = None  # conditioned on a vector (an embedding) of this size
    spatial_channels: int | None = None  # conditioned on a map (N, spatial_channels, H, W)
    image_size: tuple[int, int] = (28, 28)  # (H, W) that sample() draws when not told otherwise
    # how "categorical" values reach the network: "scaled" to [-1, 1] (intensities), or as
    # categories (e.g. VQ-VAE codes) through a "onehot" or "learned" CategoricalEmbedding
    input_embedding: Literal["scaled", "onehot", "learned"] = "scaled"
    embedding_dim: int = 16  # width of a "learned" embedding per data channel ("onehot": levels)
    mixtures: int = 10  # components of a "logistic_mixture" output (PixelCNN++: 10)
    attention_heads: int = 1  # block="snail": heads of each attention layer
    attention_key_channels: int = 16  # block="snail": query and key channels per head
    attention_every: int = 2  # block="snail": residual blocks before each attention layer

    def __post_init__(self) -> None:
        self._check_types()
        self._check_values()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen dataclass's own field

    def _check_types(self) -> None:
        """Each field's type (``bool`` is not an ``int``); ints and sequences normalised."""
        owner = "PixelCNNConfig"
        for name, minimum in _INT_FIELDS.items():
            self._set(name, check_int(name, getattr(self, name), minimum, owner=owner))
        for name, choices in _CHOICES.items():
            check_choice(name, getattr(self, name), choices, owner=owner)
        for name in ("num_classes", "vector_size", "spatial_channels"):
            self._set(name, check_optional_int(name, getattr(self, name), 1, owner=owner))
        size = check_pair("image_size", self.image_size, 1, single=False, owner=owner)
        self._set("image_size", size)

    def _check_values(self) -> None:
        """The constraints between fields."""
        if self.distribution != "bernoulli" and self.levels < 2:
            fail(f"levels must be >= 2 for a {self.distribution} output, got {self.levels}")
        if self.distribution == "categorical" and self.levels > MAX_CATEGORICAL_LEVELS:
            fail(
                f"levels={self.levels:,} is too many for a categorical output, whose last layer "
                f"has hidden_channels x data_channels x levels weights; use at most "
                f"{MAX_CATEGORICAL_LEVELS:,} (16 bits), or distribution='logistic_mixture', "
                "whose size does not grow with levels"
            )
        if self.num_blocks < (0 if self.block == "residual" else 1):
            fail(f"num_blocks={self.num_blocks} is too small for block={self.block!r}")
        groups = self.mask_groups
        halved = self.block == "residual"  # residual blocks halve their width inside
        step = 2 * groups if halved else groups
        if self.hidden_channels < step or self.hidden_channels % step != 0:
            fail(
                f"hidden_channels={self.hidden_channels} must be a positive multiple of {step} "
                f"(the colour groups of the {self.colour}-wise masks"
                + (", halved inside residual blocks)" if halved else ")")
            )
        if self.block == "snail" and self.attention_heads % groups != 0:
            fail(
                f"attention_heads={self.attention_heads} must be a multiple of {groups}: "
                f"channel-wise masks give each colour group its own heads"
            )
        for name in ("input_kernel_size", "kernel_size"):
            if getattr(self, name) % 2 == 0:
                fail(f"{name} must be an odd positive int, got {getattr(self, name)!r}")
        if self.block == "gated" and min(self.input_kernel_size, self.kernel_size) < 3:
            fail("gated blocks need kernel sizes >= 3")
        if self.conditional and self.num_blocks < 1:
            fail("a conditional model needs num_blocks >= 1: the blocks take the conditioning")
        if self.head_channels % self.mask_groups != 0:
            fail(
                f"head_channels must be 0 or a multiple of data_channels, got {self.head_channels}"
            )
        if self.input_embedding != "scaled" and self.distribution != "categorical":
            fail(
                f"input_embedding={self.input_embedding!r} embeds categories and needs "
                f"distribution='categorical', got distribution={self.distribution!r}; use "
                "input_embedding='scaled' for binary images"
            )

    def make_distribution(self) -> Distribution:
        """The output distribution object this configuration describes."""
        return _DISTRIBUTIONS[self.distribution](self)

    @property
    def colour(self) -> ColourMode:
        """The masks the distribution's draw plan needs: ``"channel"``- or ``"pixel"``-wise."""
        return self.make_distribution().draw_plan(self.data_channels).colour

    @property
    def mask_groups(self) -> int:
        """Colour groups of the masks: ``data_channels`` channel-wise, 1 pixel-wise."""
        return mask_groups(self.data_channels, self.colour)

    @property
    def embedding_width(self) -> int | None:
        """Channels per data channel that the input embedding gives, ``None`` without one."""
        if self.input_embedding == "scaled":
            return None
        return self.levels if self.input_embedding == "onehot" else self.embedding_dim

    @property
    def conditional(self) -> bool:
        """Whether the model takes labels, a vector or a map."""
        return self.cond_channels is not None or self.spatial_channels is not None

    @property
    def cond_channels(self) -> int | None:
        """Width of the blocks' conditioning vector: one-hot labels, then the vector."""
        widths = [w for w in (self.num_classes, self.vector_size) if w is not None]
        return sum(widths) if widths else None

    @property
    def out_channels(self) -> int:
        """The network's raw output channels, the distribution's ``num_params(data_channels)``."""
        return self.make_distribution().num_params(self.data_channels)

    def replace(self, **changes: Any) -> PixelCNNConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict (tuples as lists), for :meth:`from_dict`.

        Returns:
            ``{field name: value}`` of every field, in declaration order; only ``int``,
            ``str``, ``None`` and lists of ``int``, so ``json.dumps`` writes it as it is.

        Example:
            >>> import json
            >>> cfg = PixelCNNConfig(block="gated", num_blocks=4, image_size=(8, 12))
            >>> cfg.to_dict()["image_size"]
            [8, 12]
            >>> PixelCNNConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
            True
        """
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PixelCNNConfig:
        """The config that :meth:`to_dict` wrote (or any subset of fields), validated.

        Fields left out take their defaults, so dicts written before a field was added still
        load; lists become tuples. Every value goes through the same checks as the constructor.

        Args:
            data: ``{field name: value}``, e.g. ``json.load`` of a ``config.json``.

        Returns:
            The config.

        Raises:
            TypeError: ``data`` is not a mapping, a key is not a ``str``, or a value has the
                wrong type (the message names the field).
            ValueError: a key is not a field of ``PixelCNNConfig`` (the message names it and
                lists the fields), or a value is out of range.

        Example:
            >>> PixelCNNConfig.from_dict({"num_blocks": 2, "hidden_channels": 8}).num_blocks
            2
            >>> PixelCNNConfig.from_dict({"num_block": 2})
            Traceback (most recent call last):
            ...
            ValueError: PixelCNNConfig: unknown field 'num_block' (fields: data_channels, ...
        """
        if not isinstance(data, Mapping):
            raise TypeError(
                f"PixelCNNConfig.from_dict: data must be a dict of fields, got "
                f"{type(data).__name__} {data!r}"
            )
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise TypeError(f"PixelCNNConfig: field names must be str, got {bad[0]!r}")
        known = [f.name for f in fields(cls)]
        unknown = [k for k in data if k not in known]
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            fail(
                f"unknown field{'s' if len(unknown) > 1 else ''} {names} (fields: "
                f"{', '.join(known)}); was it written by a newer version of autoregressive?"
            )
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **changes: Any) -> PixelCNNConfig:
        """A named configuration from :data:`PRESETS`, optionally with fields changed.

        Args:
            name: one of ``PRESETS``' keys.
            **changes: fields to override.
        """
        if not isinstance(name, str) or name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return replace(PRESETS[name], **changes)


#: the most values per channel a categorical output may have (its weights grow with them)
MAX_CATEGORICAL_LEVELS = 2**16


def fail(msg: str) -> NoReturn:
    raise ValueError(f"PixelCNNConfig: {msg}")


#: minimum of each integer field
_INT_FIELDS = {
    "data_channels": 1,
    "levels": 0,
    "num_blocks": 0,
    "hidden_channels": 1,
    "input_kernel_size": 1,
    "kernel_size": 1,
    "head_channels": 0,
    "embedding_dim": 1,
    "mixtures": 1,
    "attention_heads": 1,
    "attention_key_channels": 1,
    "attention_every": 0,
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "distribution": ("bernoulli", "categorical", "logistic_mixture"),
    "block": ("residual", "gated", "snail"),
    "input_embedding": ("scaled", "onehot", "learned"),
}
#: how each ``distribution`` choice builds its object from the config
_DISTRIBUTIONS: dict[str, Callable[[PixelCNNConfig], Distribution]] = {
    "bernoulli": lambda c: Bernoulli(),
    "categorical": lambda c: Categorical(
        c.levels, input="scaled" if c.embedding_width is None else "index"
    ),
    "logistic_mixture": lambda c: DiscretizedLogisticMixture(c.mixtures, c.levels),
}


_GATED_SMALL = PixelCNNConfig(
    block="gated", num_blocks=6, hidden_channels=32, input_kernel_size=7, kernel_size=3,
    head_channels=64,
)  # fmt: skip

_SNAIL_SMALL = PixelCNNConfig(
    block="snail", num_blocks=2, attention_every=2, hidden_channels=32, input_kernel_size=7,
    kernel_size=3, head_channels=64, attention_heads=2, attention_key_channels=16,
)  # fmt: skip

#: Named configurations. ``"reference"`` is the seed project's binarized-MNIST model: a masked
#: 7x7 type-A input layer, 9 residual blocks of 128 channels, a 1x1 Bernoulli output layer;
#: 488,065 parameters. ``"gated-small"`` is a Gated PixelCNN sized for CPU training;
#: ``"gated"`` one sized for a GPU. ``"snail-small"`` is a PixelSNAIL sized for CPU training
#: on 28x28 images: two blocks of two residual blocks and a two-head attention layer.
PRESETS: dict[str, PixelCNNConfig] = {
    "reference": PixelCNNConfig(),
    "gated-small": _GATED_SMALL,
    "gated": replace(_GATED_SMALL, num_blocks=12, hidden_channels=96, head_channels=256),
    "snail-small": _SNAIL_SMALL,
}
