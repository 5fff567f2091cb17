"""Lossless compression with a model: exact round trips, sizes at the likelihood, refusals.

Round trips are drawn by Hypothesis over small float64 models of every distribution and every
kind of conditioning; the stream's payload must come within a few bits of the images' negative
log-likelihood. Every damaged, truncated or foreign stream must raise, never return images.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import pytest
import torch
from helpers import small_configs
from hypothesis import given
from hypothesis import strategies as st

from autoregressive import (
    Bernoulli,
    Categorical,
    Conditioning,
    DiscretizedLogisticMixture,
    PixelCNN,
    PixelCNNConfig,
    compress,
    decompress,
)
from autoregressive.coding import StreamError
from autoregressive.coding.format import CHECKSUM_BYTES, HEADER_BYTES, StreamHeader, read_stream

pytest.importorskip("constriction", reason='needs pip install ".[compression]"')

F64 = {"dtype": torch.float64}
OVERHEAD = HEADER_BYTES + CHECKSUM_BYTES
#: the range coder's last words: at most two 32-bit words beyond the information content
CODER_SLACK_BITS = 64


@st.composite
def coding_cases(draw):
    config = draw(small_configs(st.sampled_from([3, 16, 256]), conditions=True))
    n = draw(st.integers(1, 4))
    size = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return config, n, size, draw(st.integers(1, 4)), draw(st.integers(0, 2**16))


def model_cond(config: PixelCNNConfig, n: int, size: tuple[int, int], seed: int) -> Conditioning:
    """A conditioning of every part the config declares, drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    labels = None if config.num_classes is None else torch.randint(0, 3, (n,), generator=g)
    vector, spatial = (
        None if width is None else torch.randn(n, width, *shape, generator=g, **F64)
        for width, shape in ((config.vector_size, ()), (config.spatial_channels, size))
    )
    return Conditioning(vector=vector, spatial=spatial, labels=labels)


def sharpened(model: PixelCNN, seed: int) -> PixelCNN:
    """Weights moved far from initialisation: confident, uneven conditionals."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


@given(coding_cases())
def test_round_trips_are_exact_and_cost_the_likelihood(case):
    config, n, size, batch, seed = case
    model = sharpened(PixelCNN(config, **F64), seed)
    cond = model_cond(config, n, size, seed)
    images = model.sample(n, cond, size=size, generator=torch.Generator().manual_seed(seed))
    data = compress(model, images, cond, batch_size=batch)
    assert torch.equal(decompress(model, data, cond), images)
    nll_bits = -float(model.log_prob(images, cond).sum().detach()) / math.log(2)
    payload_bits = 8 * (len(data) - OVERHEAD)
    batches = math.ceil(n / batch)  # one stream, but the tables are rounded per symbol
    assert payload_bits <= nll_bits * 1.001 + CODER_SLACK_BITS + batches
    assert payload_bits >= nll_bits - 8


@pytest.mark.parametrize(
    "config",
    [
        PixelCNNConfig(num_blocks=1, hidden_channels=4),
        PixelCNNConfig(distribution="categorical", levels=256, data_channels=3, num_blocks=1,
                       hidden_channels=6),
        PixelCNNConfig(distribution="logistic_mixture", levels=256, data_channels=3, mixtures=2,
                       num_blocks=1, hidden_channels=6),
    ],
)  # fmt: skip
def test_images_the_model_all_but_rules_out_still_round_trip(config):
    """Uniform noise under a sharpened model: values far in the tails keep a count."""
    model = sharpened(PixelCNN(config, **F64), 3)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, config.levels, (3, config.data_channels, 5, 4), generator=g)
    images = images.double() if config.distribution == "bernoulli" else images
    assert torch.equal(decompress(model, compress(model, images)), images)


@pytest.mark.parametrize(
    "distribution",
    [Bernoulli(), Categorical(5), DiscretizedLogisticMixture(mixtures=3, levels=16)],
    ids=["bernoulli", "categorical", "mixture"],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_the_tables_multiply_to_the_likelihood(distribution, channels):
    """Each channel's table given the earlier ones: their product is ``exp(log_prob)``."""
    plan = distribution.draw_plan(channels)
    g = torch.Generator().manual_seed(channels)
    raw = 2 * torch.randn(6, distribution.num_params(channels), generator=g, **F64)  # (N, P)
    levels = getattr(distribution, "levels", 2)
    x = torch.randint(0, levels, (6, channels), generator=g)  # one pixel per image
    log_p = torch.zeros(6, **F64)
    for s in range(plan.steps):
        values = iter(x[:, plan.channel_slice(s)].T)

        def pick(table, values=values):
            nonlocal log_p
            torch.testing.assert_close(table.sum(-1), torch.ones(6, **F64))
            v = next(values)
            log_p = log_p + table.gather(1, v[:, None]).squeeze(1).log()
            return v

        got = distribution.pick_channels(raw[:, plan.param_slice(s)], pick)
        assert torch.equal(got.reshape(6, -1), x[:, plan.channel_slice(s)])
    expected = distribution.log_prob(raw[:, :, None, None], x[:, :, None, None])
    torch.testing.assert_close(log_p, expected)


# --------------------------------------------------------------------------- refusals
@pytest.fixture(scope="module")
def stream():
    """A small Bernoulli model, its images and their stream."""
    config = PixelCNNConfig(num_blocks=1, hidden_channels=4, num_classes=3)
    model = PixelCNN(config, **F64)
    labels = torch.tensor([0, 2])
    images = model.sample(2, labels, size=(4, 5), generator=torch.Generator().manual_seed(0))
    return model, labels, images, compress(model, images, labels)


def resealed(data: bytes) -> bytes:
    """``data`` with its checksum computed again: a change the checksum cannot see."""
    body = data[:-CHECKSUM_BYTES]
    return body + hashlib.sha256(body).digest()[:CHECKSUM_BYTES]


def test_every_changed_byte_is_refused(stream):
    model, labels, _, data = stream
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x20
        with pytest.raises(StreamError):
            decompress(model, bytes(damaged), labels)


def test_every_truncation_and_any_trailing_bytes_are_refused(stream):
    model, labels, _, data = stream
    for end in range(len(data)):
        with pytest.raises(StreamError, match=r"truncated|not a stream"):
            decompress(model, data[:end], labels)
    with pytest.raises(StreamError, match="followed by other bytes"):
        decompress(model, data + b"\0", labels)


def test_a_changed_payload_behind_a_valid_checksum_never_returns_images(stream):
    """The images' digest: a payload altered and resealed decodes to other images, refused.

    A change in the coder's last bits may decode to the same images, which are then returned.
    """
    model, labels, images, data = stream
    refused = 0
    for i in range(HEADER_BYTES, len(data) - CHECKSUM_BYTES):
        damaged = bytearray(data)
        damaged[i] ^= 0x01
        try:
            decoded = decompress(model, resealed(bytes(damaged)), labels)
        except StreamError as err:
            assert "differ from those compressed" in str(err)
            refused += 1
        else:
            assert torch.equal(decoded, images)
    assert refused >= (len(data) - OVERHEAD) // 2


def test_another_model_dtype_distribution_or_conditioning_is_refused(stream):
    model, labels, _, data = stream
    other = PixelCNN(model.config, **F64)
    with pytest.raises(StreamError, match="another model"):
        decompress(other, data, labels)
    with pytest.raises(StreamError, match=r"torch.float64.*model.to"):
        decompress(_float32(model), data, labels)
    categorical = PixelCNN(model.config.replace(distribution="categorical", levels=2), **F64)
    with pytest.raises(StreamError, match="bernoulli model"):
        decompress(categorical, data, labels)
    with pytest.raises(StreamError, match="conditioning differs"):
        decompress(model, data, torch.tensor([1, 2]))


def _float32(model: PixelCNN) -> PixelCNN:
    copy = PixelCNN(model.config)
    copy.load_state_dict(model.state_dict())
    return copy


def test_a_stream_of_another_device_type_is_refused(stream):
    model, labels, _, data = stream
    header = read_stream(data).header
    payload = read_stream(data).payload
    moved = StreamHeader(**{**header.__dict__, "device_type": "cuda"})
    with pytest.raises(StreamError, match="on a cuda device"):
        decompress(model, moved.pack(payload), labels)


def test_a_well_sealed_header_that_names_nothing_or_half_words_is_refused(stream):
    model, labels, _, data = stream
    header, payload = read_stream(data).header, read_stream(data).payload
    empty = StreamHeader(**{**header.__dict__, "batch": 0})
    with pytest.raises(StreamError, match="names no images"):
        decompress(model, empty.pack(payload), labels)
    with pytest.raises(StreamError, match="not of 32-bit words"):
        decompress(model, header.pack(payload + b"\0"), labels)


def test_bad_arguments_say_what_to_pass(stream):
    model, labels, images, data = stream
    with pytest.raises(TypeError, match="model must be a PixelCNN"):
        compress(model.network, images, labels)
    with pytest.raises(TypeError, match="data must be the bytes"):
        decompress(model, data.decode("latin-1"), labels)
    with pytest.raises(ValueError, match="binary"):
        compress(model, images + 1, labels)
    with pytest.raises(ValueError, match="class-conditional"):
        compress(model, images)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        compress(model, images, labels, batch_size=0)


def test_importing_the_package_does_not_import_the_coder():
    code = "import sys, autoregressive; assert 'constriction' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_without_the_coder_the_error_names_the_extra():
    code = (
        "import sys; sys.modules['constriction'] = None\n"  # as if it were not installed
        "import torch, autoregressive as ar\n"
        "model = ar.PixelCNN(ar.PixelCNNConfig(num_blocks=1, hidden_channels=4))\n"
        "try:\n"
        "    ar.compress(model, torch.zeros(1, 1, 2, 2))\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert 'pip install "autoregressive[compression]"' in result.stdout
