"""Cached sampling of the residual block of PixelCNN (:class:`~autoregressive.ResidualBlock`).

van den Oord et al., *Pixel Recurrent Neural Networks*, 2016, https://arxiv.org/abs/1601.06759
(figure 5).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from .conv_stepper import ConvStepper
from .rows import row_seed
from .stepping import Stepper, pass_row

__all__ = ["ResidualStepper"]


def _with_ones_column(batch: int, channels: int, like: torch.Tensor) -> torch.Tensor:
    """A ``(N, channels + 1)`` buffer whose last column is 1, so ``buf @ [W; b]`` adds a bias."""
    buf = like.new_zeros(batch, channels + 1)
    buf[:, -1] = 1
    return buf


class ResidualStepper(Stepper):
    """A :class:`~autoregressive.ResidualBlock` per pixel: six tensor operations, any kernel.

    Built by the block's ``stepper()`` from what it computes with: the steppers of its three
    activations and of its first two convolutions, the last 1x1 convolution as ``[W^T; b]``
    (``matrix3``), the conditioning vector's bias ``(N, C/2)`` (``cond_bias``), the conditioning
    map's 1x1 weight ``(C_map, C/2)`` (``spatial_matrix``), the sampler's buffer of the map's
    current row ``(N, W, C_map)`` (``spatial_row``) and whether the activations are all
    ``ReLU`` (``relu``: fused products).

    The conditioning vector's bias is folded into the first convolution's bias (``seeds``); a
    conditioning map adds its 1x1 convolution of the current row to that, once per row in
    :meth:`begin_row`. The middle activation writes straight into the kxk convolution's cache,
    and the last convolution's bias rides on a column of ones so that ``x + conv3(act(h))`` is a
    single ``addmm``. :meth:`step_row` runs the same operations over ``(N * M)`` pixels, or over
    the ``N' * M`` pixels of some images (``images``, announced by
    :attr:`~autoregressive.Stepper.steps_subsets` when the activations' steppers take them too).

    Shape:
        - :meth:`step`: ``(N, C) -> (N, C)``; :meth:`step_row`: ``(N', M, C) -> (N', M, C)``
    """

    def __init__(
        self,
        acts: Sequence[Stepper],
        conv1: ConvStepper,
        conv2: ConvStepper,
        matrix3: torch.Tensor,
        *,
        batch: int,
        width: int,
        cond_bias: torch.Tensor | None,
        spatial_matrix: torch.Tensor | None,
        spatial_row: torch.Tensor | None,
        relu: bool,
    ) -> None:
        self.acts = list(acts)
        self.conv1 = conv1
        self.conv2 = conv2
        self.spatial_row = spatial_row
        bias = cond_bias  # (N, C/2) or None
        b1 = self.conv1.bias  # forward's `h = h + bias`, folded into conv1's bias
        bias = b1 if bias is None else (bias if b1 is None else bias + b1)
        self.seeds: list[torch.Tensor | None] = [bias] * width
        self.spatial_matrix = spatial_matrix
        if self.spatial_matrix is not None:  # per row: seed_rows = bias + s_row @ V
            mid = self.spatial_matrix.shape[1]
            self.base = (
                self.spatial_matrix.new_zeros(batch * width, mid)
                if bias is None
                else bias.expand(batch, mid).repeat_interleave(width, 0)
            )  # (N * W, C/2)
            self.seed_rows = self.spatial_matrix.new_zeros(batch, width, mid)  # (N, W, C/2)
            self.seeds = [self.seed_rows[:, j] for j in range(width)]
        self.matrix3 = matrix3
        self.hidden = _with_ones_column(batch, matrix3.shape[0] - 1, self.matrix3)
        self.hidden_values = self.hidden[:, :-1]  # (N, C/2)
        self.relu = relu
        # whole rows (step_row): conv1's seed at every pixel, (N, W, C/2), (N, C/2), (C/2,) or None
        self.row_seeds = self.seed_rows if self.spatial_matrix is not None else bias
        self.steps_rows = all(a.steps_rows for a in self.acts)
        self.steps_subsets = all(a.steps_subsets for a in self.acts)  # its convolutions do
        self.width = width

    def begin_row(self, i: int) -> None:
        self.conv2.begin_row(i)
        if self.spatial_matrix is not None and self.spatial_row is not None:
            n, w, c_map = self.spatial_row.shape
            s = self.spatial_row.reshape(n * w, c_map)  # (N * W, C_map): row i of the map
            torch.addmm(self.base, s, self.spatial_matrix, out=self.seed_rows.view(n * w, -1))

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        view = self.conv2.input_slot(j)  # (N, C/2) in the kxk convolution's cache
        if self.relu:  # matrix product and ReLU in one call, into the buffer that reads them
            self.conv1.product(torch.relu(x), self.seeds[j], out=view, relu=True)
            self.conv2.compute(j, out=self.hidden_values, relu=True)
        else:
            a = self.acts[0].step(j, x)  # (N, C)
            view.copy_(self.acts[1].step(j, self.conv1.product(a, self.seeds[j])))
            self.hidden_values.copy_(self.acts[2].step(j, self.conv2.compute(j)))
        return torch.addmm(x, self.hidden, self.matrix3)  # (N, C): x + conv3(act(h)) + bias

    @functools.cached_property
    def hidden_row(self) -> torch.Tensor:
        """``hidden`` for a whole row, ``(N * W, C/2 + 1)`` (made on first use)."""
        return _with_ones_column(
            self.hidden.shape[0] * self.width, self.hidden.shape[1] - 1, self.hidden
        )

    def step_row(
        self, x: torch.Tensor, start: int = 0, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        n, m, c = x.shape  # N' images (all N, or those of ``images``), columns start .. W - 1
        flat = x.reshape(n * m, c)  # (N' * M, C)
        seed = row_seed(self.row_seeds, start, self.width, images)  # the images' conv1 seeds
        hidden = self.hidden_row[: n * m]  # (N' * M, C/2 + 1)
        values = hidden[:, :-1]  # (N' * M, C/2)
        conv2 = self.conv2
        if self.relu:
            h = self.conv1.product(torch.relu(flat), seed, relu=True)  # (N' * M, C/2)
            conv2.row_product(h.view(n, m, -1), start=start, out=values, relu=True, images=images)
        else:
            a = pass_row(self.acts[0], x, start, images).reshape(n * m, c)
            h = pass_row(self.acts[1], self.conv1.product(a, seed).view(n, m, -1), start, images)
            h = pass_row(self.acts[2], pass_row(conv2, h, start, images), start, images)
            values.copy_(h.flatten(0, 1))
        return torch.addmm(flat, hidden, self.matrix3).view(n, m, c)

    def cache_nbytes(self) -> int:
        return self.conv2.cache_nbytes()
