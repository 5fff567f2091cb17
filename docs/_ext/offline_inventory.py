"""Sphinx extension: small offline intersphinx inventories for PyTorch and Python.

The docs build has no network, and a missing inventory is a warning (so a failed ``-W`` build).
At ``config-inited``, before intersphinx reads them, this writes ``objects.inv`` files listing
only the objects our pages and signatures refer to. Set ``AUTOREGRESSIVE_DOCS_INTERSPHINX=online``
(see ``conf.py``) to use the projects' published inventories instead.
"""

from __future__ import annotations

import importlib
import inspect
import zlib
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config

#: (name, role, page) of the PyTorch objects our pages and signatures refer to
TORCH_OBJECTS = [
    ("torch.Tensor", "class", "tensors.html"),
    ("torch.Size", "class", "size.html"),
    ("torch.dtype", "class", "tensor_attributes.html"),
    ("torch.device", "class", "tensor_attributes.html"),
    ("torch.Generator", "class", "generated/torch.Generator.html"),
    ("torch.no_grad", "class", "generated/torch.no_grad.html"),
    ("torch.rand", "function", "generated/torch.rand.html"),
    ("torch.bernoulli", "function", "generated/torch.bernoulli.html"),
    ("torch.compile", "function", "generated/torch.compile.html"),
    ("torch.nn.Module", "class", "generated/torch.nn.Module.html"),
    ("torch.nn.Conv2d", "class", "generated/torch.nn.Conv2d.html"),
    ("torch.nn.Sequential", "class", "generated/torch.nn.Sequential.html"),
    ("torch.nn.ModuleList", "class", "generated/torch.nn.ModuleList.html"),
    ("torch.nn.Linear", "class", "generated/torch.nn.Linear.html"),
    ("torch.nn.ReLU", "class", "generated/torch.nn.ReLU.html"),
    ("torch.nn.GELU", "class", "generated/torch.nn.GELU.html"),
    ("torch.optim.Optimizer", "class", "optim.html"),
    ("torch.optim.Adam", "class", "generated/torch.optim.Adam.html"),
    ("torch.utils.data.DataLoader", "class", "data.html"),
    ("torch.utils.data.Dataset", "class", "data.html"),
    (
        "torch.nn.parallel.DistributedDataParallel",
        "class",
        "generated/torch.nn.parallel.DistributedDataParallel.html",
    ),
]
#: (name, role, page) of the Python objects our pages and signatures refer to
PYTHON_OBJECTS = [
    *((t, "class", "library/functions.html") for t in ("int", "float", "bool", "object")),
    *((t, "class", "library/stdtypes.html") for t in ("str", "tuple", "list", "dict")),
    ("None", "data", "library/constants.html"),
    ("ValueError", "exception", "library/exceptions.html"),
    ("dataclasses.dataclass", "function", "library/dataclasses.html"),
    ("dataclasses.replace", "function", "library/dataclasses.html"),
    ("typing.Any", "data", "library/typing.html"),
    ("typing.Literal", "data", "library/typing.html"),
    ("typing.ClassVar", "data", "library/typing.html"),
    ("pathlib.Path", "class", "library/pathlib.html"),
    ("math.log", "function", "library/math.html"),
]


def _runtime_name(name: str) -> str | None:
    """Where the object ``name`` is defined (``torch.nn.modules.conv.Conv2d``), if elsewhere.

    Signatures name classes by their defining module, so the inventory lists both names.
    """
    module, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        return None
    real = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    return real if inspect.isclass(obj) and real != name else None


def inventory_bytes(project: str, objects: list[tuple[str, str, str]]) -> bytes:
    """A Sphinx ``objects.inv`` (format 2) listing ``objects``."""
    lines = []
    for name, role, page in objects:
        lines.append(f"{name} py:{role} 1 {page}#{name} -")
        real = _runtime_name(name)
        if real is not None:  # e.g. torch._C.Generator, shown as torch.Generator
            lines.append(f"{real} py:{role} 1 {page}#{name} {name}")
    header = (
        f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    return header.encode() + zlib.compress("\n".join(lines).encode() + b"\n")


def write_inventories(app: Sphinx, config: Config) -> None:
    """Write the inventory files that ``intersphinx_mapping`` names locally."""
    objects = {"torch": ("PyTorch", TORCH_OBJECTS), "python": ("Python", PYTHON_OBJECTS)}
    for key, (_, location) in config.intersphinx_mapping.items():
        if key in objects and isinstance(location, str):
            path = Path(location)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(inventory_bytes(*objects[key]))


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("config-inited", write_inventories, priority=100)
    return {"parallel_read_safe": True}
