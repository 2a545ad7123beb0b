"""molpeg plugin entry point for DeepChem (registered in the ``molpeg`` entry-point group).

Importing this module must not import deepchem: hook implementations import it lazily.
Per-sample losses are no hook: :mod:`molpeg_deepchem.pruning` computes them directly
with :mod:`molpeg_deepchem.losses`.
"""

from __future__ import annotations

from typing import Any

from molpeg_plugins import hookimpl
from molpeg_plugins.pipeline.backend import Backend


@hookimpl
def molpeg_register_backends() -> list[Backend]:
    """Register the ``deepchem`` backend of ``molpeg prune`` (DeepChem is imported in ``fit``)."""
    from molpeg_deepchem.backend import DeepChemBackend

    return [DeepChemBackend()]


@hookimpl
def molpeg_safe_globals() -> list[Any]:
    """DeepChem checkpoints hold only state dicts and step counters: nothing to allow."""
    return []
