"""``chemprop train --plugin molpeg``: MolPeg in the user's own ``chemprop`` command.

Chemprop has no plugin mechanism, so molpeg patches its command line when — and only when —
``chemprop.cli.main`` is imported by a process whose command line contains ``--plugin``
(see :mod:`molpeg_chemprop.autohook`, imported at start-up through ``molpeg-chemprop.pth``).
The patch:

* adds a ``molpeg`` option group to ``chemprop train`` (``--plugin``, ``--prune-ratio``,
  ``--prune-strategy``, ``--ema-momentum``, ``--prune-warmup-epochs``,
  ``--prune-anneal-epochs``, ``--prune-rescale``, ``--prune-seed``, ``--keep-invalid-smiles``,
  ``--trust-checkpoint``);
* removes those options from the namespace before Chemprop writes ``config.toml``, so that
  ``chemprop train --config-path`` on that file works with or without molpeg;
* vets ``--checkpoint``/``--from-foundation``/``--model-frzn`` files with molpeg's safe loader
  before Chemprop's own ``torch.load(weights_only=False)`` sees them;
* skips rows with invalid SMILES (reported by row number) instead of crashing;
* adds :class:`~molpeg_chemprop.callback.MolPegCallback` to the training ``pl.Trainer``.

The explicit form ``molpeg chemprop train …`` calls :func:`run_train` with the same options.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import operator
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from molpeg_plugins.errors import MolPegError, UnknownNameError

log = logging.getLogger(__name__)

DISABLE_ENV = "MOLPEG_DISABLE_CHEMPROP_HOOK"
"""Set to ``1`` to make ``chemprop`` ignore molpeg entirely."""

PLUGIN_NAMES = ("molpeg",)
INTERRUPTED_HINT = "Chemprop cannot resume a run: run the command again to start over"
_PATCHED = "_molpeg_patched"

# dest → (flags, argparse options); defaults mirror PruneConfig
OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "plugin": (
        ("--plugin",),
        {"default": None, "help": "Training plugin to activate: 'molpeg' (data pruning)."},
    ),
    "prune_ratio": (
        ("--prune-ratio",),
        {"type": float, "default": 0.6, "help": "Fraction of molecules pruned per epoch."},
    ),
    "prune_strategy": (
        ("--prune-strategy",),
        {"default": "molpeg", "help": "Pruning strategy (`molpeg strategies` lists them)."},
    ),
    "ema_momentum": (
        ("--ema-momentum",),
        {"type": float, "default": 0.5, "help": "β of the EMA reference model."},
    ),
    "prune_reference": (
        ("--prune-reference",),
        {
            "choices": ("auto", "head", "model"),
            "default": "auto",
            "help": "EMA reference: the FFN head on the shared fingerprint (a head forward "
            "instead of a model forward), the whole model (the paper's rule), or auto "
            "(default): head for classification, model for regression.",
        },
    ),
    "prune_reference_every": (
        ("--prune-reference-every",),
        {
            "type": int,
            "default": 1,
            "help": "Run the reference on every k-th batch of a pruned epoch (stale reference "
            "losses in between).",
        },
    ),
    "prune_strategy_option": (
        ("--prune-strategy-option",),
        {
            "action": "append",
            "default": None,
            "metavar": "KEY=VALUE",
            "help": "An option of the strategy, e.g. explore=0.2 for molpeg (repeatable; "
            "`molpeg strategies` lists each strategy's options).",
        },
    ),
    "prune_warmup_epochs": (
        ("--prune-warmup-epochs",),
        {"type": int, "default": 1, "help": "Leading epochs on all molecules."},
    ),
    "prune_anneal_epochs": (
        ("--prune-anneal-epochs",),
        {"type": int, "default": None, "help": "Trailing epochs on all molecules."},
    ),
    "prune_rescale": (
        ("--prune-rescale",),
        {"action": "store_true", "help": "Scale kept molecules' loss by N/kept."},
    ),
    "prune_seed": (
        ("--prune-seed",),
        {"type": int, "default": 0, "help": "Seed of the pruner's random choices."},
    ),
    "keep_invalid_smiles": (
        ("--keep-invalid-smiles",),
        {
            "action": "store_true",
            "help": "Do not skip invalid SMILES rows (Chemprop's strict behaviour: it crashes).",
        },
    ),
    "trust_checkpoint": (
        ("--trust-checkpoint",),
        {"action": "store_true", "help": "Skip molpeg's safe-loading check of checkpoints."},
    ),
}


def plugin_requested(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for a training plugin (``--plugin X`` or ``--plugin=X``)."""
    return any(arg == "--plugin" or arg.startswith("--plugin=") for arg in argv)


def hook_disabled() -> bool:
    """Whether the environment switches the import hook off."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def molpeg_flags(argv: Sequence[str]) -> list[str]:
    """molpeg's own ``chemprop train`` options in ``argv`` (``--prune-ratio``, …)."""
    flags = {flag for dest, (names, _) in OPTIONS.items() if dest != "plugin" for flag in names}
    return [arg.split("=", 1)[0] for arg in argv if arg.split("=", 1)[0] in flags]


def on_import(module: ModuleType) -> None:
    """Post-import hook for ``chemprop.cli.main``: patch it if ``--plugin`` was given.

    Without ``--plugin`` but with molpeg options, only Chemprop's "unrecognized arguments"
    error is extended with a hint to add ``--plugin molpeg``.
    """
    if hook_disabled():
        return
    if plugin_requested(sys.argv[1:]):
        patch(module)
    elif molpeg_flags(sys.argv[1:]):
        add_plugin_hint(module)


def add_plugin_hint(main_module: ModuleType) -> None:
    """Make Chemprop's parser say that molpeg's options need ``--plugin molpeg``."""
    original_construct = main_module.construct_parser

    def construct_parser() -> Any:
        parser = original_construct()
        original_error = parser.error

        def error(message: str) -> Any:
            flags = molpeg_flags(sys.argv[1:])
            if "unrecognized arguments" in message and flags:
                message += (
                    f"\nhint: {', '.join(dict.fromkeys(flags))} only work with --plugin molpeg; "
                    "add --plugin molpeg to the command line"
                )
            return original_error(message)

        parser.error = error
        return parser

    main_module.construct_parser = construct_parser


def patch(main_module: ModuleType) -> None:
    """Add molpeg's options to ``chemprop train`` and wrap its entry point (idempotent)."""
    from chemprop.cli import train as train_module

    if getattr(main_module, _PATCHED, False):
        return
    original_construct = main_module.construct_parser

    def construct_parser() -> Any:
        parser = original_construct()
        add_options(train_module.TrainSubcommand.parser)
        return parser

    main_module.construct_parser = construct_parser
    original_func = train_module.TrainSubcommand.func.__func__

    def func(cls: Any, args: argparse.Namespace) -> None:
        options = pop_options(args)
        if options.plugin is None:
            return original_func(cls, args)
        try:
            with activated(train_module, options, args):
                return original_func(cls, args)
        except MolPegError as exc:
            print(f"chemprop train: error: {exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            print(f"chemprop train: interrupted; {INTERRUPTED_HINT}", file=sys.stderr)
            raise SystemExit(130) from None

    train_module.TrainSubcommand.func = classmethod(func)
    setattr(main_module, _PATCHED, True)


def add_options(parser: Any) -> None:
    """Add the ``molpeg`` option group to Chemprop's ``train`` sub-parser."""
    if parser is None or getattr(parser, _PATCHED, False):
        return
    group = parser.add_argument_group("molpeg data pruning (--plugin molpeg)")
    parser._molpeg_actions = [
        group.add_argument(*flags, dest=dest, **kwargs) for dest, (flags, kwargs) in OPTIONS.items()
    ]
    setattr(parser, _PATCHED, True)


def pop_options(args: argparse.Namespace) -> SimpleNamespace:
    """Remove molpeg's options from Chemprop's namespace and return them."""
    values = {dest: getattr(args, dest, OPTIONS[dest][1].get("default")) for dest in OPTIONS}
    for dest in OPTIONS:
        if hasattr(args, dest):
            delattr(args, dest)
    return SimpleNamespace(**values)


def prune_config(options: SimpleNamespace, pm: Any) -> Any:
    """The :class:`~molpeg_plugins.PruneConfig` the command-line options describe."""
    from molpeg_plugins import PruneConfig

    strategy = pm.strategy_class(options.prune_strategy)
    return PruneConfig(
        prune_ratio=options.prune_ratio,
        strategy=options.prune_strategy,
        strategy_options=strategy.parse_options(options.prune_strategy_option or []),
        ema_momentum=options.ema_momentum,
        reference=options.prune_reference,
        reference_every=options.prune_reference_every,
        warmup_epochs=options.prune_warmup_epochs,
        anneal_epochs=options.prune_anneal_epochs,
        rescale=options.prune_rescale,
        seed=options.prune_seed,
    )


@contextlib.contextmanager
def activated(
    train_module: ModuleType, options: SimpleNamespace, args: argparse.Namespace
) -> Iterator[None]:
    """Run Chemprop's ``train`` with MolPeg: validated options, vetted files, pruning trainer."""
    from molpeg_plugins.plugins import make_plugin_manager

    if options.plugin not in PLUGIN_NAMES:
        raise UnknownNameError("plugin", options.plugin, PLUGIN_NAMES)
    pm = make_plugin_manager()  # this process is the host: it makes the manager it hands on
    config = prune_config(options, pm)
    if getattr(args, "class_balance", False):
        raise MolPegError(
            "--class-balance cannot be combined with --plugin molpeg (both choose the "
            "molecules of an epoch); drop one of them"
        )
    if not options.trust_checkpoint:
        vet_model_files(args, pm)
    saved: dict[str, Any] = {}

    def swap(name: str, value: Any) -> None:
        saved[name] = getattr(train_module, name)
        setattr(train_module, name, value)

    lightning = _PruningLightning(train_module.pl, config, pm)
    swap("pl", lightning)
    swap("save_config", _config_without_molpeg(train_module.save_config))
    with tempfile.TemporaryDirectory(prefix="molpeg-") as tmp:
        if not options.keep_invalid_smiles:
            swap("build_data_from_files", _skipping_invalid(train_module, args, Path(tmp)))
        handler = signal.getsignal(signal.SIGINT)
        try:
            yield
        except SystemExit:  # Lightning answers Ctrl-C with sys.exit(1)
            if any(trainer.interrupted for trainer in lightning.trainers):
                raise KeyboardInterrupt from None
            raise
        finally:
            for name, value in saved.items():
                setattr(train_module, name, value)
            if handler is not None:  # Lightning ignores SIGINT once interrupted
                with contextlib.suppress(ValueError):
                    signal.signal(signal.SIGINT, handler)


def vet_model_files(args: argparse.Namespace, pm: Any) -> None:
    """Check every model file Chemprop is about to unpickle against molpeg's allow-list."""
    from chemprop.cli.common import find_models

    from molpeg_plugins.pipeline.checkpoints import vet_checkpoint

    paths: list[Path] = []
    if getattr(args, "checkpoint", None):
        paths += [Path(p) for p in find_models(args.checkpoint)]
    for name in ("from_foundation", "model_frzn"):
        value = getattr(args, name, None)
        if value is not None and Path(value).exists():
            paths.append(Path(value))
    for path in paths:
        vet_checkpoint(path, plugin_manager=pm)


class _PruningLightning:
    """Stands in for ``lightning.pytorch`` inside ``chemprop.cli.train``.

    Everything is the real module except ``Trainer``: the training trainer (the one given
    ``max_epochs``) gets a fresh :class:`MolPegCallback`, data reloads every epoch and no
    distributed-sampler replacement (the pruning sampler shards itself).
    """

    def __init__(self, pl: ModuleType, config: Any, pm: Any) -> None:
        self._pl, self._config, self._pm = pl, config, pm
        self.trainers: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pl, name)

    def Trainer(self, *args: Any, **kwargs: Any) -> Any:
        """Build ``pl.Trainer``; add MolPeg to the one that trains."""
        from molpeg_chemprop.callback import MolPegCallback

        if "max_epochs" in kwargs:
            callbacks = list(kwargs.get("callbacks") or [])
            logger = kwargs.get("logger")
            save_dir = getattr(logger, "save_dir", None)
            history = Path(save_dir) / "molpeg_history.csv" if save_dir else None
            callbacks.append(
                MolPegCallback(self._config, plugin_manager=self._pm, history_path=history)
            )
            kwargs["callbacks"] = callbacks
            kwargs["reload_dataloaders_every_n_epochs"] = 1
            kwargs["use_distributed_sampler"] = False
        trainer = self._pl.Trainer(*args, **kwargs)
        self.trainers.append(trainer)
        return trainer


def _config_without_molpeg(save_config: Any) -> Any:
    def save(parser: Any, args: argparse.Namespace, config_path: Path) -> None:
        ours = set(map(id, getattr(parser, "_molpeg_actions", [])))
        actions = parser._actions
        parser._actions = [a for a in actions if id(a) not in ours]
        try:
            save_config(parser, args, config_path)
        finally:
            parser._actions = actions

    return save


def _skipping_invalid(train_module: ModuleType, args: argparse.Namespace, tmp: Path) -> Any:
    original = train_module.build_data_from_files

    def build(p_data: Any, **kwargs: Any) -> Any:
        clean = filter_invalid_smiles(
            Path(p_data),
            smiles_cols=kwargs.get("smiles_cols"),
            no_header_row=kwargs.get("no_header_row", False),
            keep_h=kwargs.get("keep_h", False),
            add_h=kwargs.get("add_h", False),
            ignore_stereo=kwargs.get("ignore_stereo", False),
            reorder_atoms=kwargs.get("reorder_atoms", False),
            out_dir=tmp,
            row_aligned_files=[
                kwargs.get(k)
                for k in ("p_descriptors", "p_atom_feats", "p_bond_feats", "p_atom_descs")
            ]
            + [getattr(args, "splits_file", None)],
            target_cols=kwargs.get("target_cols"),
            other_cols=[
                *(kwargs.get("rxn_cols") or []),
                *(kwargs.get("ignore_cols") or []),
                *(kwargs.get("descriptor_cols") or []),
                *(c for c in (kwargs.get("splits_col"), kwargs.get("weight_col")) if c),
            ],
            task_type=str(getattr(args, "task_type", "regression")),
            bounded=bool(kwargs.get("bounded", False)),
        )
        return original(clean, **kwargs)

    return build


BINARY_TASKS = ("classification", "classification-dirichlet")
"""Chemprop task types whose labels must be 0/1 (or missing)."""


def _smiles_problem(smi: str, column: str, make: Any) -> str:
    """Why the SMILES cell ``smi`` cannot be trained on (``""`` if it can)."""
    from molpeg_plugins.pipeline.data import smiles_text_problem

    text = smi.strip()
    if not text:
        return f"empty SMILES in column {column!r}"
    problem = smiles_text_problem(text)
    if problem:
        return f"{problem} in column {column!r}"
    try:
        mol = make(smi)
    except Exception:  # RDKit and Chemprop raise several exception types
        mol = None
    if mol is None or mol.GetNumAtoms() == 0:
        return f"invalid SMILES '{smi}' in column {column!r}"  # as written, copyable
    return ""


def _label_problem(value: str, column: str, task_type: str, bounded: bool) -> tuple[str, bool]:
    """``(reason, fatal)`` for one label cell: ``""`` if usable (numbers and missing values)."""
    import math

    from molpeg_plugins.pipeline.csv_records import is_missing

    if is_missing(value):
        return "", False
    text = value.strip()
    try:
        number = float(text.strip("<>") if bounded else text)
    except ValueError:
        return f"non-numeric label {value!r} in column {column!r}", False
    if math.isnan(number):  # '-nan' and the like: missing, as pandas reads them
        return "", False
    if not math.isfinite(number):
        return f"non-finite label {value!r} in column {column!r}", False
    if task_type in BINARY_TASKS and number not in (0.0, 1.0):
        return f"label {value!r} in column {column!r} is not 0/1", True
    return "", False


_LABEL_CELLS = 1 << 20
"""Label cells checked together (bounds the memory of the check)."""


def _label_problems(
    cells: Sequence[Sequence[str]], columns: Sequence[str], task_type: str, bounded: bool
) -> dict[int, tuple[str, bool]]:
    """Row → ``(reason, fatal)`` of its first unusable label cell, for the rows that have one.

    ``cells`` is rows × ``columns``. The answer is :func:`_label_problem` on each cell in
    column order, but each distinct cell text is judged once (``pandas.factorize``): label
    columns hold few distinct texts (``""``, ``"0"``, ``"1"``), so a file of many tasks
    costs a hash per cell instead of a parse.
    """
    import numpy as np
    import pandas as pd

    if not cells or not columns:
        return {}
    flat = pd.Series([value for row in cells for value in row], dtype=object)
    codes, texts = pd.factorize(flat)
    unusable_text = np.array([bool(_label_problem(t, "", task_type, bounded)[0]) for t in texts])
    unusable = unusable_text[codes].reshape(len(cells), len(columns))
    problems: dict[int, tuple[str, bool]] = {}
    for row, col in zip(*np.nonzero(unusable), strict=True):  # row-major: first column first
        if row not in problems:
            problems[int(row)] = _label_problem(cells[row][col], columns[col], task_type, bounded)
    return problems


def filter_invalid_smiles(
    path: Path,
    *,
    smiles_cols: Sequence[str] | None,
    no_header_row: bool = False,
    keep_h: bool = False,
    add_h: bool = False,
    ignore_stereo: bool = False,
    reorder_atoms: bool = False,
    out_dir: Path,
    row_aligned_files: Sequence[Any] = (),
    target_cols: Sequence[str] | None = None,
    other_cols: Sequence[str] = (),
    task_type: str = "regression",
    bounded: bool = False,
) -> Path:
    """Return ``path`` or, if some rows cannot be trained on, a copy without those rows.

    A row is skipped when it has fewer fields than the header, when a SMILES is empty, has
    inner whitespace or a non-ASCII character
    (:func:`~molpeg_plugins.pipeline.data.smiles_text_problem`) or does not give a molecule with
    atoms as Chemprop builds it (``chemprop.utils.make_mol`` with the run's hydrogen/stereo
    options), or when a label is not a number or not finite (missing labels are fine). Each
    skipped row is reported on stderr as ``FILE: row R (line L): REASON, skipped``; rows are
    numbered from 0 after the header (molpeg's convention, as in ``molpeg prune``), ``L`` is
    the 1-based line of the file. The copy (in ``out_dir``, uncompressed) is the header and
    every valid record byte for byte, multi-line quoted records included
    (:meth:`~molpeg_plugins.pipeline.csv_records.CsvRecords.write_subset`).

    Raises:
        MolPegError: the file cannot be read as a CSV
            (:func:`~molpeg_plugins.pipeline.csv_records.read_records`); a classification label
            other than 0/1 (the run would silently train on it); no row is usable; or rows would be
            skipped, but another file (descriptors, atom features, splits) is aligned to the
            rows of ``path``.
    """
    from chemprop.utils import make_mol
    from rdkit import RDLogger

    from molpeg_plugins.pipeline.csv_records import check_column, read_records

    records = read_records(path, has_header=not no_header_row)
    # pandas (hence Chemprop) names the columns of a file without a header 0, 1, …
    names: list[Any] = list(range(len(records.fields[0]))) if no_header_row else records.columns
    width = 0 if no_header_row else len(names)
    columns = list(smiles_cols) if smiles_cols else [names[0]]
    if not no_header_row:
        columns = [check_column(path, str(c), names, "--smiles-columns") for c in columns]
    if target_cols is None:
        skip = {*map(str, columns), *map(str, other_cols)}
        target_cols = [c for c in names if str(c) not in skip]
    targets = [c for c in target_cols if c in names]
    position = {name: names.index(name) for name in [*columns, *targets]}
    bad: list[tuple[int, str]] = []
    fatal: tuple[int, str] | None = None

    def make(smi: str) -> Any:
        return make_mol(smi, keep_h, add_h, ignore_stereo, reorder_atoms)

    def cell(fields: list[str], name: Any) -> str:
        pos = position[name]
        return fields[pos] if pos < len(fields) else ""  # a short row: pandas reads ""

    label_positions = [position[c] for c in targets]
    every_label = operator.itemgetter(*label_positions) if label_positions else None

    def label_cells(fields: list[str]) -> Sequence[str]:
        if every_label is None:
            return ()
        if len(fields) > max(label_positions):
            cells = every_label(fields)
            return cells if isinstance(cells, tuple) else (cells,)
        return [cell(fields, c) for c in targets]

    RDLogger.DisableLog("rdApp.*")
    try:
        step = max(1, _LABEL_CELLS // max(1, len(targets)))
        for start in range(0, len(records), step):
            block = records.fields[start : start + step]
            labels = _label_problems(
                [label_cells(fields) for fields in block],
                [str(c) for c in targets],
                task_type,
                bounded,
            )
            for offset, fields in enumerate(block):
                row = start + offset
                why = ""
                if len(fields) < width:
                    why = f"{len(fields)} fields but the header has {width} columns"
                for column in columns:
                    why = why or _smiles_problem(cell(fields, column), str(column), make)
                if not why and offset in labels:
                    why, is_fatal = labels[offset]
                    fatal = (row, why) if is_fatal and fatal is None else fatal
                if why:
                    bad.append((row, why))
    finally:
        RDLogger.EnableLog("rdApp.*")
    line_of = records.lines
    if fatal is not None:
        row, why = fatal
        raise MolPegError(
            f"{path}: row {row} (line {line_of[row]}): {why}; --task-type {task_type} needs "
            "0/1 labels (or empty for missing), use -t regression for other values"
        )
    if not bad:
        return path
    if len(bad) == len(records):
        raise MolPegError(
            f"{path}: none of the {len(records)} rows can be trained on (row 0, line "
            f"{line_of[0]}: {bad[0][1]}); check the SMILES and target columns "
            "(-s, --target-columns)"
        )
    for row, why in bad:
        print(f"{path}: row {row} (line {line_of[row]}): {why}, skipped", file=sys.stderr)
    print(
        f"{path}: skipped {len(bad)} of {len(records)} rows with invalid SMILES or labels "
        "(pass --keep-invalid-smiles for Chemprop's strict behaviour)",
        file=sys.stderr,
    )
    if any(f for f in row_aligned_files):
        raise MolPegError(
            f"{path}: {len(bad)} rows are invalid (first: row {bad[0][0]}) but a "
            "descriptor/feature/splits file is aligned to the rows of this file; remove those "
            "rows from all files"
        )
    skipped = {row for row, _ in bad}
    out = out_dir / path.name.removesuffix(".gz")  # written uncompressed
    records.write_subset(out, [row for row in range(len(records)) if row not in skipped])
    return out


def run_train(argv: Sequence[str]) -> int:
    """Run ``chemprop train --plugin molpeg ARGV`` in this process (the explicit form).

    Returns the exit status.
    """
    import chemprop.cli.main as main_module

    args = list(argv)
    if not plugin_requested(args):
        args = ["--plugin", "molpeg", *args]
    patch(main_module)
    saved = sys.argv
    sys.argv = ["chemprop", "train", *args]
    try:
        main_module.main()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
    return 0
