"""Independent reference for dependency sets: set algebra over mask footprints, no convolutions.

A *node* is a feature ``(i, j, g)``: position and colour group. Its dependency set is the set of
image sub-pixels ``(i', j', c)`` it can depend on. Each layer maps the input nodes' sets to the
output nodes' sets by the footprint its mask allows; zero padding means offsets that leave the
image contribute nothing. The model code is never consulted: only the architecture description.
"""

from __future__ import annotations

from collections.abc import Iterable

Deps = dict[tuple[int, int, int], frozenset[tuple[int, int, int]]]


def image_deps(h: int, w: int, channels: int) -> Deps:
    """The image itself: sub-pixel (i, j, c) depends on itself (group c)."""
    return {
        (i, j, c): frozenset({(i, j, c)})
        for i in range(h)
        for j in range(w)
        for c in range(channels)
    }


def masked_conv(
    deps: Deps,
    h: int,
    w: int,
    groups: int,
    kernel: tuple[int, int],
    mask_type: str,
    dilation: tuple[int, int] = (1, 1),
) -> Deps:
    """A MaskedConv2d as the PixelCNN paper defines its mask (groups = data_channels)."""
    kh, kw = kernel
    ch, cw = kh // 2, kw // 2
    out: Deps = {}
    for i in range(h):
        for j in range(w):
            for g in range(groups):
                acc: set[tuple[int, int, int]] = set()
                for a in range(kh):
                    for b in range(kw):
                        ii, jj = i + (a - ch) * dilation[0], j + (b - cw) * dilation[1]
                        if not (0 <= ii < h and 0 <= jj < w):
                            continue
                        if a < ch or (a == ch and b < cw):
                            allowed = range(groups)
                        elif a == ch and b == cw:
                            allowed = range(g) if mask_type == "A" else range(g + 1)
                        else:
                            continue
                        for gi in allowed:
                            acc |= deps[(ii, jj, gi)]
                out[(i, j, g)] = frozenset(acc)
    return out


def union(*all_deps: Deps) -> Deps:
    return {k: frozenset().union(*(d[k] for d in all_deps)) for k in all_deps[0]}


def residual_block(deps: Deps, h: int, w: int, groups: int, kernel, dilation=(1, 1)) -> Deps:
    inner = masked_conv(deps, h, w, groups, (1, 1), "B")
    inner = masked_conv(inner, h, w, groups, kernel, "B", dilation)
    inner = masked_conv(inner, h, w, groups, (1, 1), "B")
    return union(deps, inner)


def _all_groups(deps: Deps, h: int, w: int, groups: int) -> Deps:
    """Collapse groups: every output group depends on all input groups at the same position."""
    out: Deps = {}
    for i in range(h):
        for j in range(w):
            acc = frozenset().union(*(deps[(i, j, g)] for g in range(groups)))
            for g in range(groups):
                out[(i, j, g)] = acc
    return out


def vertical(deps: Deps, h: int, w: int, groups: int, kernel, mask_type: str) -> Deps:
    """The gated vertical convolution: rows above (and the current row for mask B), all groups."""
    kh, kw = kernel
    r, c = kh // 2, kw // 2
    rows = range(1, r + 1) if mask_type == "A" else range(0, r + 1)
    full = _all_groups(deps, h, w, groups)
    out: Deps = {}
    for i in range(h):
        for j in range(w):
            acc: set[tuple[int, int, int]] = set()
            for up in rows:
                for dj in range(-c, c + 1):
                    ii, jj = i - up, j + dj
                    if 0 <= ii < h and 0 <= jj < w:
                        acc |= full[(ii, jj, 0)]
            for g in range(groups):
                out[(i, j, g)] = frozenset(acc)
    return out


def gated_stack(image: Deps, h: int, w: int, groups: int, kernels: Iterable) -> Deps:
    """Skip-sum output of a GatedStack whose blocks have the given kernels (first is mask A)."""
    v = hz = image
    skips: Deps | None = None
    for k, kernel in enumerate(kernels):
        mask = "A" if k == 0 else "B"
        v_pre = vertical(v, h, w, groups, kernel, mask)
        h_pre = union(masked_conv(hz, h, w, groups, (1, kernel[1]), mask), v_pre)  # + link
        skip = masked_conv(h_pre, h, w, groups, (1, 1), "B")
        h_new = masked_conv(h_pre, h, w, groups, (1, 1), "B")
        hz = union(hz, h_new) if mask == "B" else h_new
        v = v_pre
        skips = skip if skips is None else union(skips, skip)
    assert skips is not None
    return skips


def full_causal_field(
    i: int, j: int, g: int, w: int, channels: int, up: int, side: int
) -> frozenset[tuple[int, int, int]]:
    """Every earlier sub-pixel of output group g at (i, j) within `up` rows above and `side`
    columns either side (rows above) or to the left (current row): a field with no blind spot."""
    acc: set[tuple[int, int, int]] = set()
    for ii in range(max(0, i - up), i):
        for jj in range(max(0, j - side), min(w, j + side + 1)):
            acc |= {(ii, jj, c) for c in range(channels)}
    for jj in range(max(0, j - side), j):
        acc |= {(i, jj, c) for c in range(channels)}
    acc |= {(i, j, c) for c in range(g)}
    return frozenset(acc)


def attention(deps: Deps, h: int, w: int, groups: int, mask_type: str, query_from: int = 2) -> Deps:
    """A CausalSelfAttention2d over features ``deps``: keys and values at every earlier position
    (all groups); the query at the position itself (groups <= g for mask B, < g for mask A) from
    raster position ``query_from`` on; nothing at all for the first position (its output is the
    bias). A softmax over one key is 1 whatever the query, so at position 1 the query's
    features reach the output only by rounding: ``query_from=2`` gives the sets that must be
    measured, ``query_from=1`` those that may be."""
    out: Deps = {}
    earlier: set[tuple[int, int, int]] = set()
    for i in range(h):
        for j in range(w):
            p = i * w + j
            for g in range(groups):
                own = range(g + 1) if mask_type == "B" else range(g)
                acc = set(earlier)
                if p >= query_from:
                    for gi in own:
                        acc |= deps[(i, j, gi)]
                out[(i, j, g)] = frozenset(acc)
            for gi in range(groups):
                earlier |= deps[(i, j, gi)]
    return out
