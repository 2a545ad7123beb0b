"""RDKit 2D descriptors as a supervised pretraining pretext for a source set.

Pretraining a molecular encoder to predict many computed descriptors of unlabelled source
molecules (multitask regression) is a cheap pretext that needs no labels. This module computes
the full list of RDKit 2D descriptors (``rdkit.Chem.Descriptors._descList``, about 200) and
standardises them into regression targets; the fitted :class:`DescriptorScaling` is returned
so the same transform can be written down and applied again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from molpeg_plugins.errors import ConfigError, DataError
from molpeg_plugins.pipeline.atomic import atomic_path
from molpeg_plugins.pipeline.data import smiles_text_problem
from molpeg_plugins.source.chunked import Progress, map_chunks


def descriptor_names() -> list[str]:
    """Names of every RDKit 2D descriptor, in RDKit's order (the columns of the raw table)."""
    from rdkit.Chem import Descriptors

    return [name for name, _ in Descriptors._descList]


def _descriptor_rows(smiles: list[str]) -> np.ndarray:
    """Raw descriptors of one chunk (rows × :func:`descriptor_names`); ``nan`` where missing."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import Descriptors

    RDLogger.DisableLog("rdApp.*")
    functions = [fn for _, fn in Descriptors._descList]
    out = np.full((len(smiles), len(functions)), np.nan)
    for i, smi in enumerate(smiles):
        text = smi.strip()
        mol = None if not text or smiles_text_problem(text) else Chem.MolFromSmiles(text)
        if mol is None:
            continue
        for j, fn in enumerate(functions):
            try:
                out[i, j] = float(fn(mol))
            except Exception:  # RDKit raises assorted errors on odd molecules
                out[i, j] = np.nan
    out[~np.isfinite(out)] = np.nan
    return out


def compute_descriptors(
    smiles: Sequence[str],
    *,
    chunk_size: int = 2_000,
    workers: int = 1,
    progress: Progress | None = None,
    stage: str = "descriptors",
) -> np.ndarray:
    """The raw RDKit 2D descriptors of ``smiles``, ``(len(smiles), len(descriptor_names()))``.

    A SMILES that RDKit cannot parse (or that is empty, or contains whitespace or non-ASCII
    characters) gives a row of ``nan``; so does any descriptor value RDKit fails to compute
    or returns as infinite. Nothing is raised for bad molecules: :meth:`DescriptorScaling.fit`
    ignores all-``nan`` rows and drops descriptors that are not finite on every other row.

    Args:
        smiles: one SMILES per row.
        chunk_size: molecules per chunk.
        workers: processes (``1`` works in this process).
        progress: ``progress(stage, done, total)`` callback.
        stage: label passed to ``progress``.
    """
    out = np.full((len(smiles), len(descriptor_names())), np.nan)
    for s, rows in map_chunks(
        _descriptor_rows, len(smiles), lambda s: list(smiles[s]),
        chunk_size=chunk_size, workers=workers, progress=progress, stage=stage,
    ):  # fmt: skip
        out[s] = rows
    return out


@dataclass(frozen=True)
class DescriptorScaling:
    """Quantile-clip then z-score, fitted on a source set's raw descriptors.

    RDKit descriptors live on very different scales (``MolWt`` in hundreds, counts in units,
    ``Ipc`` up to 1e10 and more) and many have heavy tails. A plain z-score would let a few
    extreme molecules set a descriptor's scale and squash everyone else near 0, so that in a
    mean-squared-error loss a handful of outliers dominate. Each kept descriptor is therefore
    first clipped to its ``[quantile, 1 - quantile]`` range on the fitting set and then
    standardised with the mean and standard deviation of the clipped values: every target is
    bounded to a few standard deviations and weighs about the same in the loss.

    A descriptor is dropped when it is not finite on every parsed molecule of the fitting set,
    or when it is constant there after clipping (it carries nothing to learn).

    Attributes:
        names: the kept descriptors, in the order of the targets.
        columns: their column indices in the raw table of :func:`compute_descriptors`.
        low: lower clip bound per kept descriptor.
        high: upper clip bound per kept descriptor.
        mean: mean of the clipped values per kept descriptor.
        scale: standard deviation (``ddof=0``) of the clipped values per kept descriptor.
        quantile: the clip quantile the scaling was fitted with.
    """

    names: tuple[str, ...]
    columns: np.ndarray
    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    quantile: float

    @classmethod
    def fit(cls, raw: np.ndarray, quantile: float = 0.005) -> DescriptorScaling:
        """Fit on a raw table from :func:`compute_descriptors` (all-``nan`` rows ignored)."""
        if not 0 <= quantile < 0.5:
            raise ConfigError(f"clip quantile must be in [0, 0.5), got {quantile}")
        names = descriptor_names()
        if raw.ndim != 2 or raw.shape[1] != len(names):
            raise DataError(
                f"expected a raw descriptor table with {len(names)} columns, got shape {raw.shape}"
            )
        parsed = raw[~np.isnan(raw).all(axis=1)]
        if len(parsed) == 0:
            raise DataError("no parsable molecule to fit the descriptor scaling on")
        finite = np.isfinite(parsed).all(axis=0)
        low = np.quantile(parsed[:, finite], quantile, axis=0)
        high = np.quantile(parsed[:, finite], 1 - quantile, axis=0)
        clipped = np.clip(parsed[:, finite], low, high)
        mean, scale = clipped.mean(axis=0), clipped.std(axis=0)
        varies = scale > 1e-12 * np.maximum(1.0, np.abs(mean))
        columns = np.flatnonzero(finite)[varies]
        return cls(
            names=tuple(names[c] for c in columns),
            columns=columns,
            low=low[varies],
            high=high[varies],
            mean=mean[varies],
            scale=scale[varies],
            quantile=quantile,
        )

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """The standardised targets ``(rows, len(names))`` of a raw table (``nan`` rows stay)."""
        return (np.clip(raw[:, self.columns], self.low, self.high) - self.mean) / self.scale

    def to_dict(self) -> dict[str, Any]:
        """The scaling as plain JSON-ready values (see :meth:`from_dict`)."""
        return {
            "quantile": self.quantile,
            "descriptors": [
                {"name": n, "column": int(c), "low": lo, "high": hi, "mean": m, "scale": sc}
                for n, c, lo, hi, m, sc in zip(
                    self.names, self.columns, self.low.tolist(), self.high.tolist(),
                    self.mean.tolist(), self.scale.tolist(), strict=True,
                )
            ],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DescriptorScaling:
        """The scaling written by :meth:`to_dict`."""
        rows = data["descriptors"]
        return cls(
            names=tuple(r["name"] for r in rows),
            columns=np.array([r["column"] for r in rows], dtype=np.int64),
            low=np.array([r["low"] for r in rows], dtype=float),
            high=np.array([r["high"] for r in rows], dtype=float),
            mean=np.array([r["mean"] for r in rows], dtype=float),
            scale=np.array([r["scale"] for r in rows], dtype=float),
            quantile=float(data["quantile"]),
        )


def descriptor_pretext(
    smiles: Sequence[str], *, quantile: float = 0.005, workers: int = 1,
    progress: Progress | None = None,
) -> tuple[np.ndarray, DescriptorScaling]:  # fmt: skip
    """Standardised descriptor targets of ``smiles`` and the scaling fitted on them.

    Rows of unparsable SMILES are all ``nan``; leave them out of the pretraining set.
    """
    raw = compute_descriptors(smiles, workers=workers, progress=progress)
    scaling = DescriptorScaling.fit(raw, quantile=quantile)
    return scaling.transform(raw), scaling


def write_pretext(
    path: Path, smiles: Sequence[str], raw: np.ndarray, rows: np.ndarray,
    *, quantile: float = 0.005,
) -> tuple[int, DescriptorScaling]:  # fmt: skip
    """Write the pretraining CSV of the source ``rows``: ``smiles`` then one standardised
    column per descriptor, with the scaling fitted on those rows.

    Args:
        path: the CSV written (atomically), ready for ``chemprop train --task-type regression``.
        smiles: every source SMILES.
        raw: their raw descriptors (:func:`compute_descriptors`), one row per SMILES.
        rows: the source rows to pretrain on; rows whose descriptors are all ``nan``
            (unparsable SMILES) are left out.
        quantile: the clipping quantile of :meth:`DescriptorScaling.fit`.

    Returns:
        The number of molecules written and the fitted scaling.
    """
    import pandas as pd

    rows = rows[~np.isnan(raw[rows]).all(axis=1)]
    scaling = DescriptorScaling.fit(raw[rows], quantile=quantile)
    frame = pd.DataFrame(scaling.transform(raw[rows]), columns=list(scaling.names))
    frame.insert(0, "smiles", [smiles[i] for i in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.5g")
    return len(rows), scaling
