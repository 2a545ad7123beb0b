"""The outputs of ``molpeg prune``: pruned data, per-row scores, report and plots.

Every file goes through :mod:`molpeg_plugins.pipeline.atomic`, so an interrupted run leaves either
the previous file or the complete new one.

Files written into the output folder:

- ``pruned.csv``: the header and the kept *training* rows, byte for byte as in the input.
- ``scores.csv`` (or ``scores.parquet``): one row per input row.
- ``report.json``: parameters, counts, per-epoch history, metrics, wall time, versions.
  Epochs count from 1 (``best_epoch`` and ``epochs[].epoch``), as on screen and in the plots.
- ``plots/``: ``score_histogram.png``, ``kept_fraction.png``, ``metric.png``,
  ``scaffold_kept_fraction.png``.
"""

from __future__ import annotations

import contextlib
import platform
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molpeg_plugins.pipeline.atomic import atomic_path, write_json
from molpeg_plugins.pipeline.backend import Advance, FitResult, null_progress
from molpeg_plugins.pipeline.data import MoleculeTable

PLOTS = ("score_histogram.png", "kept_fraction.png", "metric.png", "scaffold_kept_fraction.png")
TOP_SCAFFOLDS = 12

PRUNED_PROGRESS = "Writing pruned.csv"
"""The progress task of :func:`write_report` that writes ``pruned.csv``."""
SCORES_PROGRESS = "Writing scores"
"""The progress task of :func:`write_report` that writes the per-row scores."""
PLOTS_PROGRESS = "Drawing plots"
"""The progress task of :func:`write_report` that draws the plots."""
SCORES_BLOCK = 100_000
"""Rows of ``scores.csv`` built and written at a time (:func:`write_run_scores`)."""


@dataclass
class RunLayout:
    """Where the molecules of a run went.

    Attributes:
        valid_rows: row numbers of the valid molecules (the backend's molecule ``i`` is
            row ``valid_rows[i]``).
        train, val, test: positions into ``valid_rows`` of each split.
    """

    valid_rows: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(train, val, test)``: the split a :class:`~molpeg_plugins.pipeline.backend.FitJob` is
        built from (:meth:`FitJob.from_table`), so that a run states its split once."""
        return self.train, self.val, self.test

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """Row numbers of molecule ``positions``."""
        return self.valid_rows[np.asarray(positions, dtype=np.int64)]


def kept_rows(layout: RunLayout, result: FitResult) -> np.ndarray:
    """Row numbers of the training molecules in the final keep set, in file order."""
    return np.sort(layout.rows(layout.train[np.asarray(result.final_kept, dtype=np.int64)]))


def score_columns(table: MoleculeTable, layout: RunLayout, result: FitResult) -> dict[str, Any]:
    """The array columns of the per-row scores (all but ``smiles`` and ``invalid_reason``).

    ``row``, ``split`` (``train``/``val``/``test``/``skipped``), ``score`` and ``epochs_kept``
    (empty outside the training split), ``kept`` (training rows in the final keep set),
    ``duplicate`` and ``duplicate_of``, each one entry per input row.
    """
    n = table.num_rows
    split = np.full(n, "", dtype=object)  # references to four strings, not a string a row
    for name, pos in (("train", layout.train), ("val", layout.val), ("test", layout.test)):
        split[layout.rows(pos)] = name
    split[[i for i, r in enumerate(table.invalid_reason) if r]] = "skipped"
    book = result.pruner_state["book"]
    score = np.full(n, np.nan)
    epochs_kept = pd.array(np.zeros(n, dtype=np.int64), dtype="Int64")
    epochs_kept[:] = pd.NA
    train_rows = layout.rows(layout.train)
    score[train_rows] = book["score"].double().numpy()
    epochs_kept[train_rows] = book["epochs_kept"].numpy()
    kept = np.zeros(n, dtype=bool)
    kept[kept_rows(layout, result)] = True
    duplicate_of = pd.array(table.duplicate_of, dtype="Int64")
    duplicate_of[table.duplicate_of < 0] = pd.NA
    return {
        "row": np.arange(n),
        "split": split,
        "score": score,
        "kept": kept,
        "epochs_kept": epochs_kept,
        "duplicate": table.duplicate_of >= 0,
        "duplicate_of": duplicate_of,
    }


def scores_block(table: MoleculeTable, columns: dict[str, Any], rows: slice) -> pd.DataFrame:
    """The per-row scores of the input rows ``rows`` (a slice), from :func:`score_columns`."""
    return pd.DataFrame(
        {
            "row": columns["row"][rows],
            "smiles": table.csv.frame[table.smiles_column].iloc[rows].tolist(),
            "split": columns["split"][rows],
            "score": columns["score"][rows],
            "kept": columns["kept"][rows],
            "epochs_kept": columns["epochs_kept"][rows],
            "invalid_reason": table.invalid_reason[rows],
            "duplicate": columns["duplicate"][rows],
            "duplicate_of": columns["duplicate_of"][rows],
        }
    )


def scores_frame(table: MoleculeTable, layout: RunLayout, result: FitResult) -> pd.DataFrame:
    """One row per input row: score, kept flag, epochs kept, split, skip reason, duplicates.

    ``score`` and ``epochs_kept`` are empty for rows that were not in the training split;
    ``kept`` is true only for training rows in the final keep set.
    """
    return scores_block(table, score_columns(table, layout, result), slice(None))


def cross_split_duplicates(table: MoleculeTable, layout: RunLayout) -> list[dict[str, Any]]:
    """Duplicate molecules whose copies landed in different splits (they leak across splits).

    One entry per flagged duplicate row whose first occurrence (``duplicate_of``) is in
    another split: ``{"row", "split", "duplicate_of", "split_of_original"}``.
    """
    names = ("train", "val", "test")
    split = np.full(table.num_rows, -1, dtype=np.int8)  # -1: in no split (skipped)
    for code, pos in enumerate((layout.train, layout.val, layout.test)):
        split[layout.rows(pos)] = code
    rows = np.flatnonzero(table.duplicate_of >= 0)
    firsts = table.duplicate_of[rows]
    leak = (split[rows] >= 0) & (split[firsts] >= 0) & (split[rows] != split[firsts])
    return [
        {
            "row": row,
            "split": names[split[row]],
            "duplicate_of": first,
            "split_of_original": names[split[first]],
        }
        for row, first in zip(rows[leak].tolist(), firsts[leak].tolist(), strict=True)
    ]


def epoch_history(history: list[dict[str, float]]) -> list[dict[str, Any]]:
    """The per-epoch history as users read it: epochs count from 1, counts are integers."""
    rows = []
    for h in history:
        row: dict[str, Any] = {}
        for key, value in h.items():
            if key == "epoch":
                row[key] = int(value) + 1
            elif key.startswith("num_") and float(value).is_integer():
                row[key] = int(value)
            else:
                row[key] = value
        rows.append(row)
    return rows


def write_pruned_csv(path: Path, table: MoleculeTable, rows: np.ndarray) -> None:
    """Write the header and the records ``rows`` exactly as they are in the input file
    (:meth:`~molpeg_plugins.pipeline.csv_records.CsvRecords.write_subset`)."""
    table.csv.write_subset(path, rows)


def write_scores(path: Path, frame: pd.DataFrame, fmt: str) -> Path:
    """Write ``frame`` as ``scores.csv`` or ``scores.parquet``; return the file written."""
    target = path / f"scores.{fmt}"
    with atomic_path(target) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    return target


def write_run_scores(
    path: Path, table: MoleculeTable, layout: RunLayout, result: FitResult, fmt: str
) -> Path:
    """Write a run's per-row scores (:func:`scores_frame`) into the folder ``path``.

    ``scores.csv`` is written :data:`SCORES_BLOCK` rows at a time, so only one block of the
    table is ever in memory (the same bytes as :func:`write_scores` of the whole frame);
    ``scores.parquet`` is written whole. Returns the file written.
    """
    columns = score_columns(table, layout, result)
    if fmt == "parquet":
        return write_scores(path, scores_block(table, columns, slice(None)), fmt)
    target = path / f"scores.{fmt}"
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        for start in range(0, table.num_rows, SCORES_BLOCK):
            block = scores_block(table, columns, slice(start, start + SCORES_BLOCK))
            block.to_csv(handle, index=False, header=start == 0)
    return target


def scaffold_buckets(
    table: MoleculeTable, layout: RunLayout, kept: np.ndarray, top: int = TOP_SCAFFOLDS
) -> list[dict[str, Any]]:
    """Kept fraction of training molecules per Bemis–Murcko scaffold.

    The ``top`` most frequent scaffolds get a bucket each; acyclic molecules and all other
    scaffolds are pooled into ``"(acyclic)"`` and ``"(other scaffolds)"``.
    """
    train_rows = layout.rows(layout.train)
    is_kept = np.zeros(table.num_rows, dtype=bool)
    is_kept[np.asarray(kept, dtype=np.int64)] = True
    scaffolds = [table.scaffolds[i] for i in train_rows.tolist()]
    counts = Counter(s for s in scaffolds if s)
    named = [s for s, c in counts.most_common(top) if c > 1]
    buckets: dict[str, list[int]] = {s: [0, 0] for s in named}
    buckets["(other scaffolds)"] = [0, 0]
    buckets["(acyclic)"] = [0, 0]
    for s, in_kept in zip(scaffolds, is_kept[train_rows].tolist(), strict=True):
        key = s if s in buckets else ("(acyclic)" if not s else "(other scaffolds)")
        buckets[key][0] += 1
        buckets[key][1] += in_kept
    return [
        {"scaffold": s, "molecules": n, "kept": k, "kept_fraction": k / n}
        for s, (n, k) in buckets.items()
        if n
    ]


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_score_histogram(ax: Any, train: pd.DataFrame, strategy: str = "") -> int:
    """Histogram of the final scores of the training molecules, kept vs dropped.

    MolPeg scores span orders of magnitude, so a wide range gets a log axis; if some molecules
    score exactly 0 (identical online and reference losses) it is a symmetric-log axis, linear
    up to the smallest positive score, so that they stay visible in the first bar.
    Returns the number of molecules drawn (every training molecule with a finite score).
    """
    finite = train[np.isfinite(train["score"])]
    scores = finite["score"].to_numpy(dtype=float)
    positive = scores[scores > 0]
    zeros = int((scores == 0).sum())
    log_scale = len(positive) > 1 and positive.max() > 100 * positive.min()
    symlog = log_scale and bool((scores <= 0).any())
    if log_scale:
        low = float(positive.min())
        bins = np.geomspace(low, positive.max(), 41)
        if symlog:
            bins = np.concatenate([[min(0.0, scores.min())], bins])
            ax.set_xscale("symlog", linthresh=low, linscale=0.5)
        else:
            ax.set_xscale("log")
    else:
        bins = np.histogram_bin_edges(scores, bins=40) if len(scores) else 10
    kept = finite["kept"].to_numpy(dtype=bool)
    ax.hist(scores[kept], bins=bins, alpha=0.7, label=f"kept ({int(kept.sum())})")
    ax.hist(scores[~kept], bins=bins, alpha=0.7, label=f"dropped ({int((~kept).sum())})")
    if symlog:  # 0 and the decades above the linear part; no crowded label next to 0
        left, right = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if t == 0 or (t >= 1.5 * low and left <= t <= right)]
        ax.set_xticks(ticks)
        ax.set_xlim(left, right)
    if zeros:
        ax.plot([], [], " ", label=f"{zeros} scored 0 (first bar)")
    name = f"{strategy} " if strategy else ""
    ax.set(
        xlabel=f"final {name}score"
        + (" (symmetric log scale)" if symlog else " (log scale)" if log_scale else ""),
        ylabel="training molecules",
        title=f"Final {name}scores of the training molecules: kept vs dropped",
    )
    ax.legend()
    return len(scores)


def write_plots(
    folder: Path,
    scores: pd.DataFrame,
    result: FitResult,
    buckets: list[dict[str, Any]],
    num_train: int,
    parameters: dict[str, Any] | None = None,
) -> list[Path]:
    """Draw the four PNG plots into ``folder``; return their paths.

    ``scores`` holds at least the ``split``, ``score`` and ``kept`` columns of the per-row
    scores (:func:`scores_frame`; only its training rows are drawn). ``parameters`` (those
    of ``report.json``) name the strategy, backend and prune ratio in
    the titles.
    """
    from matplotlib.figure import Figure

    params = parameters or {}
    strategy = str(params.get("strategy", ""))
    folder.mkdir(parents=True, exist_ok=True)
    train = scores[scores["split"] == "train"]
    paths = [folder / name for name in PLOTS]

    fig = Figure(figsize=(6, 4))
    plot_score_histogram(fig.subplots(), train, strategy)
    _save(fig, paths[0])

    epochs = [int(h["epoch"]) + 1 for h in result.history]  # shown 1-based, like the logs
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(epochs, [h["num_kept"] / max(num_train, 1) for h in result.history], marker="o")
    ax.set(xlabel="epoch", ylabel="fraction of training set visited", ylim=(0, 1.05))
    ratio = params.get("prune_ratio")
    detail = ", ".join(
        p for p in (strategy, None if ratio is None else f"prune ratio {ratio}") if p
    )
    ax.set_title("Training molecules visited per epoch" + (f" ({detail})" if detail else ""))
    ax.xaxis.get_major_locator().set_params(integer=True)
    _save(fig, paths[1])

    key = f"val_{result.metric_name}"
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    validated = any(key in h for h in result.history)
    if validated:
        ax.plot(epochs, [h.get(key, np.nan) for h in result.history], marker="o")
        ax.set(ylabel=f"validation {result.metric_name}")
    else:
        ax.plot(epochs, [h.get("train_loss", np.nan) for h in result.history], marker="o")
        ax.set(ylabel="training loss (no validation split)")
    if result.best_epoch >= 0:
        label = "best-validation epoch (saved model)" if validated else "last epoch (saved model)"
        ax.axvline(result.best_epoch + 1, color="grey", linestyle="--", label=label)
        ax.legend()
    backend = params.get("backend")
    what = f"Validation {result.metric_name}" if validated else "Training loss"
    ax.set(xlabel="epoch", title=f"{what} per epoch" + (f" ({backend})" if backend else ""))
    ax.xaxis.get_major_locator().set_params(integer=True)
    _save(fig, paths[2])

    fig = Figure(figsize=(7, 0.4 * len(buckets) + 1.5))
    ax = fig.subplots()
    labels = [
        (b["scaffold"][:38] + "…" if len(b["scaffold"]) > 39 else b["scaffold"])
        + f"  (n={b['molecules']})"
        for b in buckets
    ]
    ax.barh(range(len(buckets)), [b["kept_fraction"] for b in buckets])
    ax.set_yticks(range(len(buckets)), labels, fontsize=7)
    ax.invert_yaxis()
    overall = float(train["kept"].mean()) if len(train) else 0.0
    ax.axvline(overall, color="grey", linestyle="--", label=f"overall {overall:.2f}")
    ax.set(
        xlabel="fraction of the scaffold's training molecules in pruned.csv",
        xlim=(0, 1),
        title="Kept fraction per Bemis–Murcko scaffold (training split)",
    )
    ax.legend(loc="lower right")
    _save(fig, paths[3])
    return paths


def _relative(path: Path | None, folder: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


def versions(extra: dict[str, str]) -> dict[str, str]:
    """molpeg, Python and library versions, plus the backend's ``extra`` ones."""
    import importlib.metadata

    from molpeg_plugins import __version__

    found = {"molpeg": __version__, "python": platform.python_version()}
    for dist in ("torch", "rdkit", "pandas", "numpy"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {**found, **extra}


def write_report(
    out_dir: Path,
    table: MoleculeTable,
    layout: RunLayout,
    result: FitResult,
    *,
    parameters: dict[str, Any],
    wall_time_s: float,
    fmt: str = "csv",
    progress: Callable[..., contextlib.AbstractContextManager[Advance]] = null_progress,
) -> dict[str, Any]:
    """Write every output of a run into ``out_dir``; return the report as a dict.

    ``progress`` (as :attr:`FitJob.progress <molpeg_plugins.pipeline.backend.FitJob>`) gets
    one task per output: :data:`PRUNED_PROGRESS`, :data:`SCORES_PROGRESS` and
    :data:`PLOTS_PROGRESS`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = kept_rows(layout, result)
    with progress(PRUNED_PROGRESS, total=None):
        write_pruned_csv(out_dir / "pruned.csv", table, kept)
    with progress(SCORES_PROGRESS, total=None):
        scores_path = write_run_scores(out_dir, table, layout, result, fmt)
    with progress(PLOTS_PROGRESS, total=None):
        columns = score_columns(table, layout, result)
        train_rows = layout.rows(layout.train)
        train = pd.DataFrame(
            {
                "split": "train",
                "score": columns["score"][train_rows],
                "kept": columns["kept"][train_rows],
            }
        )
        buckets = scaffold_buckets(table, layout, kept)
        plots = write_plots(
            out_dir / "plots", train, result, buckets, len(layout.train), parameters
        )
    invalid = int(sum(bool(r) for r in table.invalid_reason))
    leaks = cross_split_duplicates(table, layout)
    report = {
        "parameters": parameters,
        "counts": {
            "input_rows": table.num_rows,
            "invalid": invalid,
            "valid": table.num_rows - invalid,
            "duplicates": int((table.duplicate_of >= 0).sum()),
            "cross_split_duplicates": len(leaks),
            "train": len(layout.train),
            "validation": len(layout.val),
            "test": len(layout.test),
            "kept": len(kept),
            "dropped": len(layout.train) - len(kept),
        },
        "skipped_rows": [
            {"row": i, "line": table.csv.lines[i], "reason": r}
            for i, r in enumerate(table.invalid_reason)
            if r
        ],
        "cross_split_duplicates": leaks,
        "metric": result.metric_name,
        "best_epoch": result.best_epoch + 1 if result.best_epoch >= 0 else None,
        "validation_metrics": result.val_metrics,
        "test_metrics": result.test_metrics,
        "epochs": epoch_history(result.history),
        "scaffolds": buckets,
        "wall_time_s": round(wall_time_s, 3),
        "versions": versions(result.versions),
        "files": {
            "pruned": "pruned.csv",
            "scores": scores_path.name,
            "model": _relative(result.model_path, out_dir),
            "plots": [f"plots/{p.name}" for p in plots],
        },
    }
    write_json(out_dir / "report.json", report)
    return report
