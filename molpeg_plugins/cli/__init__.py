"""The ``molpeg`` command line (Typer): one module per command group.

``app`` is the Typer application; importing the command modules below registers their
commands on it.
"""

from molpeg_plugins.cli import chemprop, prune, scaling, source  # noqa: F401  (registers commands)
from molpeg_plugins.cli.app import app, main

__all__ = ["app", "main"]
