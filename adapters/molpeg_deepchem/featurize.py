"""SMILES and label tables to DeepChem datasets (ECFP features, missing-label weights)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import deepchem as dc
import numpy as np
from rdkit import RDLogger

from molpeg_plugins import MolPegError


def ecfp(
    smiles: Sequence[str],
    *,
    size: int = 2048,
    radius: int = 2,
    advance: Callable[[int], None] | None = None,
) -> np.ndarray:
    """ECFP bit vectors ``(n, size)`` from DeepChem's ``CircularFingerprint``.

    Raises:
        MolPegError: a SMILES could not be featurised (names its 0-based row).
    """
    featurizer = dc.feat.CircularFingerprint(size=size, radius=radius)
    rows = []
    RDLogger.DisableLog("rdApp.*")
    try:
        for start in range(0, len(smiles), 256):
            chunk = list(smiles[start : start + 256])
            for offset, feat in enumerate(featurizer.featurize(chunk)):
                arr = np.asarray(feat)
                if arr.shape != (size,):
                    row = start + offset
                    raise MolPegError(
                        f"row {row}: SMILES {smiles[row]!r} could not be featurised as ECFP; "
                        "fix or remove that row"
                    )
                rows.append(arr.astype(np.float32))
            if advance is not None:
                advance(len(chunk))
    finally:
        RDLogger.EnableLog("rdApp.*")
    return np.stack(rows) if rows else np.zeros((0, size), dtype=np.float32)


def labelled_dataset(
    X: np.ndarray, targets: np.ndarray, ids: Sequence[str] | None = None
) -> dc.data.NumpyDataset:
    """A ``NumpyDataset`` whose weights mark missing labels the DeepChem way.

    ``targets`` is ``(n, tasks)`` with ``nan`` for a missing label: its weight ``w`` is 0
    and its stored label 0 (DeepChem's convention, so its losses ignore it).
    """
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    w = np.isfinite(y).astype(np.float32)
    return dc.data.NumpyDataset(
        X, np.nan_to_num(y, nan=0.0), w, ids=None if ids is None else np.asarray(ids)
    )
