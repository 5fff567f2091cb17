"""Both samplers accept and refuse the same networks; the public checks catch wrong steppers.

The cached sampler used to check only the network's output width, so networks that the naive
sampler refuses as not causal (colour masks that do not fit the distribution, a module that
mixes the channels of a pixel) sampled images that do not come from the model, and a module
that behaves differently in training mode sampled without a word. Each case here runs through
every sampler, at a batch where the cached one steps pixels and at one where it passes rows.
"""

from __future__ import annotations

import pytest
import torch
from test_sampling import perturbed
from test_stepping import GatedResidualBlock, GatedResidualStepper
from torch import nn

from autoregressive import (
    Bernoulli,
    CachedSampler,
    Categorical,
    CausalSequential,
    DiscretizedLogisticMixture,
    MaskedConv2d,
    NaiveSampler,
    check_causal,
    check_stepper,
    draw_noise,
    gate,
)
from autoregressive.sampling import ConvKernel, ConvStepper

F64 = {"dtype": torch.float64}
SAMPLERS = {
    "naive": NaiveSampler(),
    "cached, rows": CachedSampler(rows_at_once=True),
    "cached, steps": CachedSampler(rows_at_once=False),
}


def _conv(cin: int, cout: int, k: int, mask: str, groups: int = 1) -> MaskedConv2d:
    return MaskedConv2d(cin, cout, k, mask, groups, **F64)


def mask_b_first() -> tuple[nn.Module, object, int]:
    return CausalSequential(_conv(1, 4, 3, "B"), nn.ReLU(), _conv(4, 1, 1, "B")), Bernoulli(), 1


def channel_masks_under_a_mixture() -> tuple[nn.Module, object, int]:
    """Channel-wise masks let green see red: a mixture draws the pixel's channels together."""
    dist = DiscretizedLogisticMixture(3, levels=4)  # 30 parameters: 3 colour groups of 10
    layers = [_conv(3, 6, 3, "A", 3), nn.ReLU(), _conv(6, dist.num_params(3), 1, "B", 3)]
    return CausalSequential(*layers), dist, 3


def channels_mixed_by_a_softmax() -> tuple[nn.Module, object, int]:
    """A softmax over the channels lets red's prediction see this pixel's green and blue."""
    layers = [_conv(3, 6, 3, "A", 3), nn.Softmax(dim=1), _conv(6, 3 * 4, 1, "B", 3)]
    return CausalSequential(*layers), Categorical(4), 3


def pooled() -> tuple[nn.Module, object, int]:
    """An average over each pixel's neighbours, later ones included (and nothing to step)."""
    layers = [_conv(1, 4, 3, "A"), nn.AvgPool2d(3, 1, 1), _conv(4, 1, 1, "B")]
    return CausalSequential(*layers), Bernoulli(), 1


NOT_CAUSAL = {
    "average pooling": pooled,
    "mask B first": mask_b_first,
    "channel masks under a mixture": channel_masks_under_a_mixture,
    "channels mixed by a softmax": channels_mixed_by_a_softmax,
}


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("case", sorted(NOT_CAUSAL))
def test_every_sampler_refuses_a_network_that_is_not_causal(case, sampler):
    network, dist, channels = NOT_CAUSAL[case]()
    noise = draw_noise((4, dist.noise_channels(channels), 4, 5), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"the network is not causal"):
        SAMPLERS[sampler].sample(network, dist, noise)
    with pytest.raises(ValueError, match=r"the network is not causal"):
        check_causal(network, dist, (4, channels, 4, 5))


TRAIN_MODE = {"BatchNorm2d": lambda: nn.BatchNorm2d(4, **F64), "Dropout": lambda: nn.Dropout(0.5)}


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("module", sorted(TRAIN_MODE))
def test_a_module_in_training_mode_is_refused_with_the_fix(module, sampler):
    network = CausalSequential(
        _conv(1, 4, 3, "A"), TRAIN_MODE[module](), nn.ReLU(), _conv(4, 1, 1, "B")
    )
    noise = draw_noise((2, 1, 4, 4), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=rf"network's 1 \({module}\) is in training mode.*\.eval"):
        SAMPLERS[sampler].sample(network, Bernoulli(), noise)
    if module == "Dropout":  # in eval mode the identity, which both samplers step
        images = SAMPLERS[sampler].sample(network.eval(), Bernoulli(), noise)
        assert torch.equal(images, NaiveSampler().sample(network, Bernoulli(), noise))


def network_of(block: type[GatedResidualBlock]) -> nn.Module:
    torch.manual_seed(0)
    layers = [_conv(1, 4, 5, "A"), block(4, 3, 2, 1), nn.GELU(), _conv(4, 1, 1, "B")]
    return CausalSequential(*layers)


class ForgetsTheResidual(GatedResidualStepper):
    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        return self.out.step(j, gate(self.conv.step(j, x)))  # no "x +"


class RowsShifted(GatedResidualStepper):
    def step_row(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        return super().step_row(x, start).roll(1, dims=1)


@pytest.mark.parametrize(("stepper", "mode"), [(ForgetsTheResidual, "pixel by pixel"),
                                               (RowsShifted, "by whole rows")])  # fmt: skip
def test_check_stepper_catches_a_stepper_that_disagrees_with_forward(stepper, mode):
    class Block(GatedResidualBlock):
        def stepper(self, batch, width, cond=None):
            return stepper(self.conv.stepper(batch, width), self.out.stepper(batch, width))

    check_stepper(network_of(GatedResidualBlock), Bernoulli(), (2, 1, 5, 6))  # agrees
    with pytest.raises(ValueError, match=rf"disagree with its forward pass when stepped {mode}"):
        check_stepper(network_of(Block), Bernoulli(), (2, 1, 5, 6))


class WrongImages(ConvStepper):
    """Passes some images with the rows of the first ones: a stepper that mishandles ``images``."""

    def step_row(self, x, start=0, images=None):
        return super().step_row(x, start, None if images is None else torch.arange(len(x)))


class ConvWithWrongImages(MaskedConv2d):
    def stepper(self, batch, width, cond=None):
        kernel = ConvKernel(self.masked_weight().detach())
        return WrongImages(kernel, self.bias.detach(), batch, width)


def test_check_stepper_catches_a_stepper_that_mishandles_some_images():
    """Drawn images settle later than known ones: passes for some images only are checked."""
    torch.manual_seed(0)
    layers = [_conv(1, 8, 3, "A"), nn.ReLU(), _conv(8, 8, 3, "B"), nn.ReLU(), _conv(8, 1, 1, "B")]
    network = perturbed(CausalSequential(*layers))
    check_stepper(network, Bernoulli(), (6, 1, 6, 7))  # the library's steppers agree
    layers[2] = ConvWithWrongImages(8, 8, 3, "B", **F64)
    layers[2].load_state_dict(network[2].state_dict())
    with pytest.raises(ValueError, match=r"disagree with its forward pass when stepped by whole"):
        check_stepper(CausalSequential(*layers), Bernoulli(), (6, 1, 6, 7))


def test_check_stepper_checks_causality_first():
    network, dist, _ = mask_b_first()
    with pytest.raises(ValueError, match=r"the network is not causal"):
        check_stepper(network, dist, (2, 1, 4, 4))


def test_check_stepper_steps_pixels_only_where_a_stepper_has_no_step_row():
    class StepsOnly(GatedResidualStepper):
        steps_rows = False

    class Block(GatedResidualBlock):
        def stepper(self, batch, width, cond=None):
            return StepsOnly(self.conv.stepper(batch, width), self.out.stepper(batch, width))

    check_stepper(network_of(Block), Bernoulli(), (2, 1, 5, 6))  # agrees, pixel by pixel
