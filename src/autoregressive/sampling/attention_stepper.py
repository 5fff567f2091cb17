"""Causal self-attention over an image's pixels, and its stepper with a cache of keys and values.

PixelSNAIL (Chen et al., 2018, https://arxiv.org/abs/1712.09763) lets every pixel attend to all
the pixels before it in raster order. In a sampler the keys and values of a pixel are fixed once
the pixel is drawn, so :class:`AttentionStepper` computes them once, into a cache of every pixel
of the image, and each step only computes one query and attends over the cache: the same
numbers as the layer's ``forward``, at the cost of one query per pixel.

The engine side only: :func:`attend` is the attention of both the layer
(:class:`~autoregressive.CausalSelfAttention2d`) and its stepper, :func:`background` the
positional channels both feed in, and :class:`AttentionWeights` what the layer folds its weights
into for the stepper. Nothing here imports a layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from .stepping import Stepper, batch_index

__all__ = ["AttentionStepper", "AttentionWeights", "attend", "background", "earlier_positions"]


def background(
    height: int, width: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """PixelSNAIL's positional "background": each pixel's row and column in ``[-0.5, 0.5)``.

    Args:
        height: ``H``.
        width: ``W``.
        device: device of the result.
        dtype: dtype of the result.

    Returns:
        ``(H * W, 2)`` in raster order: ``((i - H / 2) / H, (j - W / 2) / W)`` for pixel
        ``(i, j)``.

    Example:
        >>> background(2, 2).tolist()
        [[-0.5, -0.5], [-0.5, 0.0], [0.0, -0.5], [0.0, 0.0]]
    """
    rows = (torch.arange(height, device=device, dtype=dtype) - height / 2) / height  # (H,)
    cols = (torch.arange(width, device=device, dtype=dtype) - width / 2) / width  # (W,)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1)  # (H, W, 2)
    return grid.reshape(height * width, 2)


def earlier_positions(queries: torch.Tensor, keys: int) -> torch.Tensor:
    """The attention mask: query at position ``p`` may attend to key positions ``< p``.

    Args:
        queries: positions ``(L_q,)`` (raster indices ``i * W + j``) of the queries.
        keys: ``L_k``, the key positions ``0 .. L_k - 1``.

    Returns:
        Boolean ``(L_q, L_k)``, ``True`` where attending is allowed.

    Example:
        >>> earlier_positions(torch.arange(3), 3).int().tolist()
        [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    """
    return torch.arange(keys, device=queries.device)[None] < queries[:, None]


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    """Scaled dot-product attention where a query with no allowed key gets zeros.

    The first pixel of an image has no earlier pixel to attend to: its row of ``allowed`` is all
    ``False``, where a softmax is undefined. Such a query attends to key 0 instead and its
    output is then replaced by zeros, so nothing of key 0 reaches it (nor its gradient).

    Args:
        q: queries ``(N, heads, L_q, d_k)``.
        k: keys ``(N, heads, L_k, d_k)``.
        v: values ``(N, heads, L_k, d_v)``.
        allowed: boolean ``(L_q, L_k)``, ``True`` where a query may attend to a key (see
            :func:`earlier_positions`).

    Returns:
        ``(N, heads, L_q, d_v)``.
    """
    empty = ~allowed.any(1, keepdim=True)  # (L_q, 1): queries with nothing to attend to
    first = torch.zeros_like(allowed)
    first[:, 0] = True
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | (empty & first))
    return out.masked_fill(empty, 0.0)


def _affine(x: torch.Tensor, weight: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """``x @ weight`` plus each column's seed: ``(N * M, A) -> (N * M, B)``.

    ``seeds`` ``(M, B)`` holds the bias of each of the ``M`` columns (the background's part
    included); rows of ``x`` are ordered ``(n, m)``. One column's seed is added by ``addmm``
    itself, several by broadcasting over ``N`` in place, without repeating them ``N`` times.
    """
    if seeds.shape[0] == 1:
        return torch.addmm(seeds[0], x, weight)
    out = torch.mm(x, weight)  # (N * M, B)
    out.view(-1, *seeds.shape).add_(seeds)  # (N, M, B)
    return out


@dataclass(frozen=True)
class AttentionWeights:
    """A :class:`~autoregressive.CausalSelfAttention2d`'s weights folded for its stepper.

    ``C`` input channels, ``E`` extra channels, ``P`` positional channels (2 or 0), ``heads``
    heads of ``d_k`` query/key and ``d_v`` value channels, ``C_out`` output channels.

    Attributes:
        query: ``(C, heads * d_k)``, masked; ``query_pos``: ``(P, heads * d_k)``;
            ``query_bias``: ``(heads * d_k,)``.
        key_value: ``(C + E, heads * (d_k + d_v))``: keys then values;
            ``key_value_pos``: ``(P, heads * (d_k + d_v))``; ``key_value_bias``: its bias.
        out: ``(heads * d_v, C_out)``, masked; ``out_bias``: ``(C_out,)``.
        heads: number of heads; ``key_channels``: ``d_k``; ``value_channels``: ``d_v``.
    """

    query: torch.Tensor
    query_pos: torch.Tensor
    query_bias: torch.Tensor
    key_value: torch.Tensor
    key_value_pos: torch.Tensor
    key_value_bias: torch.Tensor
    out: torch.Tensor
    out_bias: torch.Tensor
    heads: int
    key_channels: int
    value_channels: int


class AttentionStepper(Stepper):
    """Causal self-attention one pixel (or one row) at a time, with a cache of keys and values.

    The cache holds the keys and values of every pixel of the image, ``(N, H * W, heads,
    d_k + d_v)`` (each head's keys, then its values: as the projection computes them, and each
    image's prefix one block of memory): allocated once per sampling call, in
    :meth:`begin_image`, it takes ``N * heads * H * W * (d_k + d_v)`` numbers (plus a row of
    inputs, ``N * W * (C + E)``), the only cache of this library that grows with the image's
    height.

    A pixel's keys and values are computed when the next one is stepped (or, for a row's last
    pixel, when the next row begins): by then the layer's inputs there are final, and so is the
    extra input (the drawn image, written into :attr:`extra_row` by the stepper that reads the
    image). :meth:`step` computes one query and attends over the cache's earlier pixels;
    :meth:`step_row` computes the keys and values of the columns it is given from their guessed
    inputs and attends for all of them at once, for every image or for some (``images``: their
    prefixes are gathered, ``N' * heads * (i + 1) * W * (d_k + d_v)`` numbers, first).

    Args:
        weights: the layer's folded weights.
        batch: images sampled at once, ``N``.
        width: image width ``W``.
        extra_channels: ``E``, channels of the extra input of keys and values (0 for none).
        reads_image: whether the layer may come first (mask A, its input being the image).

    Shape:
        - :meth:`step`: ``(N, C) -> (N, C_out)``; :meth:`step_row`:
          ``(N, M, C) -> (N, M, C_out)``
    """

    steps_rows = True
    replays_rows = False  # the attended prefix grows from pixel to pixel
    attends_prefix = True  # a step reads every cached key and value before it

    def __init__(
        self,
        weights: AttentionWeights,
        batch: int,
        width: int,
        *,
        extra_channels: int = 0,
        reads_image: bool = False,
    ) -> None:
        self.f = weights
        self.batch, self.width, self.reads_image = batch, width, reads_image
        channels = weights.query.shape[0]
        like = weights.out
        self.row = like.new_zeros(batch, width, channels + extra_channels)  # (N, W, C + E)
        self.inputs = self.row[..., :channels]  # (N, W, C): the layer's inputs in this row
        self.extra_row = self.row[..., channels:]  # (N, W, E): written by the image's reader
        kv = weights.key_channels + weights.value_channels
        self.cache = like.new_zeros(batch, 0, weights.heads, kv)  # (N, H * W, heads, d_k + d_v)
        self.query_seed = weights.query_bias.expand(width, -1)  # (W, heads * d_k) per row
        self.key_value_seed = weights.key_value_bias.expand(width, -1)  # (W, heads*(d_k+d_v))
        self.positions = like.new_zeros(0, 2)  # (H * W, P): the background
        self.i = 0

    def begin_image(self, height: int) -> None:
        f, like = self.f, self.f.out
        n, hw = self.batch, height * self.width
        # not zeroed: a pixel's keys and values are written before anything reads them
        self.cache = like.new_empty(n, hw, f.heads, f.key_channels + f.value_channels)
        if f.query_pos.shape[0]:
            self.positions = background(height, self.width, device=like.device, dtype=like.dtype)

    def begin_row(self, i: int) -> None:
        if i > 0:  # the previous row's last pixel is final now
            self._store(self.width - 1, self.width)
        self.i = i
        f = self.f
        if f.query_pos.shape[0]:  # the background's part of every query, key and value
            pos = self.positions[i * self.width : (i + 1) * self.width]  # (W, P)
            self.query_seed = torch.addmm(f.query_bias, pos, f.query_pos)
            self.key_value_seed = torch.addmm(f.key_value_bias, pos, f.key_value_pos)

    def _store(self, start: int, stop: int, images: torch.Tensor | None = None) -> None:
        """Keys and values of columns ``start .. stop - 1`` of the row, from its inputs.

        Of every image, or of ``images`` ``(N',)`` only.
        """
        m, at = stop - start, self.i * self.width
        row = self.row[batch_index(images), start:stop]
        n = row.shape[0]
        kv = _affine(row.reshape(n * m, -1), self.f.key_value, self.key_value_seed[start:stop])
        kv = kv.view(n, m, self.f.heads, -1)  # (N', M, heads, d_k + d_v)
        self.cache[batch_index(images), at + start : at + stop] = kv

    def _prefix(
        self, end: int, images: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys ``(N', heads, end, d_k)`` and values ``(N', heads, end, d_v)`` of pixels ``< end``.

        Views of the cache for every image; for ``images``, of one gathered copy.
        """
        prefix = self.cache[:, :end]  # (N, end, heads, d_k + d_v)
        if images is not None:  # each image's prefix is one block of memory
            prefix = prefix.index_select(0, images)
        k, v = prefix.transpose(1, 2).split([self.f.key_channels, self.f.value_channels], 3)
        return k, v

    def _queries(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Queries ``(N, heads, M, d_k)`` of inputs ``(N, M, C)`` at columns ``start ..``."""
        n, m, c = x.shape
        q = _affine(x.reshape(n * m, c), self.f.query, self.query_seed[start : start + m])
        return rearrange(q, "(n m) (h d) -> n h m d", n=n, h=self.f.heads)

    def _out(self, attended: torch.Tensor) -> torch.Tensor:
        """``(N, heads, M, d_v)`` through the output projection, ``(N, M, C_out)``."""
        o = rearrange(attended, "n h m d -> n m (h d)")
        return torch.addmm(self.f.out_bias, o.flatten(0, 1), self.f.out).view(*o.shape[:2], -1)

    def step(self, j: int, x: torch.Tensor) -> torch.Tensor:
        self.inputs[:, j] = x
        if j > 0:  # the previous pixel is final: its keys and values join the cache
            self._store(j - 1, j)
        p = self.i * self.width + j
        q = self._queries(x[:, None], j)  # (N, heads, 1, d_k)
        if p == 0:
            attended = q.new_zeros(self.batch, self.f.heads, 1, self.f.value_channels)
        else:
            attended = F.scaled_dot_product_attention(q, *self._prefix(p))  # (N, heads, 1, d_v)
        return self._out(attended)[:, 0]

    steps_subsets = True

    def step_row(
        self, x: torch.Tensor, start: int = 0, images: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.inputs[batch_index(images), start:] = x
        self._store(start, self.width, images)  # from the guess: what step would see
        end = (self.i + 1) * self.width
        q = self._queries(x, start)  # (N', heads, M, d_k)
        first = self.i * self.width + start
        allowed = earlier_positions(torch.arange(first, end, device=x.device), end)
        k, v = self._prefix(end, images)  # (N', heads, end, d_k), (N', heads, end, d_v)
        if first == 0:  # the image's first pixel has nothing to attend to
            attended = attend(q, k, v, allowed)
        else:  # every query may attend to key 0: attend's mask would be ``allowed`` itself
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self._out(attended)

    def write(self, j: int, x: torch.Tensor) -> None:
        self.inputs[:, j] = x

    def cache_nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.cache, self.row))
