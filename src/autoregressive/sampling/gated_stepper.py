"""Cached sampling of the Gated PixelCNN stack (:class:`~autoregressive.GatedStack`).

van den Oord et al., *Conditional Image Generation with PixelCNN Decoders*, 2016,
https://arxiv.org/abs/1606.05328.

The stack's ``stepper()`` folds each block's weights into a :class:`GatedBlockWeights` and hands
them to :class:`GatedStackStepper`, which computes the vertical stack a row at a time and the
horizontal one pixel by pixel; nothing here reads a layer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .conv_stepper import ConvKernel, ConvStepper
from .rows import ring_product, row_seed, shift_up
from .stepping import Stepper, batch_index

__all__ = ["CondBiases", "GatedBlockWeights", "GatedStackStepper"]

#: a block's biases ``(N, 2C)`` of its two gates from the conditioning vector, or ``None``
CondBiases = tuple[torch.Tensor, torch.Tensor] | None


@dataclass(frozen=True)
class GatedBlockWeights:
    """A :class:`~autoregressive.GatedBlock`'s weights folded for its stepper.

    Made by ``autoregressive.layers.gated.fold_gated_block`` once per weights. Gate inputs are
    reordered to halves ``[a | b]`` (``order``) and scaled to ``[2a | b]`` (``two_a``); see
    :class:`_GatedBlockStepper` for where each matrix is used.

    Attributes:
        order: ``(2C,)``, the permutation ``(a0, b0, a1, ..) -> (a0, a1, .., b0, b1, ..)``.
        two_a: ``(2C,)``, 2 for the ``a`` half and 1 for the ``b`` half.
        h_conv: the horizontal convolution's :class:`~autoregressive.ConvKernel` (one row).
        v_matrix: ``(rows * kw * C_in, 2C)``; ``v_bias``, ``link_seed``: ``(2C,)``.
        link_matrix: ``(2C, 2C)``; ``spatial``: two ``(C_map, 2C)`` or ``None``.
        v_link: ``v_matrix @ link_matrix`` for the stack's last block (no ``h_out``, and its
            vertical output unused), whose ``link_seed`` then includes ``v_bias @ link_matrix``;
            else ``None``.
        out_matrix: ``(C + 1, C)`` or ``None`` (last block); ``skip_rows``: ``(C + 1, C)``.
        channels: ``C``; ``in_channels``: ``C_in``; ``kernel_size``: ``(kh, kw)``.
        residual: whether the block is mask B (its horizontal stack is residual).
    """

    order: torch.Tensor
    two_a: torch.Tensor
    h_conv: ConvKernel
    v_matrix: torch.Tensor
    v_bias: torch.Tensor
    link_matrix: torch.Tensor
    link_seed: torch.Tensor
    v_link: torch.Tensor | None
    spatial: tuple[torch.Tensor, torch.Tensor] | None
    out_matrix: torch.Tensor | None
    skip_rows: torch.Tensor
    channels: int
    in_channels: int
    kernel_size: tuple[int, int]
    residual: bool

    def fold(self, t: torch.Tensor) -> torch.Tensor:
        """Gate inputs ``(..., 2C)`` as ``(a0, b0, a1, ..)`` to ``[2a | b]``."""
        return t[..., self.order] * self.two_a


class _GatedBlockStepper:
    """One gated block: vertical stack a row at a time, horizontal per pixel.

    Gate inputs are reordered to halves ``[a | b]`` (:class:`GatedBlockWeights`) and computed as
    ``[2a | b]``, so that one ``sigmoid`` (on this CPU about 3x cheaper than ``tanh``) serves
    both halves: ``tanh(a) = 2 * sigmoid(2a) - 1``, so the gate is ``2 * sigmoid(2a) * sigmoid(b)
    - sigmoid(b)``: a ``sigmoid``, an in-place ``neg_`` and an ``addcmul``, with no scalar
    operand to wrap. The factor 2 of ``2a`` lives in the matrices. Each term against the line of
    :meth:`GatedBlock.forward <autoregressive.GatedBlock.forward>` it reproduces:

    - ``v_pre = self.vertical_pre(v)``: :meth:`begin_row`, the ring of input rows times
      ``v_matrix``, plus ``v_bias`` (:meth:`_vertical`);
    - ``self.link(v_pre)``, ``h_conv``'s bias and the ``cond`` bias of ``h_pre``: ``link_row``,
      once per row, the seed of each pixel's ``addmm`` (``a`` half scaled by 2); for the
      stack's last block, whose ``gate(v_pre)`` is unused, ``vertical_pre`` and ``link`` are
      one product (``v_link``);
    - ``h_pre = self.h_conv(h) + ...``: :meth:`step`, ``addmm(link_row[j], window, h_conv)``;
    - ``h_gated = gate(h_pre)``: ``sigmoid``, ``neg_`` and ``addcmul`` into ``features``;
    - ``h_new = h + self.h_out(h_gated)``: ``addmm(h, [features, 1], [W_out; b_out])``,
      written where the stack says (:meth:`step`'s ``out``: the next block's input slot);
    - ``self.skip(h_gated)``: ``skip_rows = [W_skip; b_skip]``, summed over blocks by the
      stack's one product;
    - ``gate(v_pre)`` with the ``cond`` bias of ``v_pre``: the next block's vertical row;
    - a conditioning map's ``V * s`` in ``cond_h(cond)`` and ``cond_v(cond)``:
      :meth:`_add_spatial`, once per row from the sampler's buffer of the map's current row,
      into the seed and into ``v_pre``.

    The per-row tensors are column-major, ``(W, N, ...)``: the ring ``(rows, pad + W + pad, N,
    C_in)``, so that one kernel tap's inputs for the whole row are one contiguous slab
    (:func:`~autoregressive.sampling.rows.ring_product`), and ``link_row`` ``(W, N, 2C)``, so that
    column ``j``'s seed is contiguous.
    """

    def __init__(
        self,
        f: GatedBlockWeights,
        batch: int,
        width: int,
        biases: CondBiases,
        spatial_row: torch.Tensor | None,
        features: torch.Tensor,
    ) -> None:
        c, (kh, kw), c_in = f.channels, f.kernel_size, f.in_channels
        self.width, self.channels, self.kw, self.c_in = width, c, kw, c_in
        self.residual = f.residual
        self.h_conv = ConvStepper(f.h_conv, None, batch, width)  # (1, kw): one row, no bias
        self.v_matrix, self.v_bias, self.link_matrix = f.v_matrix, f.v_bias, f.link_matrix
        self.v_link = f.v_link  # the stack's last block: link(v_pre) in one product
        self.out_matrix, self.skip_rows, self.spatial_mats = f.out_matrix, f.skip_rows, f.spatial
        self.spatial_row = spatial_row  # (N, W, C_map): the sampler's buffer of the map's row
        seed, like = f.link_seed, f.v_bias  # seed: (2C,)
        self.v_cond = None if biases is None else f.fold(biases[0])  # (N, 2C)
        if biases is not None:  # (W * N, 2C): the cond bias of h_pre, per column and image
            seed = (seed + f.fold(biases[1]))[None].expand(width, -1, -1)
            seed = seed.reshape(width * batch, 2 * c)
        self.link_seed = seed
        self.seed_row: torch.Tensor | None = None  # (W * N, 2C) with a map: the row's seed
        if self.spatial_mats is not None:
            self.seed_row = like.new_zeros(width * batch, 2 * c)
        self.link_row = like.new_zeros(width, batch, 2 * c)  # (W, N, 2C), set by begin_row
        self.links = list(self.link_row.unbind(0))  # (N, 2C) per column
        self.link_cols = self.link_row.transpose(0, 1)  # (N, W, 2C), for row_seed
        self.pre = like.new_zeros(batch, 2 * c)  # (N, 2C): the horizontal gate's input [2a | b]
        self.pre_a, self.pre_b = self.pre[:, :c], self.pre[:, c:]
        self.ring = like.new_zeros(kh // 2 + 1, width + kw - 1, batch, c_in)  # rows of v
        self.features = features  # (N, C + 1): h_gated, then a column of ones
        self.gated = features[:, :c]  # (N, C)

    def _vertical(
        self, matrix: torch.Tensor, seed: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``seed + windows @ matrix`` ``(W * N, 2C)``: the row's vertical convolution.

        ``matrix`` is ``v_matrix`` or ``v_link``, ``(rows * kw * C_in, 2C)``; see
        :func:`~autoregressive.sampling.rows.ring_product`.
        """
        ring = self.ring if self.residual else self.ring[:-1]  # mask A: the rows above only
        return ring_product(ring, matrix, seed, width=self.width, out=out)

    def begin_row(self, v_row: torch.Tensor | None) -> torch.Tensor | None:
        """Compute the row's vertical stack; return ``gate(v_pre)`` ``(W, N, C)``.

        ``v_row`` is the previous block's vertical output of this row (``None`` for mask A,
        whose current row :meth:`write` fills pixel by pixel). The stack's last block
        returns ``None``: its vertical output is unused.
        """
        ring = self.ring
        shift_up(ring)  # the last slot is the current row
        if v_row is not None:
            pad = self.kw // 2
            ring[-1, pad : pad + self.width] = v_row
        link_row = self.link_row.view(-1, 2 * self.channels)  # (W * N, 2C)
        seed = self._add_spatial(1, self.link_seed, out=self.seed_row)
        if self.v_link is not None:  # link(vertical_pre(v)) as one product
            self._vertical(self.v_link, seed, out=link_row)
            return None
        v_pre = self._vertical(self.v_matrix, self.v_bias)  # (W * N, 2C)
        torch.addmm(seed, v_pre, self.link_matrix, out=link_row)
        v_pre = self._add_spatial(0, v_pre)
        v_pre = v_pre.view(self.width, -1, 2 * self.channels)  # (W, N, 2C)
        if self.v_cond is not None:
            v_pre = v_pre + self.v_cond
        c = self.channels
        s = torch.sigmoid(v_pre)  # (W, N, 2C): [sigmoid(2a) | sigmoid(b)]
        s_b = s[..., c:].neg_()
        return torch.addcmul(s_b, s[..., :c], s_b, value=-2)  # tanh(a) * sigmoid(b)

    def _add_spatial(
        self, which: int, t: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``t`` plus the map's current row through ``cond_v``'s map (0) or ``cond_h``'s (1)."""
        if self.spatial_mats is None or self.spatial_row is None:
            return t
        row = self.spatial_row.transpose(0, 1).reshape(-1, self.spatial_row.shape[2])
        return torch.addmm(t, row, self.spatial_mats[which], out=out)  # (W * N, 2C)

    def input_slot(self, j: int) -> torch.Tensor:
        """Where the horizontal input ``h`` ``(N, C_in)`` at column ``j`` is kept."""
        return self.h_conv.input_slot(j)

    def step(self, j: int, out: torch.Tensor | None) -> None:
        """The horizontal stack at column ``j``: fills ``features``, and ``h_new`` into ``out``.

        ``out`` ``(N, C)`` is the next block's :meth:`input_slot`; ``None`` for the last block,
        whose horizontal output is unused.
        """
        self.h_conv.compute(j, seed=self.links[j], out=self.pre).sigmoid_()  # sigmoid([2a | b])
        s_b = self.pre_b.neg_()  # -sigmoid(b); s_b - 2 sigmoid(2a) s_b is the gate
        torch.addcmul(s_b, self.pre_a, s_b, value=-2, out=self.gated)  # tanh(a) sigmoid(b)
        if self.out_matrix is None or out is None:
            return
        if self.residual:  # h + h_out(h_gated)
            torch.addmm(self.input_slot(j), self.features, self.out_matrix, out=out)
        else:
            torch.mm(self.features, self.out_matrix, out=out)

    def step_row(
        self, h: torch.Tensor, features: torch.Tensor, start: int, images: torch.Tensor | None
    ) -> torch.Tensor | None:
        """:meth:`step` at columns ``start ..``: ``h`` ``(N', M, C_in)`` to ``h_new``.

        ``h_new`` is ``(N', M, C)``, of every image (``images`` ``None``, ``N' = N``) or of
        ``images`` ``(N',)`` only. Writes ``h_gated`` into ``features`` ``(N' * M, C + 1)``;
        returns ``None`` for the last block (no horizontal output).
        """
        n, m, _ = h.shape
        c = self.channels
        seed = row_seed(self.link_cols, start, self.width, images)  # (N' * M, 2C)
        s = self.h_conv.row_product(h, seed, start=start, images=images)  # (N' * M, 2C)
        s.sigmoid_()  # sigmoid([2a | b])
        s_b = s[:, c:].neg_()
        torch.addcmul(s_b, s[:, :c], s_b, value=-2, out=features[:, :c])  # as in step
        if self.out_matrix is None:
            return None
        if self.residual:  # h + h_out(h_gated)
            return torch.addmm(h.reshape(n * m, -1), features, self.out_matrix).view(n, m, -1)
        return torch.mm(features, self.out_matrix).view(n, m, -1)

    def write_row(self, x: torch.Tensor, start: int, images: torch.Tensor | None) -> None:
        """Store pixels ``(N', M, C_in)`` at columns ``start ..`` for the vertical stack.

        Of every image, or of ``images`` ``(N',)`` only.
        """
        first = self.kw // 2 + start
        columns = self.ring[-1, first : first + x.shape[1]]  # (M, N, C_in)
        columns[:, batch_index(images)] = x.transpose(0, 1)

    def write(self, j: int, x: torch.Tensor) -> None:
        """Store the drawn pixel ``(N, C_in)`` for both stacks (mask-A block only)."""
        self.h_conv.write(j, x)
        self.ring[-1, self.kw // 2 + j] = x

    def cache_nbytes(self) -> int:
        return self.ring.numel() * self.ring.element_size() + self.h_conv.cache_nbytes()


class GatedStackStepper(Stepper):
    """A :class:`~autoregressive.GatedStack` for cached sampling: block steppers, one skip product.

    Built by the stack's ``stepper()`` from each block's :class:`GatedBlockWeights`, each block's
    biases ``(N, 2C)`` of both gates from the conditioning vector (``biases``, ``None`` for
    none), the sampler's buffer of the conditioning map's current row ``(N, W, C_map)``
    (``spatial_row``, or ``None``) and whether the first block reads earlier channels of the
    current pixel (``centre``, colour).

    Every block writes ``h_gated`` and a column of ones into its slice of one buffer
    ``(N, blocks * (C + 1))``, so the summed skip outputs (biases included) are one ``mm``.
    A whole-row pass (:meth:`step_row`) may run for some images only (``images``): each block
    then stores and reads those images' pixels and seeds only.

    Shape:
        - :meth:`step`: ``(N, C_in) -> (N, C)``; :meth:`step_row`:
          ``(N', M, C_in) -> (N', M, C)``
    """

    reads_image = True
    steps_rows = True
    steps_subsets = True

    def __init__(
        self,
        blocks: Sequence[GatedBlockWeights],
        biases: Sequence[CondBiases],
        batch: int,
        width: int,
        spatial_row: torch.Tensor | None,
        *,
        centre: bool,
    ) -> None:
        c, count = blocks[0].channels, len(blocks)
        like = blocks[0].skip_rows
        features = like.new_zeros(batch, count, c + 1)  # (N, blocks, C + 1)
        features[:, :, -1] = 1
        self.features = features.view(batch, count * (c + 1))
        self.blocks = [
            _GatedBlockStepper(b, batch, width, bias, spatial_row, features[:, k])
            for k, (b, bias) in enumerate(zip(blocks, biases, strict=True))
        ]
        #: (block, the block its horizontal output feeds, or None for the last)
        self.chain = list(zip(self.blocks, [*self.blocks[1:], None], strict=True))
        self.skip_matrix = torch.cat([b.skip_rows for b in self.blocks])  # (blocks * (C+1), C)
        self.centre = centre  # colour: the first block sees earlier channels of the current pixel
        self.batch, self.width, self.channels = batch, width, c

    @functools.cached_property
    def features_rows(self) -> torch.Tensor:
        """``features`` for a whole row, ``(N * W, blocks * (C + 1))`` (made on first use)."""
        like, count = self.skip_matrix, len(self.blocks)
        rows = like.new_zeros(self.batch * self.width, count, self.channels + 1)
        rows[:, :, -1] = 1
        return rows.view(self.batch * self.width, -1)

    def step_row(
        self, x: torch.Tensor, start: int = 0, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        n, m, _ = x.shape  # N' images (all N, or those of ``images``), columns start .. W - 1
        self.blocks[0].write_row(x, start, images)
        rows = self.features_rows[: n * m]  # (N' * M, blocks * (C + 1))
        features = rows.view(n * m, len(self.blocks), -1)
        h: torch.Tensor | None = x
        for k, block in enumerate(self.blocks):
            assert h is not None  # only the last block has no horizontal output
            h = block.step_row(h, features[:, k], start, images)
        return torch.mm(rows, self.skip_matrix).view(n, m, -1)  # (N', M, C)

    def begin_row(self, i: int) -> None:
        v_row = None  # (W, N, C): the previous block's vertical output
        for block in self.blocks:
            v_row = block.begin_row(v_row)

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        if self.centre:  # colour: the first block sees earlier channels of this pixel
            self.blocks[0].h_conv.write(j, x)
        for block, following in self.chain:
            block.step(j, None if following is None else following.input_slot(j))
        return torch.mm(self.features, self.skip_matrix)  # (N, C): the summed skip outputs

    def write(self, j: int, x: torch.Tensor) -> None:
        self.blocks[0].write(j, x)

    def cache_nbytes(self) -> int:
        return sum(b.cache_nbytes() for b in self.blocks)
