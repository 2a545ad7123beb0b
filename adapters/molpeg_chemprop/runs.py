"""Running ``chemprop`` as a child process: its output in a log file, its cost measured.

For scripts that drive Chemprop's own command line (``examples/source_pipeline.py``, the
benchmarks): :func:`chemprop_executable` finds the ``chemprop`` script of this environment and
:func:`run_logged` runs a command with its output in a log, returning the wall seconds, CPU
seconds and peak memory the command (and its children) used, or raising
:class:`ChempropRunError` naming the log when it fails.
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
    """What a finished child process cost: wall seconds, CPU seconds (user + system) and its
    peak resident memory in MiB (the largest of it and its children)."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float


def chemprop_executable() -> str:
    """The ``chemprop`` script of this interpreter's environment (falls back to ``PATH``)."""
    beside = Path(sys.executable).with_name("chemprop")
    return str(beside) if beside.exists() else "chemprop"


# A small interpreter runs the command and reports what its children used. Measured from this
# process instead, the peak memory would start at this process's own: a forked child counts
# the parent's pages until it execs, and the kernel keeps that high-water mark.
_MEASURED = (
    "import os, resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "os.write(int(sys.argv[1]), f'{u.ru_utime + u.ru_stime} {u.ru_maxrss}'.encode()); "
    "sys.exit(code)"
)


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
    report, report_to = os.pipe()
    start = time.perf_counter()
    try:
        with log.open("w") as fh:
            fh.write("$ " + shlex.join(cmd) + "\n")
            fh.flush()
            proc = subprocess.Popen(
                [sys.executable, "-c", _MEASURED, str(report_to), *cmd],
                stdout=fh, stderr=subprocess.STDOUT, env=env, pass_fds=(report_to,),
            )  # fmt: skip
            os.close(report_to)
            report_to = -1
            while on_poll is not None and proc.poll() is None:
                on_poll()
                time.sleep(poll_s)
            proc.wait()
        wall = time.perf_counter() - start
        usage = os.read(report, 256).decode().split()
    finally:
        os.close(report)
        if report_to >= 0:
            os.close(report_to)
    if proc.returncode != 0 or len(usage) != 2:
        raise ChempropRunError(
            f"{shlex.join(list(cmd[:2]))} failed (exit {proc.returncode}); see {log}"
        )
    cpu_s, max_rss_kib = float(usage[0]), int(usage[1])
    return RunCost(wall_s=wall, cpu_s=cpu_s, peak_rss_mib=max_rss_kib / 1024)  # KiB on Linux
