"""Exact cached sampling: every layer's activation at every pixel is computed once.

Fast PixelCNN++ (Ramachandran et al., 2017, https://arxiv.org/abs/1704.06001) observed that in a
masked-convolution network a layer's activation at pixel ``p`` depends only on earlier pixels, so
once ``p``'s inputs are known it can be computed from cached activations and never again.
Generating an image then costs the arithmetic of **one** forward pass, spread over ``H * W``
steps, instead of ``H * W`` forward passes.

Here each layer gets a *stepper* that keeps the last rows of its input that its kernel can reach
(``kh // 2 * dilation + 1`` rows, laid out column-major ``(N, W + 2 * pad, rows, C_in)``), so
that a pixel's whole kernel window is one strided ``(N, K)`` view multiplied by a pre-arranged
``(K, C_out)`` weight matrix: no gathers, one ``addmm`` per layer and pixel. The gated vertical
stack, which only sees rows above, is computed a whole row at a time; on CUDA, rows are recorded
once as a CUDA graph and replayed. The sampler draws from the same
uniform noise as :func:`~autoregressive.naive_sample`, so with the same generator it returns the
same images.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .checks import check_sampling
from .conv import MaskedConv2d
from .distributions import Distribution
from .gated import GatedStack
from .residual import ResidualBlock
from .sampling import check_completion

__all__ = ["CachedSampler", "cached_sample"]

#: elementwise modules a stepper applies to one pixel's ``(N, C)`` features as they are
POINTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardswish,
    nn.Identity,
)


class _Stepper:
    """Computes a layer one pixel at a time, raster order, keeping the rows it still needs."""

    def begin_row(self, i: int) -> None:
        """Called before the first pixel of row ``i``."""

    def step(self, j: int, inp: torch.Tensor) -> torch.Tensor:
        """Output ``(N, C_out)`` at column ``j`` of the current row, given the input there."""
        raise NotImplementedError

    #: whether the layer can read the image: a mask-A convolution or a gated stack
    input_layer: bool = False

    def write(self, j: int, inp: torch.Tensor) -> None:
        """Store the final input ``(N, C_in)`` at column ``j`` (the image, once drawn)."""
        raise AssertionError("only an input layer stores the image")

    def cache_nbytes(self) -> int:
        """Bytes held in caches."""
        return 0

    def reach(self) -> int:
        """How many rows above the current one the layer reads (0 for pointwise layers)."""
        return 0


class _ConvStepper(_Stepper):
    """A :class:`MaskedConv2d` one pixel at a time: one matrix product per step.

    The cache holds the input rows the kernel can reach, laid out ``(N, W + 2 pad, rows, C_in)``
    (column-major), so that the whole kernel window of a pixel is one contiguous run of
    ``span * rows * C_in`` numbers per image: a strided ``(N, K)`` view, prepared once per
    column, that multiplies a ``(K, C_out)`` matrix holding the masked weight (zeros where the
    mask drops a tap, or where the window covers a not-yet-computed pixel of the current row;
    those cached values are stale but finite, so they add exactly zero).

    ``out_perm`` reorders and ``scale`` rescales the output channels (the gated stepper uses
    them); ``with_bias=False`` leaves the bias to the caller, who passes it through ``init``.
    """

    def __init__(
        self,
        conv: MaskedConv2d,
        batch: int,
        width: int,
        *,
        out_perm: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        with_bias: bool = True,
    ) -> None:
        weight = conv.masked_weight().detach()  # (O, I, kh, kw)
        bias = conv.bias.detach() if conv.bias is not None else None
        if out_perm is not None:
            weight = weight[out_perm]
            bias = bias[out_perm] if bias is not None else None
        if scale is not None:
            weight = weight * scale.to(weight)[:, None, None, None]
            bias = bias * scale.to(weight) if bias is not None else None
        self.bias = bias if with_bias else None
        out_ch, in_ch, kh, kw = weight.shape
        dh, dw = conv.dilation
        ch, cw = kh // 2, kw // 2
        reach = conv.mask.flatten(0, 1).any(0)  # (kh, kw): taps any channel uses
        assert not bool(reach[ch + 1 :].any()), "rows below the centre must be masked"
        self.input_layer = conv.mask_type == "A"
        self.rows = ch * dh + 1  # the current row is the last
        self.pad = cw * dw
        # columns the window spans: the whole kernel width when rows above are read, else only
        # up to the current pixel
        span = (kw - 1) * dw + 1 if self.rows > 1 else cw * dw + 1
        dense = weight.new_zeros(span, self.rows, in_ch, out_ch)  # (span, rows, I, O)
        for a, b in reach.nonzero().tolist():
            dense[b * dw, a * dh] = weight[:, :, a, b].t()
        self.matrix = dense.reshape(span * self.rows * in_ch, out_ch)  # (K, O)
        # (N, W + 2 pad, rows, I)
        self.cache = weight.new_zeros(batch, width + 2 * self.pad, self.rows, in_ch)
        flat = self.cache.view(batch, -1)
        block = self.rows * in_ch
        self.windows = [flat[:, j * block : (j + span) * block] for j in range(width)]  # (N, K)
        self.inputs = [self.cache[:, j + self.pad, -1] for j in range(width)]  # (N, I)
        self.pointwise = kh == 1 and kw == 1  # no neighbours: multiply the input directly

    def begin_row(self, i: int) -> None:
        if self.rows > 1:  # shift the rows up; the last slot becomes the current row
            self.cache[:, :, :-1] = self.cache[:, :, 1:].clone()

    def write(self, j: int, inp: torch.Tensor) -> None:
        self.inputs[j].copy_(inp)

    def step(self, j: int, inp: torch.Tensor) -> torch.Tensor:
        if self.pointwise:
            if self.bias is None:
                return torch.mm(inp, self.matrix)
            return torch.addmm(self.bias, inp, self.matrix)
        self.inputs[j].copy_(inp)
        return self.compute(j)

    def compute(self, j: int, init: torch.Tensor | None = None) -> torch.Tensor:
        """Output ``(N, C_out)`` at column ``j`` from the cache, plus ``init`` ``(N, C_out)``."""
        seed = self.bias if init is None else init
        assert init is None or self.bias is None, "pass the bias through init, not both"
        if seed is None:
            return torch.mm(self.windows[j], self.matrix)
        return torch.addmm(seed, self.windows[j], self.matrix)

    def cache_nbytes(self) -> int:
        return self.cache.numel() * self.cache.element_size()

    def reach(self) -> int:
        return self.rows - 1


class _PointwiseStepper(_Stepper):
    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def step(self, j: int, inp: torch.Tensor) -> torch.Tensor:
        return self.module(inp)


def _with_ones_column(batch: int, channels: int, like: torch.Tensor) -> torch.Tensor:
    """A ``(N, channels + 1)`` buffer whose last column is 1, so ``buf @ [W; b]`` adds a bias."""
    buf = like.new_zeros(batch, channels + 1)
    buf[:, -1] = 1
    return buf


class _ResidualStepper(_Stepper):
    """A :class:`ResidualBlock` per pixel: six tensor operations, whatever the kernel.

    The conditioning bias is folded into the first convolution's bias, the middle activation
    writes straight into the 3x3 convolution's cache, and the last convolution's bias rides on a
    column of ones so that ``x + conv3(act(h))`` is a single ``addmm``.
    """

    def __init__(self, block: ResidualBlock, batch: int, width: int, cond: torch.Tensor | None):
        self.block = block
        self.conv1 = _ConvStepper(block.conv1, batch, width, with_bias=False)
        self.conv2 = _ConvStepper(block.conv2, batch, width)
        bias1 = block.conv1.bias.detach() if block.conv1.bias is not None else None
        cond_bias = block.cond_bias(cond)  # (N, C/2) or None
        if cond_bias is not None and bias1 is not None:
            cond_bias = cond_bias + bias1
        self.bias1 = cond_bias if cond_bias is not None else bias1
        w3 = block.conv3.masked_weight().detach()[:, :, 0, 0].t()  # (C/2, C)
        b3 = block.conv3.bias.detach() if block.conv3.bias is not None else torch.zeros_like(w3[0])
        self.matrix3 = torch.cat([w3, b3[None]]).contiguous()  # (C/2 + 1, C)
        self.hidden = _with_ones_column(batch, w3.shape[0], w3)  # (N, C/2 + 1)
        self.hidden_values = self.hidden[:, :-1]  # (N, C/2)
        self.relu = type(block.act2) is nn.ReLU and type(block.act3) is nn.ReLU

    def begin_row(self, i: int) -> None:
        self.conv2.begin_row(i)

    def step(self, j: int, inp: torch.Tensor) -> torch.Tensor:
        b = self.block
        a = b.act1(inp)  # (N, C)
        h = (
            a @ self.conv1.matrix
            if self.bias1 is None
            else torch.addmm(self.bias1, a, self.conv1.matrix)
        )
        view = self.conv2.inputs[j]  # (N, C/2) in the 3x3 convolution's cache
        hidden = self.hidden_values  # (N, C/2)
        if self.relu:  # activations write straight into the buffers that consume them
            torch.clamp_min(h, 0, out=view)
            torch.clamp_min(self.conv2.compute(j), 0, out=hidden)
        else:
            view.copy_(b.act2(h))
            hidden.copy_(b.act3(self.conv2.compute(j)))
        return torch.addmm(inp, self.hidden, self.matrix3)  # (N, C): x + conv3(act(h)) + bias

    def cache_nbytes(self) -> int:
        return self.conv2.cache_nbytes()

    def reach(self) -> int:
        return self.conv2.reach()


def _gate_order(channels: int) -> torch.Tensor:
    """Permutation taking gate inputs ``(a0, b0, a1, b1, ...)`` to ``(a0, a1, .., b0, b1, ..)``."""
    return torch.cat([torch.arange(0, 2 * channels, 2), torch.arange(1, 2 * channels, 2)])


class _GatedStackStepper(_Stepper):
    """A :class:`GatedStack`: vertical stacks a whole row at a time, horizontal ones per pixel.

    Vertical stacks only see rows above, so they are computed once per row with one matrix
    product per kernel row. Per pixel each block costs four tensor operations, thanks to:

    - gate inputs reordered to halves ``[a | b]`` with the ``b`` half pre-scaled by 1/2, so that
      ``tanh(a) * sigmoid(b) = tanh(a) * (1 + tanh(b / 2)) / 2`` is one ``tanh`` and one
      ``addcmul`` (the factor 1/2 is folded into the weights that read the gated features);
    - the horizontal bias, the vertical-to-horizontal link and the conditioning summed once per
      row into the tensor that seeds the per-pixel ``addmm``;
    - gated features of all blocks kept in one buffer with a column of ones per block, so that
      output biases ride along and every block's skip output is one matrix product in total;
    - each block writing its horizontal output straight into the next block's cache.
    """

    input_layer = True

    def __init__(self, stack: GatedStack, batch: int, width: int, cond: torch.Tensor | None):
        self.blocks = list(stack.blocks)
        self.width = width
        c = stack.channels
        self.channels = c
        order = _gate_order(c)
        scale = torch.cat([torch.ones(c), torch.full((c,), 0.5)])  # b half pre-scaled by 1/2
        self.h_conv: list[_ConvStepper] = []
        self.vertical: list[tuple[list[torch.Tensor], torch.Tensor]] = []  # per-row matrices, bias
        self.v_cond: list[torch.Tensor | None] = []
        self.link_matrix: list[torch.Tensor] = []
        self.link_bias: list[torch.Tensor] = []  # (2C,) or (N, 2C)
        self.out_matrix: list[torch.Tensor | None] = []  # (C + 1, C): [h_out weight / 2; bias]
        self.rings: list[torch.Tensor] = []  # (N, kh//2 + 1, (W + 2 pad) * C_in) per block
        skip_rows = []
        for b in self.blocks:
            kh, kw = b.kernel_size
            like = b.v_conv.weight
            sc = scale.to(like)
            h_conv = _ConvStepper(
                b.h_conv, batch, width, out_perm=order, scale=scale, with_bias=False
            )
            self.h_conv.append(h_conv)
            w = b.v_conv.weight.detach()[order]  # (2C, C_in, rows, kw)
            mats = [
                rearrange(w[:, :, a], "o i t -> (t i) o").contiguous() for a in range(w.shape[2])
            ]
            v_bias = (
                b.v_conv.bias.detach()[order] if b.v_conv.bias is not None else w.new_zeros(2 * c)
            )
            self.vertical.append((mats, v_bias))
            link = b.link.weight.detach()[:, :, 0, 0][order][:, order]  # (2C out, 2C in)
            self.link_matrix.append((link.t() * sc).contiguous())  # (2C in, 2C out)
            bias = (b.link.bias.detach()[order] + b.h_conv.bias.detach()[order]) * sc
            biases = b.cond_biases(cond)
            self.link_bias.append(bias if biases is None else bias + biases[1][:, order] * sc)
            self.v_cond.append(None if biases is None else biases[0][:, order])
            if b.h_out is not None:
                w_out = b.h_out.masked_weight().detach()[:, :, 0, 0].t() / 2  # (C, C)
                self.out_matrix.append(torch.cat([w_out, b.h_out.bias.detach()[None]]).contiguous())
            else:
                self.out_matrix.append(None)
            skip_rows += [
                b.skip.masked_weight().detach()[:, :, 0, 0].t() / 2,
                b.skip.bias.detach()[None],
            ]
            self.rings.append(like.new_zeros(batch, kh // 2 + 1, (width + kw - 1) * b.in_channels))
        self.skip_matrix = torch.cat(skip_rows).contiguous()  # (blocks * (C + 1), C)
        # gated features of every block, each followed by a column of ones: (N, blocks * (C + 1))
        self.gated = self.skip_matrix.new_zeros(batch, len(self.blocks) * (c + 1))
        self.gated.view(batch, len(self.blocks), c + 1)[:, :, -1] = 1
        self.gated_views = [  # per block: (N, C + 1) with the ones, and the (N, C) gate output
            (
                self.gated[:, k * (c + 1) : (k + 1) * (c + 1)],
                self.gated[:, k * (c + 1) : k * (c + 1) + c],
            )
            for k in range(len(self.blocks))
        ]
        self.links: list[torch.Tensor] = []  # (N, W, 2C) per block, for the current row
        first = self.blocks[0]  # colour: does it see earlier channels of the current pixel?
        self.centre = bool(first.h_conv.mask[:, :, 0, first.kernel_size[1] // 2].any())

    def _vertical(self, k: int, ring: torch.Tensor) -> torch.Tensor:
        """Vertical pre-activation ``(N * W, 2C)`` of block ``k`` (before conditioning)."""
        mats, bias = self.vertical[k]
        block = self.blocks[k]
        c_in, kw = block.in_channels, block.kernel_size[1]
        n = ring.shape[0]
        out = bias.expand(n * self.width, -1)
        for a, matrix in enumerate(mats):  # kernel row a reads ring slot a
            row = ring[:, a]  # (N, (W + kw - 1) * C_in)
            windows = row.as_strided(  # (N, W, kw * C_in) overlapping windows, then a copy
                (n, self.width, kw * c_in), (row.stride(0), c_in, 1), row.storage_offset()
            ).reshape(n * self.width, kw * c_in)
            out = torch.addmm(out, windows, matrix)
        return out

    def begin_row(self, i: int) -> None:
        v_row: torch.Tensor | None = None  # (N, W * C): the previous block's vertical output
        self.links = []
        last = len(self.blocks) - 1
        for k, (block, ring) in enumerate(zip(self.blocks, self.rings, strict=True)):
            self.h_conv[k].begin_row(i)
            pad = block.kernel_size[1] // 2
            c_in = block.in_channels
            ring[:, :-1] = ring[:, 1:].clone()  # shift up: the last slot is the current row
            ring[:, -1] = 0
            if v_row is not None:  # mask B: the current row of the previous vertical output
                ring[:, -1, pad * c_in : (pad + self.width) * c_in] = v_row
            # mask A reads the rows strictly above; its current row is filled through write()
            v_pre = self._vertical(k, ring if block.mask_type == "B" else ring[:, :-1])
            n = ring.shape[0]
            link = torch.mm(v_pre, self.link_matrix[k]).view(n, self.width, -1)
            bias = self.link_bias[k]
            self.links.append(link + (bias if bias.dim() == 1 else bias[:, None]))  # (N, W, 2C)
            if k < last:
                v_pre = v_pre.view(n, self.width, -1)
                v_cond = self.v_cond[k]
                if v_cond is not None:
                    v_pre = v_pre + v_cond[:, None]
                c = self.channels
                v_row = torch.tanh(v_pre[..., :c]) * torch.sigmoid(v_pre[..., c:])  # (N, W, C)
                v_row = v_row.flatten(1)  # (N, W * C)

    def step(self, j: int, inp: torch.Tensor) -> torch.Tensor:
        c = self.channels
        if self.centre:  # colour: the first block sees earlier channels of this pixel
            self.h_conv[0].inputs[j].copy_(inp)
        last = len(self.blocks) - 1
        for k, h_conv in enumerate(self.h_conv):
            t = torch.tanh(h_conv.compute(j, init=self.links[k].select(1, j)))  # (N, 2C): [a | b/2]
            with_ones, g = self.gated_views[k]
            a = t.narrow(1, 0, c)
            torch.addcmul(a, a, t.narrow(1, c, c), out=g)  # tanh(a) * (1 + tanh(b/2)) = 2 * gate
            matrix = self.out_matrix[k]
            if matrix is not None and k < last:
                target = self.h_conv[k + 1].inputs[j]  # write h straight into the next block
                if self.blocks[k].mask_type == "B":
                    torch.addmm(h_conv.inputs[j], with_ones, matrix, out=target)  # residual
                else:
                    torch.mm(with_ones, matrix, out=target)
        return torch.mm(self.gated, self.skip_matrix)  # (N, C): the summed skip outputs

    def write(self, j: int, inp: torch.Tensor) -> None:
        self.h_conv[0].write(j, inp)
        block = self.blocks[0]
        col = (block.kernel_size[1] // 2 + j) * block.in_channels
        self.rings[0][:, -1, col : col + block.in_channels] = inp

    def cache_nbytes(self) -> int:
        rings = sum(r.numel() * r.element_size() for r in self.rings)
        return rings + sum(s.cache_nbytes() for s in self.h_conv)

    def reach(self) -> int:
        return max(r.shape[1] - 1 for r in self.rings)


class _SequentialStepper(_Stepper):
    def __init__(self, steppers: list[_Stepper]) -> None:
        if not steppers:
            raise ValueError("cannot sample from an empty network")
        self.steppers = steppers
        self.input_layer = steppers[0].input_layer

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

    def reach(self) -> int:
        return max(s.reach() for s in self.steppers)


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

    On CUDA the per-step work is a few hundred small kernels whose launch overhead would
    dominate, so by default the sampler records one image row (``W`` steps, sampling included)
    as a CUDA graph after a few eager warm-up rows, and replays it for every further
    row: the same kernels on the same buffers, launched at once. ``cuda_graphs=False`` opts out.

    Args:
        network: the causal network, ``(N, C, H, W) -> (N, C * P, H, W)``.
        distribution: the output distribution.
        cuda_graphs: replay rows as CUDA graphs: ``None`` (default) on CUDA devices, ``False``
            never, ``True`` always where possible (on the CPU it runs the same row-buffer path
            without a graph, which is how the tests exercise it).

    Example:
        >>> from autoregressive import PixelCNN, PixelCNNConfig, Bernoulli, draw_noise
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=16))
        >>> sampler = CachedSampler(model.network, Bernoulli())
        >>> sampler.sample(draw_noise((3, 1, 5, 5))).shape
        torch.Size([3, 1, 5, 5])
    """

    def __init__(
        self, network: nn.Module, distribution: Distribution, *, cuda_graphs: bool | None = None
    ) -> None:
        self.network = network
        self.distribution = distribution
        self.cuda_graphs = cuda_graphs
        self.last_cache_nbytes = 0  #: cache bytes of the most recent call
        self.last_used_graph = False  #: whether the most recent call replayed a CUDA graph

    def _row(
        self,
        stepper: _Stepper,
        i: int,
        x: torch.Tensor,
        u: torch.Tensor,
        given: torch.Tensor | None,
        params: torch.Tensor | None,
    ) -> None:
        """Sample row ``i`` in place.

        Shapes: x ``(W, N, C)``, u and given ``(W, C, N)``, params ``(W, N, C * P)``.
        """
        dist = self.distribution
        dtype = x.dtype
        p = dist.params_per_channel
        stepper.begin_row(i)
        for j in range(x.shape[0]):
            xp = x[j]  # (N, C)
            for c in range(x.shape[2]):
                raw = stepper.step(j, dist.preprocess(xp, dtype))  # (N, C * P)
                raw_c = raw[:, c * p : (c + 1) * p]  # (N, P)
                if params is not None:
                    params[j, :, c * p : (c + 1) * p] = raw_c
                value = dist.sample(raw_c, u[j, c])  # (N,)
                if given is not None:
                    value = torch.where(given[j, c], xp[:, c], value)
                xp[:, c] = value
            stepper.write(j, dist.preprocess(xp, dtype))

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
        """Draw images from ``noise``; the arguments are those of :func:`cached_sample`.

        With ``return_params=True`` also returns the raw parameters ``(N, C * P, H, W)`` the
        sampler computed for each sub-pixel (teacher forcing, when every pixel is known).
        """
        check_sampling(self.network, self.distribution, noise, cond)
        n, channels, height, width = noise.shape
        param = next(self.network.parameters())
        device, dtype = param.device, param.dtype
        completion = check_completion(image, known, tuple(noise.shape))
        stepper = _build(self.network, n, width, cond)
        if not stepper.input_layer:
            raise ValueError(
                "cached sampling needs a causal network whose first layer is a mask-A "
                "MaskedConv2d or a GatedStack; this one starts with "
                f"{type(next(iter(self.network.children()), self.network)).__name__}"
            )
        self.last_cache_nbytes = stepper.cache_nbytes()

        u = self.distribution.prepare_noise(noise.to(device))
        u = rearrange(u, "n c h w -> h w c n").contiguous()  # (H, W, C, N)
        x = torch.zeros(height, width, n, channels, dtype=dtype, device=device)  # (H, W, N, C)
        given = None
        if completion is not None:
            image_hw = rearrange(completion[0].to(dtype), "n c h w -> h w n c")
            given = rearrange(completion[1], "n c h w -> h w c n").contiguous()  # (H, W, C, N)
            x.copy_(torch.where(rearrange(completion[1], "n c h w -> h w n c"), image_hw, x))
        p = self.distribution.params_per_channel
        params = x.new_zeros(height, width, n, channels * p) if return_params else None

        # Every row runs the same operations on the same buffers (rows above the image are zeros
        # in them), so after `warm` eager rows (a warm-up) one recorded row can be replayed.
        warm = max(stepper.reach(), 1)
        graphs = self.cuda_graphs if self.cuda_graphs is not None else device.type == "cuda"
        static = graphs and height > warm
        self.last_used_graph = False
        if static:  # fixed buffers the recorded row reads and writes
            row_x, row_u = torch.empty_like(x[0]), torch.empty_like(u[0])
            row_given = None if given is None else torch.empty_like(given[0])
            row_params = None if params is None else torch.empty_like(params[0])
        graph = None
        for i in range(height):
            if not static or i < warm:
                self._row(
                    stepper,
                    i,
                    x[i],
                    u[i],
                    None if given is None else given[i],
                    None if params is None else params[i],
                )
                continue
            row_x.copy_(x[i])
            row_u.copy_(u[i])
            if row_given is not None:
                row_given.copy_(given[i])  # type: ignore[index]
            if device.type != "cuda":  # the same row-buffer path, without a graph
                self._row(stepper, i, row_x, row_u, row_given, row_params)
            elif graph is None:
                graph = torch.cuda.CUDAGraph()
                torch.cuda.synchronize(device)
                with torch.cuda.graph(graph):
                    self._row(stepper, i, row_x, row_u, row_given, row_params)
                graph.replay()
                self.last_used_graph = True
            else:
                graph.replay()
            x[i].copy_(row_x)
            if params is not None:
                params[i].copy_(row_params)  # type: ignore[arg-type]
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
    cuda_graphs: bool | None = None,
) -> torch.Tensor:
    """Sample with per-layer caches: the naive sampler's images at about one forward pass's cost.

    Args:
        network: a causal network (see :class:`CachedSampler` for what it may contain).
        distribution: the output distribution.
        noise: uniform noise ``(N, C, H, W)`` from :func:`~autoregressive.draw_noise`.
        cond: conditioning vectors ``(N, C_cond)`` or ``None``.
        image: with ``known``, an image ``(N, C, H, W)`` whose known pixels are kept.
        known: bool mask broadcastable to ``(N, C, H, W)``, ``True`` where ``image`` is given.
        cuda_graphs: replay rows as CUDA graphs (default: on CUDA devices); see
            :class:`CachedSampler`.

    Returns:
        Images ``(N, C, H, W)`` in the network's dtype, equal to
        :func:`~autoregressive.naive_sample`'s for the same noise.

    Shape:
        - ``noise``: :math:`(N, C, H, W)`; ``cond``: :math:`(N, C_{cond})`
        - Output: :math:`(N, C, H, W)`

    Example:
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8), dtype=torch.float64)
        >>> noise = draw_noise((4, 1, 6, 6), torch.Generator().manual_seed(0))
        >>> fast = cached_sample(model.network, model.distribution, noise)
        >>> torch.equal(fast, naive_sample(model.network, model.distribution, noise))
        True
    """
    sampler = CachedSampler(network, distribution, cuda_graphs=cuda_graphs)
    out = sampler.sample(noise, cond=cond, image=image, known=known)
    assert isinstance(out, torch.Tensor)
    return out
