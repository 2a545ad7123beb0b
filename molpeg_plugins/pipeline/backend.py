"""Training backends: how ``molpeg prune`` trains a model of one framework with pruning."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from molpeg_plugins.engine.config import PruneConfig
from molpeg_plugins.engine.strategies.base import TaskType
from molpeg_plugins.errors import MolPegError

if TYPE_CHECKING:
    from molpeg_plugins.pipeline.data import MoleculeTable


Advance = Callable[[int], None]
"""Report that ``n`` more items of a progress task are done."""


BATCH_PROGRESS = "Training batches"
"""Description of the task a backend opens with :attr:`FitJob.progress` for every epoch.

``with job.progress(BATCH_PROGRESS, total=num_batches) as advance:`` around an epoch's
training steps, ``advance(1)`` after each: the CLI shows it as one batch bar with an ETA,
restarted every epoch.
"""


@contextlib.contextmanager
def null_progress(description: str, total: int | None = None) -> Iterator[Advance]:
    """The default :attr:`FitJob.progress`: a task that reports nowhere.

    Backends wrap long phases in ``with job.progress("Featurising", total=n) as advance:``
    and call ``advance(k)`` as they go; the CLI passes a Rich progress bar instead.
    """
    yield lambda n=1: None


@dataclass
class FitJob:
    """Everything a backend needs to fine-tune one model with pruning.

    Attributes:
        smiles: valid SMILES, one per molecule (invalid rows were removed before).
        targets: ``(n_molecules, n_tasks)`` float array; ``nan`` marks a missing label.
        target_names: names of the task columns.
        task: ``"classification"`` (binary labels 0/1 per task) or ``"regression"``.
        train_idx, val_idx, test_idx: positions into ``smiles`` of each split. The pruner's
            dataset index ``i`` is the molecule ``train_idx[i]``.
        config: pruning options.
        epochs: number of training epochs.
        batch_size: training batch size.
        learning_rate: peak learning rate (``None`` = the framework's default).
        device: ``"cpu"`` or ``"cuda"`` (already resolved from ``auto``).
        pretrained: checkpoint to fine-tune from (already vetted by the safe loader).
        work_dir: folder for the resume state (and the trained model, unless ``model_dir``).
        resume: continue from the resume state in ``work_dir`` if there is one.
        model_dir: folder for the trained model file (default: ``work_dir``); ``molpeg
            prune`` passes its staging folder, so that the model appears with the other results.
        keep_resume_state: leave the resume state in ``work_dir`` when training is done (the
            caller removes it once its own outputs are written); by default it is deleted.
        seed: global seed (model init, dropout, pruner).
        plugin_manager: where observers (progress bars, loggers) are registered (default:
            the process-wide manager of :func:`~molpeg_plugins.plugins.get_plugin_manager`).
        quiet: suppress the framework's own console output.
        trust_checkpoint: the user passed ``--trust-checkpoint``: ``pretrained`` may be loaded
            with ``safe_load(..., trust=True)`` (it was not vetted against the allow-list).
        progress: ``progress(description, total)`` returns a context manager yielding an
            ``advance(n)`` function; use it for featurisation and scoring passes and, with
            :data:`BATCH_PROGRESS`, for the training batches of every epoch
            (:func:`null_progress` by default; the CLI shows Rich bars).
    """

    smiles: list[str]
    targets: np.ndarray
    target_names: list[str]
    task: TaskType
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    config: PruneConfig
    work_dir: Path
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float | None = None
    device: str = "cpu"
    pretrained: Path | None = None
    resume: bool = False
    seed: int = 0
    plugin_manager: Any = None
    quiet: bool = True
    trust_checkpoint: bool = False
    model_dir: Path | None = None
    keep_resume_state: bool = False
    progress: Callable[..., contextlib.AbstractContextManager[Advance]] = null_progress

    def __post_init__(self) -> None:
        if self.plugin_manager is None:  # the process-wide one: built-ins and entry points
            from molpeg_plugins.plugins import get_plugin_manager

            self.plugin_manager = get_plugin_manager()

    @property
    def model_folder(self) -> Path:
        """The folder the trained model goes to: ``model_dir``, else ``work_dir``."""
        return Path(self.model_dir if self.model_dir is not None else self.work_dir)

    @classmethod
    def from_table(
        cls,
        table: MoleculeTable,
        split: tuple[np.ndarray, np.ndarray, np.ndarray],
        config: PruneConfig,
        work_dir: Path,
        **options: Any,
    ) -> FitJob:
        """A job on the valid molecules of ``table``.

        ``split`` holds the train, validation and test positions into ``table.valid_rows``
        (as :func:`~molpeg_plugins.pipeline.data.split_positions` returns them); ``options`` are the
        remaining :class:`FitJob` fields.
        """
        valid = table.valid_rows
        smiles = table.smiles  # one list: the property builds it anew on every access
        train, val, test = split
        return cls(
            smiles=[smiles[i].strip() for i in valid.tolist()],
            targets=table.targets[valid],
            target_names=list(table.target_columns),
            task=table.task,
            train_idx=train,
            val_idx=val,
            test_idx=test,
            config=config,
            work_dir=work_dir,
            **options,
        )


@dataclass
class FitResult:
    """What a backend reports back after training.

    Attributes:
        metric_name: the model-selection metric (``"roc_auc"`` or ``"rmse"``).
        best_epoch: epoch of the best validation metric (the reported model).
        val_metrics, test_metrics: metrics of that model on validation and test molecules.
        history: one row per epoch (:meth:`~molpeg_plugins.pipeline.training.EpochRecord.as_row`):
            ``epoch``, ``num_kept``, ``train_loss``, the validation metrics (``val_*``) and the
            score statistics (``score_*``).
        pruner_state: :meth:`Pruner.state_dict` at the end of training.
        final_kept: sorted pruner dataset indices (into ``train_idx``) of the final keep set.
        model_path: the trained model file.
        versions: framework name → version.
    """

    metric_name: str
    best_epoch: int
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    history: list[dict[str, float]]
    pruner_state: dict[str, Any]
    final_kept: np.ndarray
    model_path: Path | None
    versions: dict[str, str] = field(default_factory=dict)


class TrainingDiverged(MolPegError):
    """The model's predictions or training loss became ``nan``/``inf`` (exit code 1)."""


def improves(value: float, best: float, higher_is_better: bool) -> bool:
    """Whether validation ``value`` beats ``best`` (model selection across epochs).

    A non-finite ``value`` never improves; any finite value improves on a non-finite best.
    """
    if not math.isfinite(value):
        return False
    if not math.isfinite(best):
        return True
    return value > best if higher_is_better else value < best


def evaluate(task: str, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Test/validation metrics of ``predictions`` against ``targets`` (``nan`` = missing label).

    The one metric definition every backend reports, so that runs of different frameworks
    compare. ``predictions`` are probabilities of the positive class (classification) or
    values (regression), shaped like ``targets`` (molecules × tasks).

    Classification: ``roc_auc`` and ``prc_auc`` (mean over the tasks that have both classes;
    ``nan`` if none has) and ``accuracy`` at 0.5 over all labels. Regression: ``rmse``, ``mae``
    and ``r2`` over all labels. No labels at all: ``{}``.

    Raises:
        TrainingDiverged: a prediction for a labelled molecule is ``nan`` or infinite.
    """
    from sklearn import metrics

    predictions = np.asarray(predictions, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    mask = np.isfinite(targets)
    if not mask.any():
        return {}
    if not np.isfinite(predictions[mask]).all():
        bad = int((~np.isfinite(predictions[mask])).sum())
        raise TrainingDiverged(f"{bad} of {int(mask.sum())} predictions are not finite")
    if task == "classification":
        aucs, prcs = [], []
        for t in range(targets.shape[1]):
            m = mask[:, t]
            y = targets[m, t]
            if y.size and 0 < y.sum() < y.size:
                aucs.append(metrics.roc_auc_score(y, predictions[m, t]))
                prcs.append(metrics.average_precision_score(y, predictions[m, t]))
        return {
            "roc_auc": float(np.mean(aucs)) if aucs else math.nan,
            "prc_auc": float(np.mean(prcs)) if prcs else math.nan,
            "accuracy": float(((predictions[mask] > 0.5) == (targets[mask] > 0.5)).mean()),
        }
    err = predictions[mask] - targets[mask]
    var = float(np.var(targets[mask]))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.mean(err**2)) / var if var > 0 else math.nan,
    }


class Backend(ABC):
    """A framework that ``molpeg prune`` can train with.

    Subclasses set ``name``, ``description`` and ``requires`` (the distributions that must
    be importable) and implement :meth:`fit`, usually by deriving from
    :class:`~molpeg_plugins.pipeline.training.EpochBackend`, whose training driver implements it
    around the backend's :class:`~molpeg_plugins.pipeline.training.EpochModel`. They are made
    known through the
    ``molpeg_register_backends`` hook and must import their framework lazily, inside
    :meth:`fit` (or ``build``), so that listing backends never fails.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    default_pretrained: ClassVar[tuple[Path, str] | None] = None
    """``(checkpoint, what it is)`` shipped with the backend: ``molpeg prune`` fine-tunes from
    it unless given ``--pretrained`` or ``--from-scratch`` (``None``: train from scratch)."""

    def availability(self) -> tuple[bool, str]:
        """``(True, "chemprop 2.3.1, …")`` if every requirement imports, else ``(False, why)``."""
        found = []
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return False, f"{module} is not installed (pip install 'molpeg[{self.name}]')"
            try:
                found.append(f"{module} {importlib.metadata.version(module)}")
            except importlib.metadata.PackageNotFoundError:
                found.append(module)
        return True, ", ".join(found)

    @abstractmethod
    def fit(self, job: FitJob) -> FitResult:
        """Fine-tune a model on ``job`` with pruning and report the result."""
