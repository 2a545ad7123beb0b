"""The one error printer of the ``molpeg`` commands: a one-line message and an exit code.

Every command runs its work inside :func:`exit_on_error`. A :class:`~molpeg_plugins.errors.
MolPegError` (data errors exit 1, usage errors 2) and an operating-system error (unreadable
input, unwritable output folder, full disk: exit 1) become ``Error: <message>`` on standard
error instead of a traceback; an interrupt (Ctrl-C) prints how to continue and exits 130.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from molpeg_plugins.errors import MolPegError
from molpeg_plugins.pipeline.outputs import describe_os_error

INTERRUPTED_EXIT_CODE = 130


def print_error(message: str) -> None:
    """Print ``Error: <message>`` on standard error (the message is shown as written)."""
    err = Console(stderr=True)
    err.print("Error:", style="bold red", end=" ")
    err.print(message, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def exit_on_error(interrupted: str = "Interrupted.") -> Iterator[None]:
    """Turn the errors of a command into its message and exit code.

    Args:
        interrupted: the line printed when the user interrupts the command, saying how to
            continue.

    Raises:
        typer.Exit: with :attr:`MolPegError.exit_code`, 1 for an ``OSError``, or 130 for
            ``KeyboardInterrupt``.
    """
    try:
        yield
    except MolPegError as exc:
        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        print_error(describe_os_error(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        Console(stderr=True).print(interrupted, markup=False, highlight=False)
        raise typer.Exit(INTERRUPTED_EXIT_CODE) from None
