"""causal_mask and MaskedConv2d: the masks, the layer contract and its errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from autoregressive import MaskedConv2d, causal_mask, channel_groups


def test_masks_a_and_b_for_5x5():
    a = causal_mask(1, 1, 5, "A")[0, 0].int().tolist()
    b = causal_mask(1, 1, 5, "B")[0, 0].int().tolist()
    assert a == [[1] * 5, [1] * 5, [1, 1, 0, 0, 0], [0] * 5, [0] * 5]
    assert b == [[1] * 5, [1] * 5, [1, 1, 1, 0, 0], [0] * 5, [0] * 5]


def test_rgb_centre_masks_follow_the_paper():
    """R sees no channel of the current pixel, G sees R, B sees R and G (mask A); B adds itself."""
    a = causal_mask(3, 3, 3, "A", data_channels=3)[:, :, 1, 1].int().tolist()
    b = causal_mask(3, 3, 3, "B", data_channels=3)[:, :, 1, 1].int().tolist()
    assert a == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert b == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    # with 6 hidden channels, groups are contiguous pairs
    assert channel_groups(6, 3).tolist() == [0, 0, 1, 1, 2, 2]


@given(
    out_ch=st.integers(1, 4),
    in_ch=st.integers(1, 4),
    dc=st.sampled_from([1, 2, 3]),
    kh=st.sampled_from([1, 3, 5, 7]),
    kw=st.sampled_from([1, 3, 5, 7]),
    mask_type=st.sampled_from(["A", "B"]),
)
def test_mask_matches_its_definition(out_ch, in_ch, dc, kh, kw, mask_type):
    """Element by element: earlier pixels kept, later dropped, centre by colour group."""
    o, i = out_ch * dc, in_ch * dc
    mask = causal_mask(o, i, (kh, kw), mask_type, dc)
    assert mask.shape == (o, i, kh, kw) and mask.dtype == torch.bool
    for oo in range(o):
        for ii in range(i):
            go, gi = oo // (o // dc), ii // (i // dc)
            for a in range(kh):
                for b in range(kw):
                    if (a, b) < (kh // 2, kw // 2):
                        want = True
                    elif (a, b) == (kh // 2, kw // 2):
                        want = go > gi if mask_type == "A" else go >= gi
                    else:
                        want = False
                    assert bool(mask[oo, ii, a, b]) == want


@pytest.mark.parametrize("kernel", [1, 3, 7, (3, 5), (5, 1)])
@pytest.mark.parametrize("dilation", [1, 2, (1, 3)])
def test_output_keeps_height_and_width(kernel, dilation):
    conv = MaskedConv2d(2, 4, kernel, "B", dilation=dilation)
    assert conv(torch.randn(3, 2, 9, 11)).shape == (3, 4, 9, 11)


def test_masking_is_functional():
    """forward uses weight * mask and never changes the stored weight; masked taps get no grad."""
    conv = MaskedConv2d(2, 3, 5, "A")
    before = conv.weight.detach().clone()
    x = torch.randn(2, 2, 6, 6)
    out = conv(x)
    expected = nn.functional.conv2d(x, before * conv.mask, conv.bias, padding=2)
    torch.testing.assert_close(out, expected)
    assert torch.equal(conv.weight, before), "the stored weight was modified"
    out.sum().backward()
    assert conv.weight.grad is not None
    assert torch.all(conv.weight.grad[conv.mask == 0] == 0)
    assert "mask" in dict(conv.named_buffers()) and "mask" not in conv.state_dict()


def test_extra_repr_shows_the_mask_type_and_colour_groups():
    assert "mask_type='A'" in repr(MaskedConv2d(1, 4, 3, "A"))
    assert "data_channels=3" in repr(MaskedConv2d(3, 6, 3, "B", 3))


def test_device_and_dtype_reach_weight_bias_and_mask():
    conv = MaskedConv2d(3, 6, 3, "B", 3, device="cpu", dtype=torch.float64)
    assert {conv.weight.dtype, conv.bias.dtype, conv.mask.dtype} == {torch.float64}
    assert conv.to(torch.float32).mask.dtype == torch.float32
    assert MaskedConv2d(1, 2, 3, bias=False).bias is None


def test_reset_parameters_reinitialises():
    conv = MaskedConv2d(2, 2, 3)
    with torch.no_grad():
        conv.weight.zero_()
    conv.reset_parameters()
    assert conv.weight.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": 4}, "odd"),
        ({"kernel_size": (3, 2)}, "odd"),
        ({"kernel_size": 0}, "odd"),
        ({"mask_type": "C"}, "mask_type must be 'A'"),
        ({"data_channels": 3}, "not divisible by data_channels=3"),
        ({"dilation": 0}, "dilation must be >= 1"),
        ({"in_channels": 0}, "in_channels must be >= 1"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    args = {"in_channels": 4, "out_channels": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        MaskedConv2d(**args)


@pytest.mark.parametrize("kernel_size", ["3", 3.0, True, (3, 3.0), [3, 3, 3]])
def test_a_kernel_size_of_the_wrong_kind_raises_type_error(kernel_size):
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        MaskedConv2d(4, 4, kernel_size)


def test_wrong_input_shape_raises_value_error():
    conv = MaskedConv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        conv(torch.zeros(1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        conv(torch.zeros(3, 5, 5))
