"""``molpeg prune``: train a model with data pruning and write the pruned dataset.

The command reads and validates a molecule CSV (:mod:`molpeg_plugins.data`), splits it,
hands a :class:`~molpeg_plugins.backend.FitJob` to the chosen backend and writes the outputs
(:mod:`molpeg_plugins.report`). Progress is shown by an observer plugin registered on the
run's own plugin manager, so every backend that drives a :class:`~molpeg_plugins.Pruner`
gets the same epoch bar.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from molpeg_plugins import outputs
from molpeg_plugins.backend import BATCH_PROGRESS, Advance, Backend, FitJob
from molpeg_plugins.cli.app import app
from molpeg_plugins.errors import ConfigError, MolPegError
from molpeg_plugins.hookspecs import hookimpl

BUNDLED_DEFAULTS = {"smiles_column": "smiles", "target_columns": ["p_np"], "task": "classification"}
SKIPS_SHOWN = 10

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

    head = "head"
    model = "model"


class Format(str, Enum):
    """File format of the per-row scores."""

    csv = "csv"
    parquet = "parquet"


# --------------------------------------------------------------------------- display


class Display:
    """Progress output of one run: Rich bars on a terminal, plain log lines otherwise.

    Args:
        quiet: print nothing but errors.
        console: where progress and logs go (default: standard error).
    """

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.mode = "quiet" if quiet else ("rich" if self.console.is_terminal else "plain")
        self.progress: Progress | None = None
        self._rows: dict[str, Any] = {}  # description → Rich task id
        if self.mode == "rich":
            self.progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
            )

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def log(self, message: str, style: str | None = None) -> None:
        """Print a line of plain text (not in quiet mode); no markup is interpreted."""
        if self.mode != "quiet":
            self.console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Advance]:
        """A progress task; yields ``advance(n)`` (this is :attr:`FitJob.progress`).

        A task that ends is marked complete, so its clock stops (one of unknown size shows
        what it counted). A task opened again under the same description (the
        :data:`~molpeg_plugins.backend.BATCH_PROGRESS` task, once per epoch) reuses its row,
        restarted. Plain mode logs one line per finished task, except the per-epoch batch
        task (the epoch line says it all).
        """
        if self.progress is not None:
            task_id = self._rows.get(description)
            if task_id is None:
                task_id = self.progress.add_task(description, total=total, info="")
                self._rows[description] = task_id
            else:
                self.progress.reset(task_id, total=total, completed=0)
            yield lambda n=1: self.progress.advance(task_id, n)
            done = self.progress.tasks[self.progress.task_ids.index(task_id)].completed
            final = total if total is not None else max(int(done), 1)
            self.progress.update(task_id, total=final, completed=final)
            return
        started = time.perf_counter()
        yield lambda n=1: None
        if description != BATCH_PROGRESS:
            self.log(f"{description}: done in {time.perf_counter() - started:.1f} s")

    def add_task(self, description: str, total: int, completed: int = 0) -> Any:
        """Add a Rich task (``None`` when not on a terminal)."""
        if self.progress is None:
            return None
        return self.progress.add_task(description, total=total, completed=completed, info="")


class EpochProgress:
    """Observer plugin: an epoch progress bar (or one log line per epoch).

    Registered on the run's plugin manager; implements the ``molpeg_epoch_start``,
    ``molpeg_validation_end``, ``molpeg_epoch_end`` and ``molpeg_selection_made`` hooks.

    Args:
        display: where to show progress.
        total_epochs: epochs of the run.
        num_train: size of the training split.
    """

    def __init__(self, display: Display, total_epochs: int, num_train: int) -> None:
        self.display = display
        self.total_epochs = total_epochs
        self.num_train = num_train
        self.task_id: Any = None
        self.metrics: dict[int, dict[str, float]] = {}
        self.kept: dict[int, int] = {}
        self.logged: set[int] = set()

    @hookimpl
    def molpeg_epoch_start(self, pruner: Any, epoch: int, num_kept: int) -> None:
        """Open the bar (at the resumed epoch if any) and show the epoch's kept count."""
        self.kept[epoch] = num_kept
        if self.task_id is None:
            self.task_id = self.display.add_task("Training", self.total_epochs, completed=epoch)
        if self.task_id is not None:
            self.display.progress.update(
                self.task_id,
                description=f"Epoch {epoch + 1}/{self.total_epochs}",
                info=f"kept {num_kept}/{self.num_train}",
            )

    @hookimpl
    def molpeg_validation_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Remember the epoch's validation metrics (logged late if the epoch was logged)."""
        self.metrics[epoch] = dict(metrics)
        if epoch in self.logged:
            self.display.log(f"  epoch {epoch + 1} validation: {_fmt_metrics(metrics)}")

    @hookimpl
    def molpeg_epoch_end(self, pruner: Any, epoch: int, stats: dict[str, float]) -> None:
        """Advance the bar, or log ``epoch 3/10  kept …  score_mean …  val_…``."""
        line = f"kept {self.kept.get(epoch, self.num_train)}/{self.num_train}"
        if "score_mean" in stats:
            line += f"  score_mean {stats['score_mean']:.4g}"
        if epoch in self.metrics:
            line += f"  {_fmt_metrics(self.metrics[epoch])}"
        if self.task_id is not None:
            short = f"kept {self.kept.get(epoch, self.num_train)}/{self.num_train}"
            first = next(iter(self.metrics.get(epoch, {}).items()), None)
            if first is not None:
                short += f"  {first[0]} {first[1]:.3f}"
            self.display.progress.update(self.task_id, advance=1, info=short)
        else:
            self.display.log(f"epoch {epoch + 1}/{self.total_epochs}  {line}")
        self.logged.add(epoch)

    @hookimpl
    def molpeg_selection_made(self, pruner: Any, selection: Any) -> None:
        """Note the size of the next epoch's keep set."""
        self.kept[selection.epoch] = int(selection.indices.numel())


def _fmt_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


# --------------------------------------------------------------------------- option checks


def choose_backend(pm: Any, name: str | None) -> Backend:
    """The backend named ``name``; by default chemprop if available, else torch.

    Raises:
        UnknownNameError: no such backend (the valid ones are listed).
        ConfigError: the backend's framework is not installed.
    """
    if name is None:
        registry = pm.backends()
        chemprop = registry.get("chemprop")
        name = "chemprop" if chemprop is not None and chemprop.availability()[0] else "torch"
    backend = pm.backend(name)
    ok, why = backend.availability()
    if not ok:
        raise ConfigError(f"backend {name!r} cannot run: {why}")
    return backend


def resolve_device(device: Device) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU fails."""
    import torch

    if device == Device.auto:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == Device.cuda and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
    return device.value


MAX_SEED = 2**32 - 1  # what every framework's seeding accepts (Lightning's included)


def check_numbers(learning_rate: float | None, seed: int) -> None:
    """Refuse a learning rate that is not a positive number and a seed out of range."""
    if learning_rate is not None and not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ConfigError(f"--learning-rate {learning_rate}: must be a positive number, e.g. 1e-3")
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed {seed}: must be a whole number from 0 to {MAX_SEED}")


def choose_initialisation(
    backend: Backend, pretrained: Path | None, from_scratch: bool
) -> tuple[Path | None, str]:
    """The checkpoint to fine-tune from, and the words that say so in the log and report.

    ``--pretrained`` wins; otherwise the backend's bundled encoder
    (:attr:`Backend.default_pretrained`), unless ``--from-scratch``.
    """
    if pretrained is not None and from_scratch:
        raise ConfigError("--pretrained and --from-scratch exclude each other; give one")
    if pretrained is not None:
        return pretrained, f"fine-tuned from {pretrained}"
    if from_scratch or backend.default_pretrained is None:
        return None, "trained from scratch"
    path, what = backend.default_pretrained
    return path, f"fine-tuned from {what} ({path.name})"


def check_pretrained(path: Path | None, trust: bool, pm: Any) -> None:
    """Refuse a missing checkpoint, or one that needs globals outside the allow-list."""
    if path is None:
        return
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".ckpt"))
        hint = f", e.g. {path / found[0]}" if found else ""
        raise ConfigError(
            f"--pretrained {path}: is a folder; give the checkpoint file inside it{hint}"
        )
    if not path.is_file():
        raise ConfigError(f"--pretrained {path}: no such file; check the path to the checkpoint")
    if not trust:
        from molpeg_plugins.checkpoints import vet_checkpoint

        vet_checkpoint(path, plugin_manager=pm)


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
    ema_momentum: float = typer.Option(0.5, help="β of MolPeg's EMA reference, in [0, 1]."),
    reference: Reference = typer.Option(
        Reference.head,
        help="MolPeg's EMA reference: its head on the shared embedding (a head forward "
        "instead of a model forward) or the whole model (the paper's rule).",
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
    display = Display(quiet)
    try:
        with display:
            summary = run_prune(
                display,
                data=data,
                output=output,
                backend_name=backend,
                smiles_column=smiles_column,
                target_columns=target_columns,
                task=None if task is None else task.value,
                prune_ratio=prune_ratio,
                strategy=strategy,
                epochs=epochs,
                seed=seed,
                pretrained=pretrained,
                from_scratch=from_scratch,
                trust_checkpoint=trust_checkpoint,
                split=split.value,
                split_sizes=split_sizes,
                device=device,
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
    except MolPegError as exc:
        err = Console(stderr=True)
        err.print("Error:", style="bold red", end=" ")
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:  # unreadable input, unwritable output folder, full disk
        err = Console(stderr=True)
        err.print("Error:", style="bold red", end=" ")
        err.print(outputs.describe_os_error(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        plus = "with --resume instead of --overwrite" if overwrite else "plus --resume"
        Console(stderr=True).print(
            f"Interrupted; continue with the same command {plus} (state in {output}).",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(130) from None
    if not quiet:
        Console().print(summary)


def run_prune(display: Display, *, data: Path | None, output: Path, **opts: Any) -> Table:
    """Validate the options, run the backend, write the outputs; return the summary table."""
    from molpeg_plugins.config import PruneConfig
    from molpeg_plugins.data import (
        BUNDLED_DATASET,
        load_molecules,
        parse_split_sizes,
        split_positions,
    )
    from molpeg_plugins.plugins import make_plugin_manager
    from molpeg_plugins.report import RunLayout, cross_split_duplicates, write_report
    from molpeg_plugins.sanity import check_schedule, fit_checked, split_notes

    started = time.perf_counter()
    pm = make_plugin_manager()

    # -- options, checked before any data is read
    strategy_cls = pm.strategy_class(opts["strategy"])
    backend = choose_backend(pm, opts["backend_name"])
    warmup = opts["warmup_epochs"]
    if warmup is None:
        warmup = max(1, getattr(strategy_cls, "min_warmup_epochs", 1))
    config = PruneConfig(
        prune_ratio=opts["prune_ratio"],
        strategy=opts["strategy"],
        ema_momentum=opts["ema_momentum"],
        reference=opts["reference"],
        reference_every=opts["reference_every"],
        warmup_epochs=warmup,
        seed=opts["seed"],
    )
    schedule_notes = check_schedule(
        opts["epochs"], config, explicit_warmup=opts["warmup_epochs"] is not None
    )
    sizes = parse_split_sizes(opts["split_sizes"])
    device = resolve_device(opts["device"])
    if opts["fmt"] == "parquet":
        import importlib.util

        if importlib.util.find_spec("pyarrow") is None:
            raise ConfigError("--format parquet needs pyarrow: pip install 'molpeg[parquet]'")
    check_numbers(opts["learning_rate"], opts["seed"])
    pretrained, initialisation = choose_initialisation(
        backend, opts["pretrained"], opts["from_scratch"]
    )
    check_pretrained(pretrained, opts["trust_checkpoint"] and opts["pretrained"] is not None, pm)
    if outputs.recover(output):  # a kill interrupted the move of the last results
        display.log(f"Completed the result set of the previous run in {output}")
    outputs.check_output_folder(
        output,
        overwrite=opts["overwrite"],
        resume=opts["resume"],
        inputs={"DATA": data, "--pretrained": opts["pretrained"]},
    )

    # -- data
    bundled = data is None
    path = BUNDLED_DATASET if bundled else data
    targets = (
        [c.strip() for c in opts["target_columns"].split(",") if c.strip()]
        if opts["target_columns"]
        else None
    )
    smiles_column, task = opts["smiles_column"], opts["task"]
    if bundled and targets is None:
        targets, task = BUNDLED_DEFAULTS["target_columns"], task or BUNDLED_DEFAULTS["task"]
    display.log(f"Reading {path}{' (bundled BBBP dataset)' if bundled else ''}")
    with display.task("Parsing SMILES", total=None) as advance:
        table = load_molecules(
            path,
            smiles_column=smiles_column,
            target_columns=targets,
            task=task,
            on_progress=advance,
        )
    strategy_cls.check_task(table.task)
    skips = table.skip_report()
    if skips:
        display.log(f"Skipped {len(skips)} of {table.num_rows} rows:", style="yellow")
        for line in skips[:SKIPS_SHOWN]:
            display.log(f"  {line}")
        if len(skips) > SKIPS_SHOWN:
            display.log(f"  … {len(skips) - SKIPS_SHOWN} more (invalid_reason in scores)")
    valid = table.valid_rows
    train, val, test = split_positions(
        [table.scaffolds[i] for i in valid], opts["split"], sizes, opts["seed"]
    )
    for note in table.notes + schedule_notes + split_notes(table, valid[val]):
        display.log(f"Warning: {note}", style="yellow")
    layout = RunLayout(valid, train, val, test)
    display.log(
        f"{len(valid)} molecules, task {table.task} on {', '.join(table.target_columns)}; "
        f"{opts['split']} split {len(train)}/{len(val)}/{len(test)}; backend {backend.name}, "
        f"strategy {config.strategy}, prune ratio {config.prune_ratio}, device {device}; "
        f"{initialisation}"
    )
    leaks = cross_split_duplicates(table, layout)
    if leaks:
        display.log(
            f"Warning: {len(leaks)} duplicate molecules sit in a different split than their "
            f"first copy (e.g. row {leaks[0]['row']} in {leaks[0]['split']}, row "
            f"{leaks[0]['duplicate_of']} in {leaks[0]['split_of_original']}); they leak between "
            "splits: deduplicate the input for a clean test score (all listed in report.json)",
            style="yellow",
        )

    # -- training
    pm.register(EpochProgress(display, opts["epochs"], len(train)), name="molpeg-cli-progress")
    if opts["resume"] and not outputs.inspect_folder(output).resume_state:
        display.log(f"No resume state in {output}: starting at epoch 1")
    staging = outputs.prepare(output, overwrite=opts["overwrite"], log=display.log)
    job = FitJob.from_table(
        table,
        (train, val, test),
        config,
        output,
        epochs=opts["epochs"],
        batch_size=opts["batch_size"],
        learning_rate=opts["learning_rate"],
        device=device,
        pretrained=pretrained,
        resume=opts["resume"],
        seed=opts["seed"],
        plugin_manager=pm,
        quiet=True,
        trust_checkpoint=opts["trust_checkpoint"],
        progress=display.task,
        model_dir=staging,
        keep_resume_state=True,
    )
    from rdkit import rdBase

    quiet_rdkit = rdBase.BlockLogs()  # invalid molecules were reported above, by row
    try:
        result = fit_checked(backend, job)
    finally:
        del quiet_rdkit
    result.model_path = outputs.stage_file(result.model_path, output, staging)

    # -- outputs
    parameters = {
        "data": str(path),
        "bundled_dataset": bundled,
        "smiles_column": table.smiles_column,
        "target_columns": table.target_columns,
        "task": table.task,
        "backend": backend.name,
        "strategy": config.strategy,
        "prune_ratio": config.prune_ratio,
        "ema_momentum": config.ema_momentum,
        "reference": config.reference,
        "reference_every": config.reference_every,
        "warmup_epochs": config.warmup_epochs,
        "epochs": opts["epochs"],
        "batch_size": opts["batch_size"],
        "learning_rate": opts["learning_rate"],
        "seed": opts["seed"],
        "split": opts["split"],
        "split_sizes": list(sizes),
        "device": device,
        "pretrained": None if pretrained is None else str(pretrained),
        "initialisation": initialisation,
        "resumed": opts["resume"],
        "format": opts["fmt"],
    }
    with display.task("Writing outputs", total=None):
        report = write_report(
            staging,
            table,
            layout,
            result,
            parameters=parameters,
            wall_time_s=time.perf_counter() - started,
            fmt=opts["fmt"],
        )
        outputs.commit(staging, output)
        outputs.remove_resume_state(output)
    return summary_table(report, output)


def _reference_note(parameters: dict[str, Any]) -> str:
    """`` (model reference, reference every 4 batches)`` when not the default reference."""
    parts = []
    if parameters.get("reference", "head") != "head":
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
