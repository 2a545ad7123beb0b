"""CSV → validated molecules: column and label checks, RDKit parsing, scaffolds, splits.

The file is read by :mod:`molpeg_plugins.pipeline.csv_records`, which keeps the *original text* of
every data record, so that ``pruned.csv`` can repeat the kept rows byte for byte; pandas
parses the values (:attr:`~molpeg_plugins.pipeline.csv_records.CsvRecords.frame`).

Rows are numbered from 0 in file order, header excluded (``row 0`` is the first molecule);
messages also give the 1-based line of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from molpeg_plugins.engine.strategies.base import TaskType
from molpeg_plugins.errors import ConfigError
from molpeg_plugins.errors import DataError as DataError

# CsvRecords, read_records, read_text, check_column, MISSING_TOKENS, the quoting checks and
# DataError were defined here before the one CSV module; they stay importable from here.
from molpeg_plugins.pipeline.csv_records import MISSING_TOKENS as MISSING_TOKENS
from molpeg_plugins.pipeline.csv_records import CsvRecords as CsvRecords
from molpeg_plugins.pipeline.csv_records import check_column as check_column
from molpeg_plugins.pipeline.csv_records import csv_error_message as csv_error_message
from molpeg_plugins.pipeline.csv_records import ends_in_open_quote as ends_in_open_quote
from molpeg_plugins.pipeline.csv_records import is_missing
from molpeg_plugins.pipeline.csv_records import quote_merge_problem as quote_merge_problem
from molpeg_plugins.pipeline.csv_records import read_records as read_records
from molpeg_plugins.pipeline.csv_records import read_text as read_text

BUNDLED_DATASET = Path(__file__).parents[1] / "data" / "bbbp.csv"
"""The dataset ``molpeg prune`` uses when no file is given: BBBP (2,050 molecules)."""


@dataclass
class MoleculeTable:
    """The molecules of one CSV file, validated.

    Attributes:
        path: the file read.
        csv: the original records and the parsed frame.
        smiles_column: column holding the SMILES.
        target_columns: columns holding the labels.
        task: ``"classification"`` or ``"regression"``.
        targets: ``(n_rows, n_tasks)`` labels of every row; ``nan`` = missing.
        invalid_reason: per row, why it was skipped (``""`` = valid).
        canonical: canonical SMILES of valid rows (``""`` for invalid ones).
        scaffolds: Bemis–Murcko scaffold SMILES of valid rows (``""`` = acyclic or invalid).
        duplicate_of: per row, the first earlier row with the same canonical SMILES (``-1`` = none).
        notes: warnings about the file that do not stop the run (shown before training).
    """

    path: Path
    csv: CsvRecords
    smiles_column: str
    target_columns: list[str]
    task: TaskType
    targets: np.ndarray
    invalid_reason: list[str]
    canonical: list[str]
    scaffolds: list[str]
    duplicate_of: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        """Number of data rows in the file."""
        return len(self.invalid_reason)

    @property
    def valid_rows(self) -> np.ndarray:
        """Row numbers of the molecules that can be trained on, in file order."""
        valid = np.fromiter((not r for r in self.invalid_reason), dtype=bool, count=self.num_rows)
        return np.flatnonzero(valid).astype(np.int64)

    @property
    def smiles(self) -> list[str]:
        """The SMILES text of every row, as written in the file."""
        return self.csv.frame[self.smiles_column].tolist()

    def skip_report(self) -> list[str]:
        """One line per skipped row: ``row 59 (line 61): unparsable SMILES '…'``."""
        return [
            f"row {i} (line {self.csv.lines[i]}): {reason}"
            for i, reason in enumerate(self.invalid_reason)
            if reason
        ]


# --------------------------------------------------------------------------- columns & labels


def _looks_like_row_id(values: np.ndarray) -> bool:
    """Integers that are (nearly) all different: a compound number, not a label."""
    finite = values[np.isfinite(values)]
    return (
        finite.size > 2
        and bool(np.all(finite == np.round(finite)))
        and np.unique(finite).size > 0.9 * finite.size
    )


def infer_target_columns(path: Path, frame: pd.DataFrame, smiles_column: str) -> list[str]:
    """The one numeric label column of ``frame`` (an all-unique integer id column is ignored).

    Raises:
        ConfigError: none or several candidates; the message lists them.
    """
    candidates = []
    for col in frame.columns:
        if col == smiles_column:
            continue
        text = frame[col][~frame[col].map(is_missing)]
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        if text.empty or np.isnan(values).mean() > 0.5:
            continue
        if _looks_like_row_id(values):
            continue
        candidates.append(col)
    if len(candidates) == 1:
        return candidates
    listed = ", ".join(candidates) if candidates else "(no numeric column found)"
    raise ConfigError(
        f"{path}: cannot tell which column holds the labels; pass --target-columns "
        f"(numeric columns: {listed})"
    )


def parse_labels(
    path: Path, csv_records: CsvRecords, columns: list[str], task: str | None
) -> tuple[np.ndarray, list[str], str]:
    """Parse the label columns into floats.

    Returns:
        ``(targets, reasons, task)``: the ``(n_rows, n_tasks)`` labels (``nan`` = missing),
        per row a skip reason for a non-numeric or infinite label (``""`` if fine), and the
        task (inferred when ``task`` is ``None``: classification if all labels are 0/1).

    Raises:
        DataError: a column without any label, a column that is mostly not numbers, or
            non-binary labels for classification.
    """
    frame = csv_records.frame
    n = len(frame)
    targets = np.full((n, len(columns)), np.nan)
    reasons = [""] * n
    for j, col in enumerate(columns):
        text = frame[col].astype(str)
        missing = text.map(is_missing).to_numpy()
        values = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(float).copy()
        bad = ~missing & np.isnan(values)
        if missing.all():
            raise DataError(
                f"{path}: target column {col!r} has no labels (all {n} rows empty); "
                "choose another --target-columns"
            )
        if bad.sum() > 0.5 * (~missing).sum():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: target column {col!r} is not numeric (row {first}, line "
                f"{csv_records.lines[first]}: {text.iloc[first]!r}); choose a numeric label "
                "column with --target-columns"
            )
        for i in np.flatnonzero(bad):
            reasons[i] = reasons[i] or f"non-numeric label {text.iloc[i]!r} in column {col!r}"
        for i in np.flatnonzero(np.isinf(values)):
            reasons[i] = reasons[i] or f"infinite label {text.iloc[i]!r} in column {col!r}"
        values[np.isinf(values)] = np.nan
        targets[:, j] = values
    labelled = targets[np.isfinite(targets)]
    binary = bool(labelled.size) and bool(np.isin(labelled, (0.0, 1.0)).all())
    if task is None:
        task = "classification" if binary else "regression"
    if task == "classification" and not binary:
        i, j = np.argwhere(np.isfinite(targets) & ~np.isin(targets, (0.0, 1.0)))[0]
        raise DataError(
            f"{path}: column {columns[j]!r} has a label other than 0/1 (row {i}, line "
            f"{csv_records.lines[i]}: {frame[columns[j]].iloc[i]!r}); classification needs "
            "0/1 labels, use --task regression for continuous values"
        )
    return targets, reasons, task


def header_notes(path: Path, records: CsvRecords, used: Sequence[str]) -> list[str]:
    """Warnings about repeated header names; an error when a repeated name is one in use.

    pandas renames the second ``y`` of a header to ``y.1``, so ``--target-columns y`` would
    silently mean the first of two columns.

    Raises:
        DataError: the SMILES column or a label column has a name that the header repeats.
    """
    names = records.columns
    repeated = sorted({c for c in names if names.count(c) > 1})
    ambiguous = [c for c in repeated if c in used]
    if ambiguous:
        where = ", ".join(str(i + 1) for i, c in enumerate(names) if c == ambiguous[0])
        raise DataError(
            f"{path}: the header names column {ambiguous[0]!r} more than once (columns "
            f"{where}); rename the copies so that each column has its own name"
        )
    return [
        f"the header repeats column name {c!r}; the copies are read as "
        f"{', '.join(repr(f'{c}.{k}') for k in range(1, names.count(c)))}"
        for c in repeated
    ]


def label_notes(
    path: Path, targets: np.ndarray, columns: Sequence[str], task: str, inferred: bool
) -> list[str]:
    """Warnings about labels that make a run quietly mean something else.

    * ``task`` was inferred as regression from whole-number labels with few distinct values
      (``-1``/``2``): probably classes, not measurements.
    * a classification column whose labels are all one class: its ROC-AUC is undefined.

    Raises:
        DataError: every classification column has a single class (nothing can be ranked,
            the best epoch could not be chosen).
    """
    notes: list[str] = []
    if task == "regression" and inferred:
        for j, col in enumerate(columns):
            values = np.unique(targets[np.isfinite(targets[:, j]), j])
            if 2 <= values.size <= 10 and bool(np.all(values == np.round(values))):
                shown = ", ".join(f"{v:g}" for v in values)
                notes.append(
                    f"column {col!r}: labels are not 0/1 ({shown}), treating as regression; "
                    "pass --task regression to confirm, or --task classification with 0/1 labels"
                )
    if task == "classification":
        single = []
        for j, col in enumerate(columns):
            values = np.unique(targets[np.isfinite(targets[:, j]), j])
            if values.size == 1:
                single.append((col, values[0]))
        if single and len(single) == len(columns):
            col, value = single[0]
            raise DataError(
                f"{path}: every label in column {col!r} is {value:g}; classification needs "
                "both classes (0 and 1) to train and to compute ROC-AUC; choose another "
                "--target-columns"
            )
        notes += [
            f"column {col!r}: every label is {value:g}; its ROC-AUC cannot be computed and "
            "it does not count in the validation metric"
            for col, value in single
        ]
    return notes


# --------------------------------------------------------------------------- molecules


def smiles_text_problem(smiles: str) -> str:
    """Why ``smiles`` (already stripped of surrounding whitespace) would be misread, or ``""``.

    RDKit stops reading at the first space or tab (``CC O`` is read as ethane, ``O`` taken as
    the molecule's name) and ignores characters it does not know (full-width ``ＣＣO`` is read
    as water), so a SMILES with inner whitespace or a non-ASCII character is refused instead of
    being trained on as another molecule. Used by every molpeg entry point that reads SMILES.
    """
    for pos, char in enumerate(smiles):
        if char.isspace():
            return (
                f"SMILES {smiles!r} contains whitespace ({char!r} at position {pos}); "
                "RDKit would read only the part before it"
            )
        if not char.isascii():
            return (
                f"SMILES {smiles!r} contains the non-ASCII character {char!r} "
                f"(U+{ord(char):04X} at position {pos}); write SMILES in plain ASCII"
            )
    return ""


def parse_smiles(smiles: str) -> tuple[object | None, str]:
    """RDKit molecule of ``smiles`` and ``""``, or ``None`` and the reason it is invalid."""
    from rdkit import Chem

    text = smiles.strip()
    if not text:
        return None, "empty SMILES"
    problem = smiles_text_problem(text)
    if problem:
        return None, problem
    mol = Chem.MolFromSmiles(text, sanitize=False)
    if mol is None:
        return None, f"unparsable SMILES '{text}'"
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises several sanitisation exception types
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"invalid SMILES '{text}' ({detail})"
    if mol.GetNumAtoms() == 0:
        return None, f"SMILES '{text}' has no atoms"
    return mol, ""


def scaffold_smiles(mol: object) -> str:
    """Bemis–Murcko scaffold of ``mol`` as SMILES (``""`` for acyclic molecules)."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    try:
        return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)
    except Exception:  # a few exotic valences fail; treat as its own scaffold
        return ""


def load_molecules(
    path: str | Path,
    *,
    smiles_column: str = "smiles",
    target_columns: Sequence[str] | None = None,
    task: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    records: CsvRecords | None = None,
) -> MoleculeTable:
    """Read and validate a molecule CSV.

    Args:
        path: CSV file (optionally gzip-compressed; any line ending).
        smiles_column: column with the SMILES.
        target_columns: label columns; ``None`` infers the single numeric label column.
        task: ``"classification"``, ``"regression"`` or ``None`` (inferred from the labels).
        on_progress: called with the number of molecules parsed since the last call.
        records: the file as :func:`read_records` already read it (else it is read here).

    Raises:
        ConfigError: a column that does not exist (the closest name is suggested).
        DataError: the file or its labels cannot be used (see :func:`read_records`,
            :func:`parse_labels`), or no valid molecule is left.
    """
    from rdkit import Chem, rdBase

    path = Path(path)
    records = read_records(path) if records is None else records
    columns = list(records.frame.columns)
    repeated = sorted({c for c in target_columns or () if list(target_columns).count(c) > 1})
    if repeated:
        raise ConfigError(
            f"--target-columns names {', '.join(map(repr, repeated))} more than once; "
            "list each label column once"
        )
    smiles_column = check_column(path, smiles_column, columns, "--smiles-column")
    if target_columns:
        targets_cols = [check_column(path, c, columns, "--target-columns") for c in target_columns]
    else:
        targets_cols = infer_target_columns(path, records.frame, smiles_column)
    if smiles_column in targets_cols:
        raise ConfigError(f"{smiles_column!r} is the SMILES column; it cannot be a target")
    notes = header_notes(path, records, [smiles_column, *targets_cols])
    inferred = task is None
    targets, reasons, task = parse_labels(path, records, targets_cols, task)
    notes += label_notes(path, targets, targets_cols, task, inferred)
    for i, problem in enumerate(records.problems):
        reasons[i] = problem or reasons[i]

    quiet_rdkit = rdBase.BlockLogs()  # reasons are collected per row instead
    n = len(records.frame)
    canonical, scaffolds = [""] * n, [""] * n
    try:
        for i, smi in enumerate(records.frame[smiles_column].tolist()):
            if records.problems[i]:
                continue
            mol, why = parse_smiles(smi)
            if mol is None:
                reasons[i] = why
            else:
                canonical[i] = Chem.MolToSmiles(mol)
                scaffolds[i] = scaffold_smiles(mol)
            if on_progress is not None and (i + 1) % 64 == 0:
                on_progress(64)
        if on_progress is not None and n % 64:
            on_progress(n % 64)
    finally:
        del quiet_rdkit

    duplicate_of = np.full(n, -1, dtype=np.int64)
    first_seen: dict[str, int] = {}
    for i in range(n):
        if reasons[i]:
            continue
        if canonical[i] in first_seen:
            duplicate_of[i] = first_seen[canonical[i]]
        else:
            first_seen[canonical[i]] = i
    if not first_seen:
        raise DataError(
            f"{path}: none of the {n} rows is a valid molecule (row 0: {reasons[0]}); "
            f"check that {smiles_column!r} holds SMILES"
        )
    return MoleculeTable(
        path=path,
        csv=records,
        smiles_column=smiles_column,
        target_columns=targets_cols,
        task=task,
        targets=targets,
        invalid_reason=reasons,
        canonical=canonical,
        scaffolds=scaffolds,
        duplicate_of=duplicate_of,
        notes=notes,
    )


# --------------------------------------------------------------------------- splits


def parse_split_sizes(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` → ``(0.8, 0.1, 0.1)``; three non-negative numbers summing to 1.

    Raises:
        ConfigError: wrong count, not numbers, negative, a zero train share, or a sum ≠ 1.
    """
    try:
        sizes = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--split-sizes {text!r}: give three numbers like 0.8,0.1,0.1") from None
    if len(sizes) != 3 or any(not np.isfinite(s) or s < 0 for s in sizes):
        raise ConfigError(
            f"--split-sizes {text!r}: give three non-negative numbers like 0.8,0.1,0.1"
        )
    if sizes[0] <= 0 or abs(sum(sizes) - 1.0) > 1e-6:
        raise ConfigError(
            f"--split-sizes {text!r}: train/validation/test fractions must sum to 1 with a "
            "train fraction > 0, e.g. 0.8,0.1,0.1"
        )
    return sizes  # type: ignore[return-value]


def _counts(n: int, sizes: tuple[float, float, float]) -> tuple[int, int, int]:
    n_val = int(np.floor(sizes[1] * n + 0.5))
    n_test = int(np.floor(sizes[2] * n + 0.5))
    return n - n_val - n_test, n_val, n_test


def split_positions(
    scaffolds: Sequence[str],
    method: str,
    sizes: tuple[float, float, float],
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``len(scaffolds)`` molecules into train/validation/test positions.

    ``random``: a seeded permutation. ``scaffold``: whole Bemis–Murcko scaffold groups go to
    one split (largest groups to train first, equal sizes in seeded random order), so that
    validation and test chemistry is unseen in training. Each array is sorted.

    Raises:
        DataError: the training split would be empty.
    """
    n = len(scaffolds)
    n_train, n_val, _ = _counts(n, sizes)
    if n_train < 1:
        raise DataError(f"only {n} valid molecules: too few for --split-sizes {sizes}")
    rng = np.random.default_rng(seed)
    if method == "random":
        perm = rng.permutation(n)
        parts = perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]
    elif method == "scaffold":
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(scaffolds):
            groups.setdefault(s or f"acyclic:{i}", []).append(i)
        order = list(groups.values())
        tiebreak = rng.permutation(len(order))
        ranked = sorted(range(len(order)), key=lambda k: (-len(order[k]), tiebreak[k]))
        order = [order[k] for k in ranked]
        train: list[int] = []
        val: list[int] = []
        test: list[int] = []
        for group in order:
            if len(train) + len(group) <= n_train or not train:
                train.extend(group)
            elif len(val) + len(group) <= n_val:
                val.extend(group)
            else:
                test.extend(group)
        parts = np.array(train), np.array(val), np.array(test)
    else:
        raise ConfigError(f"--split {method!r}: choose 'random' or 'scaffold'")
    return tuple(np.sort(np.asarray(p, dtype=np.int64)) for p in parts)  # type: ignore[return-value]
