"""Cached sampling of a PixelSNAIL stack (:class:`~autoregressive.SnailStack`).

Chen et al., *PixelSNAIL: An Improved Autoregressive Generative Model*, 2018,
https://arxiv.org/abs/1712.09763.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .attention_stepper import AttentionStepper
from .stepping import Stepper

__all__ = ["SnailBlockSteppers", "SnailStepper"]


@dataclass(frozen=True)
class SnailBlockSteppers:
    """One block of the stack: its convolutional blocks' steppers, then its attention's."""

    convs: Sequence[Stepper]
    attention: AttentionStepper


class SnailStepper(Stepper):
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
        self.all = [first, *(s for b in self.blocks for s in (*b.convs, b.attention))]
        self.steps_rows = all(s.steps_rows for s in self.all)
        self.attends_prefix = any(s.attends_prefix for s in self.all)

    def begin_image(self, height: int) -> None:
        for s in self.all:
            s.begin_image(height)

    def begin_row(self, i: int) -> None:
        for s in self.all:
            s.begin_row(i)

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        h = self.first.step(j, x)
        for block in self.blocks:
            for conv in block.convs:
                h = conv.step(j, h)
            h = h + block.attention.step(j, h)
        return h

    def step_row(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        for block in self.blocks:  # the guessed pixels, as write would store them
            block.attention.extra_row[:, start:] = x
        h = self.first.step_row(x, start)
        for block in self.blocks:
            for conv in block.convs:
                h = conv.step_row(h, start)
            h = h + block.attention.step_row(h, start)
        return h

    def write(self, j: int, x: torch.Tensor) -> None:
        self.first.write(j, x)
        for block in self.blocks:
            block.attention.extra_row[:, j] = x

    def cache_nbytes(self) -> int:
        return sum(s.cache_nbytes() for s in self.all)
