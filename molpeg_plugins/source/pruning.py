"""Source-set pruning before pretraining (DP4TL, adapted to molecules).

Given a large *source* set (the pretraining molecules) and a downstream *target* set, keep
only the part of the source that the target maps to:

* **feature mapping** (label-free): cluster the source molecules into groups (mini-batch
  k-means on Morgan fingerprints, on the Morgan fingerprints of their Bemis–Murcko scaffolds
  so that a scaffold never straddles two groups, or on a pretrained Chemprop model's
  embeddings), send each target molecule to its nearest group centre and keep the groups that
  receive the most target molecules.
* **label mapping** (labelled multitask source): run the target molecules through a model
  pretrained on the source tasks, rank the source tasks by how strongly the target maps to
  them (sum of predicted probabilities, or argmax hits) and keep the source molecules measured
  in the top tasks.

Both fill the requested fraction exactly: whole groups (or tasks) in rank order, then a seeded
random part of the group at the boundary. Everything is streamed in chunks so the 1.58M
molecules of the MOSES training set fit easily in memory.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from molpeg_plugins.errors import ConfigError, MolPegError
from molpeg_plugins.pipeline import csv_records
from molpeg_plugins.pipeline.csv_records import CsvRecords as CsvRecords
from molpeg_plugins.pipeline.csv_records import check_column, is_missing
from molpeg_plugins.pipeline.csv_records import resolve_column as resolve_column
from molpeg_plugins.pipeline.data import smiles_text_problem
from molpeg_plugins.plugins import MolPegPluginManager, get_plugin_manager
from molpeg_plugins.source.chunked import Progress as Progress
from molpeg_plugins.source.chunked import chunks, map_chunks
from molpeg_plugins.source.overlap import TargetOverlap, find_target_overlap

GroupFeatures = Literal["morgan", "scaffold", "embedding"]
LabelScore = Literal["probability", "argmax", "lift"]


# --------------------------------------------------------------------------------------------
# Reading a CSV while keeping every data row's original text
# --------------------------------------------------------------------------------------------


def read_records(
    path: str | Path,
    smiles_column: str | None = None,
    extra_columns: Sequence[str] | None = (),
    *,
    option: str = "smiles-column",
) -> tuple[CsvRecords, str]:
    """Read a (possibly gzipped) CSV in which every data row must be usable as it is.

    The file is read by :func:`molpeg_plugins.pipeline.csv_records.read_records` with
    ``exact_width=True``: a row with the wrong number of fields, or several rows merged by a
    stray quote, is an error (named by line) rather than a skipped row.

    Args:
        path: CSV or CSV.GZ file with a header row.
        smiles_column: name of the SMILES column (any case; ``None``: detect
            ``smiles``/``SMILES``/…).
        extra_columns: other columns that must exist; ``None`` means no check.
        option: CLI option (without dashes) named in errors about the SMILES column.

    Returns:
        The records (:attr:`~molpeg_plugins.pipeline.csv_records.CsvRecords.values` gives a column's
        fields) and the resolved SMILES column name.

    Raises:
        MolPegError: the file is missing, empty, not UTF-8, or a row has the wrong number
            of fields (named by line number); a column that does not exist.
    """
    records = csv_records.read_records(path, exact_width=True)
    smiles_col = resolve_column(records.path, records.columns, smiles_column, option)
    for name in extra_columns or ():
        check_column(records.path, name, records.columns, "column")
    return records, smiles_col


# --------------------------------------------------------------------------------------------
# Featurisation (chunked)
# --------------------------------------------------------------------------------------------


def usable_smiles(smiles: str) -> bool:
    """Whether ``smiles`` is non-empty and would not be misread by RDKit (no inner whitespace,
    only ASCII; see :func:`molpeg_plugins.pipeline.data.smiles_text_problem`)."""
    text = smiles.strip()
    return bool(text) and not smiles_text_problem(text)


def _morgan_chunk(args: tuple[list[str], int, int, bool]) -> tuple[np.ndarray, np.ndarray]:
    """Packed Morgan bits of a chunk of SMILES and a validity mask (runs in workers too)."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdFingerprintGenerator
    from rdkit.Chem.Scaffolds import MurckoScaffold

    RDLogger.DisableLog("rdApp.*")
    smiles, radius, n_bits, scaffold = args
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits // 8), dtype=np.uint8)
    ok = np.zeros(len(smiles), dtype=bool)
    for i, smi in enumerate(smiles):
        mol = Chem.MolFromSmiles(smi) if usable_smiles(smi) else None
        if mol is None:
            continue
        if scaffold:
            try:
                mol = MurckoScaffold.GetScaffoldForMol(mol)
            except (RuntimeError, ValueError):
                continue
        out[i] = np.packbits(gen.GetFingerprintAsNumPy(mol).astype(bool))
        ok[i] = True
    return out, ok


@dataclass
class Features:
    """Per-molecule features stored compactly, unpacked chunk by chunk.

    Attributes:
        data: packed Morgan bits (``uint8``, 8 bits per byte) or float32 embeddings.
        valid: ``True`` where the SMILES parsed.
        packed: whether ``data`` holds packed bits.
    """

    data: np.ndarray
    valid: np.ndarray
    packed: bool

    @property
    def dim(self) -> int:
        """Dimension of the unpacked feature vectors."""
        return self.data.shape[1] * (8 if self.packed else 1)

    def dense(self, rows: slice | np.ndarray) -> np.ndarray:
        """Float32 feature vectors of ``rows``."""
        block = self.data[rows]
        return np.unpackbits(block, axis=1).astype(np.float32) if self.packed else block


def morgan_features(
    smiles: Sequence[str],
    *,
    radius: int = 2,
    n_bits: int = 1024,
    scaffold: bool = False,
    chunk_size: int = 20_000,
    workers: int = 1,
    progress: Progress | None = None,
    stage: str = "fingerprints",
) -> Features:
    """Morgan fingerprints (of the molecules, or of their Bemis–Murcko scaffolds), packed.

    Args:
        smiles: SMILES strings; unparsable ones get ``valid=False`` and zero bits.
        radius: Morgan radius.
        n_bits: fingerprint length (a multiple of 8).
        scaffold: fingerprint the Bemis–Murcko scaffold instead of the molecule (acyclic
            molecules share the empty scaffold).
        chunk_size: molecules per chunk.
        workers: processes (``1`` computes in this process).
        progress: ``progress(stage, done, total)`` callback.
        stage: label passed to ``progress``.
    """
    if n_bits % 8:
        raise ConfigError(f"n_bits={n_bits} must be a multiple of 8")
    n = len(smiles)
    data = np.zeros((n, n_bits // 8), dtype=np.uint8)
    valid = np.zeros(n, dtype=bool)
    for s, (bits, ok) in map_chunks(
        _morgan_chunk, n, lambda s: (list(smiles[s]), radius, n_bits, scaffold),
        chunk_size=chunk_size, workers=workers, progress=progress, stage=stage,
    ):  # fmt: skip
        data[s], valid[s] = bits, ok
    return Features(data, valid, packed=True)


def model_outputs(
    checkpoint: str | Path,
    smiles: Sequence[str],
    *,
    kind: Literal["embedding", "prediction"],
    plugin_manager: MolPegPluginManager | None = None,
    trust: bool = False,
    progress: Progress | None = None,
    stage: str = "model",
) -> tuple[Features, list[str]]:
    """Run the saved model ``checkpoint`` over SMILES: learned fingerprints or predictions.

    The model is loaded and run by the plugin of ``plugin_manager`` (default: the
    process-wide :func:`~molpeg_plugins.plugins.get_plugin_manager`) answering the
    ``molpeg_model_outputs`` hook (the Chemprop adapter); SMILES RDKit cannot parse get
    ``valid=False``.

    Returns:
        The outputs as dense features, and the model's output names (may be empty).

    Raises:
        MolPegError: no plugin can run model files, or no SMILES parses.
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    ok = np.array([usable_smiles(s) and Chem.MolFromSmiles(s) is not None for s in smiles])
    if not ok.any():
        raise MolPegError("no valid SMILES to run the model on")
    rows = np.flatnonzero(ok)
    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()

    def report(stage: str, done: int, total: int) -> None:  # done of the valid → of all rows
        assert progress is not None
        progress(stage, int(rows[done - 1]) + 1, len(smiles))

    result = pm.hook.molpeg_model_outputs(
        path=Path(checkpoint),
        smiles=[smiles[i] for i in rows],
        kind=kind,
        trust=trust,
        plugin_manager=pm,
        progress=report if progress else None,
        stage=stage,
    )
    if result is None:
        raise MolPegError(
            f"{checkpoint}: no installed plugin runs model files; pip install 'molpeg[chemprop]'"
        )
    out = np.zeros((len(smiles), result.values.shape[1]), dtype=np.float32)
    out[rows] = result.values
    return Features(out, ok, packed=False), list(result.output_names)


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


@dataclass
class SourceSelection:
    """Result of a source-pruning method.

    Attributes:
        method: ``"feature-mapping"`` or ``"label-mapping"``.
        kept: sorted row positions (0-based data rows of the source file) that are kept.
        num_source: data rows in the source file.
        num_valid: source rows with a parsable SMILES.
        invalid_rows: 0-based data rows whose SMILES RDKit could not parse.
        target_invalid_rows: the same for the target file.
        group_of: per source row, its group (feature mapping) or ``-1`` (invalid / none).
        units: one dict per group (or task), in rank order: ``name``, ``size``, ``hits``
            (target molecules mapped to it, or summed probability), ``rank``, ``kept``
            (rows kept from it).
        details: method-specific facts for the report.
        target_overlap: the source rows whose molecule is a target molecule, which were not
            eligible (``None``: they were not looked for, ``drop_target_molecules=False``).
    """

    method: str
    kept: np.ndarray
    num_source: int
    num_valid: int
    invalid_rows: list[int]
    target_invalid_rows: list[int]
    group_of: np.ndarray
    units: list[dict[str, Any]]
    details: dict[str, Any] = field(default_factory=dict)
    target_overlap: TargetOverlap | None = None

    @property
    def num_eligible(self) -> int:
        """Valid source rows that may be kept: the valid ones minus the target molecules."""
        return self.num_valid - (len(self.target_overlap) if self.target_overlap else 0)


def kept_count(num: int, keep: float) -> int:
    """Rows kept out of ``num`` for a kept fraction ``keep`` (the ``num_kept`` rounding rule)."""
    from molpeg_plugins.engine.config import num_kept

    return num_kept(num, 1.0 - keep)


def _check_keep(keep: float) -> None:
    if not isinstance(keep, (int, float)) or math.isnan(keep) or not 0.0 < keep <= 1.0:
        raise ConfigError(f"--keep {keep!r} must be in (0, 1]: the fraction of the source kept")


def fill_by_rank(
    members: Sequence[np.ndarray], order: Sequence[int], budget: int, seed: int
) -> tuple[np.ndarray, list[int]]:
    """Take whole units in ``order`` until ``budget`` rows; sample the boundary unit.

    A row already taken through an earlier unit (label mapping: molecules measured in
    several tasks) is not counted twice.

    Returns:
        The sorted kept rows and, per unit in ``order``, how many new rows it contributed.
    """
    rng = np.random.default_rng(seed)
    taken: list[np.ndarray] = []
    seen: set[int] | None = None
    total = 0
    added: list[int] = []
    overlapping = sum(len(m) for m in members) != len(
        np.unique(np.concatenate(list(members))) if len(members) else []
    )
    if overlapping:
        seen = set()
    for u in order:
        rows = np.asarray(members[u], dtype=np.int64)
        if seen is not None:
            rows = np.array([r for r in rows.tolist() if r not in seen], dtype=np.int64)
        room = budget - total
        if room <= 0:
            added.append(0)
            continue
        if len(rows) > room:
            rows = np.sort(rng.choice(rows, size=room, replace=False))
        taken.append(rows)
        if seen is not None:
            seen.update(rows.tolist())
        total += len(rows)
        added.append(len(rows))
    kept = np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)
    return kept, added


def _kmeans(
    feats: Features,
    rows: np.ndarray,
    k: int,
    *,
    seed: int,
    batch_size: int,
    max_updates: int,
    progress: Progress | None,
) -> Any:
    """Mini-batch k-means fitted by streaming shuffled batches of ``rows``."""
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(seed)
    km = MiniBatchKMeans(
        n_clusters=k, random_state=seed, batch_size=batch_size, n_init=1, reassignment_ratio=0.01
    )
    batches_per_pass = max(1, math.ceil(len(rows) / batch_size))
    passes = max(1, min(20, math.ceil(max_updates / batches_per_pass)))
    total = passes * batches_per_pass
    done = 0
    for _ in range(passes):
        order = rng.permutation(rows)
        # the first batch seeds k-means++: give it at least 3k rows when there are that many
        first = max(batch_size, 3 * k)
        bounds = [0, *range(first, len(order), batch_size), len(order)]
        for a, b in itertools.pairwise(bounds):
            if b <= a:
                continue
            km.partial_fit(feats.dense(np.sort(order[a:b])))
            done += 1
            if progress:
                progress("k-means", min(done, total), total)
    return km


def _assign(
    km: Any, feats: Features, chunk: int, progress: Progress | None, stage: str
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre and squared distance to it for every valid row (``-1`` if invalid)."""
    n = len(feats.valid)
    labels = np.full(n, -1, dtype=np.int32)
    dist = np.full(n, np.nan, dtype=np.float32)
    centres = km.cluster_centers_.astype(np.float32)
    c2 = (centres**2).sum(1)
    for s in chunks(n, chunk):
        ok = feats.valid[s]
        if ok.any():
            x = feats.dense(s)[ok]
            d2 = c2[None, :] - 2.0 * x @ centres.T + (x**2).sum(1, keepdims=True)
            lab = d2.argmin(1)
            labels[s][ok] = lab
            dist_s = dist[s]
            dist_s[ok] = np.maximum(d2[np.arange(len(lab)), lab], 0.0)
        if progress:
            progress(stage, s.stop, n)
    return labels, dist


def feature_mapping(
    source_smiles: Sequence[str],
    target_smiles: Sequence[str],
    keep: float,
    *,
    groups: int = 100,
    features: GroupFeatures = "morgan",
    checkpoint: str | Path | None = None,
    trust_checkpoint: bool = False,
    radius: int = 2,
    n_bits: int = 1024,
    chunk_size: int = 20_000,
    batch_size: int = 2048,
    max_updates: int = 100,
    workers: int = 1,
    seed: int = 0,
    drop_target_molecules: bool = True,
    progress: Progress | None = None,
    plugin_manager: MolPegPluginManager | None = None,
) -> SourceSelection:
    """Label-free source pruning: keep the source groups the target molecules fall into.

    Args:
        source_smiles: source SMILES, one per data row.
        target_smiles: downstream SMILES.
        keep: fraction of the source rows kept, in ``(0, 1]``.
        groups: number of k-means groups.
        features: ``"morgan"`` (molecule fingerprints), ``"scaffold"`` (fingerprints of the
            Bemis–Murcko scaffolds: molecules sharing a scaffold share a group) or
            ``"embedding"`` (a Chemprop model's learned fingerprint; needs ``checkpoint``).
        checkpoint: Chemprop model file for ``"embedding"``.
        trust_checkpoint: load the checkpoint without the allow-list.
        radius, n_bits: Morgan fingerprint parameters.
        chunk_size: molecules featurised / assigned per chunk.
        batch_size: k-means mini-batch size.
        max_updates: k-means updates to aim for (small sets get several passes, at most 20).
        workers: processes for the fingerprints.
        seed: seeds k-means and the sampling of the boundary group.
        drop_target_molecules: never keep a source molecule that is also a target molecule
            (:func:`~molpeg_plugins.source.overlap.find_target_overlap`); ``keep`` is then a
            fraction of the valid source rows that are not target molecules.
        progress: ``progress(stage, done, total)`` callback.
        plugin_manager: runs the ``"embedding"`` model (``molpeg_model_outputs`` hook;
            default: the process-wide :func:`~molpeg_plugins.plugins.get_plugin_manager`).

    Returns:
        The selection; groups are ranked by target hits, ties broken by the distance from
        the group centre to its nearest target molecule (closest first). Target molecules
        found in the source belong to no group (``group_of`` is ``-1``).
    """
    _check_keep(keep)
    if checkpoint is not None and features != "embedding":
        features = "embedding"
    if groups < 1:
        raise ConfigError(f"--groups {groups} must be at least 1")

    def featurise(smiles: Sequence[str], stage: str) -> Features:
        if features == "embedding":
            assert checkpoint is not None
            embedded, _ = model_outputs(
                checkpoint, smiles, kind="embedding", plugin_manager=plugin_manager,
                trust=trust_checkpoint, progress=progress, stage=stage,
            )  # fmt: skip
            return embedded
        return morgan_features(
            smiles,
            radius=radius,
            n_bits=n_bits,
            scaffold=features == "scaffold",
            chunk_size=chunk_size,
            workers=workers,
            progress=progress,
            stage=stage,
        )

    if features == "embedding":
        if checkpoint is None:
            raise ConfigError("features='embedding' needs a --checkpoint (a Chemprop model file)")
    elif features not in ("morgan", "scaffold"):
        raise ConfigError(f"unknown group features {features!r}: morgan, scaffold or embedding")

    src = featurise(source_smiles, "source features")
    overlap = _target_overlap(
        source_smiles, target_smiles, drop_target_molecules,
        chunk_size=chunk_size, workers=workers, progress=progress,
    )  # fmt: skip
    if not src.valid.any():
        raise MolPegError("no source SMILES could be parsed by RDKit")
    eligible = src.valid & ~overlap.mask(len(source_smiles)) if overlap else src.valid
    valid_rows = np.flatnonzero(eligible)
    if len(valid_rows) == 0:
        raise MolPegError("every valid source molecule is a target molecule: nothing to keep")
    k = min(groups, len(valid_rows))
    tgt = featurise(target_smiles, "target features")
    if not tgt.valid.any():
        raise MolPegError("no target SMILES could be parsed by RDKit")
    km = _kmeans(
        src, valid_rows, k, seed=seed, batch_size=batch_size, max_updates=max_updates,
        progress=progress,
    )  # fmt: skip
    labels, _ = _assign(km, src, chunk_size, progress, "assign source")
    labels[~eligible] = -1
    t_labels, _ = _assign(km, tgt, chunk_size, progress, "assign target")
    hits = np.bincount(t_labels[t_labels >= 0], minlength=k)
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    # tie-break: squared distance from each centre to its nearest target molecule
    centres = km.cluster_centers_.astype(np.float32)
    t = tgt.dense(np.flatnonzero(tgt.valid))
    nearest = np.full(k, np.inf, dtype=np.float64)
    for s in chunks(len(t), 4096):
        x = t[s]
        d2 = (centres**2).sum(1)[:, None] - 2.0 * centres @ x.T + (x**2).sum(1)[None, :]
        nearest = np.minimum(nearest, d2.min(1))
    order = sorted((g for g in range(k) if sizes[g] > 0), key=lambda g: (-hits[g], nearest[g], g))
    members_sorted = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[members_sorted], np.arange(k + 1))
    members = [members_sorted[bounds[g] : bounds[g + 1]] for g in range(k)]
    budget = kept_count(len(valid_rows), keep)
    kept, added = fill_by_rank(members, order, budget, seed)
    units = [
        {
            "name": f"group_{g}",
            "group": int(g),
            "rank": r,
            "size": int(sizes[g]),
            "hits": int(hits[g]),
            "nearest_target_sq_distance": float(max(nearest[g], 0.0)),
            "kept": int(n_added),
        }
        for r, (g, n_added) in enumerate(zip(order, added, strict=True))
    ]
    return SourceSelection(
        method="feature-mapping",
        kept=kept,
        num_source=len(source_smiles),
        num_valid=int(src.valid.sum()),
        invalid_rows=np.flatnonzero(~src.valid).tolist(),
        target_invalid_rows=np.flatnonzero(~tgt.valid).tolist(),
        group_of=labels,
        units=units,
        details={
            "features": features,
            "groups": int(k),
            "groups_hit": int((hits > 0).sum()),
            "groups_kept_whole": int(sum(1 for u in units if u["kept"] == u["size"] > 0)),
            "target_molecules_in_kept_groups": int(sum(u["hits"] for u in units if u["kept"] > 0)),
            "target_valid": int(tgt.valid.sum()),
            "kmeans_inertia_last_batch": float(getattr(km, "inertia_", float("nan"))),
            "radius": radius if features != "embedding" else None,
            "n_bits": n_bits if features != "embedding" else None,
            "checkpoint": str(checkpoint) if checkpoint else None,
        },
        target_overlap=overlap,
    )


def _label_matrix(path: Path, values: dict[str, list[str]], tasks: Sequence[str]) -> np.ndarray:
    """``(rows, tasks)`` boolean matrix: True where the task's label is present (measured)."""
    measured = np.zeros((len(values[tasks[0]]), len(tasks)), dtype=bool)
    for j, task in enumerate(tasks):
        col = values[task]
        for i, v in enumerate(col):
            v = v.strip()
            if is_missing(v):
                continue
            try:
                number = float(v)
            except ValueError:
                raise MolPegError(
                    f"{path}, data row {i}, column {task!r}: label {v!r} is not a number; "
                    "leave missing labels empty or choose the task columns with --task-columns"
                ) from None
            measured[i, j] = not math.isnan(number)  # 'NAN', '-nan': missing too
    return measured


def task_columns(records: CsvRecords, smiles_col: str) -> list[str]:
    """The label columns of a multitask source: every column except the SMILES that holds
    only numbers or blanks (an identifier column like ``mol_id`` is left out)."""
    tasks = []
    for name in records.columns:
        if name == smiles_col:
            continue
        col = records.values.get(name)
        if col is None:
            continue
        ok = True
        for v in col:
            if not is_missing(v):
                try:
                    float(v)
                except ValueError:
                    ok = False
                    break
        if ok:
            tasks.append(name)
    return tasks


def label_mapping(
    source: CsvRecords,
    smiles_col: str,
    target_smiles: Sequence[str],
    keep: float,
    *,
    checkpoint: str | Path,
    tasks: Sequence[str] | None = None,
    score: LabelScore = "probability",
    trust_checkpoint: bool = False,
    seed: int = 0,
    drop_target_molecules: bool = True,
    progress: Progress | None = None,
    plugin_manager: MolPegPluginManager | None = None,
) -> SourceSelection:
    """Supervised source pruning: keep the molecules measured in the tasks the target maps to.

    Args:
        source: the source CSV (:func:`read_records`).
        smiles_col: its SMILES column.
        target_smiles: downstream SMILES.
        keep: fraction of the source rows kept.
        checkpoint: Chemprop model pretrained on the source tasks. If it stores
            ``output_columns`` (as ``chemprop train`` does) its outputs are matched to the
            source's task columns by name; otherwise it must have one output per task, in
            column order.
        tasks: the source's task columns (default: every numeric column).
        score: ``"probability"`` sums each task's predicted probability over the target;
            ``"argmax"`` counts the target molecules whose most probable task it is;
            ``"lift"`` divides the target's mean probability by the eligible source
            molecules' (the model is then also run over the source): a task every molecule
            is predicted active in ranks by how much more the target is, not by its base
            rate, which dominates the other two scores when the target is not made of one
            assay's actives.
        trust_checkpoint: load the checkpoint without the allow-list.
        seed: seeds the sampling of the boundary task.
        drop_target_molecules: never keep a source molecule that is also a target molecule
            (its source labels would leak into pretraining); ``keep`` is then a fraction of
            the valid source rows that are not target molecules.
        progress: ``progress(stage, done, total)`` callback.
        plugin_manager: runs the model (``molpeg_model_outputs`` hook; default: the
            process-wide :func:`~molpeg_plugins.plugins.get_plugin_manager`).
    """
    _check_keep(keep)
    if score not in ("probability", "argmax", "lift"):
        raise ConfigError(f"unknown label-mapping score {score!r}: probability, argmax or lift")
    tasks = list(tasks) if tasks else task_columns(source, smiles_col)
    if not tasks:
        raise ConfigError(
            f"{source.path}: no numeric task columns besides {smiles_col!r}; label mapping "
            "needs a labelled multitask source"
        )
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    src_smiles = source.values[smiles_col]
    valid = np.array([bool(s) and Chem.MolFromSmiles(s) is not None for s in src_smiles])
    overlap = _target_overlap(src_smiles, target_smiles, drop_target_molecules, progress=progress)
    eligible = valid & ~overlap.mask(len(src_smiles)) if overlap else valid
    pred, out_cols = model_outputs(
        checkpoint, target_smiles, kind="prediction", plugin_manager=plugin_manager,
        trust=trust_checkpoint, progress=progress,
    )  # fmt: skip
    if out_cols:
        missing = [t for t in tasks if t not in out_cols]
        if len(missing) == len(tasks):
            raise ConfigError(
                f"{checkpoint}: none of the source tasks is an output of the model (it predicts "
                f"{', '.join(out_cols[:8])}…); give the model pretrained on this source"
            )
        tasks = [t for t in tasks if t in out_cols]
        out_idx = [out_cols.index(t) for t in tasks]
    else:
        n_out = pred.dim
        if n_out != len(tasks):
            raise ConfigError(
                f"{checkpoint}: the model has {n_out} outputs but the source has {len(tasks)} "
                f"task columns ({', '.join(tasks[:6])}…); choose them with --task-columns"
            )
        out_idx = list(range(len(tasks)))
    measured = _label_matrix(source.path, source.values, tasks) & eligible[:, None]
    probs = pred.data[pred.valid][:, out_idx]
    if score == "probability":
        strength = probs.sum(0).astype(np.float64)
    elif score == "lift":
        src_pred, _ = model_outputs(
            checkpoint, src_smiles, kind="prediction", plugin_manager=plugin_manager,
            trust=trust_checkpoint, progress=progress, stage="source model",
        )  # fmt: skip
        base = src_pred.data[src_pred.valid & eligible][:, out_idx].mean(0).astype(np.float64)
        strength = probs.mean(0) / np.maximum(base, 1e-6)
    else:
        strength = np.bincount(probs.argmax(1), minlength=len(tasks)).astype(np.float64)
    order = sorted(range(len(tasks)), key=lambda j: (-strength[j], j))
    members = [np.flatnonzero(measured[:, j]) for j in range(len(tasks))]
    measured_any = measured.any(1)
    budget = kept_count(int(eligible.sum()), keep)
    kept, added = fill_by_rank(members, order, budget, seed)
    units = [
        {
            "name": tasks[j],
            "rank": r,
            "size": len(members[j]),
            "hits": float(strength[j]),
            "mean_probability": float(probs[:, j].mean()),
            "kept": int(n_added),
        }
        for r, (j, n_added) in enumerate(zip(order, added, strict=True))
    ]
    group_of = np.full(len(source), -1, dtype=np.int32)
    for r, j in enumerate(order):  # a row's group = its best-ranked measured task
        rows = members[j]
        unset = rows[group_of[rows] < 0]
        group_of[unset] = r
    return SourceSelection(
        method="label-mapping",
        kept=kept,
        num_source=len(source),
        num_valid=int(valid.sum()),
        invalid_rows=np.flatnonzero(~valid).tolist(),
        target_invalid_rows=np.flatnonzero(~pred.valid).tolist(),
        group_of=group_of,
        units=units,
        details={
            "score": score,
            "tasks": len(tasks),
            "top_tasks": [tasks[j] for j in order[:5]],
            "rows_measured_in_any_task": int(measured_any.sum()),
            "budget_limited_by_measured": bool(measured_any.sum() < budget),
            "target_valid": int(pred.valid.sum()),
            "checkpoint": str(checkpoint),
        },
        target_overlap=overlap,
    )


def _target_overlap(
    source_smiles: Sequence[str],
    target_smiles: Sequence[str],
    drop: bool,
    *,
    chunk_size: int = 20_000,
    workers: int = 1,
    progress: Progress | None = None,
) -> TargetOverlap | None:
    """The target molecules in the source when they are to be dropped, else ``None``."""
    if not drop:
        return None
    return find_target_overlap(
        source_smiles, target_smiles, chunk_size=chunk_size, workers=workers, progress=progress
    )


def random_selection(num: int, keep: float, seed: int = 0) -> np.ndarray:
    """A seeded random subset of ``range(num)`` of the same size (the baseline)."""
    _check_keep(keep)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num, size=kept_count(num, keep), replace=False))
