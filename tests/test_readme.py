"""Every ```python block of README.md runs on its own, as a file, in a fresh interpreter.

A block that needs more than ``pip install .`` carries an HTML comment right above its fence:
``<!-- readme-test: extra=examples -->`` names the extra it imports from (the block is skipped,
with the install line, where that extra's packages are missing) and ``slow`` marks a block that
takes more than a few seconds (``<!-- readme-test: extra=examples slow -->``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
#: the modules each extra provides (pyproject.toml's optional-dependencies) that blocks import
EXTRAS = {
    "examples": ("torchvision", "tqdm", "matplotlib", "vector_quantize_pytorch", "skimage"),
    "compression": ("constriction",),
}
_BLOCK = re.compile(
    r"(?:<!--\s*readme-test:(?P<marks>[^>]*?)-->[ \t]*\n(?:[ \t]*\n)*)?"
    r"^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$",
    flags=re.DOTALL | re.MULTILINE,
)


def readme_blocks(text: str) -> list[tuple[int, str, list[str]]]:
    """``(line, code, marks)`` of each ```python block; ``line`` is its first code line."""
    return [
        (text.count("\n", 0, m.start("code")) + 1, m["code"], (m["marks"] or "").split())
        for m in _BLOCK.finditer(text)
    ]


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def _param(line: int, code: str, marks: list[str]) -> object:
    slow = [pytest.mark.slow] if "slow" in marks else []
    return pytest.param(code, marks, id=f"line{line}", marks=slow)


def test_the_readme_blocks_are_found_and_their_marks_known():
    assert len(BLOCKS) >= 4, "README.md should show the quick start as ```python blocks"
    fences = README.read_text(encoding="utf-8").count("```python")
    assert len(BLOCKS) == fences, "a ```python fence that the test does not parse"
    for line, _, marks in BLOCKS:
        for mark in marks:
            extra = mark.removeprefix("extra=")
            assert mark == "slow" or (mark.startswith("extra=") and extra in EXTRAS), (
                f"README.md block at line {line}: unknown mark {mark!r} "
                f"(known: slow, {', '.join('extra=' + e for e in EXTRAS)})"
            )


@pytest.mark.parametrize(("code", "marks"), [_param(*block) for block in BLOCKS])
def test_a_readme_block_runs_on_its_own(code: str, marks: list[str], tmp_path: Path):
    for mark in marks:
        extra = mark.removeprefix("extra=")
        missing = [m for m in EXTRAS.get(extra, ()) if importlib.util.find_spec(m) is None]
        if missing:
            pytest.skip(f'needs pip install ".[{extra}]" ({", ".join(missing)} not installed)')
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ)
    # a relative PYTHONPATH (``PYTHONPATH=src``) would not reach the package from tmp_path
    paths = env.get("PYTHONPATH", "").split(os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in paths if p)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"this README.md block exits with {result.returncode} when run on its own:\n{code}\n"
        f"--- stderr ---\n{result.stderr[-4000:]}"
    )
