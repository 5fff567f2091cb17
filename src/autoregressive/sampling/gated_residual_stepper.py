"""The stepper of PixelSNAIL's gated residual block, :class:`~autoregressive.GatedResidualBlock`.

Chen et al., *PixelSNAIL: An Improved Autoregressive Generative Model*, 2018,
https://arxiv.org/abs/1712.09763 (the "gated residual block" of figure 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .stepping import CompositeStepper, Stepper, pass_row

__all__ = ["GatedResidualStepper"]


def _gate(p: torch.Tensor) -> torch.Tensor:
    """``tanh(a) * sigmoid(b)`` of the halves ``[a | b]`` of ``(..., 2C)``: ``(..., C)``."""
    a, b = p.chunk(2, -1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedResidualStepper(CompositeStepper):
    """``x + gate(conv2(act(conv1(act(x)))) + cond)`` one pixel (or one row) at a time.

    Built by the block's ``stepper()`` from the steppers of its two activations and its two
    masked convolutions, the conditioning vector's bias ``(N, 2C)`` (``cond_bias``), the
    conditioning map's 1x1 weight ``(C_map, 2C)`` (``spatial_matrix``) and the sampler's buffer
    of the map's current row ``(N, W, C_map)`` (``spatial_row``). The map's part of the bias is
    computed once per row, in :meth:`begin_row`. The second convolution and the conditioning
    give the gate's inputs as halves ``[a | b]`` (the block orders them as interleaved pairs).

    Shape:
        - :meth:`step`: ``(N, C) -> (N, C)``; :meth:`step_row`: ``(N, M, C) -> (N, M, C)``
    """

    def __init__(
        self,
        acts: Sequence[Stepper],
        conv1: Stepper,
        conv2: Stepper,
        *,
        batch: int,
        width: int,
        cond_bias: torch.Tensor | None,
        spatial_matrix: torch.Tensor | None,
        spatial_row: torch.Tensor | None,
    ) -> None:
        self.acts, self.conv1, self.conv2 = list(acts), conv1, conv2
        super().__init__([*self.acts, conv1, conv2])
        self.steps_subsets = self.parts_step_subsets()
        self.spatial_matrix, self.spatial_row = spatial_matrix, spatial_row
        self.bias_rows: torch.Tensor | None = None  # (N, W, 2C): the bias at every column
        if cond_bias is not None:
            self.bias_rows = cond_bias[:, None].expand(batch, width, -1)
        if spatial_matrix is not None and spatial_row is not None:
            self.base = self.bias_rows
            self.bias_rows = spatial_matrix.new_zeros(batch, width, spatial_matrix.shape[1])

    def begin_row(self, i: int) -> None:
        super().begin_row(i)
        if self.spatial_matrix is not None and self.spatial_row is not None:
            assert self.bias_rows is not None
            torch.matmul(self.spatial_row, self.spatial_matrix, out=self.bias_rows)
            if self.base is not None:  # the vector's bias comes first, as in forward
                self.bias_rows.copy_(self.base + self.bias_rows)

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1.step(j, self.acts[0].step(j, x))  # (N, C)
        p = self.conv2.step(j, self.acts[1].step(j, h))  # (N, 2C)
        if self.bias_rows is not None:
            p = p + self.bias_rows[:, j]
        return x + _gate(p)

    def step_row(
        self, x: torch.Tensor, start: int = 0, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = pass_row(self.conv1, pass_row(self.acts[0], x, start, images), start, images)
        p = pass_row(self.conv2, pass_row(self.acts[1], h, start, images), start, images)
        if self.bias_rows is not None:
            bias = self.bias_rows if images is None else self.bias_rows.index_select(0, images)
            p = p + bias[:, start:]
        return x + _gate(p)
