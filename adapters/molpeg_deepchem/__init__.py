"""molpeg adapter for DeepChem: hook implementations, a ``model.fit`` integration and a backend.

``from molpeg_deepchem import MolPegDeepChem`` imports DeepChem; importing the package itself
(or its ``plugin`` entry point) does not.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DeepChemBackend", "MolPegDeepChem", "PrunedDataset"]

_LAZY = {
    "MolPegDeepChem": "molpeg_deepchem.pruning",
    "PrunedDataset": "molpeg_deepchem.dataset",
    "DeepChemBackend": "molpeg_deepchem.backend",
}


def __getattr__(name: str) -> Any:
    """Import the public classes on first use, so that DeepChem loads only when needed."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'molpeg_deepchem' has no attribute {name!r}")
