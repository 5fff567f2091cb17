"""A sequential container that hands the conditioning to the blocks that take it."""

from __future__ import annotations

import torch
from torch import nn

from ..conditioning import Conditioning, RowConditioning, check_conditioning
from ..sampling.stepping import CompositeStepper, Stepper, pass_row, stepper_for

__all__ = ["CausalSequential"]


class CausalSequential(nn.Sequential):
    """``nn.Sequential`` whose ``forward`` also takes an optional conditioning.

    Modules whose class sets ``conditional = True`` (:class:`~autoregressive.ResidualBlock`,
    :class:`~autoregressive.GatedStack`, :class:`~autoregressive.GatedBlock` users' own) are
    called as ``module(x, cond)``, every other module as ``module(x)``. It is the form of network
    that :class:`~autoregressive.PixelCNN` builds and that the samplers accept, so a stack of
    your own made of the public layers can be sampled in the same way.

    Args:
        *args: the modules, in order, as for ``nn.Sequential`` (or one ``OrderedDict`` of them).

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`; ``cond`` a :class:`~autoregressive.Conditioning`
          or ``None``
        - Output: :math:`(N, C_{out}, H, W)`

    Example:
        >>> from autoregressive import MaskedConv2d, ResidualBlock
        >>> net = CausalSequential(MaskedConv2d(1, 8, 5, "A"), ResidualBlock(8),
        ...                        nn.ReLU(), MaskedConv2d(8, 1, 1, "B"))
        >>> net(torch.zeros(2, 1, 6, 6)).shape
        torch.Size([2, 1, 6, 6])
    """

    def forward(self, x: torch.Tensor, cond: Conditioning | None = None) -> torch.Tensor:  # type: ignore[override]
        cond = check_conditioning(cond, "CausalSequential")
        for module in self:
            x = module(x, cond) if getattr(module, "conditional", False) else module(x)
        return x

    def stepper(self, batch: int, width: int, cond: RowConditioning | None = None) -> Stepper:
        """A stepper that steps the modules in order, for cached sampling."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty network")
        return _SequentialStepper([stepper_for(m, batch, width, cond) for m in self])


class _SequentialStepper(CompositeStepper):
    """Steps its layers in order: each one's output at a pixel is the next one's input.

    The image is read by the first layer that is not pixelwise; the pixelwise ones before it
    (an input embedding, an activation) map each drawn pixel on its way there in :meth:`write`.
    """

    def __init__(self, steppers: list[Stepper]) -> None:
        super().__init__(steppers)
        self.lead = next((k for k, s in enumerate(steppers) if not s.pixelwise), len(steppers))
        self.pixelwise = self.lead == len(steppers)
        self.reads_image = not self.pixelwise and steppers[self.lead].reads_image
        self.replays_rows = all(s.replays_rows for s in steppers)
        self.steps_subsets = self.parts_step_subsets()

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        for s in self.parts:
            x = s.step(j, x)
        return x

    def step_row(
        self, x: torch.Tensor, start: int = 0, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        for s in self.parts:
            x = pass_row(s, x, start, images)
        return x

    def write(self, j: int, x: torch.Tensor) -> None:
        if self.pixelwise:  # nothing here reads the image
            super().write(j, x)
        for s in self.parts[: self.lead]:
            x = s.step(j, x)
        self.parts[self.lead].write(j, x)
