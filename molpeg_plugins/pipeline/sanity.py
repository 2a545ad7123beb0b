"""Run-level sanity checks: stop a run whose numbers stopped meaning anything, flag a schedule
that would not prune.

A diverged training (a learning rate far too high, a label of ``1e300``) produces ``nan``
predictions; without a check the run would still "succeed" with ``rmse nan`` and write a
pruned dataset chosen from meaningless scores. :func:`fit_checked` runs a backend and turns
that into one error naming the epoch, on every backend.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from molpeg_plugins.engine.config import PruneConfig
from molpeg_plugins.errors import ConfigError
from molpeg_plugins.hookspecs import hookimpl
from molpeg_plugins.pipeline.backend import Backend, FitJob, FitResult, TrainingDiverged

if TYPE_CHECKING:
    from molpeg_plugins.pipeline.data import MoleculeTable

ADVICE = "lower --learning-rate, or check the labels for extreme values"
_LOSS_LIKE = ("rmse", "mae", "mse", "loss")
MIN_R2 = -1e6
"""A validation R² below this means predictions are ~1000 label standard deviations off:
not a poor model but a diverged one."""


class TrainingWatch:
    """Observer plugin: remembers the running epoch and stops on a non-finite validation error.

    Implements ``molpeg_epoch_start`` and ``molpeg_validation_end``. A regression R² below
    :data:`MIN_R2` counts as diverged too (finite predictions of ``1e23`` for labels near 0).
    Classification metrics
    are not checked here (a ROC-AUC is legitimately ``nan`` for a one-class split); their
    non-finite predictions are caught by :func:`~molpeg_plugins.pipeline.backend.evaluate`.
    """

    def __init__(self) -> None:
        self.epoch = 0

    @hookimpl
    def molpeg_epoch_start(self, pruner: Any, epoch: int, num_kept: int) -> None:
        """Note the epoch that is running."""
        self.epoch = epoch

    @hookimpl
    def molpeg_validation_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Raise :class:`TrainingDiverged` if an error metric (rmse, mae, loss) is not finite."""
        for name, value in metrics.items():
            if not isinstance(value, float | int):
                continue
            if any(k in name for k in _LOSS_LIKE) and not math.isfinite(value):
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch + 1}: {_named(name)} is {value}; {ADVICE}"
                )
            if name.endswith("r2") and value < MIN_R2:
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch + 1}: {_named(name)} is "
                    f"{value:.3g} (predictions far off the scale of the labels); {ADVICE}"
                )


def _named(metric: str) -> str:
    return f"validation {metric.removeprefix('val_')}"


def check_history(history: list[dict[str, float]]) -> None:
    """Raise :class:`TrainingDiverged` at the first epoch whose training loss is not finite."""
    for row in history:
        loss = row.get("train_loss")
        if isinstance(loss, float | int) and not math.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged in epoch {int(row['epoch']) + 1}: the training loss is "
                f"{loss}; {ADVICE}"
            )


def fit_checked(backend: Backend, job: FitJob) -> FitResult:
    """``backend.fit(job)``, stopped with one error (exit 1) when training goes non-finite.

    Raises:
        TrainingDiverged: predictions, a validation error metric or the training loss became
            ``nan``/``inf``; the message names the epoch and what to change.
    """
    watch = TrainingWatch()
    job.plugin_manager.register(watch, name="molpeg-training-watch")
    try:
        result = backend.fit(job)
    except TrainingDiverged as exc:
        if "in epoch" in str(exc):
            raise
        raise TrainingDiverged(
            f"training diverged in epoch {watch.epoch + 1}: {exc}; {ADVICE}"
        ) from None
    finally:
        job.plugin_manager.unregister(watch)
    check_history(result.history)
    return result


def check_schedule(epochs: int, config: PruneConfig, *, explicit_warmup: bool) -> list[str]:
    """Warnings about a schedule that prunes no epoch.

    With ``warmup_epochs >= epochs`` every epoch trains on all molecules, so ``pruned.csv``
    holds a selection that no epoch trained on.

    Raises:
        ConfigError: the user asked for that with ``--warmup-epochs`` (exit code 2).
    """
    if config.warmup_epochs < epochs:
        return []
    if explicit_warmup:
        raise ConfigError(
            f"--warmup-epochs {config.warmup_epochs} with --epochs {epochs}: no epoch would be "
            "pruned; use fewer warm-up epochs or more epochs"
        )
    return [
        f"the warm-up ({config.warmup_epochs} epochs) covers all {epochs} epochs, so no epoch "
        "trains on a pruned set; pruned.csv is the selection from the last epoch's scores "
        "(pass more --epochs to prune)"
    ]


def split_notes(table: MoleculeTable, val_rows: np.ndarray) -> list[str]:
    """Warnings about a validation split that cannot choose the best epoch.

    Model selection uses the validation ROC-AUC for classification; when every validation
    label of every task is one class the ROC-AUC is undefined in every epoch and the first
    epoch's model is reported.

    Args:
        table: the molecules of the run.
        val_rows: row numbers (into ``table``) of the validation molecules.
    """
    if table.task != "classification" or not len(val_rows):
        return []
    labels = table.targets[np.asarray(val_rows, dtype=np.int64)]
    both = [np.unique(col[np.isfinite(col)]).size == 2 for col in labels.T]
    if any(both):
        return []
    return [
        f"the validation split ({len(val_rows)} molecule{'s' * (len(val_rows) != 1)}) has a "
        "single class in "
        f"{', '.join(map(repr, table.target_columns))}: its ROC-AUC is undefined, so the "
        "reported model is the first epoch's; use more molecules or larger --split-sizes "
        "for validation"
    ]
