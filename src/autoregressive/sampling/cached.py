"""Exact cached sampling: every layer's activation at every pixel is computed once.

Fast PixelCNN++ (Ramachandran et al., 2017, https://arxiv.org/abs/1704.06001) observed that in a
masked-convolution network a layer's activation at pixel ``p`` depends only on earlier pixels, so
once ``p``'s inputs are known it can be computed from cached activations and never again.
Generating an image then costs the arithmetic of **one** forward pass, spread over ``H * W``
steps, instead of ``H * W`` forward passes.

This module is only the driver: each layer computes itself one pixel at a time through the
stepping protocol of :mod:`autoregressive.sampling.stepping` (``layer.stepper(batch, width,
cond)``), whose hook next to the layer's ``forward`` builds a stepper of this package. The
sampler draws from the same uniform noise as :func:`~autoregressive.naive_sample`, so with the
same generator it returns the same images.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
from einops import rearrange
from torch import nn

from ..conditioning import Conditioning, RowConditioning
from ..distributions.base import Distribution, DrawPlan
from ..validation import check_bool
from .checks import check_sampling
from .rows import tap_products
from .sampler import Choose, Progress, SampleInputs, Sampler, SampleRequest, check_progress
from .stepping import Stepper, batch_index, pass_row, stepper_for

if TYPE_CHECKING:  # annotations only: typing.Unpack is Python 3.11+
    from typing_extensions import Unpack

__all__ = ["CachedSampler", "cached_sample"]

#: rows run eagerly before one row is recorded as a CUDA graph (kernels and handles warm up)
WARMUP_ROWS = 2
#: the largest batch whose rows are found by whole-row passes by default (rows_at_once=None)
ROWS_AT_ONCE_MAX_BATCH = 16


@dataclass
class _Rows:
    """The sampler's state, one entry per row; ``rows[i]`` is row ``i``'s views.

    ``S``, ``U`` and ``V`` are the distribution's :class:`~autoregressive.DrawPlan`'s ``steps``,
    ``noise_shape`` and ``value_shape``: ``u[i, j, s]`` is the noise of sub-step ``s`` of pixel
    ``(i, j)``, ``(N, *U)``, in one block of memory.
    """

    x: torch.Tensor  # (H, W, N, C): the images being drawn
    u: torch.Tensor  # (H, W, S, N, *U): prepared noise by sub-step
    given: torch.Tensor | None  # (H, W, S, N, *V) bool, True where known
    params: torch.Tensor | None  # (H, W, N, C * P): raw parameters, when asked for
    spatial: torch.Tensor | None  # (H, N, W, C_map): a conditioning map, when given

    def _map(self, f: Callable[[torch.Tensor], torch.Tensor]) -> _Rows:
        values = (getattr(self, field.name) for field in fields(self))
        return _Rows(*(None if t is None else f(t) for t in values))  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> _Rows:
        return self._map(lambda t: t[i])

    def empty_like(self) -> _Rows:
        return self._map(torch.empty_like)

    def copy_(self, src: _Rows) -> None:
        for field in fields(self):
            dst = getattr(self, field.name)
            if dst is not None:
                dst.copy_(getattr(src, field.name))


def _record_cuda_graph(row: Callable[[], object]) -> Callable[[], object]:
    """Record ``row`` as a CUDA graph (without running it); return its replay."""
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        row()
    return graph.replay


class CachedSampler(Sampler):
    """Samples from a causal network with per-layer row caches; see :func:`cached_sample`.

    The sampler holds only its options: one object samples any network and distribution,
    passed to :meth:`sample` (values folded from a network's weights are kept with the network,
    see :mod:`~autoregressive.sampling.memo`).

    Every module of the network must implement the stepping protocol
    (:func:`~autoregressive.stepper_for`): :class:`~autoregressive.CausalSequential`,
    :class:`~autoregressive.MaskedConv2d`, :class:`~autoregressive.ResidualBlock`,
    :class:`~autoregressive.GatedStack`, :class:`~autoregressive.CausalSelfAttention2d`,
    :class:`~autoregressive.GatedResidualBlock`, :class:`~autoregressive.SnailStack`, blocks of
    your own with a ``stepper`` method, and elementwise activations. The first layer must read
    the image causally: a mask-A ``MaskedConv2d`` or ``CausalSelfAttention2d``, a ``GatedStack``
    or a ``SnailStack``, as :class:`~autoregressive.PixelCNN` builds.

    On CUDA the per-step work is a few hundred small kernels whose launch overhead would
    dominate, so by default the sampler records one image row (``W`` steps, sampling included)
    as a CUDA graph after a few eager warm-up rows, and replays it for every further
    row: the same kernels on the same buffers, launched at once. ``cuda_graphs=False`` opts out.

    On the CPU, at small batches, a step is mostly the cost of calling a few dozen tiny
    operations, whatever their size. There the sampler finds each row as a fixed point
    (Jacobi iteration, as in Song et al., *Accelerating Feedforward Computation via Parallel
    Nonlinear Equation Solving*, ICML 2021, https://arxiv.org/abs/2002.03629): it guesses the
    whole row, computes the network at all its pixels at once from the guess
    (:meth:`~autoregressive.Stepper.step_row`) and draws them all again from their noise, and
    repeats from the first pixel whose draw changed. A draw depends only on the pixels before
    it, so the row it settles on is exactly the step-by-step row, in at most ``W * S + 1``
    passes (``S`` draws per pixel, as the distribution's :class:`~autoregressive.DrawPlan`
    says: ``C``, or 1 for whole pixels) and in practice in two or three (one pass to draw, one
    to confirm): the same images as the naive sampler, for a fraction of the calls. Images
    settle independently, and when every layer's stepper can (:attr:`Stepper.steps_subsets`)
    the passes after an image has settled run for the other images only.
    :attr:`last_passes` counts the passes.

    Args:
        rows_at_once: find rows by whole-row passes: ``None`` (default) when not replaying rows
            and the batch is at most ``ROWS_AT_ONCE_MAX_BATCH`` (16) or a layer attends to every
            earlier pixel (:attr:`Stepper.attends_prefix`), for as long as a row takes at most
            half the passes of stepping it; ``True`` always (every layer's stepper must
            implement ``step_row``); ``False`` never, one step per sub-pixel.
        cuda_graphs: replay rows as CUDA graphs: ``None`` (default) on CUDA devices, ``False``
            never, ``True`` always (a ``ValueError`` if the network is not on a CUDA device, or
            if a stepper's rows differ, :attr:`Stepper.replays_rows`, as an attention layer's
            do: such networks run eagerly by default).
        replay_rows: run the CUDA-graph path without a graph, on any device: warm-up rows
            eagerly, then every further row on the same fixed buffers, the recording replaced by
            the row itself. The same images; it lets the replay's bookkeeping be tested on a CPU.
        tap_products: how a row's convolution over the rows above is multiplied
            (:func:`~autoregressive.sampling.rows.ring_product`): ``None`` (default) by its
            sizes, ``True`` one product per kernel tap, ``False`` one product of gathered windows
            (its slow twin). The same images either way, to rounding.
        progress: report the rows drawn: ``True`` a tqdm bar, a function
            ``progress(rows_done, rows)`` called after each row (between replays of a recorded
            row on CUDA), ``False`` (default) nothing; see
            :data:`~autoregressive.sampling.sampler.Progress`. The same images either way.

    Example:
        >>> from autoregressive import PixelCNN, PixelCNNConfig, Bernoulli, draw_noise
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=16))
        >>> sampler = CachedSampler(rows_at_once=False)
        >>> sampler.sample(model.network, Bernoulli(), draw_noise((3, 1, 5, 5))).shape
        torch.Size([3, 1, 5, 5])
        >>> sampler.last_passes  # one step per pixel
        25
    """

    def __init__(
        self,
        *,
        rows_at_once: bool | None = None,
        cuda_graphs: bool | None = None,
        replay_rows: bool = False,
        tap_products: bool | None = None,
        progress: Progress = False,
    ) -> None:
        cuda_graphs = check_bool("cuda_graphs", cuda_graphs, optional=True)
        tap_products = check_bool("tap_products", tap_products, optional=True)
        rows_at_once = check_bool("rows_at_once", rows_at_once, optional=True)
        replay_rows = check_bool("replay_rows", replay_rows)
        if cuda_graphs and rows_at_once:
            raise ValueError("choose cuda_graphs=True or rows_at_once=True, not both")
        if replay_rows and (cuda_graphs or rows_at_once):
            raise ValueError(
                "replay_rows=True replays rows without a CUDA graph, step by step: leave "
                "cuda_graphs and rows_at_once unset (or False)"
            )
        self.rows_at_once = rows_at_once
        self.cuda_graphs = cuda_graphs
        self.replay_rows = replay_rows
        self.tap_products = tap_products
        self.progress = check_progress(progress, type(self).__name__)
        self.last_cache_nbytes = 0  #: cache bytes of the most recent call
        self.last_used_graph = False  #: whether the most recent call replayed a CUDA graph
        #: network passes of the most recent call: steps, plus whole-row passes
        self.last_passes = 0

    def __repr__(self) -> str:
        options = ["rows_at_once", "cuda_graphs", "replay_rows", "tap_products"]
        options += ["progress"] if self.progress is not False else []
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in options)})"

    def _at_once(self, stepper: Stepper, batch: int) -> bool | None:
        """Whether rows are found by whole-row passes: True, False or None (while they pay)."""
        if not stepper.steps_rows:
            if self.rows_at_once:
                raise ValueError(
                    "rows_at_once=True needs every layer's stepper to implement step_row; "
                    "this network has one that steps pixel by pixel only"
                )
            return False
        if self.rows_at_once is not None:
            return self.rows_at_once
        return None if batch <= ROWS_AT_ONCE_MAX_BATCH or stepper.attends_prefix else False

    def _replays(self, stepper: Stepper, device: torch.device, height: int) -> tuple[bool, bool]:
        """Whether rows are replayed as CUDA graphs, and whether they are replayed at all.

        Rows replay only when every stepper runs the same operations in every row
        (:attr:`Stepper.replays_rows`); by default not otherwise, and asking for it is an error.
        """
        graphs = self.cuda_graphs
        if graphs is None:
            graphs = device.type == "cuda" and not (self.rows_at_once or self.replay_rows)
            graphs = graphs and stepper.replays_rows
        if graphs and device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs a network on a CUDA device, not {device}")
        if (graphs or self.replay_rows) and not stepper.replays_rows:
            raise ValueError(
                "this network's rows cannot be replayed (a layer such as an attention layer "
                "attends to a prefix that grows with every pixel): leave cuda_graphs and "
                "replay_rows unset"
            )
        return graphs, (graphs or self.replay_rows) and height > WARMUP_ROWS

    @torch.no_grad()
    def _draw(self, request: SampleRequest) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Draw images from ``noise``, and the parameters if asked (see ``Sampler._draw``)."""
        completion = check_sampling(request)
        network, noise, parts = request.network, request.noise, request.cond
        n, _, height, width = noise.shape
        device = next(network.parameters()).device
        stepwise = request.choose is not None  # a chooser runs once per sub-step, eagerly
        run = _Run(network, request.distribution, request.choose)
        # inference mode: no autograd bookkeeping on the many small operations of a step
        with (
            torch.inference_mode(),
            tap_products(self.tap_products),
            self._row_progress(height) as run.report,
        ):
            stepper = run._stepper(n, width, parts)
            graphs, replayed = self._replays(stepper, device, height)
            replayed = replayed and not stepwise
            self.last_used_graph = graphs and replayed
            stepper.begin_image(height)
            self.last_cache_nbytes = stepper.cache_nbytes()
            rows = run._prepare(noise, completion, request.return_params, parts)
            if replayed:
                record = _record_cuda_graph if graphs else _run_row
                run._sample_replayed(stepper, rows, record)
            else:
                run._sample_eager(stepper, rows, False if stepwise else self._at_once(stepper, n))
        self.last_passes = run.last_passes
        # copies made outside inference mode: ordinary tensors, usable with autograd
        images = rearrange(rows.x, "h w n c -> n c h w").clone(
            memory_format=torch.contiguous_format
        )
        if rows.params is None:
            return images, None
        params = rearrange(rows.params, "h w n k -> n k h w")
        return images, params.clone(memory_format=torch.contiguous_format)


@dataclass
class _Pending:
    """The images and columns of a row that whole-row passes still compute, and its tensors.

    ``guess`` ``(N, W, C)``, ``noise`` ``(N, W, S, *U)``, ``given`` ``(N, W, C)`` or ``None``,
    ``params`` and ``above`` ``(N, W, K)`` (``params`` may be ``None``): the row's tensors.
    ``subsets``: whether passes may run for some images only (:attr:`Stepper.steps_subsets`);
    ``images``: the batch indices still moving (``None``: all ``N``); ``start``: the first
    column whose draw is not final for all of them.
    """

    guess: torch.Tensor
    noise: torch.Tensor
    given: torch.Tensor | None
    params: torch.Tensor | None
    above: torch.Tensor
    subsets: bool
    images: torch.Tensor | None = None
    start: int = 0

    def read(self, t: torch.Tensor) -> torch.Tensor:
        """``t``'s pending part ``(N', W - start, ...)``: a view for all images, else a copy."""
        t = t[:, self.start :]
        return t if self.images is None else t.index_select(0, self.images)

    def write(self, t: torch.Tensor, values: torch.Tensor) -> None:
        """Write ``values`` ``(N', W - start, ...)`` into ``t``'s pending part."""
        t[batch_index(self.images), self.start :] = values

    def narrow(self, moved: torch.Tensor) -> None:
        """Keep the images and columns after a pass's moved draws ``(N', W - start)``.

        An image none of whose draws moved has drawn its own guess: it is settled. The next
        pass starts at the first column that moved in any image.
        """
        self.start += int(moved.any(0).int().argmax())
        if not self.subsets:
            return
        still = moved.any(1)  # (N',)
        if bool(still.all()):
            return
        index = still.nonzero()[:, 0]  # increasing
        self.images = index if self.images is None else self.images[index]


def _run_row(row: Callable[[], object]) -> Callable[[], object]:
    """The stand-in for a recording (``replay_rows``): replaying it runs the row itself."""
    return row


class _Run:
    """One call of :meth:`CachedSampler.sample`: its network, distribution and map-row buffer.

    ``choose`` picks each sub-step's value in the step-by-step loop (``distribution.draw``
    unless given); the whole-row passes draw from the noise, and are not run with another.
    """

    def __init__(
        self, network: nn.Module, distribution: Distribution, choose: Choose | None = None
    ) -> None:
        self.network = network
        self.distribution = distribution
        self.choose = distribution.draw if choose is None else choose
        self.last_passes = 0
        self._spatial_row: torch.Tensor | None = None  # (N, W, C_map): the map's current row
        #: called with the rows done after each row (the sampler's progress report)
        self.report: Callable[[int], None] = lambda done: None
        #: (N, W, K): the raw parameters of the last row passed whole, once _has_above is set
        self._above = torch.empty(0)
        self._has_above = False

    def _stepper(self, batch: int, width: int, cond: Conditioning | None) -> Stepper:
        vector = None if cond is None else cond.vector
        spatial = None if cond is None else cond.spatial
        self._spatial_row = None
        if spatial is not None:  # (N, C_map, H, W) -> a row buffer (N, W, C_map)
            self._spatial_row = spatial.new_zeros(batch, width, spatial.shape[1])
        rows = RowConditioning(vector, self._spatial_row)
        stepper = stepper_for(self.network, batch, width, rows if cond is not None else None)
        if not stepper.reads_image:
            first = next(iter(self.network.children()), self.network)
            raise ValueError(
                "cached sampling needs a causal network whose first layer is a mask-A "
                "MaskedConv2d, a GatedStack or a SnailStack (its stepper sets reads_image), after "
                "pixelwise layers only (such as a CategoricalEmbedding); this one starts with "
                f"{type(first).__name__}"
            )
        return stepper

    def _row(
        self, stepper: Stepper, i: int, row: _Rows, plan: DrawPlan, *, at_once: bool = False
    ) -> int:
        """Sample row ``i`` in place; ``row`` holds its views (see :class:`_Rows`).

        Returns the network passes it took: steps, or whole-row passes with ``at_once``.
        """
        if row.spatial is not None and self._spatial_row is not None:
            self._spatial_row.copy_(row.spatial)  # the steppers read row i of the map here
        if at_once:
            return self._row_fixed_point(stepper, i, row, plan)
        self._row_by_steps(stepper, i, row, plan)
        return row.x.shape[0] * plan.steps

    def _row_fixed_point(self, stepper: Stepper, i: int, row: _Rows, plan: DrawPlan) -> int:
        """Row ``i`` as the fixed point of whole-row passes; returns how many it took.

        Each pass computes the network at the row's pixels from a guess of their values
        (:meth:`Stepper.step_row`) and draws every sub-step again from its own noise. A draw
        depends only on the sub-steps before it, so the draws up to the first one that differs
        from the guess are final, the next pass starts at that pixel, and a pass that draws its
        own guess has drawn exactly what the step-by-step loop draws: at most ``W * S + 1``
        passes (``S = plan.steps`` per pixel), usually a few. Any first guess gives that row;
        a good one (:meth:`_first_guess`) saves passes. Images are independent, so an image
        whose guess is drawn again unchanged is settled, and when every stepper can
        (:attr:`Stepper.steps_subsets`) the next passes run for the other images only.
        """
        noise = row.u.movedim(2, 0)  # (N, W, S, *U)
        given = None if row.given is None else row.given.movedim(2, 0).flatten(2)  # (N, W, C)
        guess = self._first_guess(row.x.transpose(0, 1), plan, noise, given)  # (N, W, C)
        params = None if row.params is None else row.params.transpose(0, 1)  # (N, W, K)
        stepper.begin_row(i)
        pending = _Pending(guess, noise, given, params, self._above, stepper.steps_subsets)
        passes, limit = 0, guess.shape[1] * plan.steps + 1  # one sub-step final per pass
        while True:
            passes += 1
            if passes > limit:
                raise RuntimeError("a row did not reach its fixed point: a stepper is not causal")
            if not self._pass(stepper, pending, plan, row.x.dtype):
                break
        row.x.copy_(guess.transpose(0, 1))
        self._has_above = True
        return passes

    def _pass(
        self, stepper: Stepper, pending: _Pending, plan: DrawPlan, dtype: torch.dtype
    ) -> bool:
        """One whole-row pass of the pending images; whether any of their draws moved.

        Stores the pass's raw parameters and draws in ``pending``'s tensors, and narrows it to
        the images and columns still moving (to its columns only unless ``pending.subsets``).
        """
        images, start = pending.images, pending.start
        part = pending.read(pending.guess)  # (N', M, C): the guess at columns start ..
        raw = pass_row(stepper, self.distribution.preprocess(part, dtype), start, images)
        pending.write(pending.above, raw)  # the next row's first guess draws from these
        if pending.params is not None:
            pending.write(pending.params, raw)
        drawn = self._draw_columns(plan, raw, pending.read(pending.noise), part)
        if pending.given is not None:
            drawn = torch.where(pending.read(pending.given), part, drawn)
        moved = (drawn != part).flatten(2).any(2)  # (N', M): a column whose draw moved
        if not bool(moved.any()):
            return False
        pending.write(pending.guess, drawn)
        pending.narrow(moved)
        return True

    def _first_guess(
        self, known: torch.Tensor, plan: DrawPlan, noise: torch.Tensor, given: torch.Tensor | None
    ) -> torch.Tensor:
        """A row's first guess ``(N, W, C)``: what the row above's parameters draw from its noise.

        Neighbouring rows have similar parameters, so most of these draws are already right.
        ``known`` ``(N, W, C)`` holds the known values (zeros elsewhere), which are kept, and is
        the guess of a row with no row above passed (the first row); ``noise`` is
        ``(N, W, S, *U)``, ``given`` ``(N, W, C)`` or ``None``.
        """
        if not self._has_above:
            return known.contiguous()
        drawn = self._draw_columns(plan, self._above, noise, known)
        return drawn if given is None else torch.where(given, known, drawn)

    def _draw_columns(
        self, plan: DrawPlan, raw: torch.Tensor, noise: torch.Tensor, like: torch.Tensor
    ) -> torch.Tensor:
        """Every sub-step of ``M`` columns drawn from raw parameters ``(N, M, K)``.

        ``noise`` is ``(N, M, S, *U)``; returns ``(N, M, C)`` in ``like``'s dtype.
        """
        n, m, c = like.shape
        draws = n * m * plan.steps
        value = self.distribution.draw(
            raw.reshape(draws, plan.params), noise.reshape(draws, *plan.noise_shape)
        )  # (N * M * S, *V)
        return value.to(like.dtype).view(n, m, c)

    def _row_by_steps(self, stepper: Stepper, i: int, row: _Rows, plan: DrawPlan) -> None:
        """Row ``i`` one sub-step at a time: ``plan.steps`` network steps per pixel."""
        dist, dtype, choose = self.distribution, row.x.dtype, self.choose
        steps = plan.steps
        reads = [plan.param_slice(s) for s in range(steps)]  # each sub-step's raw parameters
        width, n = row.x.shape[:2]
        noise = row.u.flatten(0, 1).unbind(0)  # W * S views (N, *U), one per sub-step
        given = None if row.given is None else row.given.flatten(0, 1).unbind(0)  # (N, *V)
        by_step = row.x.view(width, n, steps, *plan.value_shape)  # (W, N, S, *V): x's memory
        stepper.begin_row(i)
        pixels = zip(row.x.unbind(0), by_step.unbind(0), strict=True)
        for j, (xp, subs) in enumerate(pixels):  # xp: (N, C), the pixel; subs: (N, S, *V)
            for s, sub in enumerate(subs.unbind(1)):  # sub: (N, *V), what sub-step s writes
                raw = stepper.step(j, dist.preprocess(xp, dtype))  # (N, S * P)
                raw_s = raw[:, reads[s]] if steps > 1 else raw  # (N, P)
                if row.params is not None:
                    row.params[j, :, reads[s]] = raw_s
                value = choose(raw_s, noise[j * steps + s])  # (N, *V)
                if given is not None:
                    value = torch.where(given[j * steps + s], sub, value)
                sub.copy_(value)
            stepper.write(j, dist.preprocess(xp, dtype))

    def _sample_eager(self, stepper: Stepper, rows: _Rows, at_once: bool | None) -> None:
        """Every row in turn, in place, step by step or by whole-row passes (``at_once``).

        ``at_once=None``: whole-row passes while a row takes at most half the steps it would
        take step by step, then step by step.
        """
        plan = self.distribution.draw_plan(rows.x.shape[3])
        steps = rows.x.shape[1] * plan.steps
        self.last_passes = 0
        _, w, n, c = rows.x.shape
        self._above = rows.x.new_zeros(n, w, self.distribution.num_params(c))
        self._has_above = False
        for i in range(rows.x.shape[0]):
            passes = self._row(stepper, i, rows[i], plan, at_once=at_once is not False)
            if at_once is None and 2 * passes > steps:
                at_once = False
            self.last_passes += passes
            self.report(i + 1)

    def _sample_replayed(
        self,
        stepper: Stepper,
        rows: _Rows,
        record: Callable[[Callable[[], object]], Callable[[], object]],
    ) -> None:
        """Warm-up rows eagerly, then one row recorded on fixed buffers and replayed for the rest.

        Every row runs the same operations on the same buffers (steppers are built so), so the
        recording of one row, fed each row's noise and known pixels, samples any row.
        """
        plan = self.distribution.draw_plan(rows.x.shape[3])
        for i in range(WARMUP_ROWS):
            steps = self._row(stepper, i, rows[i], plan)  # every row takes the same steps
            self.report(i + 1)
        static = rows[0].empty_like()  # the buffers the recording reads and writes
        replay = None
        for i in range(WARMUP_ROWS, rows.x.shape[0]):
            static.copy_(rows[i])
            if replay is None:
                replay = record(functools.partial(self._row, stepper, i, static, plan))
            replay()
            rows[i].copy_(static)
            self.report(i + 1)
        self.last_passes = steps * rows.x.shape[0]

    def _prepare(
        self,
        noise: torch.Tensor,
        completion: tuple[torch.Tensor, torch.Tensor] | None,
        return_params: bool,
        cond: Conditioning | None = None,
    ) -> _Rows:
        """The sampling state in row-major layouts, known pixels filled in."""
        param = next(self.network.parameters())
        dist = self.distribution
        n, _, height, width = noise.shape
        channels = dist.image_channels(noise.shape[1])
        plan = dist.draw_plan(channels)
        u = _by_step(dist.prepare_noise(noise.to(param.device)), plan.steps, plan.noise_shape)
        x = param.new_zeros(height, width, n, channels)  # (H, W, N, C)
        given = None
        if completion is not None:
            image_hw = rearrange(completion[0].to(param), "n c h w -> h w n c")
            given = _by_step(completion[1], plan.steps, plan.value_shape)
            x.copy_(torch.where(rearrange(completion[1], "n c h w -> h w n c"), image_hw, x))
        size = dist.num_params(channels)
        params = x.new_zeros(height, width, n, size) if return_params else None
        spatial = None if cond is None else cond.spatial
        if spatial is not None:
            spatial = rearrange(spatial.to(param), "n m h w -> h n w m").contiguous()
        return _Rows(x, u, given, params, spatial)


def _by_step(t: torch.Tensor, steps: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Channels ``(N, S * prod(shape), H, W)`` cut by sub-step, ``(H, W, S, N, *shape)``.

    Contiguous, so that each sub-step's part of a pixel is one block of memory and the samplers
    take the parts of a row as views.
    """
    n, _, h, w = t.shape
    by_step = rearrange(t, "n (s k) h w -> h w s n k", s=steps).contiguous()
    return by_step.view(h, w, steps, n, *shape)


def cached_sample(
    network: nn.Module,
    distribution: Distribution,
    noise: torch.Tensor,
    *,
    cuda_graphs: bool | None = None,
    rows_at_once: bool | None = None,
    **inputs: Unpack[SampleInputs],
) -> torch.Tensor:
    """Sample with per-layer caches: the naive sampler's images at about one forward pass's cost.

    A convenience for ``CachedSampler(rows_at_once=..., cuda_graphs=...).sample(...)``.

    Args:
        network: a causal network (see :class:`CachedSampler` for what it may contain).
        distribution: the output distribution.
        noise: uniform noise ``(N, C', H, W)`` from :func:`~autoregressive.draw_noise`, with
            ``C' = distribution.noise_channels(C)`` (``C``, or ``C + 1`` for a mixture).
        cuda_graphs: replay rows as CUDA graphs (default: on CUDA devices); see
            :class:`CachedSampler`.
        rows_at_once: find each row by whole-row passes (default: for small batches on the
            CPU); see :class:`CachedSampler`.
        inputs: ``cond``, ``image`` and ``known`` (:class:`SampleInputs`), as for
            :meth:`Sampler.sample`.

    Returns:
        Images ``(N, C, H, W)`` in the network's dtype, equal to
        :func:`~autoregressive.naive_sample`'s for the same noise.

    Shape:
        - ``noise``: :math:`(N, C', H, W)`; ``cond``: a :class:`~autoregressive.Conditioning`
        - Output: :math:`(N, C, H, W)`

    Example:
        >>> model = PixelCNN(PixelCNNConfig(num_blocks=2, hidden_channels=8), dtype=torch.float64)
        >>> noise = draw_noise((4, 1, 6, 6), torch.Generator().manual_seed(0))
        >>> fast = cached_sample(model.network, model.distribution, noise)
        >>> torch.equal(fast, naive_sample(model.network, model.distribution, noise))
        True
    """
    sampler = CachedSampler(rows_at_once=rows_at_once, cuda_graphs=cuda_graphs)
    return sampler.sample(network, distribution, noise, **inputs)
