"""The root of the CLI: ``--version``, ``strategies``, ``backends``."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from molpeg_plugins import __version__
from molpeg_plugins.cli import app
from molpeg_plugins.plugins import get_plugin_manager

runner = CliRunner()
WIDE = {"COLUMNS": "240"}


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"molpeg {__version__}"


def test_strategies_lists_every_registered_strategy():
    result = runner.invoke(app, ["strategies"], env=WIDE)
    assert result.exit_code == 0, result.output
    registry = get_plugin_manager().strategies()
    assert {"molpeg", "soft-random", "infobatch", "hard-random"} <= set(registry)
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    for name, cls in registry.items():
        assert name in rows, name
        assert ("dynamic" if cls.dynamic else "static") in rows[name]
        assert cls.description[:30] in rows[name]


def test_backends_lists_availability():
    result = runner.invoke(app, ["backends"], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert "torch" in rows and "yes" in rows["torch"] and "rdkit" in rows["torch"]
    for name, backend in get_plugin_manager().backends().items():
        ok, _ = backend.availability()
        assert ("yes" if ok else "no") in rows[name]


def test_no_arguments_shows_help():
    result = runner.invoke(app, [])
    assert "prune" in result.output and "strategies" in result.output


@pytest.mark.parametrize("command", ["prune", "prune-source", "scaling"])
def test_help_fits_an_80_column_terminal(command: str) -> None:
    """At 80 columns every option name is shown whole and descriptions get a real column."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import typer

    from molpeg_plugins.cli import app

    molpeg = Path(sys.executable).parent / "molpeg"
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TERMINAL_WIDTH")}
    env.update(COLUMNS="80", NO_COLOR="1")
    out = subprocess.run(
        [str(molpeg), command, "--help"], capture_output=True, text=True, env=env, check=True
    ).stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    names = [o for p in click_command.params for o in p.opts if o.startswith("--")]
    for name in names:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", out), f"{name} cut: {out}"
    assert "…" not in out
    # the description column (where "Show this message" starts) is at least 25 wide
    help_row = next(line for line in lines if "Show this message" in line)
    assert help_row.index("Show this message") <= 80 - 2 - 25, help_row
