"""Cached sampling of a PixelSNAIL stack (:class:`~autoregressive.SnailStack`).

Chen et al., *PixelSNAIL: An Improved Autoregressive Generative Model*, 2018,
https://arxiv.org/abs/1712.09763.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .attention_stepper import AttentionStepper
from .stepping import CompositeStepper, Stepper, batch_index, pass_row

__all__ = ["SnailBlockSteppers", "SnailStepper"]


@dataclass(frozen=True)
class SnailBlockSteppers:
    """One block of the stack: its convolutional blocks' steppers, then its attention's."""

    convs: Sequence[Stepper]
    attention: AttentionStepper


class SnailStepper(CompositeStepper):
    """Steps a stack that reads the image twice: its first layer, and every attention's keys.

    ``h = first(x)``; per block ``h = conv(h)`` for each of its convolutional blocks, then
    ``h = h + attention(h)``, the attention's keys and values also reading the image. Every
    drawn pixel goes to the first layer (:meth:`write`) and to each attention's
    :attr:`~autoregressive.sampling.attention_stepper.AttentionStepper.extra_row`, where the
    attention reads it when it caches that pixel's keys and values.

    Args:
        first: the stepper of the layer that reads the image (a mask-A convolution).
        blocks: each block's steppers.

    Shape:
        - :meth:`step`: ``(N, C_in) -> (N, C)``; :meth:`step_row`:
          ``(N, M, C_in) -> (N, M, C)``
    """

    reads_image = True
    replays_rows = False

    def __init__(self, first: Stepper, blocks: Sequence[SnailBlockSteppers]) -> None:
        self.first = first
        self.blocks = list(blocks)
        super().__init__([first, *(s for b in self.blocks for s in (*b.convs, b.attention))])
        self.steps_subsets = self.parts_step_subsets()

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        return self._through_blocks(self.first.step(j, x), lambda s, h: s.step(j, h))

    def step_row(
        self, x: torch.Tensor, start: int = 0, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        for block in self.blocks:  # the guessed pixels, as write would store them
            block.attention.extra_row[batch_index(images), start:] = x
        h = pass_row(self.first, x, start, images)
        return self._through_blocks(h, lambda s, h: pass_row(s, h, start, images))

    def _through_blocks(
        self, h: torch.Tensor, apply: Callable[[Stepper, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """The blocks after the first layer, each stepper run on ``h`` by ``apply``.

        ``h`` is ``(N, C)`` for a pixel or ``(N, M, C)`` for a row's pixels, and so is the result.
        """
        for block in self.blocks:
            for conv in block.convs:
                h = apply(conv, h)
            h = h + apply(block.attention, h)
        return h

    def write(self, j: int, x: torch.Tensor) -> None:
        self.first.write(j, x)
        for block in self.blocks:
            block.attention.extra_row[:, j] = x
