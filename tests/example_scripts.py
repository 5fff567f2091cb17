"""What the tests of the example scripts share: loading a script, calling its ``main``, cases."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

#: skips a case on a machine where CUDA is available (the case refuses ``--device cuda``)
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
#: skips a case that needs Linux's ``/proc``
LINUX = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")


def bad(*flags: str, names: str | None = None, marks=()):
    """A case: bad flags and the flag the message must name (the first by default)."""
    return pytest.param(list(flags), names or flags[0], marks=marks, id=" ".join(flags))


def load_script(path: Path) -> ModuleType:
    """The example script at ``path`` as a module (registered, as dataclasses need)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main_caller(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[[list[str]], tuple[int, str]]]:
    """For a fixture: ``main(argv)`` of the script in this process, as ``(exit code, stderr)``."""
    script, threads = load_script(path), torch.get_num_threads()

    def call(argv: list[str]) -> tuple[int, str]:
        try:
            code = script.main(argv)
        except SystemExit as exit_:
            code = exit_.code
        return code, capsys.readouterr().err

    yield call
    torch.set_num_threads(threads)  # --threads of a run that got past parsing


def stop_when(cmd: list[str], ckpt: Path, ready: Callable[[dict], bool], cwd: Path) -> dict:
    """Run ``cmd``, SIGKILL it once its checkpoint ``ckpt`` is ``ready``; that checkpoint.

    The process is frozen (SIGSTOP) as soon as a ready checkpoint is seen, so the checkpoint
    read then is the last one it wrote; then it is killed.
    """
    from autoregressive.training import CheckpointError, load_checkpoint

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                seen = load_checkpoint(ckpt) if ckpt.exists() else None
            except CheckpointError:
                seen = None
            if seen and ready(seen):
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGSTOP)
        last = load_checkpoint(ckpt)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        stderr = proc.stderr.read().decode()[-2000:]
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed: {stderr}"
    return last
