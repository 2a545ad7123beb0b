"""One pruning run, front to back: the application layer under ``molpeg prune`` and ``scaling``.

:class:`PruneOptions` holds what a user chooses for a run (data, split, model, pruning,
output); :func:`run_prune` checks them, reads and splits the data, hands one
:class:`~molpeg_plugins.pipeline.backend.FitJob` to the backend and writes the outputs
(:mod:`molpeg_plugins.pipeline.report`) into the output folder, all at once
(:mod:`molpeg_plugins.pipeline.outputs`).

What a run reports goes to its *observers*. Each observer is registered on the run's own
plugin manager, so it receives the observer hooks of :mod:`molpeg_plugins.hookspecs`
(``molpeg_epoch_start`` …) that every backend driving a :class:`~molpeg_plugins.Pruner`
sends; one that also implements :class:`RunObserver` receives the run's log lines and
progress tasks. The command line's progress display is such an observer; with none a run
is silent.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from molpeg_plugins.errors import ConfigError
from molpeg_plugins.pipeline import outputs
from molpeg_plugins.pipeline.backend import Advance, Backend, FitJob, FitResult

if TYPE_CHECKING:
    from molpeg_plugins.engine.strategies.base import Strategy
    from molpeg_plugins.pipeline.data import MoleculeTable

BUNDLED_DEFAULTS = {"smiles_column": "smiles", "target_columns": ["p_np"], "task": "classification"}
"""Label columns and task of the bundled BBBP dataset (used when ``data`` is ``None``)."""

SKIPS_SHOWN = 10
"""Skipped rows listed in the log (all of them are in the scores and the report)."""

MAX_SEED = 2**32 - 1
"""The largest seed every framework's seeding accepts (Lightning's included)."""

READING_PROGRESS = "Reading CSV"
"""The progress task of reading the input file (records and their values, no RDKit yet)."""

VALIDATION_PROGRESS = "Parsing SMILES"
"""The progress task of validating the molecules with RDKit (one step a molecule)."""

SPLIT_PROGRESS = "Splitting"
"""The progress task of splitting the valid molecules into train, validation and test."""


@dataclass(frozen=True)
class PruneOptions:
    """What a user chooses for one pruning run (the options of ``molpeg prune``).

    Attributes:
        output: folder for pruned.csv, the scores, report.json, the plots and the model.
        data: molecule CSV (may be .gz); ``None`` is the bundled BBBP dataset.
        backend: training backend name; ``None`` is chemprop if installed, else torch.
        smiles_column: column with the SMILES.
        target_columns: label columns; ``None`` is the single numeric label column.
        task: ``"classification"`` or ``"regression"``; ``None`` infers it from the labels.
        prune_ratio: fraction of the training set removed per pruned epoch, in ``[0, 1)``.
        strategy: registered pruning strategy name.
        strategy_options: the strategy's options as ``KEY=VALUE`` strings (see
            :meth:`Strategy.parse_options`).
        epochs: training epochs.
        seed: seed of the split, model and pruning.
        pretrained: checkpoint to fine-tune from; ``None`` is the backend's bundled one.
        from_scratch: train a new model instead of fine-tuning one.
        trust_checkpoint: load ``pretrained`` without the safety allow-list.
        split: ``"random"`` or ``"scaffold"``.
        split_sizes: train,validation,test fractions, e.g. ``"0.8,0.1,0.1"``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: training batch size.
        learning_rate: peak learning rate; ``None`` is the backend's.
        ema_momentum: β of MolPeg's EMA reference, in ``[0, 1]``.
        reference: MolPeg's EMA reference: ``"auto"``, ``"head"`` or ``"model"`` (see
            :attr:`PruneConfig.reference <molpeg_plugins.engine.config.PruneConfig>`).
        reference_every: run the reference on every k-th batch of a pruned epoch.
        warmup_epochs: leading epochs on the full data; ``None`` is
            :func:`default_warmup_epochs`.
        resume: continue an interrupted run from the state saved in ``output``.
        overwrite: replace the results of an earlier run in ``output``.
        fmt: format of the per-row scores, ``"csv"`` or ``"parquet"``.
    """

    output: Path
    data: Path | None = None
    backend: str | None = None
    smiles_column: str = "smiles"
    target_columns: tuple[str, ...] | None = None
    task: str | None = None
    prune_ratio: float = 0.6
    strategy: str = "molpeg"
    strategy_options: tuple[str, ...] = ()
    epochs: int = 10
    seed: int = 0
    pretrained: Path | None = None
    from_scratch: bool = False
    trust_checkpoint: bool = False
    split: str = "random"
    split_sizes: str = "0.8,0.1,0.1"
    device: str = "auto"
    batch_size: int = 64
    learning_rate: float | None = None
    ema_momentum: float = 0.5
    reference: str = "auto"
    reference_every: int = 1
    warmup_epochs: int | None = None
    resume: bool = False
    overwrite: bool = False
    fmt: str = "csv"


@dataclass
class PruneRun:
    """What :func:`run_prune` produced.

    Attributes:
        report: the contents of ``report.json``.
        result: the backend's :class:`~molpeg_plugins.pipeline.backend.FitResult`.
        output: the output folder, now holding the complete result set.
    """

    report: dict[str, Any]
    result: FitResult
    output: Path


@runtime_checkable
class RunObserver(Protocol):
    """An observer that shows a run's log lines and progress tasks (the CLI's display)."""

    def log(self, message: str, style: str | None = None) -> None:
        """Show one line of plain text; ``style`` is a hint such as ``"yellow"``."""

    def task(
        self, description: str, total: int | None = None
    ) -> contextlib.AbstractContextManager[Advance]:
        """A progress task (``total`` ``None`` if unknown) yielding ``advance(n)``."""


class _Broadcast:
    """The :class:`RunObserver` of a run: sends each log line and task to every observer."""

    def __init__(self, observers: Sequence[object]) -> None:
        self.observers = [o for o in observers if isinstance(o, RunObserver)]

    def log(self, message: str, style: str | None = None) -> None:
        for observer in self.observers:
            observer.log(message, style=style)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Advance]:
        with contextlib.ExitStack() as stack:
            advances = [stack.enter_context(o.task(description, total)) for o in self.observers]

            def advance(n: int = 1) -> None:
                for each in advances:
                    each(n)

            yield advance


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


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU fails."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
    return device


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
        from molpeg_plugins.pipeline.checkpoints import vet_checkpoint

        vet_checkpoint(path, plugin_manager=pm)


def check_format(fmt: str) -> None:
    """Refuse ``parquet`` when pyarrow is not installed."""
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ConfigError("--format parquet needs pyarrow: pip install 'molpeg[parquet]'")


def default_warmup_epochs(
    strategy: type[Strategy], epochs: int, *, only_where_needed: bool = False
) -> int:
    """The warm-up epochs of a run that does not set them: the one place that decides.

    By default (``molpeg prune``) one epoch on the full data, so that every molecule is
    scored before the first pruning, or more where the strategy needs more
    (``Strategy.min_warmup_epochs``). With ``only_where_needed`` (the scaling grid, where
    a warm-up would show every kept fraction the full data) only strategies that need a
    warm-up to score (``Strategy.needs_warmup``) get their minimum, at most ``epochs − 1``
    so that at least one epoch is pruned.
    """
    if not only_where_needed:
        return max(1, strategy.min_warmup_epochs)
    needed = strategy.min_warmup_epochs if strategy.needs_warmup else 0
    return min(needed, max(epochs - 1, 0))


# --------------------------------------------------------------------------- the run


def load_table(options: PruneOptions, observers: Sequence[object] = ()) -> MoleculeTable:
    """Read and validate the molecules of ``options.data`` (the bundled BBBP set if ``None``)."""
    from molpeg_plugins.pipeline.data import BUNDLED_DATASET, load_molecules, read_records

    show = _Broadcast(observers)
    bundled = options.data is None
    path = BUNDLED_DATASET if bundled else options.data
    targets = None if options.target_columns is None else list(options.target_columns)
    task = options.task
    if bundled and targets is None:
        targets, task = BUNDLED_DEFAULTS["target_columns"], task or BUNDLED_DEFAULTS["task"]
    show.log(f"Reading {path}{' (bundled BBBP dataset)' if bundled else ''}")
    with show.task(READING_PROGRESS, total=None):
        records = read_records(path)
        records.frame  # noqa: B018  (pandas parses the values here, not while validating)
    with show.task(VALIDATION_PROGRESS, total=len(records)) as advance:
        return load_molecules(
            path,
            smiles_column=options.smiles_column,
            target_columns=targets,
            task=task,
            on_progress=advance,
            records=records,
        )


def run_prune(
    options: PruneOptions,
    observers: Sequence[object] = (),
    *,
    table: MoleculeTable | None = None,
) -> PruneRun:
    """Check ``options``, train with pruning and write every output into ``options.output``.

    Args:
        options: the run.
        observers: receive the observer hooks and, if :class:`RunObserver`, the log and
            progress (see the module docstring).
        table: the molecules of ``options.data`` if already read with :func:`load_table`
            (a grid of runs on one dataset reads it once).

    Raises:
        MolPegError: an invalid option (``ConfigError``, exit code 2), unusable data or a
            diverged training (exit code 1); the options are all checked before the data is
            read, and the result set is moved into ``options.output`` only when complete.
        OSError: the input is unreadable or the output folder unwritable.
    """
    from molpeg_plugins.engine.config import PruneConfig, resolve_reference
    from molpeg_plugins.pipeline.data import BUNDLED_DATASET, parse_split_sizes, split_positions
    from molpeg_plugins.pipeline.report import RunLayout, cross_split_duplicates, write_report
    from molpeg_plugins.pipeline.sanity import check_schedule, fit_checked, split_notes
    from molpeg_plugins.plugins import make_plugin_manager

    started = time.perf_counter()
    show = _Broadcast(observers)
    pm = make_plugin_manager()
    output = options.output

    # -- options, checked before any data is read
    strategy_cls = pm.strategy_class(options.strategy)
    backend = choose_backend(pm, options.backend)
    config = PruneConfig(
        prune_ratio=options.prune_ratio,
        strategy=options.strategy,
        strategy_options=strategy_cls.parse_options(options.strategy_options),
        ema_momentum=options.ema_momentum,
        reference=options.reference,
        reference_every=options.reference_every,
        warmup_epochs=(
            default_warmup_epochs(strategy_cls, options.epochs)
            if options.warmup_epochs is None
            else options.warmup_epochs
        ),
        seed=options.seed,
    )
    schedule_notes = check_schedule(
        options.epochs, config, explicit_warmup=options.warmup_epochs is not None
    )
    sizes = parse_split_sizes(options.split_sizes)
    device = resolve_device(options.device)
    check_format(options.fmt)
    check_numbers(options.learning_rate, options.seed)
    pretrained, initialisation = choose_initialisation(
        backend, options.pretrained, options.from_scratch
    )
    check_pretrained(pretrained, options.trust_checkpoint and options.pretrained is not None, pm)
    if outputs.recover(output):  # a kill interrupted the move of the last results
        show.log(f"Completed the result set of the previous run in {output}")
    outputs.check_output_folder(
        output,
        overwrite=options.overwrite,
        resume=options.resume,
        inputs={"DATA": options.data, "--pretrained": options.pretrained},
    )

    # -- data
    if table is None:
        table = load_table(options, observers)
    strategy_cls.check_task(table.task)
    _log_skips(show, table.skip_report(), table.num_rows)
    with show.task(SPLIT_PROGRESS, total=None):
        valid = table.valid_rows
        scaffolds = table.scaffolds
        layout = RunLayout(
            valid,
            *split_positions([scaffolds[i] for i in valid], options.split, sizes, options.seed),
        )
        leaks = cross_split_duplicates(table, layout)
        notes = split_notes(table, valid[layout.val])
    for note in table.notes + schedule_notes + notes:
        show.log(f"Warning: {note}", style="yellow")
    show.log(
        f"{len(valid)} molecules, task {table.task} on {', '.join(table.target_columns)}; "
        f"{options.split} split {len(layout.train)}/{len(layout.val)}/{len(layout.test)}; "
        f"backend {backend.name}, strategy {config.strategy}, prune ratio "
        f"{config.prune_ratio}, device {device}; {initialisation}"
    )
    _log_leaks(show, leaks)

    # -- training
    for observer in observers:
        pm.register(observer)
    if options.resume and not outputs.inspect_folder(output).resume_state:
        show.log(f"No resume state in {output}: starting at epoch 1")
    staging = outputs.prepare(output, overwrite=options.overwrite, log=show.log)
    job = FitJob.from_table(
        table,
        layout.split,
        config,
        output,
        epochs=options.epochs,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        device=device,
        pretrained=pretrained,
        resume=options.resume,
        seed=options.seed,
        plugin_manager=pm,
        quiet=True,
        trust_checkpoint=options.trust_checkpoint,
        progress=show.task,
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
        "data": str(BUNDLED_DATASET if options.data is None else options.data),
        "bundled_dataset": options.data is None,
        "smiles_column": table.smiles_column,
        "target_columns": table.target_columns,
        "task": table.task,
        "backend": backend.name,
        "strategy": config.strategy,
        **({"strategy_options": config.strategy_options} if config.strategy_options else {}),
        "prune_ratio": config.prune_ratio,
        "ema_momentum": config.ema_momentum,
        "reference": resolve_reference(config.reference, table.task),
        "reference_every": config.reference_every,
        "warmup_epochs": config.warmup_epochs,
        "epochs": job.epochs,
        "batch_size": job.batch_size,
        "learning_rate": job.learning_rate,
        "seed": job.seed,
        "split": options.split,
        "split_sizes": list(sizes),
        "device": job.device,
        "pretrained": None if pretrained is None else str(pretrained),
        "initialisation": initialisation,
        "resumed": job.resume,
        "format": options.fmt,
    }
    with show.task("Writing outputs", total=None):
        report = write_report(
            staging,
            table,
            layout,
            result,
            parameters=parameters,
            wall_time_s=time.perf_counter() - started,
            fmt=options.fmt,
            progress=show.task,
        )
        outputs.commit(staging, output)
        outputs.remove_resume_state(output)
    return PruneRun(report=report, result=result, output=output)


def _log_skips(show: RunObserver, skips: list[str], num_rows: int) -> None:
    """Log the first :data:`SKIPS_SHOWN` skipped rows."""
    if not skips:
        return
    show.log(f"Skipped {len(skips)} of {num_rows} rows:", style="yellow")
    for line in skips[:SKIPS_SHOWN]:
        show.log(f"  {line}")
    if len(skips) > SKIPS_SHOWN:
        show.log(f"  … {len(skips) - SKIPS_SHOWN} more (invalid_reason in scores)")


def _log_leaks(show: RunObserver, leaks: list[dict[str, Any]]) -> None:
    """Warn about duplicates that sit in another split than their first copy."""
    if not leaks:
        return
    first = leaks[0]
    show.log(
        f"Warning: {len(leaks)} duplicate molecules sit in a different split than their "
        f"first copy (e.g. row {first['row']} in {first['split']}, row "
        f"{first['duplicate_of']} in {first['split_of_original']}); they leak between "
        "splits: deduplicate the input for a clean test score (all listed in report.json)",
        style="yellow",
    )
