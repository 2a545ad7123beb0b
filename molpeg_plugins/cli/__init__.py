"""The ``molpeg`` command line (Typer): one module per command group.

``app`` is the Typer application; importing the command modules below registers the core's
commands on it, and the installed plugins add theirs (``molpeg chemprop …``) through the
``molpeg_cli_commands`` hook. The commands are thin shims: they turn flags into calls of the
layers below (:mod:`molpeg_plugins.pipeline`, :mod:`molpeg_plugins.source`,
:mod:`molpeg_plugins.scaling`) and may import any of them; nothing in the core imports the
command line.
"""

from molpeg_plugins.cli import prune, scaling, source  # noqa: F401  (registers commands)
from molpeg_plugins.cli.app import add_plugin_commands, app, main
from molpeg_plugins.plugins import get_plugin_manager

add_plugin_commands(app, get_plugin_manager())

__all__ = ["app", "main"]
