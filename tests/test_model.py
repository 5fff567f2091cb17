"""PixelCNN: presets, shapes, likelihood helpers, and every input error."""

from __future__ import annotations

import math

import pytest
import torch

from autoregressive import PRESETS, Conditioning, PixelCNN, PixelCNNConfig, nats_to_bits_per_dim


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_reference_preset_is_the_seed_projects_model():
    model = PixelCNN.from_preset("reference")
    assert n_params(model) == 488_065  # "about 0.49M"
    stem = model.network[0]
    assert stem.kernel_size == (7, 7) and stem.mask_type == "A"
    assert model.config.distribution == "bernoulli"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_scores(name):
    model = PixelCNN.from_preset(name)
    x = torch.randint(0, 2, (2, 1, 28, 28)).float()
    assert model(x).shape == (2, 1, 28, 28)
    assert model.log_prob(x).shape == (2,)


def test_forward_shapes_end_in_height_and_width():
    cat = PixelCNN(
        PixelCNNConfig(
            data_channels=3, distribution="categorical", levels=8, num_blocks=1, hidden_channels=6
        )
    )
    x = torch.randint(0, 8, (2, 3, 5, 4))
    assert cat(x).shape == (2, 3, 8, 5, 4)
    bern = PixelCNN(PixelCNNConfig(block="gated", num_blocks=2, hidden_channels=4))
    assert bern(torch.zeros(2, 1, 5, 4)).shape == (2, 1, 5, 4)


def test_log_prob_is_minus_bce_and_bits_per_dim_converts():
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4), dtype=torch.float64)
    x = torch.randint(0, 2, (3, 1, 4, 4)).double()
    logits = model(x)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
    torch.testing.assert_close(model.log_prob(x), -bce.sum((1, 2, 3)))
    torch.testing.assert_close(model.bits_per_dim(x), -model.log_prob(x) / (16 * math.log(2)))
    assert nats_to_bits_per_dim(16 * math.log(2), 16) == pytest.approx(1.0)


def test_conditioning_changes_the_likelihood():
    model = PixelCNN(PixelCNNConfig(block="gated", num_blocks=2, hidden_channels=4, num_classes=3))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    x = torch.randint(0, 2, (1, 1, 4, 4)).float()
    a = model.log_prob(x, torch.tensor([0]))
    b = model.log_prob(x, torch.tensor([2]))
    assert not torch.allclose(a, b)


BERNOULLI = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4, num_classes=3))
CATEGORICAL = PixelCNN(
    PixelCNNConfig(distribution="categorical", levels=4, num_blocks=1, hidden_channels=4)
)
GOOD = torch.zeros(2, 1, 4, 4)
LABELS = torch.tensor([0, 1])


@pytest.mark.parametrize(
    ("model", "x", "y", "message"),
    [
        (BERNOULLI, torch.zeros(2, 4, 4), LABELS, r"4 dimensions.*unsqueeze\(1\)"),
        (BERNOULLI, torch.zeros(2, 3, 4, 4), LABELS, "expects data_channels=1"),
        (BERNOULLI, torch.full((2, 1, 4, 4), 0.5), LABELS, r"binary images.*\{0, 1\}"),
        (BERNOULLI, torch.full((2, 1, 4, 4), float("nan")), LABELS, "NaN"),
        (BERNOULLI, GOOD, None, "class-conditional: pass labels"),
        (BERNOULLI, GOOD, torch.tensor([0, 3]), r"labels must lie in \[0, 3\)"),
        (BERNOULLI, GOOD, torch.tensor([0.0, 1.0]), "integer tensor of class labels"),
        (BERNOULLI, GOOD, torch.tensor([0]), r"shape \(2,\)"),
        (CATEGORICAL, GOOD, LABELS, "takes no labels"),
        (CATEGORICAL, torch.full((2, 1, 4, 4), 4), None, r"\[0, 4\)"),
        (CATEGORICAL, torch.full((2, 1, 4, 4), -1), None, r"\[0, 4\)"),
        (CATEGORICAL, torch.full((2, 1, 4, 4), 1.5), None, "non-integer floats"),
    ],
)
def test_bad_inputs_raise_helpful_value_errors(model, x, y, message):
    with pytest.raises(ValueError, match=message):
        model.log_prob(x, y)


WITH_VECTOR = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4, vector_size=4))


@pytest.mark.parametrize(
    ("model", "inputs"),
    [
        (BERNOULLI, {"x": [[0.0]], "cond": LABELS}),
        (BERNOULLI, {"x": GOOD, "cond": Conditioning(labels=[0, 1])}),  # type: ignore[arg-type]
        (WITH_VECTOR, {"x": GOOD, "cond": Conditioning(vector=[[0.0] * 4] * 2)}),  # type: ignore[arg-type]
    ],
    ids=["x", "y", "vector"],
)
def test_inputs_that_are_not_tensors_raise_type_errors(model, inputs):
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        model.log_prob(**inputs)


def test_a_sampler_that_is_not_a_sampler_is_a_type_error():
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4))
    with pytest.raises(TypeError, match=r"sampler must be a Sampler, e\.g\. CachedSampler\(\)"):
        model.sample(2, sampler="fast")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "positive number of images"),
        ({"n": 2, "size": (0, 3)}, "H, W >= 1"),
        ({"image": GOOD}, "both `image` and `known`"),
        ({"image": GOOD, "known": torch.ones(3, 1, 4, 4, dtype=torch.bool)}, "does not broadcast"),
        ({"image": GOOD, "known": torch.ones(2, 4, 4, dtype=torch.bool)}, "for a 3-D mask say"),
        ({"image": GOOD, "known": torch.ones(4, 4)}, "bool tensor"),
        (
            {"image": torch.full((2, 1, 4, 4), 2.0), "known": torch.ones(4, 4, dtype=torch.bool)},
            "binary",
        ),
    ],
)
def test_bad_sampling_requests_raise_value_errors(kwargs, message):
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4))
    with pytest.raises(ValueError, match=message):
        model.sample(**kwargs)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"block": "dense"}, "block must be"),
        ({"distribution": "gaussian"}, "distribution must be"),
        ({"hidden_channels": 7}, "multiple of 2"),
        ({"data_channels": 3, "hidden_channels": 8}, "multiple of 6"),
        ({"kernel_size": 4}, "odd positive"),
        ({"block": "gated", "kernel_size": 1}, "gated blocks need kernel sizes >= 3"),
        ({"num_classes": 0}, "num_classes"),
        ({"distribution": "categorical", "levels": 1}, "levels must be >= 2"),
        ({"image_size": (0, 28)}, "image_size"),
    ],
)
def test_bad_configs_raise_value_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        PixelCNNConfig(**changes)
    with pytest.raises(ValueError, match="unknown preset"):
        PixelCNNConfig.preset("nope")


def test_validate_args_false_skips_value_checks_but_not_shape_checks():
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4), validate_args=False)
    assert torch.isfinite(model.log_prob(torch.full((2, 1, 4, 4), 0.5))).all()
    with pytest.raises(ValueError, match="expects data_channels=1"):
        model.log_prob(torch.zeros(2, 3, 4, 4))


def test_config_normalises_its_fields_so_that_it_hashes_and_round_trips():
    import dataclasses

    import numpy as np

    cfg = PixelCNNConfig(image_size=[8, 6], num_blocks=np.int64(2), hidden_channels=8)
    assert cfg.image_size == (8, 6) and type(cfg.num_blocks) is int
    assert hash(cfg) == hash(PixelCNNConfig(image_size=(8, 6), num_blocks=2, hidden_channels=8))
    assert PixelCNNConfig(**dataclasses.asdict(cfg)) == cfg == dataclasses.replace(cfg)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"num_classes": True}, TypeError, "num_classes must be an int, got bool"),
        ({"levels": 2.5}, TypeError, "levels must be an int, got float"),
        ({"image_size": (8, 8, 8)}, TypeError, r"image_size must be a pair \(H, W\)"),
        ({"distribution": None}, ValueError, "distribution must be one of"),
        ({"head_channels": -1}, ValueError, "head_channels must be >= 0"),
    ],
)
def test_config_field_errors_name_the_field_and_type(changes, error, message):
    with pytest.raises(error, match=message):
        PixelCNNConfig(**changes)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.float32])
def test_8_bit_images_of_any_integer_dtype_score_as_long_ones(dtype):
    """The library's loaders return uint8: its 256 levels do not fit the dtype's own range."""
    cfg = PixelCNNConfig(
        data_channels=3, distribution="categorical", levels=256, num_blocks=1, hidden_channels=6
    )
    model = PixelCNN(cfg, dtype=torch.float64)
    x = torch.randint(0, 256, (2, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.log_prob(x.to(dtype)), model.log_prob(x))
    with pytest.raises(ValueError, match=r"must lie in \[0, 256\).*max 256"):
        model.log_prob(torch.full((1, 3, 2, 2), 256, dtype=torch.int16))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32])
def test_labels_of_any_integer_dtype_act_as_long_labels(dtype):
    model = PixelCNN(PixelCNNConfig(num_blocks=1, hidden_channels=4, num_classes=3))
    x = torch.randint(0, 2, (3, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float()
    y = torch.tensor([0, 2, 1])
    assert torch.equal(model.log_prob(x, y.to(dtype)), model.log_prob(x, y))
