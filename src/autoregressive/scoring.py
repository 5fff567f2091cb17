r"""Out-of-distribution scores: input perturbation and the likelihood ratio of two models.

A likelihood model's own likelihood is a poor judge of whether an input looks like its training
data: PixelCNNs, flows and VAEs give simple inputs such as blank images *higher* likelihoods
than the data they were trained on (Nalisnick et al., *Do Deep Generative Models Know What They
Don't Know?*, 2019, https://arxiv.org/abs/1810.09136). The likelihood is dominated by
population-level "background" statistics (how many pixels are off, how smooth an image is), not
by what the image shows.

Ren et al. (*Likelihood Ratios for Out-of-Distribution Detection*, 2019,
https://arxiv.org/abs/1906.02845) cancel the background out: a second model of the same
architecture is trained on inputs whose values are replaced, each with probability ``rate``, by
uniform random values (:func:`perturb`). The noise destroys the semantics but keeps the
background statistics, so the background model learns mostly the latter, and the score

.. math::

    \operatorname{LLR}(x) = \log p_\theta(x) - \log p_{\theta_0}(x)

(:func:`likelihood_ratio`, nats, higher = more like the training data) keeps what only the full
model knows. :func:`log_likelihood` is the raw score, computed the same way.
"""

from __future__ import annotations

import torch

from .conditioning import Conditioning
from .models.model import AutoregressiveModel, eval_mode
from .validation import check_float, check_int, check_tensor

__all__ = ["likelihood_ratio", "log_likelihood", "perturb"]

#: images scored in one forward pass by default
CHUNK = 256

Cond = torch.Tensor | Conditioning | None


def perturb(
    x: torch.Tensor, rate: float, levels: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each value, independently with probability ``rate``, by a uniform random value.

    The replacement is drawn uniformly from all ``levels`` values, the old one included, so a
    value changes with probability ``rate * (levels - 1) / levels``. Ren et al. train the
    background model of :func:`likelihood_ratio` on inputs perturbed this way (``rate`` 0.1 to
    0.3). Two draws from ``generator``, each one number per value in the order of
    ``x.flatten()``: first whether to replace (uniform ``< rate``), then the new value
    (``torch.randint``). The same generator state always gives the same output.

    Args:
        x: integer values in ``[0, levels)``: ``{0, 1}`` floats (or bools) for a Bernoulli
            model with ``levels=2``, ``0..255`` for 8-bit images; any shape, any dtype.
        rate: the probability of replacing each value, in ``[0, 1]``.
        levels: the number of values a pixel can take (2 for binary images).
        generator: source of randomness (CPU, or on ``x``'s device).

    Returns:
        The perturbed values, of ``x``'s shape, dtype and device.

    Raises:
        TypeError: ``x`` is not a tensor, or ``rate`` / ``levels`` not numbers.
        ValueError: ``rate`` outside ``[0, 1]``, ``levels < 2``, ``levels > 2`` for bools, or
            values that are not integers in ``[0, levels)``.

    Shape:
        - ``x``: any, e.g. :math:`(N, C, H, W)`; output: the same.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.zeros(2, 1, 3, 3)
        >>> y = perturb(x, 0.5, 2, g)
        >>> y.shape, y.dtype, set(y.unique().tolist()) <= {0.0, 1.0}
        (torch.Size([2, 1, 3, 3]), torch.float32, True)
        >>> torch.equal(perturb(x, 0.0, 2, g), x)
        True
    """
    check_tensor("x", x, like=" of integer values in [0, levels)")
    levels = check_int("levels", levels, 2, owner="perturb", hint=" (2 for binary images)")
    rate = check_float("rate", rate, minimum=0, owner="perturb")
    if rate > 1:
        raise ValueError(f"perturb: rate is a probability; pass a value in [0, 1], got {rate}")
    if x.dtype == torch.bool and levels != 2:
        raise ValueError(f"perturb: bool values have 2 levels, got levels={levels}; pass 2")
    _check_levels(x, levels)
    device = generator.device if generator is not None else x.device
    replace = torch.rand(x.shape, generator=generator, device=device) < rate
    values = torch.randint(levels, x.shape, generator=generator, device=device)
    return torch.where(replace.to(x.device), values.to(x.device, x.dtype), x)


def log_likelihood(
    model: AutoregressiveModel, x: torch.Tensor, cond: Cond = None, *, chunk_size: int = CHUNK
) -> torch.Tensor:
    """Each image's log-likelihood under ``model``, in chunks, without gradients, in eval mode.

    The raw out-of-distribution score (see the module docstring for why it misleads); the
    result equals ``model.log_prob(x, cond)`` whatever ``chunk_size``.

    Args:
        model: an :class:`~autoregressive.AutoregressiveModel` such as a
            :class:`~autoregressive.PixelCNN`; switched to eval mode and back.
        x: images the model scores, on the model's device.
        cond: the model's conditioning of ``x``, as for :meth:`PixelCNN.log_prob`.
        chunk_size: images per forward pass (memory against speed).

    Returns:
        Log-likelihoods in nats, in the dtype ``log_prob`` returns.

    Raises:
        TypeError: ``model`` is not an AutoregressiveModel.
        ValueError: images or conditioning the model cannot score, or ``chunk_size < 1``.

    Shape:
        - ``x``: :math:`(N, C, H, W)`; ``cond``: as for :meth:`PixelCNN.log_prob`.
        - output: :math:`(N,)`.

    Example:
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8))
        >>> x = torch.randint(0, 2, (5, 1, 6, 6)).float()
        >>> torch.allclose(log_likelihood(model, x, chunk_size=2), model.log_prob(x))
        True
    """
    _check_model("model", model)
    chunk_size = check_int("chunk_size", chunk_size, 1, owner="log_likelihood")
    with eval_mode(model), torch.no_grad():
        return model.log_prob(x, cond, chunk_size=chunk_size)  # (N,)


def likelihood_ratio(
    model: AutoregressiveModel,
    background: AutoregressiveModel,
    x: torch.Tensor,
    cond: Cond = None,
    *,
    chunk_size: int = CHUNK,
) -> torch.Tensor:
    """Ren et al.'s score ``log p_model(x) - log p_background(x)``: higher = more in-distribution.

    ``background`` is a model of the same kind trained on inputs perturbed by :func:`perturb`;
    it should have ``model``'s config (the same architecture), and must at least model the
    same images: the same distribution, levels and data channels. Both models score ``x``
    with the same ``cond``, so a conditional model needs a background model conditioned alike.

    Args:
        model: the model of the in-distribution data (the foreground).
        background: the model of the perturbed data.
        x: images both models score, on their device.
        cond: the conditioning of ``x``, as for :meth:`PixelCNN.log_prob`.
        chunk_size: images per forward pass.

    Returns:
        The log-likelihood ratios, nats.

    Raises:
        TypeError: a model is not an AutoregressiveModel.
        ValueError: the models model different images (distribution, levels, data channels or
            image size differ), or ``x`` / ``cond`` cannot be scored (see :func:`log_likelihood`).

    Shape:
        - ``x``: :math:`(N, C, H, W)`; output: :math:`(N,)`.

    Example:
        >>> config = PixelCNNConfig(num_blocks=2, hidden_channels=8)
        >>> model, background = PixelCNN(config), PixelCNN(config)
        >>> x = torch.randint(0, 2, (4, 1, 6, 6)).float()
        >>> ratio = likelihood_ratio(model, background, x)
        >>> torch.allclose(ratio, model.log_prob(x) - background.log_prob(x))
        True
    """
    _check_model("model", model)
    _check_model("background", background)
    _check_same_images(model, background)
    foreground = log_likelihood(model, x, cond, chunk_size=chunk_size)
    return foreground - log_likelihood(background, x, cond, chunk_size=chunk_size)  # (N,)


def _check_levels(x: torch.Tensor, levels: int) -> None:
    """Raise ``ValueError`` unless ``x``'s dtype holds ``levels`` values and ``x`` holds them."""
    if (
        not (x.dtype == torch.bool or x.is_floating_point())
        and torch.iinfo(x.dtype).max < levels - 1
    ):
        raise ValueError(
            f"perturb: {x.dtype} cannot hold the values 0..{levels - 1}; convert x first, e.g. "
            "x.long()"
        )
    if x.dtype == torch.bool or x.numel() == 0:
        return
    integers = not x.is_floating_point() or bool((x == x.round()).all())  # NaN fails too
    if not integers or x.min().item() < 0 or x.max().item() >= levels:  # Python numbers
        raise ValueError(
            f"perturb: x must hold integer values in [0, {levels}) (levels={levels}); quantise "
            "or binarize it first, e.g. (x > 0.5).float() for levels=2"
        )


def _check_model(name: str, model: object) -> None:
    if not isinstance(model, AutoregressiveModel):
        raise TypeError(
            f"{name} must be an AutoregressiveModel such as a PixelCNN (e.g. "
            f"PixelCNN.from_pretrained(...)), got {type(model).__name__}"
        )


def _check_same_images(model: AutoregressiveModel, background: AutoregressiveModel) -> None:
    """Raise ``ValueError`` unless both models model the same kind of images."""

    def kind(m: AutoregressiveModel) -> dict[str, object]:
        d = m.distribution
        return {
            "distribution": type(d).__name__,
            "levels": getattr(d, "levels", 2),
            "data_channels": m.data_channels,
            "image_size": m.image_size,
        }

    a, b = kind(model), kind(background)
    differ = [f"{f} {a[f]!r} vs {b[f]!r}" for f in a if a[f] != b[f]]
    if differ:
        raise ValueError(
            f"likelihood_ratio: the model and the background model model different images "
            f"({'; '.join(differ)}); train the background model with the model's config, e.g. "
            "PixelCNN(model.config), on perturbed training images"
        )
