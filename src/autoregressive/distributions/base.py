"""Output distributions of a PixelCNN: how network outputs become likelihoods and samples.

Each distribution is a small immutable object with pure methods. A network predicts
``params_per_channel`` raw values per colour channel and pixel, laid out channel-major:
``(N, C * P, H, W)`` with channel ``c`` owning ``[c * P, (c + 1) * P)``. Sampling is by the
inverse CDF of one uniform number per sub-pixel (first mapped once by
:meth:`~autoregressive.Distribution.prepare_noise`), so that any sampler fed the same uniform
noise returns the same image.

A ``joint`` distribution (:class:`~autoregressive.DiscretizedLogisticMixture`) instead models
the channels of a pixel together: ``num_params(C)`` raw values per pixel, ``noise_channels(C)``
uniforms per pixel, and :meth:`~autoregressive.Distribution.sample_pixel` draws a whole pixel.

Which of the two a distribution does is said once, by its
:meth:`~autoregressive.Distribution.draw_plan`: a :class:`~autoregressive.DrawPlan` that tells
the samplers how many draws a pixel takes and what each reads, consumes and writes, and tells
the network which masks it needs. The samplers follow the plan and never ask which kind of
distribution they hold.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange

from ..validation import check_choice, check_float, check_int, check_tensor

__all__ = [
    "Bernoulli",
    "Categorical",
    "ColourMode",
    "Distribution",
    "DrawPlan",
    "nats_to_bits_per_dim",
]

#: how a pixel's channels are drawn: one after the other (channel-wise masks) or together
ColourMode = Literal["channel", "pixel"]
COLOUR_MODES: tuple[ColourMode, ...] = ("channel", "pixel")


def nats_to_bits_per_dim(nats: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    """Convert a negative log-likelihood per image in nats to bits per dimension.

    Args:
        nats: negative log-likelihood of each image, in nats (any shape).
        num_dims: number of dimensions of one image, ``C * H * W``.

    Returns:
        ``nats / (num_dims * ln 2)``, of the same shape.

    Example:
        >>> round(nats_to_bits_per_dim(784 * math.log(2), 784), 6)
        1.0
    """
    if isinstance(nats, bool) or not isinstance(nats, (torch.Tensor, int, float)):
        raise TypeError(f"nats must be a tensor or a number, got {type(nats).__name__}")
    num_dims = check_int("num_dims", num_dims, 1, hint=" (C * H * W of one image)")
    return nats / (num_dims * math.log(2.0))


@dataclass(frozen=True)
class DrawPlan:
    """How the samplers draw one pixel of ``channels`` channels: in ``steps`` equal sub-steps.

    A pixel's raw parameters, its noise channels and its image channels are each cut into
    ``steps`` consecutive parts of equal size, and sub-step ``s`` takes part ``s`` of each: it
    reads the parameters :meth:`param_slice` ``(s)`` of the network's output at the pixel,
    consumes the noise channels :meth:`noise_slice` ``(s)`` and writes the image channels
    :meth:`channel_slice` ``(s)``, by :meth:`~autoregressive.Distribution.draw`. The network
    is stepped again before each sub-step, so a sub-step's parameters see the channels that
    the earlier ones wrote.

    ``colour`` fixes the rest::

        "channel"  C sub-steps of one channel each (channel-wise masks: the outputs
                   for channel c see channels 0 .. c - 1 of the pixel)
        "pixel"    one sub-step that writes the whole pixel (pixel-wise masks: no
                   output sees the pixel itself)

    A pixel that a completion request gives partly is completed by sub-steps: each sub-step's
    channels must be all known or all drawn (whole pixels, for ``"pixel"``).

    Shape:
        - one sub-step's raw parameters: ``(N, params)``
        - its prepared noise: ``(N, *noise_shape)``
        - its draw: ``(N, *value_shape)``

    Example:
        >>> plan = DrawPlan(3, "channel", params=256)  # an RGB Categorical(256)
        >>> plan.steps, plan.param_slice(1), plan.noise_slice(1), plan.channel_slice(1)
        (3, slice(256, 512, None), slice(1, 2, None), slice(1, 2, None))
        >>> DiscretizedLogisticMixture(mixtures=2).draw_plan(3).steps
        1
    """

    #: image channels ``C`` of a pixel
    channels: int
    #: ``"channel"``: one sub-step per channel; ``"pixel"``: one sub-step for the whole pixel
    colour: ColourMode
    #: raw parameters each sub-step reads: ``P`` per channel, or all of the pixel's
    params: int
    #: noise a sub-step consumes per image: ``()``, one number (what ``sample`` takes), or
    #: e.g. ``(C + 1,)`` for a mixture's pixel
    noise_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("channels", "params"):  # a numpy int as an int: one hash
            object.__setattr__(
                self, name, check_int(name, getattr(self, name), 1, owner="DrawPlan")
            )
        check_choice(
            "colour", self.colour, COLOUR_MODES, owner="DrawPlan",
            describe="'channel' (one sub-step per channel) or 'pixel' (one sub-step per pixel)",
        )  # fmt: skip
        shape = self.noise_shape
        if not isinstance(shape, tuple):
            raise TypeError(
                f"DrawPlan: noise_shape must be a tuple of ints >= 1 such as (4,), got {shape!r}"
            )
        for i, d in enumerate(shape):
            check_int(f"noise_shape[{i}]", d, 1, owner="DrawPlan")

    @property
    def steps(self) -> int:
        """Sub-steps per pixel, ``S``: ``C`` channel by channel, 1 for a whole pixel."""
        return self.channels if self.colour == "channel" else 1

    @property
    def value_shape(self) -> tuple[int, ...]:
        """What a sub-step draws per image: ``()``, one channel, or ``(C,)``, the pixel."""
        return () if self.colour == "channel" else (self.channels,)

    @property
    def writes(self) -> int:
        """Image channels each sub-step writes: 1, or ``C``."""
        return math.prod(self.value_shape)

    @property
    def noise_per_step(self) -> int:
        """Noise channels each sub-step consumes, the product of ``noise_shape``."""
        return math.prod(self.noise_shape)

    @property
    def noise_channels(self) -> int:
        """Noise channels of a pixel, ``steps * noise_per_step``."""
        return self.steps * self.noise_per_step

    @property
    def num_params(self) -> int:
        """Raw parameters of a pixel, ``steps * params``."""
        return self.steps * self.params

    def param_slice(self, step: int) -> slice:
        """The raw parameters of the pixel that sub-step ``step`` reads."""
        return slice(step * self.params, (step + 1) * self.params)

    def noise_slice(self, step: int) -> slice:
        """The noise channels of the pixel that sub-step ``step`` consumes."""
        return slice(step * self.noise_per_step, (step + 1) * self.noise_per_step)

    def channel_slice(self, step: int) -> slice:
        """The image channels of the pixel that sub-step ``step`` writes."""
        return slice(step * self.writes, (step + 1) * self.writes)


class Distribution:
    """Interface of an output distribution.

    Implemented by :class:`Bernoulli`, :class:`Categorical` (per channel) and the ``joint``
    :class:`~autoregressive.DiscretizedLogisticMixture` (whole pixels).

    Example:
        >>> raw = torch.zeros(2, 1, 4, 4)  # (N, C * P, H, W): one logit per pixel
        >>> Bernoulli().log_prob(raw, torch.ones(2, 1, 4, 4))  # 16 fair coins per image
        tensor([-11.0904, -11.0904])
    """

    #: raw network outputs per colour channel and pixel (distributions that are not ``joint``)
    params_per_channel: int = 1
    #: logits are divided by it in ``log_prob`` and ``sample`` (1: the model as trained)
    temperature: float = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.__dict__.get("joint", Distribution.joint), property):
            # a plain attribute would hide the property while the samplers follow draw_plan
            raise TypeError(
                f"{cls.__name__} sets `joint`; say how a pixel is drawn by overriding "
                "draw_plan (and draw) instead, as DiscretizedLogisticMixture does"
            )

    @property
    def joint(self) -> bool:
        """Whether it models the channels of a pixel together (pixel-wise masks, one draw).

        Read from :meth:`draw_plan`, which is what the samplers and the masks follow.
        """
        return self.draw_plan(1).colour == "pixel"

    def draw_plan(self, data_channels: int) -> DrawPlan:
        """How the samplers draw a pixel of ``data_channels`` channels (see :class:`DrawPlan`).

        Channel by channel by default: ``C`` sub-steps, each reading ``params_per_channel``
        raw parameters and one noise number, each drawn by :meth:`sample`.
        """
        return DrawPlan(data_channels, "channel", params=self.params_per_channel)

    def draw(self, raw: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One sub-step of :meth:`draw_plan`: :meth:`sample`, one channel, by default.

        Args:
            raw: the sub-step's raw parameters ``(N, plan.params)``.
            noise: its prepared noise ``(N, *plan.noise_shape)`` (see :meth:`prepare_noise`).

        Returns:
            Values ``(N, *plan.value_shape)`` (callers cast them to the image dtype).
        """
        return self.sample(raw, noise)

    def tempered(self, raw: torch.Tensor) -> torch.Tensor:
        """``raw / temperature`` (``raw`` itself, untouched, at temperature 1)."""
        return raw if self.temperature == 1.0 else raw / self.temperature

    def with_temperature(self, temperature: float) -> Distribution:
        """A copy whose ``log_prob`` and ``sample`` divide the logits by ``temperature``.

        Raises:
            TypeError: ``temperature`` is not a number, or this distribution is not a dataclass
                with a ``temperature`` field (define one to support temperatures).
            ValueError: ``temperature`` is not positive and finite.
        """
        if not dataclasses.is_dataclass(self) or "temperature" not in {
            f.name for f in dataclasses.fields(self)
        }:
            raise TypeError(
                f"{type(self).__name__} has no temperature: make it a dataclass with a "
                "`temperature: float = 1.0` field whose log_prob and sample use self.tempered"
            )
        return dataclasses.replace(self, temperature=temperature)

    def num_params(self, data_channels: int) -> int:
        """Raw network outputs per pixel for ``data_channels`` channels (``C * P`` by default)."""
        return data_channels * self.params_per_channel

    def noise_channels(self, data_channels: int) -> int:
        """Channels of the uniform noise that samples ``data_channels`` channels (``C``)."""
        return data_channels

    def image_channels(self, noise_channels: int) -> int:
        """The image channels ``C`` that noise of ``noise_channels`` channels samples."""
        return noise_channels

    def validate(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` holds values this distribution can model."""
        raise NotImplementedError

    def preprocess(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The network's input for data ``x``: elementwise, same shape, in ``dtype``."""
        raise NotImplementedError

    def shape_params(self, raw: torch.Tensor, data_channels: int) -> torch.Tensor:
        """Reshape raw outputs ``(N, C * P, H, W)`` to the form ``PixelCNN.forward`` returns."""
        raise NotImplementedError

    def log_prob(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Log-likelihood in nats per image, ``(N, C * P, H, W)``, ``(N, C, H, W)`` -> ``(N,)``."""
        raise NotImplementedError

    def prepare_noise(self, u: torch.Tensor) -> torch.Tensor:
        """Map uniform noise in ``[0, 1)`` (any shape) to what :meth:`sample` consumes."""
        return u

    def sample(self, raw: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Inverse-CDF draw for one channel.

        Args:
            raw: the channel's raw parameters ``(N, P)``.
            noise: prepared noise ``(N,)`` (see :meth:`prepare_noise`).

        Returns:
            Values ``(N,)`` (bool or integer; callers cast them to the image dtype).
        """
        raise NotImplementedError

    def sample_pixel(self, raw: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Inverse-CDF draw of whole pixels, for distributions whose plan draws them at once.

        Args:
            raw: the pixel's raw parameters ``(N, num_params(C))``.
            noise: prepared noise ``(N, noise_channels(C))``.

        Returns:
            Values ``(N, C)`` (callers cast them to the image dtype).
        """
        raise NotImplementedError(f"{type(self).__name__} samples channel by channel (sample)")

    def output_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """dtype of the images that ``PixelCNN.sample`` returns for a model in ``dtype``."""
        return dtype

    def value_probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        """The probability of each value of one channel, from its raw parameters, in float64.

        What an entropy coder codes the channel with (:mod:`autoregressive.coding`).

        Args:
            raw: the channel's raw parameters ``(N, P)``.

        Returns:
            Probabilities ``(N, L)`` (``L`` values: 2 for Bernoulli, ``levels``), rows summing
            to 1, in float64 whatever ``raw``'s dtype.
        """
        raise NotImplementedError(
            f"{type(self).__name__} gives no probability table per channel: implement "
            "value_probabilities (or pick_channels) to code it"
        )

    def pick_channels(
        self, raw: torch.Tensor, pick: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """One sub-step of :meth:`draw_plan` chosen channel by channel from probability tables.

        For each channel the sub-step writes, in order, ``pick`` receives the probabilities of
        its values given the channels before it in the pixel, ``(N, L)`` float64, and returns
        the values chosen, ``(N,)`` integers: an entropy encoder hands back the known values,
        a decoder those it reads. One channel per sub-step by default
        (:meth:`value_probabilities`); a distribution whose sub-step writes a whole pixel
        gives each channel's conditional table in turn.

        Args:
            raw: the sub-step's raw parameters ``(N, plan.params)``.
            pick: ``(N, L) -> (N,)``, called once per channel of the sub-step.

        Returns:
            The values ``(N, *plan.value_shape)``, ``long``.

        Example:
            >>> likelier = lambda p: (p[:, 1] > p[:, 0]).long()  # (N, 2) -> (N,)
            >>> Bernoulli().pick_channels(torch.tensor([[2.0], [-1.0]]), likelier)
            tensor([1, 0])
        """
        return pick(self.value_probabilities(raw)).long()


def _check_temperature(owner: str, t: object) -> None:
    hint = " (1 samples the model as trained, below 1 sharpens, above 1 flattens)"
    check_float("temperature", t, positive=True, owner=owner, hint=hint)


#: what a ``levels`` error adds: the usual value
_LEVELS = " (2 ** bits: 256 for 8-bit images)"


def _check_scored(raw: object, x: object, params: int, *, per_channel: bool = True) -> None:
    """``raw`` ``(N, C * P, H, W)`` and ``x`` ``(N, C, H, W)`` tensors that belong together.

    ``params`` is ``P`` per channel, or with ``per_channel=False`` the parameters per pixel.
    """
    raw = check_tensor("raw", raw, owner="log_prob", like=" (N, C * P, H, W)")
    x = check_tensor("x", x, owner="log_prob", like=" (N, C, H, W)", device=raw.device)
    if raw.dim() != 4 or x.dim() != 4 or raw.shape[0] != x.shape[0]:
        raise ValueError(
            f"log_prob needs raw (N, C * P, H, W) and x (N, C, H, W), got {tuple(raw.shape)} "
            f"and {tuple(x.shape)}"
        )
    wanted = x.shape[1] * params if per_channel else params
    if raw.shape[1] != wanted or raw.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"raw {tuple(raw.shape)} does not fit x {tuple(x.shape)}: it needs {params} "
            f"parameters per {'channel' if per_channel else 'pixel'} and the same H, W"
        )


def _check_finite(x: torch.Tensor) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError("images contain NaN or infinite values")


def check_integer_levels(x: torch.Tensor, levels: int, owner: str) -> None:
    """Raise ``ValueError`` unless ``x`` holds integers in ``[0, levels)`` (bool allowed)."""
    _check_finite(x)
    if x.dtype == torch.bool:
        return
    if x.is_floating_point() and not bool((x == x.round()).all()):
        raise ValueError(
            f"a {owner} model needs integer pixel values in [0, {levels}), got "
            f"non-integer floats; quantise them, e.g. (x * {levels - 1}).round().long()"
        )
    if x.numel() == 0:
        return
    low, high = x.min().item(), x.max().item()  # Python numbers: levels may not fit the dtype
    if low < 0 or high >= levels:
        raise ValueError(
            f"pixel values must lie in [0, {levels}) for levels={levels}, got min {low} and "
            f"max {high}"
        )


@dataclass(frozen=True)
class Bernoulli(Distribution):
    """Binary pixels in ``{0, 1}`` with one logit each (binary cross-entropy).

    Example:
        >>> d = Bernoulli()
        >>> x = torch.tensor([[[[0.0, 1.0]]]])
        >>> d.log_prob(torch.zeros(1, 1, 1, 2), x)  # two fair coins
        tensor([-1.3863])
    """

    params_per_channel: int = 1
    temperature: float = 1.0

    def __post_init__(self) -> None:
        _check_temperature(type(self).__name__, self.temperature)

    def validate(self, x: torch.Tensor) -> None:
        _check_finite(x)
        if x.dtype != torch.bool and not bool(((x == 0) | (x == 1)).all()):
            raise ValueError(
                "a Bernoulli model needs binary images with values in {0, 1}; binarize them "
                "first, e.g. (x > 0.5).float() or torch.bernoulli(x)"
            )

    def preprocess(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return x.to(dtype)

    def shape_params(self, raw: torch.Tensor, data_channels: int) -> torch.Tensor:
        return raw  # (N, C, H, W) logits

    def log_prob(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        _check_scored(raw, x, 1)
        logits = self.tempered(raw)  # (N, C, H, W)
        bce = F.binary_cross_entropy_with_logits(logits, x.to(raw.dtype), reduction="none")
        return -bce.flatten(1).sum(1)  # (N,)

    def prepare_noise(self, u: torch.Tensor) -> torch.Tensor:
        """``logit(u)``: then ``u < sigmoid(l)`` is ``l > logit(u)``, one comparison per draw."""
        return torch.log(u) - torch.log1p(-u)

    def sample(self, raw: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.tempered(raw[:, 0]) > noise  # (N,) bool

    def value_probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        logits = self.tempered(raw[:, :1].to(torch.float64))  # (N, 1)
        return torch.sigmoid(torch.cat([-logits, logits], dim=1))  # (N, 2): P(0), P(1)


@dataclass(frozen=True)
class Categorical(Distribution):
    """``levels`` discrete values per channel, ``0`` to ``levels - 1``, with a softmax over them.

    For colour the channels of a pixel are modelled one after the other (channel-wise masks), as
    in the PixelCNN paper. The network sees ``x`` rescaled to ``[-1, 1]`` (intensities), or
    with ``input="index"`` the values themselves, for a network that embeds them (categories
    such as a VQ-VAE's codes, see :class:`~autoregressive.CategoricalEmbedding`).

    Args:
        levels: number of values per channel (256 for 8-bit images).
        temperature: logits are divided by it in ``log_prob`` and ``sample``.
        input: what :meth:`preprocess` feeds the network: ``"scaled"``,
            ``x * 2 / (levels - 1) - 1``, or ``"index"``, ``x`` unchanged (in the network's
            dtype).

    Example:
        >>> d = Categorical(4)
        >>> d.log_prob(torch.zeros(1, 4, 1, 1), torch.tensor([[[[3]]]]))  # uniform over 4
        tensor([-1.3863])
    """

    levels: int = 256
    temperature: float = 1.0
    input: Literal["scaled", "index"] = "scaled"

    def __post_init__(self) -> None:
        levels = check_int("levels", self.levels, 2, owner="Categorical", hint=_LEVELS)
        object.__setattr__(self, "levels", levels)  # a numpy int as an int: one hash
        _check_temperature("Categorical", self.temperature)
        check_choice(
            "input", self.input, ("scaled", "index"), owner="Categorical",
            describe="'scaled' (intensities rescaled to [-1, 1]) or 'index' (the values, for a "
            "network that embeds them)",
        )  # fmt: skip

    @property
    def params_per_channel(self) -> int:  # type: ignore[override]
        return self.levels

    def validate(self, x: torch.Tensor) -> None:
        check_integer_levels(x, self.levels, "Categorical")

    def preprocess(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.input == "index":
            return x.to(dtype)
        return x.to(dtype) * (2.0 / (self.levels - 1)) - 1.0

    def shape_params(self, raw: torch.Tensor, data_channels: int) -> torch.Tensor:
        return rearrange(raw, "n (c l) h w -> n c l h w", c=data_channels)

    def log_prob(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        _check_scored(raw, x, self.levels)
        logits = rearrange(self.tempered(raw), "n (c l) h w -> n c h w l", l=self.levels)
        logp = torch.log_softmax(logits, dim=-1)  # (N, C, H, W, L)
        picked = logp.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)  # (N, C, H, W)
        return picked.flatten(1).sum(1)  # (N,)

    def sample(self, raw: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        cdf = torch.softmax(self.tempered(raw.to(noise.dtype)), dim=-1).cumsum(-1)  # (N, L)
        return (noise.unsqueeze(-1) >= cdf).sum(-1).clamp_(max=self.levels - 1)  # (N,)

    def value_probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.tempered(raw.to(torch.float64)), dim=-1)  # (N, L)

    def output_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return torch.long
