"""The ``molpeg`` command line (Typer)."""

from __future__ import annotations

import typer

from molpeg_plugins import __version__

app = typer.Typer(help="Molecular data pruning for Chemprop, DeepChem and PyTorch.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"molpeg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """molpeg: prune the molecules that teach your model nothing."""


@app.command()
def strategies() -> None:
    """List the registered pruning strategies."""
    from molpeg_plugins.plugins import get_plugin_manager

    for name, cls in get_plugin_manager().strategies().items():
        typer.echo(f"{name:18s} {'dynamic' if cls.dynamic else 'static ':8s} {cls.description}")


def main() -> None:
    """Console-script entry point."""
    app()
