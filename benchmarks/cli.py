"""Command line of the benchmark suite.

Examples::

    python -m benchmarks                      # everything, every device, full repeats
    python -m benchmarks --quick              # a few minutes on 2 CPU cores
    python -m benchmarks --device cuda --only train,sampling
    python -m benchmarks --only sampling --batch-sizes 1,64 --repeats 5 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch

from autoregressive import PixelCNN, PixelCNNConfig

from . import attention, coding, colour, layer, memory, precision, prior, sampling, scaling, train
from .report import Section, load_average, machine_info, plot_sampling, result_stem, write_results
from .settings import MODES, Settings, model_summary

__all__ = ["SUITES", "main"]

#: measurement name -> function running it on a device
SUITES: dict[str, Callable[[Settings, torch.device], Section]] = {
    "layer": layer.run,
    "train": train.run,
    "sampling": sampling.run,
    "scaling": scaling.run,
    "precision": precision.run,
    "precision-nll": precision.run_nll,
    "prior": prior.run,
    "colour": colour.run,
    "attention": attention.run,
    "attention-train": attention.run_train,
    "coding": coding.run,
    "memory": memory.run,
}

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _suite_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = sorted(set(names) - set(SUITES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown measurement(s) {unknown or text!r}; choose from {','.join(SUITES)}"
        )
    return [s for s in SUITES if s in names]  # canonical order


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of autoregressive: layer overhead, training step, sampling, "
        "scaling, training precision. Writes <machine>-<device>-torch<version>[-quick]"
        ".{json,md} and -sampling.png to --out and prints each table as it completes.",
    )
    p.add_argument("--quick", action="store_true", help="reduced repeats and sizes (minutes)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke test only
    p.add_argument(
        "--device",
        choices=["cpu", "cuda", "all"],
        default="all",
        help="where to run; 'all' = the CPU and, when available, CUDA (default)",
    )
    p.add_argument(
        "--only",
        type=_suite_list,
        default=list(SUITES),
        metavar="LIST",
        help=f"comma-separated subset of {','.join(SUITES)} (default: all)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    p.add_argument("--repeats", type=int, help="timed calls per figure (overrides the mode)")
    p.add_argument("--warmup", type=int, help="untimed calls before each series")
    p.add_argument("--batch-sizes", type=_int_list, metavar="LIST", help="sampling batches")
    p.add_argument(
        "--naive-budget",
        type=float,
        metavar="SECONDS",
        help="run the whole naive sampler when it should take at most this long "
        "(else extrapolate from its first steps)",
    )
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument(
        "--trained",
        type=Path,
        action="append",
        default=[],
        metavar="WEIGHTS",
        help="a run's weights.pt (examples/mnist_pixelcnn.py --preset snail-small): the "
        "attention table also times this trained model (repeatable)",
    )
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    s = MODES["tiny" if args.tiny else "quick" if args.quick else "full"]
    if args.repeats is not None:
        s = s.with_repeats(max(1, args.repeats))
    if args.warmup is not None:
        s = replace(s, warmup=max(0, args.warmup))
    if args.batch_sizes is not None:
        s = replace(s, batch_sizes=args.batch_sizes)
    if args.naive_budget is not None:
        s = replace(s, naive_budget_s=args.naive_budget)
    if args.trained:
        s = replace(s, trained=tuple(str(p) for p in args.trained))
    return s


def devices(choice: str, parser: argparse.ArgumentParser) -> list[torch.device]:
    if choice == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    out = [torch.device("cpu")] if choice in ("cpu", "all") else []
    if choice in ("cuda", "all") and torch.cuda.is_available():
        out.append(torch.device("cuda"))
    return out


def run_device(settings: Settings, device: torch.device, only: Sequence[str], out: Path) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    stem = result_stem(device, settings.mode)
    info = machine_info(device)
    models = {
        name: {"config": asdict(cfg), "summary": model_summary(cfg), "params": _num_params(cfg)}
        for name, cfg in settings.models.items()
    }
    settings_json = {**settings.to_json(), "only": list(only)}
    settings_json.pop("models")
    settings_json["cudnn_benchmark"] = device.type == "cuda"
    print(f"# {stem}: {info['processor']}, {info['torch_threads']} threads", flush=True)
    sections: list[Section] = []
    written: list[Path] = []
    for name in only:
        start = time.perf_counter()
        section = SUITES[name](settings, device)
        section.extra["wall_s"] = round(time.perf_counter() - start, 2)
        section.extra["load_average"] = load_average()  # at the end of the section
        sections.append(section)
        print(
            "\n" + section.markdown() + f"\n({name}: {section.extra['wall_s']:.0f} s)", flush=True
        )
        if name == "sampling":
            out.mkdir(parents=True, exist_ok=True)
            png = plot_sampling(
                section, out / f"{stem}-sampling.png", f"{stem}: time per batch, medians"
            )
            section.extra["plot"] = png.name
            written.append(png)
        json_path, md_path = write_results(out, stem, info, settings_json, models, sections)
    written = [json_path, md_path, *written]
    print("\nwrote " + ", ".join(str(p) for p in written), flush=True)


def _num_params(cfg: PixelCNNConfig) -> int:
    return sum(p.numel() for p in PixelCNN(cfg, device="meta").parameters())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = settings_from_args(args)
    start = time.perf_counter()
    for device in devices(args.device, parser):
        run_device(settings, device, args.only, args.out)
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0
