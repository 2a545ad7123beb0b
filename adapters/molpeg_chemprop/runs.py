"""Running ``chemprop`` as a child process: its output in a log file, its cost measured.

For scripts that drive Chemprop's own command line (``examples/source_pipeline.py``, the
benchmarks): :func:`chemprop_executable` finds the ``chemprop`` script of this environment and
:func:`run_logged` runs a command with its output in a log, returning the wall and CPU
seconds the child (and its children) used, or raising :class:`ChempropRunError` naming the
log when it fails.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from molpeg_plugins.errors import MolPegError


class ChempropRunError(MolPegError):
    """A ``chemprop`` child process exited with a non-zero status; the message names its log."""


@dataclass(frozen=True)
class RunCost:
    """What a finished child process cost: wall seconds and CPU seconds (user + system)."""

    wall_s: float
    cpu_s: float


def chemprop_executable() -> str:
    """The ``chemprop`` script of this interpreter's environment (falls back to ``PATH``)."""
    beside = Path(sys.executable).with_name("chemprop")
    return str(beside) if beside.exists() else "chemprop"


def run_logged(
    cmd: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    on_poll: Callable[[], None] | None = None,
    poll_s: float = 0.1,
) -> RunCost:
    """Run ``cmd`` with its stdout and stderr in ``log`` (the command on its first line).

    Args:
        cmd: the command line.
        log: the log file (its folder is created).
        env: the child's environment (default: this process's).
        on_poll: called every ``poll_s`` seconds while the child runs (e.g. to sample the
            machine's load); without it the parent simply waits.
        poll_s: the polling interval; it bounds the wall-time error.

    Raises:
        ChempropRunError: the command exited with a non-zero status.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, env=env)
        if on_poll is None:
            _, status, usage = os.wait4(proc.pid, 0)
        else:
            while True:
                on_poll()
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(poll_s)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise ChempropRunError(
            f"{shlex.join(list(cmd[:2]))} failed (exit {proc.returncode}); see {log}"
        )
    return RunCost(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime)
