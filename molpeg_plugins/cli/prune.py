"""``molpeg prune``: train a model with data pruning and write the pruned dataset.

A thin shim over the application layer: the command turns its flags into
:class:`~molpeg_plugins.pipeline.run.PruneOptions` and calls
:func:`~molpeg_plugins.pipeline.run.run_prune` with the progress display
(:mod:`molpeg_plugins.cli.display`) as observer; errors go through
:func:`~molpeg_plugins.cli.errors.exit_on_error`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from molpeg_plugins.cli.app import app
from molpeg_plugins.cli.display import Display, EpochProgress
from molpeg_plugins.cli.errors import exit_on_error
from molpeg_plugins.pipeline.run import PruneOptions, run_prune

EPILOG = """\
[bold]Examples[/bold]
  molpeg prune --output out/          (bundled BBBP data, default settings)
  molpeg prune data.csv --target-columns p_np --epochs 30 --output out/
  molpeg prune tox21.csv.gz --target-columns NR-AR,NR-AhR -o out/
  molpeg prune esol.csv --target-columns logS --split scaffold -o out/
  molpeg prune data.csv --target-columns y --backend torch --resume -o out/

[bold]Outputs[/bold] in OUTPUT: pruned.csv (the kept training rows, exactly as in the input), \
scores.csv (one row per input row), report.json, plots/*.png and the trained model.

[bold]Default backend[/bold]: chemprop if installed, else torch (see molpeg backends).

[bold]Exit codes[/bold]: 0 finished, every output written; 1 data error (empty file, no valid \
molecule, unusable labels); 2 usage error (bad option value, unknown backend or strategy, \
missing file or column); 130 interrupted (rerun with --resume).
"""


class Task(str, Enum):
    """Learning task of the labels."""

    classification = "classification"
    regression = "regression"


class Split(str, Enum):
    """How molecules are split into train/validation/test."""

    random = "random"
    scaffold = "scaffold"


class Device(str, Enum):
    """Where to train."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Reference(str, Enum):
    """What MolPeg's EMA reference averages (see :attr:`PruneConfig.reference`)."""

    auto = "auto"
    head = "head"
    model = "model"


class Format(str, Enum):
    """File format of the per-row scores."""

    csv = "csv"
    parquet = "parquet"


# --------------------------------------------------------------------------- the command


@app.command(epilog=EPILOG)
def prune(
    data: Path | None = typer.Argument(
        None,
        help="Molecule CSV (may be .gz) with a SMILES column and label columns. "
        "Default: the bundled BBBP dataset (2,050 molecules, target p_np).",
        show_default=False,
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Folder for pruned.csv, scores, report.json, plots, model."
    ),
    backend: str | None = typer.Option(
        None,
        "--backend",
        "-b",
        help="Training backend: chemprop, deepchem, torch (see `molpeg backends`). "
        "Default: chemprop if installed, else torch.",
        show_default=False,
    ),
    smiles_column: str = typer.Option("smiles", help="Column with the SMILES."),
    target_columns: str | None = typer.Option(
        None,
        help="Comma-separated label columns. Default: the single numeric label column.",
        show_default=False,
    ),
    task: Task | None = typer.Option(
        None,
        metavar="<task>",
        help="classification or regression. Default: classification if every label is 0/1.",
        show_default=False,
    ),
    prune_ratio: float = typer.Option(
        0.6, help="Fraction of the training set removed per pruned epoch, in [0, 1)."
    ),
    strategy: str = typer.Option("molpeg", help="Pruning strategy (see `molpeg strategies`)."),
    epochs: int = typer.Option(10, min=1, help="Training epochs."),
    seed: int = typer.Option(0, help="Seed of the split, model and pruning."),
    pretrained: Path | None = typer.Option(
        None,
        help="Checkpoint to fine-tune from (loaded with weights_only=True). Default: the "
        "backend's bundled encoder (chemprop: ADMET-AI), none for deepchem and torch.",
        show_default=False,
    ),
    from_scratch: bool = typer.Option(
        False, "--from-scratch", help="Train a new model instead of fine-tuning one."
    ),
    trust_checkpoint: bool = typer.Option(
        False,
        "--trust-checkpoint",
        help="Load --pretrained without the safety allow-list (only files you trust).",
    ),
    split: Split = typer.Option(Split.random, help="Train/validation/test split."),
    split_sizes: str = typer.Option("0.8,0.1,0.1", help="Train,validation,test fractions."),
    device: Device = typer.Option(Device.auto, help="Where to train."),
    batch_size: int = typer.Option(64, min=1, help="Training batch size."),
    learning_rate: float | None = typer.Option(
        None, help="Peak learning rate (default: the backend's).", show_default=False
    ),
    strategy_option: list[str] = typer.Option(
        [],
        metavar="KEY=VALUE",
        help="An option of the strategy, e.g. explore=0.2 (repeatable; see `molpeg strategies`).",
        show_default=False,
    ),
    ema_momentum: float = typer.Option(0.5, help="β of MolPeg's EMA reference, in [0, 1]."),
    reference: Reference = typer.Option(
        Reference.auto,
        help="MolPeg's EMA reference: its head on the shared embedding (a head forward "
        "instead of a model forward), the whole model (the paper's rule), or auto: head "
        "for classification, model for regression.",
    ),
    reference_every: int = typer.Option(
        1, min=1, help="Run the reference on every k-th batch of a pruned epoch."
    ),
    warmup_epochs: int | None = typer.Option(
        None,
        help="Leading epochs on the full data (default: 1, or what the strategy needs).",
        show_default=False,
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run from the state saved in OUTPUT."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace the results of an earlier run in OUTPUT (other files are kept).",
    ),
    fmt: Format = typer.Option(Format.csv, "--format", help="Format of the per-row scores."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Train a model with data pruning and write the pruned dataset, scores, report and plots.

    Invalid SMILES are skipped and listed by row number; duplicates are kept and flagged.
    """
    options = PruneOptions(
        output=output,
        data=data,
        backend=backend,
        smiles_column=smiles_column,
        target_columns=(
            tuple(c.strip() for c in target_columns.split(",") if c.strip())
            if target_columns
            else None
        ),
        task=None if task is None else task.value,
        prune_ratio=prune_ratio,
        strategy=strategy,
        strategy_options=tuple(strategy_option),
        epochs=epochs,
        seed=seed,
        pretrained=pretrained,
        from_scratch=from_scratch,
        trust_checkpoint=trust_checkpoint,
        split=split.value,
        split_sizes=split_sizes,
        device=device.value,
        batch_size=batch_size,
        learning_rate=learning_rate,
        ema_momentum=ema_momentum,
        reference=reference.value,
        reference_every=reference_every,
        warmup_epochs=warmup_epochs,
        resume=resume,
        overwrite=overwrite,
        fmt=fmt.value,
    )
    plus = "with --resume instead of --overwrite" if overwrite else "plus --resume"
    display = Display(quiet)
    interrupted = f"Interrupted; continue with the same command {plus} (state in {output})."
    with exit_on_error(interrupted), display:
        run = run_prune(options, [display, EpochProgress(display)])
    if not quiet:
        Console().print(summary_table(run.report, run.output))


def _reference_note(parameters: dict[str, Any]) -> str:
    """`` (model reference, reference every 4 batches)`` when not the default reference."""
    parts = []
    if parameters.get("reference", "auto") not in ("auto", "head"):
        parts.append(f"{parameters['reference']} reference")
    if parameters.get("reference_every", 1) != 1:
        parts.append(f"reference every {parameters['reference_every']} batches")
    return f" ({', '.join(parts)})" if parts else ""


def summary_table(report: dict[str, Any], output: Path) -> Table:
    """The Rich table printed at the end of a run."""
    c, p = report["counts"], report["parameters"]
    table = Table(title="molpeg prune: summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("data", f"{p['data']}  ({', '.join(p['target_columns'])}, {p['task']})")
    table.add_row(
        "run",
        f"backend {p['backend']}, strategy {p['strategy']}{_reference_note(p)}, prune ratio "
        f"{p['prune_ratio']}, {p['epochs']} epochs, seed {p['seed']}, {p['device']}",
    )
    table.add_row(
        "rows",
        f"{c['input_rows']} read, {c['invalid']} skipped (invalid), "
        f"{c['duplicates']} duplicates flagged ({c['cross_split_duplicates']} across splits)",
    )
    table.add_row(
        "split", f"{p['split']}: train {c['train']}, validation {c['validation']}, test {c['test']}"
    )
    share = c["kept"] / max(c["train"], 1)
    table.add_row(
        "kept",
        f"{c['kept']} of {c['train']} training molecules ({share:.0%}) in pruned.csv, "
        f"{c['dropped']} dropped",
    )
    why = f"best validation {report['metric']}" if c["validation"] else "last; no validation split"
    table.add_row(
        "model",
        f"{p['initialisation']}; epoch {report['best_epoch']} of {p['epochs']} ({why})",
    )
    for label, key in (("validation", "validation_metrics"), ("test", "test_metrics")):
        values = report[key]
        shown = "  ".join(f"{k} {v:.4f}" for k, v in values.items() if v is not None)
        table.add_row(f"{label} metrics", shown or "— (empty split)")
    table.add_row("wall time", f"{report['wall_time_s']:.1f} s")
    files = report["files"]
    model = Path(files["model"]).name if files["model"] else "no model file"
    table.add_row(
        "outputs", f"{output}/: pruned.csv, {files['scores']}, report.json, plots/, {model}"
    )
    return table
