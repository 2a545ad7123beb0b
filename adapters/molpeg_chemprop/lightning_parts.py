"""Lightning pieces of the ``chemprop`` backend: atomic checkpoints, batch progress and the
epoch history."""

from __future__ import annotations

import math
from typing import Any

from lightning import pytorch as pl
from lightning.pytorch.plugins.io import TorchCheckpointIO

from molpeg_plugins.pipeline.atomic import torch_save
from molpeg_plugins.pipeline.backend import BATCH_PROGRESS
from molpeg_plugins.pipeline.training import EpochRecord


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint writer that never leaves a truncated file (temp + ``os.replace``)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        """Write ``checkpoint`` to a temporary file next to ``path``, then rename it."""
        torch_save(path, checkpoint)


class BatchProgress(pl.Callback):
    """Reports every training batch to :attr:`~molpeg_plugins.pipeline.backend.FitJob.progress`.

    One :data:`~molpeg_plugins.pipeline.backend.BATCH_PROGRESS` task per epoch, sized with the
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
    """Per-epoch history records and ``molpeg_validation_end`` events for ``molpeg prune``.

    One :class:`~molpeg_plugins.pipeline.training.EpochRecord` per epoch: the kept count, the mean
    training loss, the validation metrics (``val_roc_auc`` / ``val_rmse``, ``val_loss``) and
    the epoch's score statistics. The history and the job's fingerprint travel in Lightning
    checkpoints, so a resumed run reports the whole history and refuses a checkpoint of a
    different job.

    Args:
        pruning: the run's :class:`~molpeg_chemprop.callback.MolPegCallback`.
        plugin_manager: where ``molpeg_validation_end`` is sent.
        fingerprint: identity of the job (see
            :func:`molpeg_plugins.pipeline.training.run_fingerprint`).
    """

    KEY = "MolPegHistory"

    def __init__(self, pruning: Any, plugin_manager: Any, fingerprint: str) -> None:
        self.pruning = pruning
        self.pm = plugin_manager
        self.fingerprint = fingerprint
        self.records: list[EpochRecord] = []
        self._validation: dict[str, float] = {}

    @property
    def state_key(self) -> str:
        """Key of this callback's state in Lightning checkpoints."""
        return self.KEY

    @property
    def history(self) -> list[dict[str, float]]:
        """The records as history rows (see :meth:`EpochRecord.as_row`)."""
        return [record.as_row() for record in self.records]

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keep the epoch's validation metrics for its record; notify observers."""
        if trainer.sanity_checking:
            return
        metrics = {}
        for name, value in trainer.callback_metrics.items():
            if name.startswith("val/"):
                name = "val_" + name[4:].replace("roc", "roc_auc")
            if name.startswith("val_"):
                metrics[name] = float(value)
        self.pm.hook.molpeg_validation_end(epoch=int(trainer.current_epoch), metrics=metrics)
        self._validation = metrics

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the epoch: kept count, mean training loss, validation, score statistics."""
        loss = trainer.callback_metrics.get("train_loss_epoch")
        pruner = self.pruning.pruner
        assert pruner is not None and pruner.history, "the pruner has not ended an epoch"
        train_loss = math.nan if loss is None else float(loss)
        self.records.append(EpochRecord.after_epoch(pruner, train_loss, self._validation))
        self._validation = {}

    def state_dict(self) -> dict[str, Any]:
        """History and job fingerprint (saved in Lightning checkpoints)."""
        return {"history": self.history, "fingerprint": self.fingerprint}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the history of the interrupted run."""
        self.records = [EpochRecord.from_row(row) for row in state_dict["history"]]
