"""Exceptions molpeg raises on purpose.

Every error a user can cause derives from :class:`MolPegError` and carries a one-line message
that names the offending value and what to do about it; the CLI prints that line and exits
with :attr:`MolPegError.exit_code` instead of a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MolPegError(Exception):
    """Base class of molpeg's user-facing errors."""

    exit_code: int = 1


class ConfigError(MolPegError, ValueError):
    """An option is out of range or inconsistent (exit code 2, like any usage error)."""

    exit_code = 2


class DataError(MolPegError):
    """The input file cannot be used as it is (exit code 1): empty, unreadable, bad labels."""


class SamplerError(MolPegError, RuntimeError):
    """The training loop trained on samples outside the epoch's selection (exit code 2).

    Its loader does not draw from :attr:`molpeg_plugins.Pruner.sampler` as it is: another
    sampler (a ``DistributedSampler`` of the training set, or one wrapping the pruning
    sampler) replaces it, so the run trains on data the pruner did not choose.
    """

    exit_code = 2


class UnknownNameError(ConfigError, KeyError):
    """A strategy, backend or plugin name that is not registered."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        valid = sorted(valid)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(
            f"unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(valid) or '(none)'}."
        )
        self.kind, self.name, self.valid = kind, name, valid

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])
