"""Where results go and what they look like: machine description, JSON, markdown and the plot.

Result files are named ``<machine>-<device>-torch<version>[-<mode>]`` with

- ``<machine>`` = ``<os>-<arch>-<n>cpu`` (e.g. ``linux-x86_64-2cpu``): stable across reboots
  and hosts of the same shape, and free of the host name, which is neither stable on cloud
  machines nor something to publish;
- ``<device>`` = ``cpu-<model>`` (``cpu-amd-epyc``) or the CUDA device name, lower-cased with
  runs of other characters replaced by ``-`` (``NVIDIA H200`` -> ``nvidia-h200``);
- ``<version>`` = ``torch.__version__`` sanitised the same way (``2.4.1+cu121`` ->
  ``2.4.1-cu121``);
- ``-quick`` / ``-tiny`` for the reduced modes, so that they never overwrite a full run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "Column",
    "Section",
    "machine_info",
    "progress",
    "result_stem",
    "sanitise",
    "write_results",
]


def progress(message: str) -> None:
    """One line of progress on stderr (the tables go to stdout)."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def sanitise(text: str) -> str:
    """Lower-case ``text`` and replace every run of characters outside ``[a-z0-9._]`` by ``-``.

    Example:
        >>> sanitise("NVIDIA H100 80GB HBM3")
        'nvidia-h100-80gb-hbm3'
    """
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-")


def machine_name() -> str:
    """``<os>-<arch>-<n>cpu``, a host-name-free description of the machine."""
    return sanitise(f"{platform.system()}-{platform.machine()}-{os.cpu_count()}cpu")


def device_name(device: torch.device) -> str:
    """The sanitised CUDA device name, or ``cpu-<model>`` (e.g. ``cpu-amd-epyc``).

    The CPU's model is part of the name because two machines of the same shape can hold
    different processors (an Intel Xeon with AMX and an AMD EPYC without bf16 units gave
    figures several times apart).
    """
    if device.type == "cuda":
        return sanitise(torch.cuda.get_device_name(device))
    if device.type == "cpu":
        return f"cpu-{cpu_tag()}"
    return device.type


def cpu_tag() -> str:
    """The CPU's vendor and family, e.g. ``amd-epyc`` or ``intel-xeon`` (trademarks dropped)."""
    words = re.sub(r"\((R|TM|tm|r)\)|\b(CPU|Processor)\b|@.*", " ", _cpu_model()).split()
    return sanitise(" ".join(words[:4])) or "unknown"


def result_stem(device: torch.device, mode: str) -> str:
    """The file name, without extension, of the results for ``device`` in ``mode``."""
    stem = f"{machine_name()}-{device_name(device)}-torch{sanitise(torch.__version__)}"
    return stem if mode == "full" else f"{stem}-{mode}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the OS reports them."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info(device: torch.device) -> dict[str, Any]:
    """Everything about the machine and software that the numbers depend on."""
    info: dict[str, Any] = {
        "machine": machine_name(),
        "device": device_name(device),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "git_commit": _git_commit(),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_start": load_average(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            cuda_device=torch.cuda.get_device_name(device),
            cuda_version=torch.version.cuda,
            cuda_capability=f"{props.major}.{props.minor}",
            cuda_memory_gib=round(props.total_memory / 2**30, 1),
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
    return info


@dataclass
class Column:
    """One column of a markdown table: ``header``, the row ``key`` and how to format its value."""

    header: str
    key: str
    fmt: Callable[[Any], str] = str


@dataclass
class Section:
    """The result of one measurement: a table of rows plus everything needed to re-derive it."""

    name: str
    title: str
    description: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "columns": [[c.header, c.key] for c in self.columns],
            "rows": self.rows,
            "notes": self.notes,
            **self.extra,
        }

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", self.description, ""]
        lines.append("| " + " | ".join(c.header for c in self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            cells = [c.fmt(row[c.key]) if row.get(c.key) is not None else "–" for c in self.columns]
            lines.append("| " + " | ".join(cells) + " |")
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _load_warning(info: dict[str, Any]) -> list[str]:
    load, cpus = info.get("load_average_at_start"), info.get("cpus_usable")
    if not load or not cpus or load[0] < 0.5 * cpus:
        return []
    return [
        f"**The machine was busy** (load average {load[0]:g} on {cpus} CPUs at the start; see "
        "each section's `load_average` in the JSON): these timings are noisy.",
        "",
    ]


def header_markdown(info: dict[str, Any], settings: dict[str, Any], models: dict) -> str:
    lines = [
        f"# Benchmarks: {info['machine']}, {info['device']}, torch {info['torch']}",
        "",
        f"{info['processor']}; {info['cpus_usable']} usable CPUs, {info['torch_threads']} torch "
        f"threads; {info['platform']}; Python {info['python']}; "
        f"commit {info['git_commit']}; {info['date_utc']}.",
        "",
        f"Mode `{settings['mode']}`: {settings['warmup']} warm-up call(s), then "
        f"{settings['repeats']} timed repeats per figure (the naive sampler "
        f"{settings['naive_repeats']}); figures are medians with [min–max] beside them. "
        "Every timed call is bracketed by device synchronisation.",
        "",
        *_load_warning(info),
        "Models: "
        + "; ".join(
            f"`{name}` = {m['summary']} ({m['params']:,} parameters)" for name, m in models.items()
        )
        + ".",
        "",
        "",
    ]
    return "\n".join(lines)


def write_results(
    out_dir: Path,
    stem: str,
    info: dict[str, Any],
    settings: dict[str, Any],
    models: dict[str, Any],
    sections: Sequence[Section],
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` in ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "schema": 1,
        "stem": stem,
        "machine": info,
        "settings": settings,
        "models": models,
        "sections": {s.name: s.to_json() for s in sections},
    }
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    md = header_markdown(info, settings, models) + "\n".join(s.markdown() for s in sections)
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(md)
    return json_path, md_path


def plot_sampling(section: Section, path: Path, title: str) -> Path:
    """Sampling time against batch size, naive vs cached vs one forward pass, one panel a model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(row["model"] for row in section.rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        rows = sorted((r for r in section.rows if r["model"] == model), key=lambda r: r["batch"])
        batch = [r["batch"] for r in rows]
        ax.plot(batch, [r["naive_s"] for r in rows], "-", color="C3")
        for measured in (True, False):
            pts = [(r["batch"], r["naive_s"]) for r in rows if r["naive_measured"] == measured]
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    "o",
                    color="C3",
                    mfc="C3" if measured else "white",
                    label="naive (measured)" if measured else "naive (extrapolated)",
                )
        ax.plot(batch, [r["cached_s"] for r in rows], "s-", color="C0", label="cached")
        if all(r.get("cached_steps_s") for r in rows):
            steps = [r["cached_steps_s"] for r in rows]
            ax.plot(batch, steps, "d-.", color="C1", mfc="white", label="cached, step by step")
        if all(r.get("cached_eager") for r in rows):
            eager = [r["cached_eager"]["median"] for r in rows]
            ax.plot(batch, eager, "s:", color="C0", mfc="white", label="cached, no CUDA graphs")
        ax.plot(batch, [r["forward_s"] for r in rows], "^--", color="C2", label="one forward pass")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(batch, [str(b) for b in batch])
        ax.set_xlabel("batch size (images)")
        ax.set_ylabel("seconds per batch (median)")
        ax.set_title(f"{model}, {rows[0]['height']}x{rows[0]['width']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- cell formatting
def seconds(t: float) -> str:
    """A duration with a unit that keeps 3 significant digits: ``0.0123`` -> ``12.3 ms``."""
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if t >= scale or unit == "µs":
            return f"{t / scale:.3g} {unit}"
    raise AssertionError


def fmt_stats(s: dict[str, Any]) -> str:
    """``median [min–max]`` of a :func:`~benchmarks.timing.stats` summary."""
    if s["n"] == 1:
        return seconds(s["median"])
    return f"{seconds(s['median'])} [{seconds(s['min'])}–{seconds(s['max'])}]"


def fmt_ratio_stats(s: dict[str, Any]) -> str:
    """A ratio summary as ``median [min–max]``."""
    if s["n"] == 1:
        return f"{s['median']:.3f}"
    return f"{s['median']:.3f} [{s['min']:.3f}–{s['max']:.3f}]"


def fmt_pct(p: float) -> str:
    return f"{p:+.1f} %"


def fmt_x(r: float) -> str:
    return f"{r:.3g}x"


def fmt_mib(nbytes: float | str) -> str:
    return nbytes if isinstance(nbytes, str) else f"{nbytes / 2**20:.3g} MiB"


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_rate(r: float) -> str:
    return f"{r:,.0f}"
