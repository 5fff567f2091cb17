"""Categorical inputs through an embedding: the layer, the config, causality, normalisation and
cached sampling (``PixelCNNConfig.input_embedding``, :class:`CategoricalEmbedding`)."""

from __future__ import annotations

import io

import pytest
import reference as ref
import torch
from helpers import as_set, measured_deps, positive_weights_
from hypothesis import given
from hypothesis import strategies as st
from test_dependencies import strictly_earlier
from test_sampling import all_images, completion_mask, perturbed
from torch import nn

from autoregressive import (
    CachedSampler,
    Categorical,
    CategoricalEmbedding,
    CausalSequential,
    Conditioning,
    GatedStack,
    MaskedConv2d,
    NaiveSampler,
    PixelCNN,
    PixelCNNConfig,
    cached_sample,
    draw_noise,
    naive_sample,
)

F64 = {"dtype": torch.float64}


# ----------------------------------------------------------------------------- the layer
@pytest.mark.parametrize("learned", [True, False])
@pytest.mark.parametrize("dc", [1, 3])
def test_embedding_puts_channel_c_in_its_own_contiguous_block(learned, dc):
    """Against a loop over channels and pixels: output ``[c*d, (c+1)*d)`` is code ``x[c]``'s row."""
    levels, d = 5, (3 if learned else 5)
    embed = CategoricalEmbedding(levels, d if learned else None, dc, learned=learned, **F64)
    x = torch.randint(0, levels, (2, dc, 3, 4), generator=torch.Generator().manual_seed(0))
    out = embed(x.double())
    assert out.shape == (2, dc * d, 3, 4)
    table = embed.weight.detach() if learned else torch.eye(levels, **F64).expand(dc, -1, -1)
    for n in range(2):
        for c in range(dc):
            for i in range(3):
                for j in range(4):
                    want = table[c, x[n, c, i, j]]
                    assert torch.equal(out[n, c * d : (c + 1) * d, i, j], want)


def test_learned_tables_differ_per_channel_and_onehot_has_no_parameters():
    learned = CategoricalEmbedding(4, 2, data_channels=3)
    assert [n for n, _ in learned.named_parameters()] == ["weight"]
    assert learned.weight.shape == (3, 4, 2)
    assert not torch.equal(learned.weight[0], learned.weight[1])
    onehot = CategoricalEmbedding(4, data_channels=3, learned=False)
    assert list(onehot.parameters()) == [] and onehot.state_dict() == {}
    assert repr(onehot) == "CategoricalEmbedding(4, 4, data_channels=3, learned=False)"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("learned", [True, False])
def test_dtype_reaches_the_table_and_the_output(dtype, learned):
    embed = CategoricalEmbedding(6, 6, 2, learned=learned, dtype=dtype)
    assert embed.weight.dtype == dtype and embed.offsets.dtype == torch.long
    assert embed(torch.zeros(1, 2, 2, 2)).dtype == dtype
    assert embed.double()(torch.zeros(1, 2, 2, 2)).dtype == torch.float64


def test_learned_state_dict_round_trip_and_gradients():
    torch.manual_seed(0)
    a = CategoricalEmbedding(7, 3, 2)
    torch.manual_seed(1)
    b = CategoricalEmbedding(7, 3, 2)
    x = torch.randint(0, 7, (2, 2, 3, 3)).float()
    assert not torch.equal(a(x), b(x))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(a(x), b(x))
    a(x).sum().backward()
    assert a.weight.grad is not None and a.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"levels": 1}, ValueError, "levels"),
        ({"levels": 4.0}, TypeError, "levels"),
        ({"levels": 4, "embedding_dim": 0}, ValueError, "embedding_dim"),
        ({"levels": 4, "embedding_dim": 3, "learned": False}, ValueError, "embedding_dim"),
        ({"levels": 4, "data_channels": 0}, ValueError, "data_channels"),
        ({"levels": 4, "learned": "yes"}, TypeError, "learned"),
    ],
)
def test_bad_embedding_arguments_name_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        CategoricalEmbedding(**kwargs)


def test_wrong_input_shape_raises_value_error():
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        CategoricalEmbedding(4, 2, 3)(torch.zeros(1, 1, 2, 2))


# ----------------------------------------------------------------------------- the config
def test_default_scaled_input_is_unchanged():
    """No embedding layer, the same network and parameters, inputs rescaled as before."""
    base = PixelCNNConfig(distribution="categorical", levels=5, num_blocks=1, hidden_channels=8)
    assert base.input_embedding == "scaled" and base.embedding_width is None
    assert base.make_distribution() == Categorical(5)
    x = torch.randint(0, 5, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0)).double()
    assert torch.equal(Categorical(5).preprocess(x, torch.float64), x * 2.0 / 4 - 1.0)
    assert torch.equal(Categorical(5, input="index").preprocess(x, torch.float32), x.float())
    torch.manual_seed(0)
    a = PixelCNN(base, **F64)
    torch.manual_seed(0)
    b = PixelCNN(base.replace(input_embedding="scaled", embedding_dim=3), **F64)
    assert isinstance(a.network[0], MaskedConv2d) and a.network[0].in_channels == 1
    assert a.state_dict().keys() == b.state_dict().keys()
    assert torch.equal(a.log_prob(x), b.log_prob(x))


@pytest.mark.parametrize(
    ("embedding", "dim", "in_channels"), [("onehot", 16, 3 * 6), ("learned", 4, 3 * 4)]
)
@pytest.mark.parametrize("block", ["residual", "gated"])
def test_the_first_masked_layer_reads_d_channels_per_data_channel(
    embedding, dim, in_channels, block
):
    cfg = PixelCNNConfig(
        data_channels=3,
        block=block,
        distribution="categorical",
        levels=6,
        num_blocks=2,
        hidden_channels=6,
        input_embedding=embedding,
        embedding_dim=dim,
    )
    assert cfg.make_distribution() == Categorical(6, input="index")
    net = PixelCNN(cfg).network
    assert isinstance(net[0], CategoricalEmbedding) and net[0].out_channels == in_channels
    first = net[1].blocks[0].h_conv if block == "gated" else net[1]
    assert first.in_channels == in_channels and first.data_channels == 3


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"input_embedding": "learned"}, ValueError, "input_embedding='learned'.*categorical"),
        ({"input_embedding": "onehot"}, ValueError, "input_embedding='onehot'.*categorical"),
        ({"input_embedding": "embedded"}, ValueError, "input_embedding must be one of"),
        ({"input_embedding": None}, ValueError, "input_embedding must be one of"),
        ({"distribution": "categorical", "embedding_dim": 0}, ValueError, "embedding_dim"),
        ({"distribution": "categorical", "embedding_dim": 2.0}, TypeError, "embedding_dim"),
        ({"distribution": "categorical", "embedding_dim": True}, TypeError, "embedding_dim"),
    ],
)
def test_invalid_embedding_configs_name_the_field(changes, error, message):
    with pytest.raises(error, match=message):
        PixelCNNConfig(**changes)


def test_categorical_refuses_an_unknown_input():
    with pytest.raises(ValueError, match="input must be 'scaled'"):
        Categorical(4, input="onehot")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- causality
@st.composite
def embedded_configs(draw, max_levels: int = 4):
    dc = draw(st.sampled_from([1, 3]))
    return PixelCNNConfig(
        data_channels=dc,
        block=draw(st.sampled_from(["residual", "gated"])),
        distribution="categorical",
        levels=draw(st.integers(2, max_levels)),
        input_embedding=draw(st.sampled_from(["onehot", "learned"])),
        embedding_dim=draw(st.integers(1, 4)),
        num_blocks=draw(st.integers(1, 3)),
        hidden_channels=2 * dc * draw(st.integers(1, 2)),
        input_kernel_size=draw(st.sampled_from([3, 5])),
        kernel_size=draw(st.sampled_from([3, 5])),
        head_channels=dc * draw(st.integers(0, 2)),
        **draw(st.sampled_from(CONDITIONING)),
    )


#: the kinds of conditioning a config can ask for, alone and mixed
CONDITIONING = [
    {},
    {"num_classes": 3},
    {"vector_size": 2},
    {"spatial_channels": 2},
    {"num_classes": 3, "vector_size": 2, "spatial_channels": 1},
]


def conditioning_inputs(cfg: PixelCNNConfig, n: int, h: int, w: int, seed: int = 0) -> Conditioning:
    """Labels, vectors and maps for ``n`` images of ``(h, w)``, as far as ``cfg`` takes them.

    Positive, so that with positive weights no ReLU is dead (see ``positive_weights_``).
    """
    g = torch.Generator().manual_seed(seed)
    out: dict = {}
    if cfg.num_classes:
        out["labels"] = torch.arange(n) % cfg.num_classes
    if cfg.vector_size:
        out["vector"] = 0.5 + torch.rand(n, cfg.vector_size, generator=g, **F64)
    if cfg.spatial_channels:
        out["spatial"] = 0.5 + torch.rand(n, cfg.spatial_channels, h, w, generator=g, **F64)
    return Conditioning(**out)


def perturbation_deps(model: PixelCNN, h: int, w: int, cond: Conditioning | None) -> list:
    """``deps[k][(i, j)]``: the sub-pixels whose code moves output channel ``k`` at ``(i, j)``.

    Every sub-pixel of a random image is set to every other level, all edits in one batch; a
    change counts above rounding (batch items may be summed in different orders). A lower
    bound on the dependency sets, then: a long path can move an output by less than that (the
    exact sets: :func:`jacobian_deps`), but a leak of the masks moves it by far more.
    """
    cfg = model.config
    c, levels = cfg.data_channels, cfg.levels
    base = torch.randint(0, levels, (c, h, w), generator=torch.Generator().manual_seed(2))
    images, edits = [base], [None]
    for ch in range(c):
        for i in range(h):
            for j in range(w):
                for v in range(levels):
                    if v != base[ch, i, j]:
                        x = base.clone()
                        x[ch, i, j] = v
                        images.append(x)
                        edits.append((i, j, ch))
    x = torch.stack(images).double()  # (B, C, H, W)
    batch_cond = None if cond is None else cond.first(len(images))
    with torch.no_grad():
        out = model.network(model.distribution.preprocess(x, torch.float64), batch_cond)
    moved = (out[1:] - out[:1]).abs() > 1e-12 * (1 + float(out.abs().max()))  # (B - 1, O, H, W)
    deps = [{(i, j): set() for i in range(h) for j in range(w)} for _ in range(out.shape[1])]
    for b, k, i, j in moved.nonzero().tolist():
        deps[k][(i, j)].add(edits[b + 1])
    return deps


def jacobian_deps(model: PixelCNN, h: int, w: int, cond: Conditioning | None) -> torch.Tensor:
    """Boolean ``(O, H, W, C, H, W)``: the exact dependencies of the network after its embedding.

    The Jacobian with respect to the embedding's output ``(C * d, H, W)``, whose channels
    ``[c * d, (c + 1) * d)`` are data channel ``c``'s (tested above), collapsed to data channels.
    """
    c, d = model.config.data_channels, model.config.embedding_width
    assert isinstance(model.network[0], CategoricalEmbedding) and d is not None
    rest = CausalSequential(*list(model.network)[1:])
    measured = measured_deps(rest, (c * d, h, w), cond)  # (O, H, W, C * d, H, W)
    return measured.unflatten(3, (c, d)).any(4)


def reference_deps(cfg: PixelCNNConfig, h: int, w: int) -> ref.Deps:
    """The dependency sets the architecture allows, by set algebra (tests/reference.py)."""
    dc, k_in, k = cfg.data_channels, cfg.input_kernel_size, cfg.kernel_size
    image = ref.image_deps(h, w, dc)
    if cfg.block == "gated":
        kernels = [(k_in, k_in)] + [(k, k)] * (cfg.num_blocks - 1)
        deps = ref.gated_stack(image, h, w, dc, kernels)
    else:
        deps = ref.masked_conv(image, h, w, dc, (k_in, k_in), "A")
        for _ in range(cfg.num_blocks):
            deps = ref.residual_block(deps, h, w, dc, (k, k))
    for _ in range(2 if cfg.head_channels else 1):
        deps = ref.masked_conv(deps, h, w, dc, (1, 1), "B")
    return deps


@given(embedded_configs(), st.integers(1, 5), st.integers(1, 5))
def test_embedded_models_depend_on_exactly_the_causal_past(config, h, w):
    """Each output group ``g`` at ``(i, j)`` depends on exactly the sub-pixels the masks allow:
    earlier pixels, and channels ``< g`` of its own pixel; the gated stack with no blind spot.
    Exact sets from the Jacobian behind the embedding; changing codes moves nothing else."""
    model = positive_weights_(PixelCNN(config, **F64))
    cond = model.condition(conditioning_inputs(config, 1, h, w), 1, size=(h, w))
    exact = jacobian_deps(model, h, w, cond)  # (O, H, W, C, H, W)
    moved = perturbation_deps(model, h, w, cond)
    expected = reference_deps(config, h, w)
    per_group = config.levels  # logits per data channel
    for k, by_pixel in enumerate(moved):
        g = k // per_group
        for (i, j), got in by_pixel.items():
            want = expected[(i, j, g)]
            assert strictly_earlier(frozenset(got), i, j, g), (k, i, j, sorted(got))
            assert got <= want, f"output {k} at {(i, j)} moves with {sorted(got - want)}"
            measured = as_set(exact[k, i, j])
            assert measured == want, (
                f"output {k} at {(i, j)}: missing {sorted(want - measured)}, "
                f"unexpected {sorted(measured - want)}"
            )


def test_the_naive_samplers_causality_probe_sees_through_the_embedding():
    """An embedding followed by a mask-B first layer sees the pixel it predicts: refused."""
    levels = 3
    leaky = CausalSequential(
        CategoricalEmbedding(levels, 2, **F64),
        MaskedConv2d(2, 4, 3, "B", **F64),
        nn.ReLU(),
        MaskedConv2d(4, levels, 1, "B", **F64),
    )
    perturbed(leaky)
    noise = draw_noise((2, 1, 4, 4), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="not causal"):
        naive_sample(leaky, Categorical(levels, input="index"), noise)


# ------------------------------------------------------------------------ normalisation
@pytest.mark.parametrize("embedding", ["onehot", "learned"])
@pytest.mark.parametrize(
    ("config", "size"),
    [
        (
            PixelCNNConfig(distribution="categorical", levels=3, num_blocks=2, hidden_channels=8),
            (2, 2),
        ),
        (
            PixelCNNConfig(
                block="gated",
                distribution="categorical",
                levels=3,
                num_blocks=2,
                hidden_channels=6,
                num_classes=2,
            ),
            (2, 2),
        ),
        (
            PixelCNNConfig(
                block="gated",
                data_channels=3,
                distribution="categorical",
                levels=2,
                num_blocks=2,
                hidden_channels=6,
                head_channels=6,
            ),
            (1, 2),
        ),
    ],
)
def test_probabilities_of_all_images_sum_to_one(config, size, embedding):
    config = config.replace(input_embedding=embedding, embedding_dim=3)
    model = perturbed(PixelCNN(config, **F64))
    images = all_images(config.data_channels, *size, config.levels)
    for label in range(config.num_classes) if config.num_classes else [None]:
        y = None if label is None else torch.full((len(images),), label)
        total = model.log_prob(images, y).exp().sum().item()
        assert abs(total - 1.0) < 1e-9, total


# ------------------------------------------------------------------------ cached sampling
@st.composite
def sampling_cases(draw):
    config = draw(embedded_configs(max_levels=5))
    n = draw(st.integers(1, 3))
    size = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    completion = draw(st.sampled_from(["none", "pixels", "subpixels", "top-half"]))
    temperature = draw(st.sampled_from([1.0, 0.7]))
    return config, n, size, completion, temperature, draw(st.integers(0, 2**16))


@given(sampling_cases())
def test_cached_sampler_returns_the_naive_samplers_codes(case):
    """float64, same seed: identical codes, with and without completion, temperature and every
    kind of conditioning."""
    config, n, (h, w), completion, t, seed = case
    model = perturbed(PixelCNN(config, **F64), seed)
    cond = conditioning_inputs(config, n, h, w, seed)
    known = completion_mask(completion, n, config.data_channels, h, w, seed)
    image = None
    if known is not None:
        g = torch.Generator().manual_seed(seed + 1)
        image = model.sample(n, cond, size=(h, w), generator=g)
    kwargs = {"size": (h, w), "image": image, "known": known, "temperature": t}
    g = torch.Generator().manual_seed(seed)
    naive = model.sample(n, cond, generator=g, sampler=NaiveSampler(), **kwargs)
    cached = model.sample(n, cond, generator=torch.Generator().manual_seed(seed), **kwargs)
    assert naive.dtype == torch.long and torch.equal(naive, cached)
    assert bool(((cached >= 0) & (cached < config.levels)).all())
    if known is not None:
        given_ = known.expand_as(image)
        assert torch.equal(cached[given_], image[given_])


@pytest.mark.parametrize("embedding", ["onehot", "learned"])
@pytest.mark.parametrize("block", ["residual", "gated"])
@pytest.mark.parametrize("dc", [1, 3])
def test_cached_equals_naive_for_every_block_and_embedding(embedding, block, dc):
    """The grid the Hypothesis test draws from, each corner once, on a 4x5 image."""
    config = PixelCNNConfig(
        data_channels=dc,
        block=block,
        distribution="categorical",
        levels=6,
        input_embedding=embedding,
        embedding_dim=3,
        num_blocks=2,
        hidden_channels=2 * dc * 2,
        num_classes=3,
    )
    model = perturbed(PixelCNN(config, **F64))
    y = torch.tensor([0, 2, 1])
    draws = [
        model.sample(3, y, size=(4, 5), generator=torch.Generator().manual_seed(7), sampler=s)
        for s in (NaiveSampler(), CachedSampler())
    ]
    assert torch.equal(*draws)
    assert len(draws[0].unique()) > 1  # not a degenerate draw


EMBEDDED = [
    PixelCNNConfig(
        block=block,
        data_channels=dc,
        distribution="categorical",
        levels=7,
        input_embedding=embedding,
        embedding_dim=3,
        num_blocks=2,
        hidden_channels=4 * dc,
        num_classes=3,
    )
    for block, dc, embedding in [("gated", 1, "learned"), ("residual", 3, "onehot")]
]


@pytest.mark.parametrize("config", EMBEDDED)
def test_the_row_replay_path_matches_the_eager_path(config):
    """The CUDA-graph path's fixed row buffers (the recording replaced by the row itself)."""
    model = perturbed(PixelCNN(config, **F64))
    n, size = 3, (5, 4)
    noise = draw_noise((n, config.data_channels, *size), torch.Generator().manual_seed(0))
    cond = model.condition(torch.arange(n) % 3, n)
    image = (noise * config.levels).floor()
    known = torch.zeros(size, dtype=torch.bool)
    known[:2, :3] = True
    inputs = {"cond": cond, "image": image, "known": known}
    eager = CachedSampler(rows_at_once=False).sample_with_params(
        model.network, model.distribution, noise, **inputs
    )
    replayed = CachedSampler(replay_rows=True).sample_with_params(
        model.network, model.distribution, noise, **inputs
    )
    assert torch.equal(replayed[0], eager[0])
    assert torch.equal(replayed[1], eager[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("config", EMBEDDED)
def test_cuda_graph_replay_matches_eager_and_naive_on_cuda(config):
    model = perturbed(PixelCNN(config, device="cuda", **F64))
    noise = draw_noise((4, config.data_channels, 9, 7), torch.Generator().manual_seed(0))
    noise = noise.cuda()
    cond = model.condition(torch.arange(4, device="cuda") % 3, 4)
    graphed, eager = CachedSampler(cuda_graphs=True), CachedSampler(cuda_graphs=False)
    fast = graphed.sample(model.network, model.distribution, noise, cond=cond)
    assert torch.equal(fast, eager.sample(model.network, model.distribution, noise, cond=cond))
    assert graphed.last_used_graph and not eager.last_used_graph
    naive = naive_sample(model.network, model.distribution, noise, cond=cond)
    assert torch.equal(graphed.sample(model.network, model.distribution, noise, cond=cond), naive)


def test_a_stack_of_public_layers_with_an_embedding_samples_exactly():
    """A user's own network: embedding, pixelwise activation, GatedStack, head; nested too."""
    levels, d = 5, 3
    dist = Categorical(levels, input="index")
    net = CausalSequential(
        CausalSequential(CategoricalEmbedding(levels, d, **F64), nn.Tanh()),
        GatedStack(d, 8, num_blocks=2, **F64),
        nn.ReLU(),
        MaskedConv2d(8, levels, 1, "B", **F64),
    )
    perturbed(net)
    noise = draw_noise((3, 1, 5, 6), torch.Generator().manual_seed(0))
    assert torch.equal(naive_sample(net, dist, noise), cached_sample(net, dist, noise))


def test_a_network_of_only_pixelwise_layers_cannot_be_sampled_cached():
    net = CausalSequential(CategoricalEmbedding(3, 3, **F64), nn.ReLU())
    noise = draw_noise((1, 1, 2, 2), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"not causal.*Use a mask-A first layer"):
        cached_sample(net, Categorical(3, input="index"), noise)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    cfg = PixelCNNConfig(
        block="gated",
        distribution="categorical",
        levels=8,
        num_blocks=2,
        hidden_channels=8,
        input_embedding="learned",
        embedding_dim=4,
    )
    model = PixelCNN(cfg)
    x = torch.randint(0, 8, (2, 1, 6, 6), generator=torch.Generator().manual_seed(0))
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled.log_prob(x), model.log_prob(x))
