"""molpeg CLI: ``prune-source`` (registered on import).

Prunes a pretraining (source) set for one downstream (target) set; see
:mod:`molpeg_plugins.source.pruning`. Outputs in ``OUT_DIR``, all written atomically:

* ``pruned.csv``: the header and the kept source rows, byte for byte, in their original order
  (the same name as the output of ``molpeg prune``);
* ``scores.csv``: one row per source data row: ``row`` (0-based data row), ``group``,
  ``group_rank``, ``kept``;
* ``groups.csv``: one row per group (feature mapping) or task (label mapping), in rank order;
* ``skipped.csv``: source and target rows whose SMILES RDKit cannot parse;
* ``overlap.csv``: the source rows whose molecule is also a target molecule (same canonical
  isomeric SMILES), which are never kept unless ``--keep-target-molecules`` is given:
  ``row``, ``target_row``, ``molecule``;
* ``report.json`` and ``groups.png``.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape

from molpeg_plugins.cli.app import app
from molpeg_plugins.cli.display import Display
from molpeg_plugins.cli.errors import exit_on_error
from molpeg_plugins.errors import ConfigError

PRUNED_FILE = "pruned.csv"
OUTPUTS = (
    PRUNED_FILE, "scores.csv", "groups.csv", "skipped.csv", "overlap.csv", "report.json",
    "groups.png",
)  # fmt: skip


def _csv_bytes(header: list[str], rows: Any) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_outputs(
    out: Path,
    selection: Any,
    source: Any,
    source_smiles: list[str],
    target_smiles: list[str],
    report: dict[str, Any],
) -> None:
    """Write pruned.csv, scores.csv, groups.csv, skipped.csv, report.json and groups.png."""
    from molpeg_plugins.pipeline.atomic import write_bytes, write_json

    out.mkdir(parents=True, exist_ok=True)
    source.write_subset(out / PRUNED_FILE, selection.kept)
    kept_mask = np.zeros(selection.num_source, dtype=bool)
    kept_mask[selection.kept] = True
    # feature mapping: group_of holds group ids; label mapping: it already holds task ranks
    rank_of = {u.get("group", u["rank"]): u["rank"] for u in selection.units}
    group = selection.group_of
    lut = np.full(max(int(group.max()), *rank_of, 0) + 1, -1, dtype=np.int64)
    for g, r in rank_of.items():
        lut[g] = r
    ranks = np.where(group >= 0, lut[np.maximum(group, 0)], -1)
    lines = ["row,group,group_rank,kept\n"]
    lines.extend(
        f"{i},{g},{r},{int(k)}\n"
        for i, (g, r, k) in enumerate(
            zip(group.tolist(), ranks.tolist(), kept_mask.tolist(), strict=True)
        )
    )
    write_bytes(out / "scores.csv", "".join(lines).encode())
    keys = list(selection.units[0].keys()) if selection.units else ["name"]
    write_bytes(
        out / "groups.csv", _csv_bytes(keys, ([u[k] for k in keys] for u in selection.units))
    )
    from molpeg_plugins.pipeline.data import smiles_text_problem

    def why(smiles: str) -> str:
        return smiles_text_problem(smiles.strip()) or "RDKit cannot parse the SMILES"

    skipped = [
        ("source", i, source_smiles[i], why(source_smiles[i])) for i in selection.invalid_rows
    ]
    skipped += [
        ("target", i, target_smiles[i], why(target_smiles[i]))
        for i in selection.target_invalid_rows
    ]
    write_bytes(out / "skipped.csv", _csv_bytes(["file", "row", "smiles", "reason"], skipped))
    overlap = selection.target_overlap
    found = (
        zip(overlap.source_rows.tolist(), overlap.target_rows.tolist(), overlap.molecules,
            strict=True)
        if overlap is not None else ()
    )  # fmt: skip
    write_bytes(out / "overlap.csv", _csv_bytes(["row", "target_row", "molecule"], found))
    _plot(out / "groups.png", selection)
    write_json(out / "report.json", report)


def groups_figure(selection: Any) -> Any:
    """Bar chart of the source molecules and kept molecules per group (or task), in rank
    order, with the target molecules each received; integer axes for counts and ranks."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    units = selection.units[:60]
    fig = Figure(figsize=(9, 3.8))
    ax = fig.subplots()
    x = np.arange(len(units))
    sizes = np.array([u["size"] for u in units], dtype=float)
    kept = np.array([u["kept"] for u in units], dtype=float)
    hits = np.array([u["hits"] for u in units], dtype=float)
    by = "group" if selection.method == "feature-mapping" else "task"
    ax.bar(x, sizes, color="#cccccc", label="source molecules")
    ax.bar(x, kept, color="#3b7dd8", label="kept")
    ax.set_xlabel(f"{by} rank")
    ax.set_ylabel("source molecules")
    ax2 = ax.twinx()
    ax2.plot(x, hits, "o-", color="#d8703b", ms=3, label="target hits")
    ax2.set_ylabel("target molecules mapped" if by == "group" else "target score")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # ranks and counts are integers
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if by == "group":
        ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(
        f"{selection.method}: {len(selection.kept):,} of {selection.num_valid:,} valid source "
        f"molecules kept, by {by}"
    )
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def _plot(path: Path, selection: Any) -> None:
    from molpeg_plugins.pipeline.atomic import atomic_path

    with atomic_path(path) as tmp:
        groups_figure(selection).savefig(tmp, format="png", dpi=110)


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@app.command("prune-source")
def prune_source(
    source: Path = typer.Argument(..., help="Source (pretraining) CSV or CSV.GZ."),
    target: Path = typer.Option(..., "--target", help="Downstream CSV the source is pruned for."),
    method: str = typer.Option(
        "feature-mapping", "--method", help="feature-mapping (label-free) or label-mapping."
    ),
    keep: float = typer.Option(0.4, "--keep", help="Fraction of the source kept, in (0, 1]."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    smiles_column: str | None = typer.Option(None, "--smiles-column", help="Source SMILES column."),
    target_smiles_column: str | None = typer.Option(
        None, "--target-smiles-column", help="Target SMILES column."
    ),
    groups: int = typer.Option(100, "--groups", help="k-means groups (feature mapping)."),
    features: str = typer.Option(
        "morgan",
        "--features",
        help="Group on: morgan (fingerprints), scaffold (Bemis–Murcko scaffold fingerprints) "
        "or embedding (needs --checkpoint).",
    ),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="Chemprop model: its embeddings for feature mapping, or the model pretrained on the "
        "source tasks for label mapping.",
    ),
    task_columns: str | None = typer.Option(
        None, "--task-columns", help="Comma-separated source task columns (label mapping)."
    ),
    score: str = typer.Option(
        "probability",
        "--score",
        help="Label mapping: probability (sum), argmax (hits) or lift (target mean over "
        "source mean; also runs the model over the source).",
    ),
    n_bits: int = typer.Option(1024, "--bits", help="Morgan fingerprint length."),
    workers: int = typer.Option(1, "--workers", help="Processes for the fingerprints."),
    trust_checkpoint: bool = typer.Option(
        False, "--trust-checkpoint", help="Load the checkpoint without the allow-list."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of k-means and boundary sampling."),
    keep_target_molecules: bool = typer.Option(
        False,
        "--keep-target-molecules",
        help="Let source molecules that are also target molecules be kept (by default they "
        "are dropped and listed in overlap.csv).",
    ),
) -> None:
    """Prune a pretraining set down to the part a downstream set maps to."""
    from molpeg_plugins.plugins import make_plugin_manager
    from molpeg_plugins.source import pruning as src_mod

    display = Display()
    started = time.perf_counter()
    with exit_on_error("Interrupted; rerun the same command to prune the source again."):
        if method not in ("feature-mapping", "label-mapping"):
            raise ConfigError(f"unknown --method {method!r}: feature-mapping or label-mapping")
        if method == "label-mapping" and checkpoint is None:
            raise ConfigError(
                "label-mapping needs --checkpoint: a Chemprop model pretrained on the source tasks"
            )
        src_mod._check_keep(keep)
        extra: list[str] | None = [] if method == "feature-mapping" else None
        records, smiles_col = src_mod.read_records(source, smiles_column, extra)
        tgt, tgt_col = src_mod.read_records(
            target, target_smiles_column, [], option="target-smiles-column"
        )
        source_smiles = records.values[smiles_col]
        target_smiles = tgt.values[tgt_col]
        display.log(
            f"source {source.name}: {len(records):,} rows · target {target.name}: "
            f"{len(tgt):,} rows · {method}, keep {keep:g}"
        )
        with display:
            cb = display.stages()
            pm = make_plugin_manager()
            if method == "feature-mapping":
                selection = src_mod.feature_mapping(
                    source_smiles,
                    target_smiles,
                    keep,
                    groups=groups,
                    features="embedding" if checkpoint else features,  # type: ignore[arg-type]
                    checkpoint=checkpoint,
                    trust_checkpoint=trust_checkpoint,
                    n_bits=n_bits,
                    workers=workers,
                    seed=seed,
                    drop_target_molecules=not keep_target_molecules,
                    progress=cb,
                    plugin_manager=pm,
                )
            else:
                tasks = [t.strip() for t in task_columns.split(",")] if task_columns else None
                selection = src_mod.label_mapping(
                    records,
                    smiles_col,
                    target_smiles,
                    keep,
                    checkpoint=checkpoint,  # type: ignore[arg-type]
                    tasks=tasks,
                    score=score,  # type: ignore[arg-type]
                    trust_checkpoint=trust_checkpoint,
                    seed=seed,
                    drop_target_molecules=not keep_target_molecules,
                    progress=cb,
                    plugin_manager=pm,
                )
        elapsed = time.perf_counter() - started
        report = {
            "command": "prune-source",
            "method": method,
            "source": str(source),
            "target": str(target),
            "smiles_column": smiles_col,
            "target_smiles_column": tgt_col,
            "keep": keep,
            "seed": seed,
            "num_source": selection.num_source,
            "num_source_valid": selection.num_valid,
            "num_kept": len(selection.kept),
            "kept_fraction_of_valid": len(selection.kept) / max(selection.num_valid, 1),
            "num_source_invalid": len(selection.invalid_rows),
            "target_molecules_dropped": not keep_target_molecules,
            "num_source_target_molecules": (
                len(selection.target_overlap) if selection.target_overlap is not None else None
            ),
            "num_source_eligible": selection.num_eligible,
            "num_target": len(target_smiles),
            "num_target_invalid": len(selection.target_invalid_rows),
            "details": selection.details,
            "units": selection.units,
            "wall_seconds": round(elapsed, 2),
            "peak_rss_mib": round(_peak_rss_mib(), 1),
        }
        write_outputs(output, selection, records, source_smiles, target_smiles, report)
    Console().print(source_summary(report, output))


def source_summary(report: dict[str, Any], output: Path) -> Any:
    """The Rich table printed at the end of ``prune-source`` (the style of ``molpeg prune``)."""
    from rich.table import Table

    table = Table(title="molpeg prune-source: summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "source",
        f"{escape(report['source'])}: {report['num_source']:,} rows, "
        f"{report['num_source_invalid']:,} skipped (invalid SMILES), "
        f"{report['num_source_valid']:,} valid",
    )
    table.add_row(
        "target",
        f"{escape(report['target'])}: {report['num_target']:,} rows, "
        f"{report['num_target_invalid']:,} skipped (invalid SMILES)",
    )
    table.add_row("method", f"{report['method']}, keep {report['keep']:g}, seed {report['seed']}")
    overlap = report["num_source_target_molecules"]
    table.add_row(
        "target molecules",
        f"{overlap:,} source rows are target molecules: dropped (listed in overlap.csv)"
        if overlap is not None
        else "not looked for (--keep-target-molecules)",
    )
    eligible = report["num_source_eligible"]
    share = report["num_kept"] / max(eligible, 1)
    pool = "valid source molecules" if not overlap else "valid source molecules not in the target"
    table.add_row(
        "kept", f"{report['num_kept']:,} of {eligible:,} {pool} ({share:.0%}) in {PRUNED_FILE}"
    )
    top = ", ".join(str(u["name"]) for u in report["units"][:5])
    table.add_row("top groups" if report["method"] == "feature-mapping" else "top tasks", top)
    table.add_row(
        "wall time", f"{report['wall_seconds']:.1f} s, peak RSS {report['peak_rss_mib']:,.0f} MiB"
    )
    table.add_row("outputs", f"{escape(str(output))}/: {', '.join(OUTPUTS)}")
    return table
