"""The root of the CLI: ``--version``, ``strategies``, ``backends``."""

from __future__ import annotations

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
