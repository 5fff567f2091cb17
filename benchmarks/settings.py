"""How much to measure: the full, ``--quick`` and (hidden, for the smoke test) ``--tiny`` modes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from autoregressive import PixelCNNConfig

__all__ = ["MODES", "Settings", "model_summary"]

#: the gated model of about the reference's size (~0.47M vs 488,065 parameters) used next to
#: the "reference" preset: the closest of num_blocks 4..10 x hidden_channels 32..128 (step 4).
#: The exact count is recorded in every result file.
GATED_LIKE_REFERENCE = PixelCNNConfig(block="gated", num_blocks=5, hidden_channels=68)

#: issue 13's categorical prior over VQ-VAE code grids: class-conditional, gated, 512 levels,
#: 567,232 parameters with scaled input; and the same network reading a learned embedding.
PRIOR = PixelCNNConfig(
    block="gated",
    distribution="categorical",
    levels=512,
    num_blocks=6,
    hidden_channels=64,
    num_classes=10,
    image_size=(8, 8),
)
PRIOR_MODELS = {"prior": PRIOR, "prior-embedded": PRIOR.replace(input_embedding="learned")}

#: issue 23: PixelSNAIL's CPU preset against the gated model of about its size (its baseline)
ATTENTION_MODELS = {
    "snail-small": PixelCNNConfig.preset("snail-small"),
    "gated-small": PixelCNNConfig.preset("gated-small"),
}


@dataclass(frozen=True)
class Settings:
    mode: str  # "full", "quick" or "tiny"; names the result files
    warmup: int = 2  # untimed calls before every timed series
    repeats: int = 10  # timed calls per figure
    naive_repeats: int = 3  # timed calls of the (slow) naive sampler per figure
    image_size: tuple[int, int] = (28, 28)  # (H, W) of the layer, training and sampling runs
    layer_batch: int = 64  # batch of the layer-overhead runs
    train_batch: int = 64  # batch of the training-step runs
    batch_sizes: tuple[int, ...] = (1, 16, 64, 256)  # sampling batch sizes
    coding_batches: tuple[int, ...] = (1, 64)  # batches of the compression runs
    naive_steps: int = 8  # naive-sampler steps timed for the extrapolation to H * W steps
    naive_budget_s: float = 15.0  # time the whole naive sampler when it should take <= this
    scaling_sizes: tuple[int, ...] = (28, 32, 64)  # square image sizes of the scaling runs
    scaling_depths: tuple[int, ...] = (3, 6, 9, 12)  # num_blocks of the scaling runs
    scaling_sample_batch: int = 16  # sampling batch of the scaling runs
    scaling_train_batch: int = 64  # training batch of the scaling runs
    scaling_repeats: int = 5  # timed calls per figure of the scaling runs
    precision_steps: int = 200  # training steps of the bf16 vs fp32 NLL comparison
    precision_eval_images: int = 2000  # test images scored after them
    compile_variants: bool = True  # measure the torch.compile set-ups (minutes of compiling)
    models: dict[str, PixelCNNConfig] = field(
        default_factory=lambda: {
            "reference": PixelCNNConfig.preset("reference"),
            "gated": GATED_LIKE_REFERENCE,
        }
    )
    prior_batch: int = 64  # code grids per batch of the prior runs
    prior_grids: tuple[int, ...] = (8, 32)  # sides of the prior's square code grids
    prior_models: dict[str, PixelCNNConfig] = field(default_factory=lambda: dict(PRIOR_MODELS))
    attention_batches: tuple[int, ...] = (1, 64)  # sampling batches of the attention runs
    # runs' weights.pt files whose trained models the attention table also times (--trained):
    # whole-row passes settle later on trained weights than on initial ones
    trained: tuple[str, ...] = ()
    attention_models: dict[str, PixelCNNConfig] = field(
        default_factory=lambda: dict(ATTENTION_MODELS)
    )
    memory_images: int = 10_000  # MNIST-sized images scored by log_prob in the memory runs
    memory_chunks: tuple[int, ...] = (250, 1000)  # chunk sizes compared with one call
    memory_model: PixelCNNConfig = field(
        default_factory=lambda: PixelCNNConfig.preset("gated-small")
    )
    memory_warmup: int = 0  # untimed calls before the timed ones (the peak counts them too)
    memory_repeats: int = 3  # timed log_prob calls per variant

    def with_repeats(self, repeats: int) -> Settings:
        """Every repeat count set to ``repeats`` (the naive sampler's capped at it)."""
        return replace(
            self,
            repeats=repeats,
            naive_repeats=min(self.naive_repeats, repeats),
            scaling_repeats=repeats,
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = {name: asdict(cfg) for name, cfg in self.models.items()}
        d["prior_models"] = {name: asdict(cfg) for name, cfg in self.prior_models.items()}
        d["attention_models"] = {n: asdict(cfg) for n, cfg in self.attention_models.items()}
        return d


MODES: dict[str, Settings] = {
    "full": Settings(mode="full"),
    # about 5 minutes on 2 CPU cores (measured 4m45s on a busy 2-core machine, 1 thread)
    "quick": Settings(
        mode="quick",
        warmup=1,
        repeats=3,
        naive_repeats=2,
        naive_steps=2,
        naive_budget_s=2.0,
        scaling_sample_batch=4,
        scaling_train_batch=16,
        scaling_repeats=2,
        precision_steps=20,
        precision_eval_images=500,
        memory_images=2000,
        memory_repeats=1,
    ),
    # seconds: tiny models on 8x8 images, only to check that everything runs and is written
    "tiny": Settings(
        mode="tiny",
        warmup=1,
        repeats=2,
        naive_repeats=1,
        image_size=(8, 8),
        layer_batch=2,
        train_batch=2,
        batch_sizes=(1, 2),
        coding_batches=(1, 2),
        naive_steps=2,
        naive_budget_s=60.0,
        scaling_sizes=(6, 8),
        scaling_depths=(1, 2),
        scaling_sample_batch=2,
        scaling_train_batch=2,
        scaling_repeats=1,
        precision_steps=2,
        precision_eval_images=8,
        compile_variants=False,
        models={
            "reference": PixelCNNConfig.preset("reference", num_blocks=2, hidden_channels=16),
            "gated": PixelCNNConfig(block="gated", num_blocks=2, hidden_channels=8),
        },
        prior_batch=2,
        prior_grids=(4, 6),
        prior_models={
            name: cfg.replace(levels=16, num_blocks=2, hidden_channels=8, embedding_dim=4)
            for name, cfg in PRIOR_MODELS.items()
        },
        attention_batches=(1, 2),
        attention_models={
            "snail-small": PixelCNNConfig.preset("snail-small", num_blocks=1, hidden_channels=8),
            "gated-small": PixelCNNConfig.preset("gated-small", num_blocks=2, hidden_channels=8),
        },
        memory_images=16,
        memory_chunks=(4,),
        memory_model=PixelCNNConfig.preset("gated-small", num_blocks=2, hidden_channels=8),
        memory_repeats=1,
    ),
}


def model_summary(cfg: PixelCNNConfig) -> str:
    """A one-line description of a config, e.g. ``residual, 9 blocks x 128 ch, 7x7 input``."""
    s = (
        f"{cfg.block}, {cfg.num_blocks} blocks x {cfg.hidden_channels} ch, "
        f"{cfg.input_kernel_size}x{cfg.input_kernel_size} input, "
        f"{cfg.kernel_size}x{cfg.kernel_size} blocks"
    )
    return s + (f", head {cfg.head_channels}" if cfg.head_channels else "")
