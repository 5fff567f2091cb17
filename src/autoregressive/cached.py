"""Exact cached sampling: every layer's activation at every pixel is computed once.

Fast PixelCNN++ (Ramachandran et al., 2017, https://arxiv.org/abs/1704.06001) observed that in a
masked-convolution network a layer's activation at pixel ``p`` depends only on earlier pixels, so
once ``p``'s inputs are known it can be computed from cached activations and never again.
Generating an image then costs the arithmetic of **one** forward pass, spread over ``H * W``
steps, instead of ``H * W`` forward passes.

Here each layer gets a *stepper* that keeps a ring of the last rows of its input that its kernel
can reach (``kh // 2 * dilation + 1`` rows, laid out ``(N, rows, (W + 2 * pad) * C_in)``), so
that the taps of one kernel row are a strided ``(N, taps * C_in)`` view multiplied by a
pre-arranged weight matrix: no gathers, one ``addmm`` per kernel row. The gated vertical stack,
which only sees rows above, is computed a whole row at a time. The sampler draws from the same
uniform noise as :func:`~autoregressive.naive_sample`, so with the same generator it returns the
same images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .conv import MaskedConv2d
from .distributions import Distribution
from .gated import GatedStack, gate
from .residual import ResidualBlock
from .sampling import check_completion

__all__ = ["CachedSampler", "cached_sample"]

#: elementwise modules a stepper applies to one pixel's ``(N, C)`` features as they are
POINTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
    nn.Softplus, nn.Hardswish, nn.Identity,
)


class _Stepper:
    """Computes a layer one pixel at a time, raster order, keeping the rows it still needs."""

    def begin_row(self, i: int) -> None:
        """Called before the first pixel of row ``i``."""

    def step(self, j: int, inp: torch.Tensor) -> torch.Tensor:
        """Output ``(N, C_out)`` at column ``j`` of the current row from the input ``(N, C_in)`` there."""
        raise NotImplementedError

    def write(self, j: int, inp: torch.Tensor) -> None:
        """Store the final input ``(N, C_in)`` at column ``j`` (the image, once a pixel is drawn)."""
        raise ValueError(
            f"{type(self).__name__[1:]} cannot be a network's first layer: cached sampling needs "
            "the network to start with a mask-A MaskedConv2d or a GatedStack"
        )

    def cache_nbytes(self) -> int:
        """Bytes held in caches."""
        return 0


class _ConvStepper(_Stepper):
    """A :class:`MaskedConv2d` one pixel at a time.

    ``out_perm`` reorders the output channels (used to make gate halves contiguous) and
    ``with_bias=False`` leaves the bias to the caller, who can pass it as ``init``.
    """

    def __init__(
        self,
        conv: MaskedConv2d,
        batch: int,
        width: int,
        *,
        out_perm: torch.Tensor | None = None,
        with_bias: bool = True,
    ) -> None:
        weight = conv.masked_weight().detach()  # (O, I, kh, kw)
        bias = conv.bias.detach() if conv.bias is not None else None
        if out_perm is not None:
            weight = weight[out_perm]
            bias = bias[out_perm] if bias is not None else None
        self.bias = bias if with_bias else None
        _, in_ch, kh, kw = weight.shape
        dh, dw = conv.dilation
        self.in_channels = in_ch
        self.first_layer = conv.mask_type == "A"
        self.pointwise = kh == 1 and kw == 1
        if self.pointwise:
            self.matrix = weight[:, :, 0, 0].t().contiguous()  # (I, O)
            return
        ch, cw = kh // 2, kw // 2
        self.dw = dw
        self.rows = ch * dh + 1
        self.pad = cw * dw
        self.padded_width = width + 2 * self.pad
        # (N, rows, (W + 2 pad) * I): the rows the kernel can reach, the current one last
        self.cache = weight.new_zeros(batch, self.rows, self.padded_width * in_ch)
        reach = conv.mask.flatten(0, 1).any(0)  # (kh, kw) taps any channel uses
        assert not bool(reach[ch + 1 :].any()), "rows below the centre must be masked"
        # per kernel row: (rows above the current one, cache slot, column offset, taps, matrix)
        self.taps: list[tuple[int, int, int, int, torch.Tensor]] = []
        for a in range(ch + 1):
            cols = reach[a].nonzero().flatten().tolist()
            if not cols:
                continue
            b0, b1 = cols[0], cols[-1]
            assert cols == list(range(b0, b1 + 1)), "a mask row must keep contiguous taps"
            up = (ch - a) * dh
            matrix = rearrange(weight[:, :, a, b0 : b1 + 1], "o i t -> (t i) o").contiguous()
            self.taps.append((up, self.rows - 1 - up, (b0 - cw) * dw, b1 - b0 + 1, matrix))
        self.out_channels = weight.shape[0]
        self.row = 0

    def begin_row(self, i: int) -> None:
        if self.pointwise:
            return
        self.row = i
        if self.rows > 1:  # shift the ring up one row; the last slot becomes the current row
            self.cache[:, :-1] = self.cache[:, 1:].clone()

    def input_view(self, j: int) -> torch.Tensor:
        """The cache entry ``(N, C_in)`` for the input at column ``j`` of the current row."""
        col = (j + self.pad) * self.in_channels
        return self.cache[:, -1, col : col + self.in_channels]

    def write(self, j: int, inp: torch.Tensor) -> None:
        if not self.first_layer:
            super().write(j, inp)
        if not self.pointwise:
            self.input_view(j).copy_(inp)

    def step(self, j: int, inp: torch.Tensor) -> torch.Tensor:
        if self.pointwise:
            if self.bias is None:
                return inp @ self.matrix
            return torch.addmm(self.bias, inp, self.matrix)
        self.input_view(j).copy_(inp)
        return self.compute(j)

    def compute(self, j: int, init: torch.Tensor | None = None) -> torch.Tensor:
        """Output ``(N, C_out)`` at column ``j`` from the cache, plus ``init`` ``(N, C_out)``."""
        c_in = self.in_channels
        col = j + self.pad
        out = init
        if self.bias is not None:
            out = self.bias if out is None else out + self.bias
        fresh = True  # `out` is not ours to modify in place yet
        for up, slot, offset, count, matrix in self.taps:
            if up > self.row:  # the kernel row lies above the image: zero padding
                continue
            start = col + offset
            if self.dw == 1:  # (N, count * I) strided view: no copy
                window = self.cache[:, slot, start * c_in : (start + count) * c_in]
            else:
                rows = self.cache.view(self.cache.shape[0], self.rows, self.padded_width, c_in)
                window = rows[:, slot, start : start + (count - 1) * self.dw + 1 : self.dw]
                window = window.reshape(window.shape[0], count * c_in)
            if fresh:
                out = window @ matrix if out is None else torch.addmm(out, window, matrix)
                fresh = False
            else:
                out.addmm_(window, matrix)  # type: ignore[union-attr]
        if fresh:  # nothing reachable yet (e.g. the first pixel of a mask-A layer)
            zeros = self.cache.new_zeros(self.cache.shape[0], self.out_channels)
            out = zeros if out is None else zeros + out
        assert out is not None
        return out

    def cache_nbytes(self) -> int:
        return 0 if self.pointwise else self.cache.numel() * self.cache.element_size()


class _PointwiseStepper(_Stepper):
    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def step(self, j: int, inp: torch.Tensor) -> torch.Tensor:
        return self.module(inp)


class _ResidualStepper(_Stepper):
    def __init__(self, block: ResidualBlock, batch: int, width: int, cond: torch.Tensor | None):
        self.block = block
        self.conv1 = _ConvStepper(block.conv1, batch, width)
        self.conv2 = _ConvStepper(block.conv2, batch, width)
        self.conv3 = _ConvStepper(block.conv3, batch, width)
        self.bias = block.cond_bias(cond)  # (N, C/2) or None
        self.relu2 = type(block.act2) is nn.ReLU

    def begin_row(self, i: int) -> None:
        self.conv2.begin_row(i)

    def step(self, j: int, inp: torch.Tensor) -> torch.Tensor:
        b = self.block
        h = self.conv1.step(j, b.act1(inp))  # (N, C/2)
        if self.bias is not None:
            h = h + self.bias
        view = self.conv2.input_view(j)
        if self.relu2:  # the activation writes straight into the cache
            torch.clamp_min(h, 0, out=view)
        else:
            view.copy_(b.act2(h))
        h = self.conv2.compute(j)
        return inp + self.conv3.step(j, b.act3(h))  # (N, C)

    def cache_nbytes(self) -> int:
        return self.conv2.cache_nbytes()


def _halves(channels: int) -> torch.Tensor:
    """Permutation putting gate inputs ``(a0, b0, a1, b1, ...)`` as ``(a0, a1, ..., b0, b1, ...)``."""
    return torch.cat([torch.arange(0, 2 * channels, 2), torch.arange(1, 2 * channels, 2)])


def _gate_halves(pre: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``tanh(a) * sigmoid(b)`` for ``pre = [a | b]`` along the last dimension."""
    c = pre.shape[-1] // 2
    return torch.mul(torch.tanh(pre[..., :c]), torch.sigmoid(pre[..., c:]), out=out)


class _GatedStackStepper(_Stepper):
    """Vertical stacks a whole row at a time (they only see rows above), horizontal ones per pixel.

    Gate inputs are permuted to ``[a | b]`` halves; the horizontal convolution's bias, the link
    and the conditioning are folded into one per-row tensor that seeds the per-pixel ``addmm``;
    the gated features of all blocks go into one buffer so that the skip outputs of every block
    are a single matrix product.
    """

    def __init__(self, stack: GatedStack, batch: int, width: int, cond: torch.Tensor | None):
        self.blocks = list(stack.blocks)
        self.width = width
        c = stack.channels
        self.channels = c
        perm = _halves(c)
        self.h_conv = [_ConvStepper(b.h_conv, batch, width, out_perm=perm, with_bias=False) for b in self.blocks]
        self.h_out = [_ConvStepper(b.h_out, batch, width) if b.h_out is not None else None for b in self.blocks]
        self.v: list[tuple[list[torch.Tensor], torch.Tensor | None, torch.Tensor]] = []
        self.v_cond: list[torch.Tensor | None] = []
        self.link_bias: list[torch.Tensor] = []
        self.link_matrix: list[torch.Tensor] = []
        self.rings: list[torch.Tensor] = []  # (N, kh//2 + 1, (W + 2 pad) * C_in) per block
        for b in self.blocks:
            kh, kw = b.kernel_size
            w = b.v_conv.weight.detach()[perm]  # (2C, C_in, rows, kw)
            mats = [rearrange(w[:, :, a], "o i t -> (t i) o").contiguous() for a in range(w.shape[2])]
            v_bias = b.v_conv.bias.detach()[perm] if b.v_conv.bias is not None else None
            self.v.append((mats, v_bias, w))
            link = b.link.weight.detach()[:, :, 0, 0][perm][:, perm]  # (2C out, 2C in)
            self.link_matrix.append(link.t().contiguous())  # (2C in, 2C out)
            bias = b.link.bias.detach()[perm] + b.h_conv.bias.detach()[perm]  # (2C,)
            biases = b.cond_biases(cond)
            self.link_bias.append(bias if biases is None else bias + biases[1][:, perm])
            self.v_cond.append(None if biases is None else biases[0][:, perm])
            self.rings.append(w.new_zeros(batch, kh // 2 + 1, (width + kw - 1) * b.in_channels))
        skip_w = torch.cat([b.skip.masked_weight().detach()[:, :, 0, 0].t() for b in self.blocks])
        self.skip_matrix = skip_w.contiguous()  # (blocks * C, C)
        self.skip_bias = sum(b.skip.bias.detach() for b in self.blocks)  # (C,)
        self.gated = self.skip_matrix.new_zeros(batch, len(self.blocks) * c)  # (N, blocks * C)
        self.links: list[torch.Tensor] = []  # (N, W, 2C) per block, for the current row
        self.row = 0

    def _vertical(self, k: int, ring: torch.Tensor, rows: int) -> torch.Tensor:
        """Vertical pre-activation ``(N, W, 2C)`` of block ``k`` from the last ``rows`` ring rows."""
        mats, bias, _ = self.v[k]
        block = self.blocks[k]
        c_in = block.in_channels
        kw = block.kernel_size[1]
        n = ring.shape[0]
        first_slot = ring.shape[1] - 1 - (rows - 1) if block.mask_type == "B" else 0
        out: torch.Tensor | None = None
        for a, matrix in enumerate(mats):
            slot = first_slot + a
            if self.row - (ring.shape[1] - 1 - slot) < 0:  # above the image: zeros
                continue
            row = ring[:, slot]  # (N, (W + kw - 1) * C_in)
            windows = row.as_strided(
                (n, self.width, kw * c_in), (row.stride(0), c_in, 1), row.storage_offset()
            ).reshape(n * self.width, kw * c_in)  # (N * W, kw * C_in)
            out = windows @ matrix if out is None else out.addmm_(windows, matrix)
        if out is None:
            out = ring.new_zeros(n * self.width, mats[0].shape[1])
        if bias is not None:
            out = out + bias
        return out.view(n, self.width, -1)  # (N, W, 2C)

    def begin_row(self, i: int) -> None:
        self.row = i
        v_row: torch.Tensor | None = None  # (N, W, C): the previous block's vertical output
        self.links = []
        last = len(self.blocks) - 1
        for k, (block, ring) in enumerate(zip(self.blocks, self.rings)):
            self.h_conv[k].begin_row(i)
            pad = block.kernel_size[1] // 2
            c_in = block.in_channels
            ring[:, :-1] = ring[:, 1:].clone()  # shift up: the last row is the current one
            if block.mask_type == "A":
                ring[:, -1].zero_()  # filled pixel by pixel through write()
                v_pre = self._vertical(k, ring, ring.shape[1] - 1)  # rows strictly above
            else:
                assert v_row is not None
                ring[:, -1, pad * c_in : (pad + self.width) * c_in] = v_row.flatten(1)
                v_pre = self._vertical(k, ring, ring.shape[1])
            n = v_pre.shape[0]
            link = torch.addmm(self.link_bias[k].expand(n * self.width, -1) if self.link_bias[k].dim() == 1 else self.link_bias[k].repeat_interleave(self.width, 0), v_pre.flatten(0, 1), self.link_matrix[k])
            self.links.append(link.view(n, self.width, -1))  # (N, W, 2C)
            if k < last:
                v_cond = self.v_cond[k]
                if v_cond is not None:
                    v_pre = v_pre + v_cond[:, None, :]
                v_row = _gate_halves(v_pre)  # (N, W, C)

    def step(self, j: int, inp: torch.Tensor) -> torch.Tensor:
        c = self.channels
        h = inp
        for k, (block, h_conv, h_out) in enumerate(zip(self.blocks, self.h_conv, self.h_out)):
            h_conv.input_view(j).copy_(h)
            pre = h_conv.compute(j, init=self.links[k][:, j])  # (N, 2C) as [a | b]
            g = _gate_halves(pre, out=self.gated[:, k * c : (k + 1) * c])  # (N, C)
            if h_out is not None:
                h_new = h_out.step(j, g)
                h = h + h_new if block.mask_type == "B" else h_new
        return torch.addmm(self.skip_bias, self.gated, self.skip_matrix)  # (N, C) summed skips

    def write(self, j: int, inp: torch.Tensor) -> None:
        self.h_conv[0].write(j, inp)
        block = self.blocks[0]
        col = (block.kernel_size[1] // 2 + j) * block.in_channels
        self.rings[0][:, -1, col : col + block.in_channels] = inp

    def cache_nbytes(self) -> int:
        rings = sum(r.numel() * r.element_size() for r in self.rings)
        return rings + sum(s.cache_nbytes() for s in self.h_conv)


class _SequentialStepper(_Stepper):
    def __init__(self, steppers: list[_Stepper]) -> None:
        if not steppers:
            raise ValueError("cannot sample from an empty network")
        self.steppers = steppers

    def begin_row(self, i: int) -> None:
        for s in self.steppers:
            s.begin_row(i)

    def step(self, j: int, inp: torch.Tensor) -> torch.Tensor:
        for s in self.steppers:
            inp = s.step(j, inp)
        return inp

    def write(self, j: int, inp: torch.Tensor) -> None:
        self.steppers[0].write(j, inp)

    def cache_nbytes(self) -> int:
        return sum(s.cache_nbytes() for s in self.steppers)


def _build(module: nn.Module, batch: int, width: int, cond: torch.Tensor | None) -> _Stepper:
    if isinstance(module, MaskedConv2d):
        return _ConvStepper(module, batch, width)
    if isinstance(module, ResidualBlock):
        return _ResidualStepper(module, batch, width, cond)
    if isinstance(module, GatedStack):
        return _GatedStackStepper(module, batch, width, cond)
    if isinstance(module, nn.Sequential):
        return _SequentialStepper([_build(m, batch, width, cond) for m in module])
    if isinstance(module, POINTWISE):
        return _PointwiseStepper(module)
    raise ValueError(
        f"cached sampling cannot step a {type(module).__name__}: a network must be a "
        "(Causal)Sequential of MaskedConv2d, ResidualBlock, GatedStack and elementwise "
        f"activations ({', '.join(m.__name__ for m in POINTWISE)}); use method='naive' otherwise"
    )


class CachedSampler:
    """Samples from a causal network with per-layer row caches; see :func:`cached_sample`.

    The network must be a :class:`~autoregressive.CausalSequential` (or ``nn.Sequential``) of
    :class:`~autoregressive.MaskedConv2d`, :class:`~autoregressive.ResidualBlock`,
    :class:`~autoregressive.GatedStack` and elementwise activations, starting with a mask-A
    ``MaskedConv2d`` or a ``GatedStack``: the form :class:`~autoregressive.PixelCNN` builds.

    Args:
        network: the causal network, ``(N, C, H, W) -> (N, C * P, H, W)``.
        distribution: the output distribution.

    Example:
        >>> from autoregressive import PixelCNN, PixelCNNConfig, Bernoulli, draw_noise
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=16))
        >>> sampler = CachedSampler(model.network, Bernoulli())
        >>> sampler.sample(draw_noise((3, 1, 5, 5))).shape
        torch.Size([3, 1, 5, 5])
    """

    def __init__(self, network: nn.Module, distribution: Distribution) -> None:
        self.network = network
        self.distribution = distribution
        self.last_cache_nbytes = 0  #: cache bytes of the most recent call

    @torch.no_grad()
    def sample(
        self,
        noise: torch.Tensor,
        *,
        cond: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        return_params: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw images from ``noise``; the arguments are those of :func:`cached_sample`."""
        n, channels, height, width = noise.shape
        param = next(self.network.parameters())
        dtype = param.dtype
        dist = self.distribution
        p = dist.params_per_channel
        completion = check_completion(image, known, tuple(noise.shape))
        stepper = _build(self.network, n, width, cond)
        self.last_cache_nbytes = stepper.cache_nbytes()

        u = rearrange(noise.to(param.device), "n c h w -> h w c n").contiguous()  # (H, W, C, N)
        x = torch.zeros(height, width, n, channels, dtype=dtype, device=param.device)  # (H, W, N, C)
        given = None
        if completion is not None:
            image_hw = rearrange(completion[0].to(dtype), "n c h w -> h w n c")
            given = rearrange(completion[1], "n c h w -> h w c n").contiguous()  # (H, W, C, N)
            x.copy_(torch.where(rearrange(completion[1], "n c h w -> h w n c"), image_hw, x))
        params = x.new_zeros(height, width, n, channels * p) if return_params else None

        for i in range(height):
            stepper.begin_row(i)
            for j in range(width):
                xp = x[i, j]  # (N, C)
                for c in range(channels):
                    raw = stepper.step(j, dist.preprocess(xp, dtype))  # (N, C * P)
                    raw_c = raw[:, c * p : (c + 1) * p]  # (N, P)
                    if params is not None:
                        params[i, j, :, c * p : (c + 1) * p] = raw_c
                    value = dist.sample(raw_c, u[i, j, c])  # (N,)
                    if given is not None:
                        value = torch.where(given[i, j, c], xp[:, c], value)
                    xp[:, c] = value
                stepper.write(j, dist.preprocess(xp, dtype))
        images = rearrange(x, "h w n c -> n c h w").contiguous()
        if params is not None:
            return images, rearrange(params, "h w n k -> n k h w").contiguous()
        return images


def cached_sample(
    network: nn.Module,
    distribution: Distribution,
    noise: torch.Tensor,
    *,
    cond: torch.Tensor | None = None,
    image: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample with per-layer caches: the naive sampler's images at about one forward pass's cost.

    Args:
        network: a causal network (see :class:`CachedSampler` for what it may contain).
        distribution: the output distribution.
        noise: uniform noise ``(N, C, H, W)`` from :func:`~autoregressive.draw_noise`.
        cond: conditioning vectors ``(N, C_cond)`` or ``None``.
        image: with ``known``, an image ``(N, C, H, W)`` whose known pixels are kept.
        known: bool mask broadcastable to ``(N, C, H, W)``, ``True`` where ``image`` is given.

    Returns:
        Images ``(N, C, H, W)`` in the network's dtype, equal to
        :func:`~autoregressive.naive_sample`'s for the same noise.
    """
    out = CachedSampler(network, distribution).sample(noise, cond=cond, image=image, known=known)
    assert isinstance(out, torch.Tensor)
    return out
