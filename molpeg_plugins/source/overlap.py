"""Target molecules inside a source set, found by canonical molecule.

A molecule of the downstream (target) set that is also in the pretraining (source) set leaks
its structure, and for a labelled source its labels, into pretraining: the downstream test
metric then measures memory, not transfer. :func:`find_target_overlap` finds every source row
whose molecule is a target molecule, whatever the SMILES text. Two SMILES are the same
molecule when RDKit writes them as the same canonical isomeric SMILES, so stereo counts:
two stereoisomers are different molecules, one molecule written twice is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from molpeg_plugins.pipeline.data import smiles_text_problem
from molpeg_plugins.source.chunked import Progress, map_chunks

_TARGET_KEYS: dict[str, int] = {}  # set in each worker by _set_target_keys


def canonical_key(smiles: str) -> str | None:
    """The canonical isomeric SMILES of ``smiles`` (stereo kept); ``None`` if it does not parse."""
    from rdkit import Chem

    text = smiles.strip()
    if not text or smiles_text_problem(text):
        return None
    mol = Chem.MolFromSmiles(text)
    return None if mol is None else Chem.MolToSmiles(mol)


def _set_target_keys(keys: dict[str, int]) -> None:
    global _TARGET_KEYS
    _TARGET_KEYS = keys


def _matches(args: tuple[list[str], int]) -> list[tuple[int, int, str]]:
    """``(source row, target row, key)`` of the chunk's molecules that are target molecules."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    smiles, offset = args
    found = []
    for i, smi in enumerate(smiles):
        key = canonical_key(smi)
        if key is not None and key in _TARGET_KEYS:
            found.append((offset + i, _TARGET_KEYS[key], key))
    return found


@dataclass
class TargetOverlap:
    """The source rows whose molecule also occurs in the target set.

    Attributes:
        source_rows: 0-based source data rows, ascending.
        target_rows: for each of them, the first target data row with the same molecule.
        molecules: for each of them, the molecule as canonical isomeric SMILES.
    """

    source_rows: np.ndarray
    target_rows: np.ndarray
    molecules: list[str]

    def __len__(self) -> int:
        return len(self.source_rows)

    def mask(self, num_source: int) -> np.ndarray:
        """Boolean ``(num_source,)``: ``True`` on the overlapping source rows."""
        out = np.zeros(num_source, dtype=bool)
        out[self.source_rows] = True
        return out


def find_target_overlap(
    source_smiles: Sequence[str],
    target_smiles: Sequence[str],
    *,
    chunk_size: int = 20_000,
    workers: int = 1,
    progress: Progress | None = None,
    stage: str = "target molecules in the source",
) -> TargetOverlap:
    """Every source row whose molecule (canonical isomeric SMILES) is a target molecule.

    Args:
        source_smiles: source SMILES, one per data row (unparsable ones never match).
        target_smiles: downstream SMILES.
        chunk_size: source molecules per chunk.
        workers: processes (``1`` works in this process).
        progress: ``progress(stage, done, total)`` callback.
        stage: label passed to ``progress``.
    """
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    keys: dict[str, int] = {}
    for row, smi in enumerate(target_smiles):
        key = canonical_key(smi)
        if key is not None:
            keys.setdefault(key, row)
    found: list[tuple[int, int, str]] = []
    try:
        for _, chunk in map_chunks(
            _matches, len(source_smiles), lambda s: (list(source_smiles[s]), s.start),
            chunk_size=chunk_size, workers=workers, progress=progress, stage=stage,
            initializer=_set_target_keys, initargs=(keys,),
        ):  # fmt: skip
            found.extend(chunk)
    finally:
        _set_target_keys({})  # in-process runs set this process's keys
    return TargetOverlap(
        source_rows=np.array([f[0] for f in found], dtype=np.int64),
        target_rows=np.array([f[1] for f in found], dtype=np.int64),
        molecules=[f[2] for f in found],
    )
