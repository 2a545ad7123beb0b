"""Lightning pieces of the ``chemprop`` backend: atomic checkpoints, batch progress and the
epoch history."""

from __future__ import annotations

import math
from typing import Any

from lightning import pytorch as pl
from lightning.pytorch.plugins.io import TorchCheckpointIO

from molpeg_plugins.atomic import torch_save
from molpeg_plugins.backend import BATCH_PROGRESS


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint writer that never leaves a truncated file (temp + ``os.replace``)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        """Write ``checkpoint`` to a temporary file next to ``path``, then rename it."""
        torch_save(path, checkpoint)


class BatchProgress(pl.Callback):
    """Reports every training batch to :attr:`~molpeg_plugins.backend.FitJob.progress`.

    One :data:`~molpeg_plugins.backend.BATCH_PROGRESS` task per epoch, sized with the
    epoch's (pruned) number of batches, so ``molpeg prune`` shows a batch bar with an ETA.

    Args:
        progress: the job's ``progress(description, total)`` context-manager factory.
    """

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self._task: Any = None
        self._advance: Any = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Open the epoch's batch task."""
        total = trainer.num_training_batches
        self._task = self.progress(
            BATCH_PROGRESS, total=int(total) if math.isfinite(total) else None
        )
        self._advance = self._task.__enter__()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        """One more batch done."""
        if self._advance is not None:
            self._advance(1)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the epoch's batch task (its clock stops)."""
        if self._task is not None:
            self._task.__exit__(None, None, None)
            self._task = self._advance = None


class HistoryCallback(pl.Callback):
    """Per-epoch history rows and ``molpeg_validation_end`` events for ``molpeg prune``.

    Each row holds ``epoch``, ``num_kept``, ``train_loss``, the validation metrics
    (``val_roc_auc`` / ``val_rmse``, ``val_loss``) and the epoch's score statistics. The
    history and the job's fingerprint travel in Lightning checkpoints, so a resumed run
    reports the whole history and refuses a checkpoint of a different job.

    Args:
        pruning: the run's :class:`~molpeg_chemprop.callback.MolPegCallback`.
        plugin_manager: where ``molpeg_validation_end`` is sent.
        fingerprint: identity of the job (see :func:`molpeg_chemprop.backend.job_fingerprint`).
    """

    KEY = "MolPegHistory"

    def __init__(self, pruning: Any, plugin_manager: Any, fingerprint: str) -> None:
        self.pruning = pruning
        self.pm = plugin_manager
        self.fingerprint = fingerprint
        self.history: list[dict[str, float]] = []

    @property
    def state_key(self) -> str:
        """Key of this callback's state in Lightning checkpoints."""
        return self.KEY

    def _row(self, epoch: int) -> dict[str, float]:
        for row in self.history:
            if int(row["epoch"]) == epoch:
                return row
        row = {"epoch": float(epoch)}
        self.history.append(row)
        return row

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the validation metrics and score statistics; notify observers."""
        if trainer.sanity_checking:
            return
        epoch = int(trainer.current_epoch)
        metrics = {}
        for name, value in trainer.callback_metrics.items():
            if name.startswith("val/"):
                name = "val_" + name[4:].replace("roc", "roc_auc")
            if name.startswith("val_"):
                metrics[name] = float(value)
        self.pm.hook.molpeg_validation_end(epoch=epoch, metrics=metrics)
        row = self._row(epoch)
        pruner = self.pruning.pruner
        scores = pruner.history[-1] if pruner is not None and pruner.history else {}
        row["num_kept"] = float(scores.get("num_kept", math.nan))
        row.update(metrics)
        row.update({k: float(v) for k, v in scores.items() if k.startswith("score_")})

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Add the epoch's mean training loss (and its kept count, if no validation ran)."""
        row = self._row(int(trainer.current_epoch))
        loss = trainer.callback_metrics.get("train_loss_epoch")
        if loss is not None:
            row["train_loss"] = float(loss)
        pruner = self.pruning.pruner
        if "num_kept" not in row and pruner is not None and pruner.history:
            scores = pruner.history[-1]
            row["num_kept"] = float(scores.get("num_kept", math.nan))
            row.update({k: float(v) for k, v in scores.items() if k.startswith("score_")})

    def state_dict(self) -> dict[str, Any]:
        """History and job fingerprint (saved in Lightning checkpoints)."""
        return {"history": [dict(r) for r in self.history], "fingerprint": self.fingerprint}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the history of the interrupted run."""
        self.history = [dict(r) for r in state_dict["history"]]
