"""Loading checkpoints without executing code from them.

``torch.load(weights_only=False)`` unpickles arbitrary objects, which can run any code. molpeg
loads every checkpoint with ``weights_only=True`` and an explicit allow-list of framework
classes, contributed by the adapters through the ``molpeg_safe_globals`` hook. A file that
references anything else is refused with the name of the offending global.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch.serialization import get_unsafe_globals_in_checkpoint, safe_globals

from molpeg_plugins.errors import MolPegError
from molpeg_plugins.plugins import MolPegPluginManager, get_plugin_manager

TRUST_HINT = "--trust-checkpoint"


class UnsafeCheckpointError(MolPegError):
    """A checkpoint references a global that is not on the allow-list."""


def _qualified(obj: Any) -> str:
    if isinstance(obj, tuple):  # (replacement, "module.Name"): load Name as replacement
        return obj[1]
    return f"{obj.__module__}.{obj.__qualname__}"


def allowed_globals(plugin_manager: MolPegPluginManager | None = None) -> list[Any]:
    """The union of what every plugin's ``molpeg_safe_globals`` hook allows.

    ``plugin_manager`` defaults to the process-wide :func:`~molpeg_plugins.plugins.
    get_plugin_manager` (as in every function of this module).

    An entry is a class/function, or a ``(replacement, "module.Name")`` pair (as accepted by
    ``torch.serialization.safe_globals``) that loads ``module.Name`` as ``replacement`` —
    e.g. Lightning's ``AttributeDict`` as a plain ``dict``, which the weights-only
    unpickler can fill.
    """
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
    allowed: dict[str, Any] = {}
    for group in pm.hook.molpeg_safe_globals():
        for obj in group:
            allowed[_qualified(obj)] = obj
    return list(allowed.values())


def vet_checkpoint(
    path: str | Path, *, plugin_manager: MolPegPluginManager | None = None
) -> list[Any]:
    """Check that ``path`` only references allowed globals; return the globals it needs.

    Raises:
        MolPegError: the file does not exist or is not a PyTorch checkpoint.
        UnsafeCheckpointError: it references a global outside the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise MolPegError(f"{path}: no such checkpoint file; check the path to the model")
    allowed = allowed_globals(plugin_manager)
    names = {_qualified(obj) for obj in allowed}
    try:
        needed = get_unsafe_globals_in_checkpoint(str(path))
    except (RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError) as exc:
        raise MolPegError(
            f"{path}: not a PyTorch zip checkpoint ({exc.__class__.__name__}); re-save it with "
            f"torch.save, or pass {TRUST_HINT} if you trust it"
        ) from exc
    refused = sorted(set(needed) - names)
    if refused:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: it references {refused[0]!r}"
            + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else "")
            + f", which is not on molpeg's allow-list of framework classes; if you trust this "
            f"file, pass {TRUST_HINT}"
        )
    return [obj for obj in allowed if _qualified(obj) in set(needed)]


def safe_load(
    path: str | Path,
    *,
    trust: bool = False,
    map_location: str | torch.device = "cpu",
    plugin_manager: MolPegPluginManager | None = None,
) -> Any:
    """Load a checkpoint with ``weights_only=True`` and the plugins' allow-list.

    Args:
        path: the checkpoint file.
        trust: load with ``weights_only=False`` (only for files you made yourself).
        map_location: where tensors are placed.
        plugin_manager: whose allow-list applies (default: the process-wide manager).
    """
    if trust:
        if not Path(path).is_file():
            raise MolPegError(f"{path}: no such checkpoint file; check the path to the model")
        return torch.load(path, map_location=map_location, weights_only=False)
    needed = vet_checkpoint(path, plugin_manager=plugin_manager)
    with safe_globals(needed):
        return torch.load(path, map_location=map_location, weights_only=True)


def load_resume_state(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    plugin_manager: MolPegPluginManager | None = None,
) -> Any:
    """Load the resume state of an interrupted run (safely, like :func:`safe_load`).

    A resume file is molpeg's own: ``--trust-checkpoint`` does not apply to it, so an
    unreadable or refused one is reported with what does help.

    Raises:
        MolPegError: the file is damaged or references a global outside the allow-list.
    """
    try:
        return safe_load(path, map_location=map_location, plugin_manager=plugin_manager)
    except (MolPegError, EOFError, RuntimeError, pickle.UnpicklingError) as exc:
        reason = str(exc).split(";")[0].removeprefix(f"{path}: ")
        raise MolPegError(
            f"{path}: cannot resume from this file ({reason}); delete it, or rerun with "
            "--overwrite instead of --resume to start over"
        ) from exc
