"""The root of the CLI: ``--version``, ``strategies``, ``backends``."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from molpeg_plugins import __version__
from molpeg_plugins.cli import app
from molpeg_plugins.plugins import get_plugin_manager, make_plugin_manager

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


def test_strategies_show_how_each_built_in_scales():
    result = runner.invoke(app, ["strategies"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "scales with N" in result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    builtins = make_plugin_manager(entry_points=False).strategies()
    assert len(builtins) == 14
    for name, cls in builtins.items():
        assert cls.scales, f"{name} does not say how it scales"
        assert cls.scales[:25] in rows[name], name
    assert "block_size=0: O(N²·D)" in builtins["herding"].scales


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


def test_plugins_add_their_commands_through_the_cli_hook():
    """``molpeg chemprop`` comes from the Chemprop adapter's ``molpeg_cli_commands`` hook."""
    import typer

    from molpeg_plugins.cli.app import add_plugin_commands
    from molpeg_plugins.plugins import make_plugin_manager

    def names(root: typer.Typer) -> set[str]:
        root.command("noop")(lambda: None)  # a group, not a single command
        root.command("other")(lambda: None)
        return set(typer.main.get_command(root).commands)  # type: ignore[attr-defined]

    bare, full = typer.Typer(), typer.Typer()
    add_plugin_commands(bare, make_plugin_manager(entry_points=False))
    add_plugin_commands(full, make_plugin_manager())
    assert "chemprop" not in names(bare)
    assert "chemprop" in names(full)
    assert "chemprop" in typer.main.get_command(app).commands  # type: ignore[attr-defined]


def test_other_commands_work_when_chemprop_cannot_be_imported():
    """With ``chemprop`` unimportable, ``molpeg strategies`` runs and ``molpeg chemprop
    train`` says what to install."""
    import os
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['chemprop'] = None\n"  # import chemprop → ImportError
        "from molpeg_plugins.cli import main\n"
        "sys.argv = ['molpeg', *sys.argv[1:]]\n"
        "main()\n"
    )
    env = {**os.environ, "MOLPEG_DISABLE_CHEMPROP_HOOK": "1", "COLUMNS": "200"}
    listed = subprocess.run(
        [sys.executable, "-c", script, "strategies"], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert "molpeg" in listed.stdout
    refused = subprocess.run(
        [sys.executable, "-c", script, "chemprop", "train"], capture_output=True, text=True, env=env
    )
    assert refused.returncode == 2
    assert "pip install 'molpeg[chemprop]'" in refused.stderr
