"""Interrupted run (``kill -9`` mid-training) + ``--resume`` = the uninterrupted run.

Runs the real ``molpeg`` CLI with the ``torch`` backend on the committed BBBP subset: one
uninterrupted run (in-process), one subprocess killed with SIGKILL as soon as it has saved its
first per-epoch resume state, and the same command with ``--resume`` (subprocess).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from molpeg_plugins.cli import app

CLI = [sys.executable, "-c", "from molpeg_plugins.cli import main; main()"]
EPOCHS = 8


def command(data: Path, out: Path, *extra: str) -> list[str]:
    """``molpeg prune`` with small batches, so that an epoch lasts long enough to be killed."""
    return [
        *CLI,
        "prune",
        str(data),
        "--backend",
        "torch",
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "16",
        "--prune-ratio",
        "0.7",
        "--seed",
        "7",
        "--quiet",
        "--output",
        str(out),
        *extra,
    ]


@pytest.mark.slow
def test_kill_9_then_resume_reproduces_the_uninterrupted_run(data_dir: Path, tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    threads = torch.get_num_threads()
    data = tmp_path / "bbbp600.csv"  # byte-exact head of the committed subset
    data.write_bytes(b"".join((data_dir / "bbbp_1k.csv").read_bytes().splitlines(True)[:601]))
    full, broken = tmp_path / "full", tmp_path / "broken"

    # the reference run in-process (single-threaded like the subprocesses: same arithmetic)
    torch.set_num_threads(1)
    try:
        reference = CliRunner().invoke(app, command(data, full)[len(CLI) :])
    finally:
        torch.set_num_threads(threads)
    assert reference.exit_code == 0, reference.output

    proc = subprocess.Popen(command(data, broken), env=env)
    state = broken / "resume.pt"
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; raise EPOCHS"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(state, weights_only=True)
    assert 1 <= saved["epoch"] < EPOCHS, "killed before the end of training"
    assert not (broken / "report.json").exists() and not (broken / "pruned.csv").exists()

    (broken / ".molpeg-resume.pt.abc12345.tmp").write_bytes(b"half a file")  # a kill mid-save
    subprocess.run(command(data, broken, "--resume"), env=env, check=True, timeout=300)
    assert not list(broken.glob(".molpeg-*"))

    assert (broken / "pruned.csv").read_bytes() == (full / "pruned.csv").read_bytes()
    a = pd.read_csv(full / "scores.csv")
    b = pd.read_csv(broken / "scores.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    ra = json.loads((full / "report.json").read_text())
    rb = json.loads((broken / "report.json").read_text())
    assert ra["epochs"] == rb["epochs"] and len(ra["epochs"]) == EPOCHS
    assert ra["test_metrics"] == rb["test_metrics"] and ra["best_epoch"] == rb["best_epoch"]
    assert rb["parameters"]["resumed"] is True
    ma = torch.load(full / "model.pt", weights_only=True)["state_dict"]
    mb = torch.load(broken / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert not state.exists(), "the resume state is removed once the run has finished"
