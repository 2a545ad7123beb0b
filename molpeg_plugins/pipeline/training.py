"""The training driver: the epoch loop every backend shares, around one framework's model.

A backend supplies only what is framework-specific, as an :class:`EpochModel` (build the model
and its data, train one epoch, predict, save and restore its weights); an
:class:`EpochBackend` hands that model to the driver, which owns the rest:

* the epoch loop around the :class:`~molpeg_plugins.engine.pruner.Pruner` (``start_epoch``, the
  model's epoch, validation and ``molpeg_validation_end``, ``end_epoch``);
* the per-epoch history, one :class:`EpochRecord` per epoch;
* model selection: the epoch with the best validation metric (:func:`selection_metric`);
* the resume state ``resume.pt`` in the job's work folder, written atomically after every
  epoch and checked against :func:`run_fingerprint` on ``--resume``; it holds the model's
  training state, the pruner, the history, the best epoch and the random generators
  (:func:`capture_rng`), so a resumed run reproduces the uninterrupted one;
* the :class:`~molpeg_plugins.pipeline.backend.FitResult` (:func:`fit_result`).

A backend whose framework runs its own loop (the Chemprop backend drives a Lightning
``Trainer``) uses these parts without :class:`EpochBackend`.
"""

from __future__ import annotations

import hashlib
import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from molpeg_plugins.errors import ConfigError
from molpeg_plugins.pipeline.backend import Backend, FitJob, FitResult, evaluate, improves

if TYPE_CHECKING:
    from molpeg_plugins.engine.pruner import Pruner

RESUME_FILE = "resume.pt"
"""The resume state the driver writes to the job's work folder after every epoch."""
MODEL_FILE = "model.pt"
"""The trained model the driver asks :meth:`EpochModel.save` to write to the model folder."""


def selection_metric(task: str) -> tuple[str, bool]:
    """``(metric, higher_is_better)`` that picks the reported epoch: ROC-AUC or RMSE."""
    return ("roc_auc", True) if task == "classification" else ("rmse", False)


def run_fingerprint(job: FitJob, backend: str) -> str:
    """What a resume state must match: the run that wrote it.

    The fields: the backend name, the molecules (SMILES), the training and validation split,
    the labels, the task, ``epochs``, ``batch_size``, ``learning_rate``, ``seed``,
    ``pretrained`` and every pruning option (:class:`~molpeg_plugins.engine.config.PruneConfig`).
    """
    h = hashlib.sha256()
    for part in (
        backend,
        "\n".join(job.smiles),
        np.asarray(job.train_idx).tobytes(),
        np.asarray(job.val_idx).tobytes(),
        np.nan_to_num(np.asarray(job.targets, dtype=float), nan=-999.0).tobytes(),
        f"{job.task}|{job.epochs}|{job.batch_size}|{job.learning_rate}|{job.seed}|"
        f"{job.pretrained}|{sorted(job.config.to_dict().items())}",
    ):
        h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()


def ensure_same_run(path: Path, saved: str | None, expected: str) -> None:
    """Refuse to resume from ``path`` when its fingerprint ``saved`` is not ``expected``.

    Raises:
        ConfigError: the data, split or training options differ from the interrupted run.
    """
    if saved != expected:
        raise ConfigError(
            f"{path}: cannot resume: the data, split or training options differ from the "
            "interrupted run; rerun with --overwrite instead of --resume to start over"
        )


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global random generators (CPU and CUDA)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global random generators.

    CUDA's are included once CUDA is in use. The result loads with ``weights_only=True``
    (NumPy's key is stored as a tensor).
    """
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put the generators back into a state :func:`capture_rng` returned."""
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


@dataclass
class EpochRecord:
    """One row of the per-epoch history (``report.json``'s ``epochs``, the plots).

    Attributes:
        epoch: the epoch, counted from 0.
        num_kept: molecules trained on in the epoch.
        train_loss: mean training loss of the epoch.
        validation: validation metrics, named ``val_<metric>`` (none without validation).
        scores: the pruner's score statistics after the epoch, named ``score_<statistic>``.
        selection: how the epoch's keep set was chosen, for pruned epochs: the staleness
            statistics (``visited_since_warmup``, ``keep_turnover``) and the strategy's own
            (e.g. MolPeg's ``explore_rank_corr``).
    """

    epoch: int
    num_kept: int
    train_loss: float
    validation: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    selection: dict[str, float] = field(default_factory=dict)

    @classmethod
    def after_epoch(
        cls, pruner: Pruner, train_loss: float, validation: dict[str, float]
    ) -> EpochRecord:
        """The record of the epoch ``pruner`` has just ended."""
        stats = pruner.history[-1]
        return cls(
            epoch=int(stats["epoch"]),
            num_kept=int(stats["num_kept"]),
            train_loss=train_loss,
            validation=dict(validation),
            scores={k: float(v) for k, v in stats.items() if k.startswith("score_")},
            selection={k: float(v) for k, v in stats.items() if _is_selection_stat(k)},
        )

    def as_row(self) -> dict[str, float]:
        """The history row: ``epoch``, ``num_kept``, ``train_loss``, ``val_*``, ``score_*``,
        then the selection statistics."""
        return {
            "epoch": float(self.epoch),
            "num_kept": float(self.num_kept),
            "train_loss": self.train_loss,
            **self.validation,
            **self.scores,
            **self.selection,
        }

    @classmethod
    def from_row(cls, row: dict[str, float]) -> EpochRecord:
        """The record of a row :meth:`as_row` returned (read back from a resume state)."""
        return cls(
            epoch=int(row["epoch"]),
            num_kept=int(row["num_kept"]),
            train_loss=row["train_loss"],
            validation={k: v for k, v in row.items() if k.startswith("val_")},
            scores={k: v for k, v in row.items() if k.startswith("score_")},
            selection={k: v for k, v in row.items() if _is_selection_stat(k)},
        )


_NOT_SELECTION = frozenset({"epoch", "num_kept", "num_scored", "train_loss"})


def _is_selection_stat(key: str) -> bool:
    """Whether a pruner history key is a selection statistic (see ``EpochRecord``)."""
    return key not in _NOT_SELECTION and not key.startswith(("score_", "val_"))


def fit_result(
    job: FitJob,
    pruner: Pruner,
    history: list[EpochRecord],
    *,
    best_epoch: int,
    val_metrics: dict[str, float],
    test_metrics: dict[str, float],
    model_path: Path | None,
    versions: dict[str, str],
) -> FitResult:
    """The :class:`~molpeg_plugins.pipeline.backend.FitResult` of a finished run of ``pruner``."""
    return FitResult(
        metric_name=selection_metric(job.task)[0],
        best_epoch=int(best_epoch),
        val_metrics=val_metrics,
        test_metrics=test_metrics,
        history=[record.as_row() for record in history],
        pruner_state=pruner.state_dict(),
        final_kept=np.sort(pruner.final_selection().cpu().numpy()),
        model_path=model_path,
        versions=versions,
    )


def load_matching_weights(module: Any, saved: dict[str, Any], head: tuple[str, ...]) -> str | None:
    """Fine-tune ``module`` (a ``torch.nn.Module``) from the weights ``saved``.

    Loads every tensor of ``saved`` whose name and shape match ``module``'s; the weights
    whose names start with one of ``head`` may be missing (a new head for other tasks).

    Returns:
        ``None`` once loaded, or the name of the first weight outside ``head`` that
        ``saved`` cannot provide (then nothing is loaded).
    """
    own = module.state_dict()
    keep = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if not k.startswith(head) and k not in keep]
    if missing:
        return missing[0]
    module.load_state_dict(keep, strict=False)
    return None


class EpochModel(ABC):
    """The framework-specific half of a training run: one model, trained epoch by epoch.

    Made by :meth:`EpochBackend.build` for one job; builds its model, data and optimizer
    (and, with ``job.pretrained``, loads that checkpoint) before the first epoch. The driver
    calls the methods below; they are the whole contract.
    """

    runs_pruner_epochs: ClassVar[bool] = False
    """``True`` if the framework's own loop calls ``pruner.start_epoch()`` and
    ``pruner.end_epoch()`` (DeepChem's ``fit`` does); by default the driver calls them."""

    @abstractmethod
    def train_epoch(self, pruner: Pruner, epoch: int) -> float:
        """Train one epoch on ``pruner.sampler``'s molecules; return the mean training loss.

        Each batch goes through ``pruner.loss`` (or ``pruner.record``); report every batch to
        ``job.progress`` under :data:`~molpeg_plugins.pipeline.backend.BATCH_PROGRESS`.
        """

    @abstractmethod
    def predict(self, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), tasks)`` predictions for the molecules ``rows`` (positions into
        ``job.smiles``): probabilities of the positive class, or values (regression)."""

    @abstractmethod
    def weights(self) -> dict[str, Any]:
        """A copy of the model's weights, kept as the best epoch's model."""

    @abstractmethod
    def load_weights(self, weights: dict[str, Any]) -> None:
        """Put the weights :meth:`weights` returned back into the model."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The training state to resume from besides the pruner: weights, optimizer, EMA
        reference, step counters (tensors and plain values only)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the trained model file (the reported, best epoch's weights) to ``path``."""

    def versions(self) -> dict[str, str]:
        """Framework name → version, for ``report.json`` (default: none)."""
        return {}

    def teardown(self) -> None:
        """Release what the model holds outside Python objects (default: nothing)."""


@dataclass
class _Best:
    epoch: int = -1
    value: float = math.nan
    state: dict[str, Any] | None = None


class EpochBackend(Backend):
    """A backend trained by the driver: a subclass implements :meth:`build`.

    :meth:`fit` runs the epoch loop around the job's :class:`~molpeg_plugins.engine.pruner.Pruner`,
    validates after every epoch, keeps the best validation epoch's weights, writes the resume
    state and returns the :class:`~molpeg_plugins.pipeline.backend.FitResult`.
    """

    @abstractmethod
    def build(self, job: FitJob, pruner: Pruner) -> EpochModel:
        """The model that ``job`` trains with ``pruner`` (seeded with ``job.seed`` already)."""

    def fit(self, job: FitJob) -> FitResult:
        """Train ``build(job, pruner)`` with pruning and report the best validation epoch."""
        import torch

        from molpeg_plugins.engine.pruner import Pruner
        from molpeg_plugins.pipeline.atomic import torch_save
        from molpeg_plugins.pipeline.checkpoints import load_resume_state

        pm = job.plugin_manager
        work = Path(job.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        metric, higher_is_better = selection_metric(job.task)
        seed_everything(job.seed)
        device = torch.device(job.device)
        pruner = Pruner(
            len(job.train_idx),
            job.config,
            total_epochs=job.epochs,
            device=device,
            plugin_manager=pm,
            task=job.task,
        )
        model = self.build(job, pruner)
        try:
            history: list[EpochRecord] = []
            best = _Best()
            start = 0
            resume_path = work / RESUME_FILE
            fingerprint = run_fingerprint(job, self.name)
            if job.resume and resume_path.is_file():
                state = load_resume_state(resume_path, map_location=device, plugin_manager=pm)
                ensure_same_run(resume_path, state.get("fingerprint"), fingerprint)
                model.load_state_dict(state["model"])
                pruner.load_state_dict(state["pruner"])
                history = [EpochRecord.from_row(row) for row in state["history"]]
                best = _Best(**state["best"])
                start = int(state["epoch"])
                restore_rng(state["rng"])

            for epoch in range(start, job.epochs):
                if not model.runs_pruner_epochs:
                    pruner.start_epoch()
                train_loss = model.train_epoch(pruner, epoch)
                val = _metrics(job, model, job.val_idx)
                named = {f"val_{k}": v for k, v in val.items()}
                pm.hook.molpeg_validation_end(epoch=epoch, metrics=named)
                if not model.runs_pruner_epochs:
                    pruner.end_epoch()
                history.append(EpochRecord.after_epoch(pruner, train_loss, named))
                value = val.get(metric, math.nan)
                if (
                    best.state is None
                    or improves(value, best.value, higher_is_better)
                    or not len(job.val_idx)
                ):
                    best = _Best(epoch, value, model.weights())
                torch_save(
                    resume_path,
                    {
                        "fingerprint": fingerprint,
                        "epoch": epoch + 1,
                        "model": model.state_dict(),
                        "pruner": pruner.state_dict(),
                        "history": [record.as_row() for record in history],
                        "best": vars(best),
                        "rng": capture_rng(),
                    },
                )

            assert best.state is not None, "no epoch was trained"
            model.load_weights(best.state)
            with job.progress("Evaluating", total=2) as advance:
                val_metrics = _metrics(job, model, job.val_idx)
                advance(1)
                test_metrics = _metrics(job, model, job.test_idx)
                advance(1)
            model_path = job.model_folder / MODEL_FILE
            model.save(model_path)
            if not job.keep_resume_state:
                resume_path.unlink(missing_ok=True)
            return fit_result(
                job,
                pruner,
                history,
                best_epoch=best.epoch,
                val_metrics=val_metrics,
                test_metrics=test_metrics,
                model_path=model_path,
                versions=model.versions(),
            )
        finally:
            model.teardown()


def _metrics(job: FitJob, model: EpochModel, rows: np.ndarray) -> dict[str, float]:
    """:func:`~molpeg_plugins.pipeline.backend.evaluate` of the model on the molecules ``rows``."""
    if not len(rows):
        return {}
    targets = np.asarray(job.targets, dtype=np.float64)[np.asarray(rows, dtype=np.int64)]
    return evaluate(job.task, model.predict(rows), targets)
