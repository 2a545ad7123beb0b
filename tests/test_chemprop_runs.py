"""``molpeg_chemprop.runs``: a child process's log, its cost and its failure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from molpeg_chemprop.runs import ChempropRunError, chemprop_executable, run_logged


def test_the_environments_chemprop_script_is_found() -> None:
    assert Path(chemprop_executable()).name == "chemprop"


def test_a_run_logs_its_command_and_output_and_measures_its_cpu(tmp_path: Path) -> None:
    busy = (
        "import sys; block = b'x' * (200 * 2**20); t = sum(i * i for i in range(3_000_000)); "
        "print('done', file=sys.stderr)"
    )
    polls = []
    cost = run_logged(
        [sys.executable, "-c", busy], tmp_path / "logs" / "run.log", on_poll=lambda: polls.append(1)
    )
    text = (tmp_path / "logs" / "run.log").read_text()
    assert text.splitlines()[0].startswith("$ ") and "done" in text
    assert 0 < cost.cpu_s <= cost.wall_s + 0.5
    assert cost.peak_rss_mib > 200  # the child's 200 MiB block
    assert polls


def test_the_peak_memory_is_the_commands_own_not_this_processs(tmp_path: Path) -> None:
    held = b"x" * (300 * 2**20)  # this process holds 300 MiB while the child runs
    cost = run_logged([sys.executable, "-c", "pass"], tmp_path / "small.log")
    assert len(held) and cost.peak_rss_mib < 100


def test_a_failed_run_names_its_log(tmp_path: Path) -> None:
    log = tmp_path / "fail.log"
    with pytest.raises(ChempropRunError, match=r"exit 3\); see .*fail\.log"):
        run_logged([sys.executable, "-c", "raise SystemExit(3)"], log)
