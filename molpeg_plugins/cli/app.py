"""The root of the ``molpeg`` command line (Typer): ``--version``, ``strategies``, ``backends``.

The core's command groups (``prune``, ``scaling``, ``source``) live in their own modules and
register themselves on :data:`app` when :mod:`molpeg_plugins.cli` imports them; plugins add
theirs (``molpeg chemprop`` from the Chemprop adapter) through the ``molpeg_cli_commands``
hook, called by :func:`add_plugin_commands`.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from molpeg_plugins import __version__
from molpeg_plugins.plugins import MolPegPluginManager, get_plugin_manager

app = typer.Typer(
    help="Molecular data pruning for Chemprop, DeepChem and PyTorch.\n\n"
    "Start with: molpeg prune --output out/   (prunes the bundled BBBP dataset)",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


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
    """List the registered pruning strategies (built-in and from plugins).

    Dynamic strategies re-choose the kept molecules every epoch; static ones choose them
    once, after a warm-up. "scales with N" is how the engine's cost of an epoch grows with
    the number of molecules and up to which size it was measured to stay under a minute.
    Use a name with ``molpeg prune --strategy NAME``.
    """
    table = Table(title="molpeg strategies")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("kind")
    table.add_column("tasks")
    table.add_column("description")
    table.add_column("options (defaults)")
    table.add_column("scales with N")
    for name, cls in get_plugin_manager().strategies().items():
        table.add_row(
            escape(name),
            "dynamic" if cls.dynamic else "static",
            ", ".join(sorted(cls.tasks)),
            escape(cls.description),
            escape(" ".join(f"{k}={v}" for k, v in cls.options.items())),
            escape(cls.scales or "not stated"),
        )
    Console().print(table)


@app.command()
def backends() -> None:
    """List the registered training backends and whether their framework is importable.

    Use a name with ``molpeg prune --backend NAME``. A backend whose framework is missing
    says which extra to install.
    """
    table = Table(title="molpeg backends")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("available")
    table.add_column("frameworks / why not")
    table.add_column("description")
    for name, backend in get_plugin_manager().backends().items():
        ok, detail = backend.availability()
        table.add_row(  # plugin texts are shown as written: `molpeg[deepchem]` is not markup
            escape(name),
            "[green]yes[/]" if ok else "[red]no[/]",
            escape(detail),
            escape(backend.description),
        )
    Console().print(table)


def add_plugin_commands(root: typer.Typer, plugin_manager: MolPegPluginManager) -> None:
    """Let every plugin of ``plugin_manager`` add its commands to ``root``.

    Calls the ``molpeg_cli_commands`` hook once; :mod:`molpeg_plugins.cli` does so with the
    process-wide manager when it builds :data:`app`.
    """
    plugin_manager.hook.molpeg_cli_commands(app=root)


def main() -> None:
    """Console-script entry point."""
    app()
