"""MolPeg inside Chemprop's own Lightning training loop: :class:`MolPegCallback`.

Add the callback to any ``lightning.pytorch.Trainer`` that fits a Chemprop ``MPNN``::

    trainer = pl.Trainer(max_epochs=30, callbacks=[MolPegCallback(prune_ratio=0.6)])
    trainer.fit(model, train_loader, val_loader)

The callback only coordinates; each piece of the training loop has its own module:

* **Data** (:mod:`~molpeg_chemprop.loader`). When Lightning asks for the training loader,
  the callback serves a copy of it whose sampler is the pruner's mutable
  :class:`~molpeg_plugins.PruningSampler`, and maps each batch to its dataset indices.
  ``reload_dataloaders_every_n_epochs`` is forced to 1, so ``len(loader)`` — and with it
  validation and checkpointing — follows the pruned epoch length.
* **Online loss** (:mod:`~molpeg_chemprop.capture`). The loss the training step computes
  anyway is kept as one value per molecule — no second online forward.
* **Reference loss** (:mod:`~molpeg_chemprop.reference`): an EMA of the predictor
  (``reference="head"``, the default for classification) or of the whole MPNN
  (``reference="model"``, the default for regression), run every batch or,
  with ``reference_every=k``, every k-th batch of a pruned epoch.
* **Selection.** After the last training batch of an epoch (before validation and
  checkpointing, so checkpoints hold the next epoch's keep set) the pruner folds in the
  scores and chooses the next epoch's molecules.
* **Learning rate** (:mod:`~molpeg_chemprop.schedule`). Chemprop's Noam schedule is sized
  from the batches of the first epoch; it is re-sized to the real number of optimizer steps
  of the pruned run.
* **Logging and history** (:mod:`~molpeg_chemprop.history`). ``molpeg/num_kept`` and
  ``molpeg/score_*`` go to the Lightning logger once per epoch; :attr:`MolPegCallback.history`
  joins the pruner's history with the loop's per-epoch facts.
* **Checkpoints**: pruner, reference, RNG (:func:`~molpeg_plugins.pipeline.training.capture_rng`)
  and loop facts.

The few private Lightning and Chemprop attributes this needs are used only in
:mod:`~molpeg_chemprop.internals`, which checks the installed versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from molpeg_chemprop import internals
from molpeg_chemprop.capture import BatchCapture, TrainingStepTap
from molpeg_chemprop.history import LoopRecords, log_scores, write_history
from molpeg_chemprop.loader import PrunedLoader
from molpeg_chemprop.losses import check_per_sample_criterion
from molpeg_chemprop.predictor import probabilities, task_of
from molpeg_chemprop.reference import ChempropReference
from molpeg_chemprop.schedule import has_noam, planned_steps, resize_noam
from molpeg_plugins import EMAReference, PruneConfig, Pruner
from molpeg_plugins.errors import MolPegError
from molpeg_plugins.pipeline.training import capture_rng, restore_rng
from molpeg_plugins.plugins import get_plugin_manager


class MolPegCallback(pl.Callback):
    """Dynamic data pruning (MolPeg or any registered strategy) for a Chemprop ``MPNN``.

    Args:
        config: pruning options; keyword ``overrides`` (``prune_ratio=0.6``,
            ``strategy="infobatch"`` …) are applied on top.
        reference_parameters: which parameters the EMA reference averages (regular
            expression on parameter names, e.g. ``"^message_passing"``; default all).
        history_path: if given, a CSV file rewritten (atomically, on rank 0) after every
            epoch with one row per epoch: ``epoch``, ``num_kept``, ``num_batches``, the
            learning rate, the validation metrics and the score statistics.
        plugin_manager: where strategies are looked up and events are sent.
        **overrides: :class:`~molpeg_plugins.PruneConfig` fields.

    Attributes:
        pruner: the :class:`~molpeg_plugins.Pruner` (created when training starts).
        loader: the :class:`~molpeg_chemprop.loader.PrunedLoader` serving the training data.
    """

    def __init__(
        self,
        config: PruneConfig | None = None,
        *,
        reference_parameters: str | None = None,
        history_path: str | Path | None = None,
        plugin_manager: Any = None,
        **overrides: Any,
    ) -> None:
        base = config.to_dict() if config is not None else {}
        self.config = PruneConfig(**{**base, **overrides})
        self.pm = plugin_manager or get_plugin_manager()
        self.reference_parameters = reference_parameters
        self.history_path = Path(history_path) if history_path is not None else None
        self.pruner: Pruner | None = None
        self.loader = PrunedLoader(self.config.seed)
        self._reference: ChempropReference | None = None
        self._tap = TrainingStepTap(self._head_output)
        self._records = LoopRecords()
        self._restored: dict[str, Any] = {}
        self._epoch_ended = -1
        self._weighted = False
        self._step_before = 0
        self._task: str | None = None

    @property
    def state_key(self) -> str:
        """Key of this callback's state in Lightning checkpoints."""
        return "MolPegCallback"

    @property
    def reference(self) -> EMAReference | None:
        """The :class:`~molpeg_plugins.EMAReference` (``None`` if the strategy needs none)."""
        return self._reference.ema if self._reference is not None else None

    @property
    def history(self) -> list[dict[str, float]]:
        """One row per finished epoch: the pruner's history row and the loop's facts
        (``num_batches``, ``global_step``, ``lr``, the validation metrics)."""
        return self._records.rows(self.pruner.history if self.pruner is not None else [])

    # ------------------------------------------------------------------ set-up

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the model, force per-epoch data reloads and take over the training loader."""
        if stage != "fit":
            return
        criterion = getattr(pl_module, "criterion", None)
        if criterion is None or not hasattr(pl_module, "predictor"):
            raise MolPegError(
                f"MolPegCallback trains Chemprop MPNN models; got {type(pl_module).__name__}"
            )
        check_per_sample_criterion(criterion)
        self._task = task_of(pl_module)
        if trainer.reload_dataloaders_every_n_epochs != 1:
            trainer.reload_dataloaders_every_n_epochs = 1
        # the pruning sampler shards itself across ranks; Lightning must not wrap it
        internals.disable_distributed_sampler(trainer)
        internals.serve_train_dataloader(trainer, lambda loader: self.install(loader, trainer))

    def install(self, loader: Any, trainer: pl.Trainer | None = None) -> DataLoader:
        """Return ``loader`` rebuilt around the pruner's sampler (creates the pruner once).

        Called by Lightning whenever it (re)loads the training data; you may also call it
        yourself on a ``DataLoader`` you pass to ``trainer.fit``.
        """
        loader = PrunedLoader.check(loader)
        served = self.loader.served(loader)
        if served is not None:
            return served
        if self.pruner is None:
            self._build_pruner(len(loader.dataset), trainer)  # type: ignore[arg-type]
        assert self.pruner is not None
        return self.loader.serve(loader, self.pruner.sampler)

    def _build_pruner(self, num_samples: int, trainer: pl.Trainer | None) -> None:
        max_epochs = trainer.max_epochs if trainer is not None else None
        total = max_epochs if max_epochs is not None and max_epochs > 0 else None
        device = trainer.strategy.root_device if trainer is not None else None
        self.pruner = Pruner(
            num_samples,
            self.config,
            total_epochs=total,
            device=device,
            plugin_manager=self.pm,
            task=self._task,
        )
        if "pruner" in self._restored:
            self.pruner.load_state_dict(self._restored.pop("pruner"))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Snapshot the (pretrained) model as the reference and tap the training step."""
        if self.pruner is None:
            # Lightning has not requested the data yet: do it now, the pruner needs N
            internals.load_train_data(trainer)
        assert self.pruner is not None
        if self.pruner.strategy.needs_reference and self._reference is None:
            self._reference = ChempropReference(
                pl_module,
                self.pruner.reference,
                self.config.ema_momentum,
                self.reference_parameters,
                self.pm,
            )
            if "reference" in self._restored:
                self._reference.ema.load_state_dict(self._restored.pop("reference"))
        head_mode = self._reference is not None and self._reference.head
        self._tap.attach(pl_module, embeddings=head_mode or self.pruner.wants("embeddings"))

    def _head_output(self, embeddings: Any) -> Any:
        assert self._reference is not None
        return self._reference.head_output(embeddings)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Re-size Chemprop's Noam schedule to the pruned step count; restore RNG on resume."""
        if has_noam(trainer, pl_module):
            resize_noam(trainer, pl_module, self.planned_steps(trainer))
        if "rng" in self._restored:
            restore_rng(self._restored.pop("rng"))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Give the model back its own criterion."""
        self._tap.detach(pl_module)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Give the model back its own criterion when training fails."""
        self._tap.detach(pl_module)

    def planned_steps(self, trainer: pl.Trainer) -> list[int]:
        """Optimizer steps of each epoch of the run, on this rank, given the pruning schedule."""
        assert self.pruner is not None
        return planned_steps(
            self.pruner,
            trainer.max_epochs or 0,
            self.loader.batch_size,
            self.loader.drop_last,
            trainer.accumulate_grad_batches,
        )

    # ------------------------------------------------------------------ epochs and batches

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the pruner's epoch and snapshot this rank's order of dataset indices."""
        assert self.pruner is not None
        selection = self.pruner.start_epoch()
        self.loader.start_epoch(self.pruner.sampler, pl_module.device)
        self._weighted = bool(selection.pruned) and not bool((selection.weights == 1).all())
        self._epoch_ended = -1

    def batch_indices(self, batch: Any, batch_idx: int) -> Any:
        """Dataset indices of the molecules in training batch ``batch_idx`` (on the device)."""
        return self.loader.batch_indices(batch, batch_idx)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Find the batch's dataset indices and run the full-model reference on it."""
        assert self.pruner is not None
        capture = BatchCapture(indices=self.batch_indices(batch, batch_idx))
        if self._weighted:
            capture.weights = self.pruner.weights(capture.indices)
        if self._reference is not None and self._reference.due(self.pruner, batch_idx):
            if self._reference.head:  # computed on the fingerprints, inside the criterion
                capture.head_reference = True
            else:
                capture.reference = self._reference.model_loss(batch)
        if self.pruner.wants("targets") or self.pruner.wants("mask"):
            targets = batch[3]
            capture.targets = targets.nan_to_num(nan=0.0)
            capture.mask = targets.isfinite()
        self._tap.current = capture
        self._step_before = trainer.global_step

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Record the batch's scores, update the reference and, after the last batch, select."""
        assert self.pruner is not None
        capture, self._tap.current = self._tap.current, None
        if capture is not None and capture.online is not None:
            self.pruner.record(capture.indices, capture.online, capture.reference)
            if self.pruner.strategy.signals:
                assert capture.preds is not None
                self.pruner.observe(
                    capture.indices,
                    predictions=probabilities(pl_module, capture.preds),
                    targets=capture.targets,
                    mask=capture.mask,
                    embeddings=capture.embeddings,
                )
        if self._reference is not None and trainer.global_step != self._step_before:
            self._reference.follow(pl_module)
        if batch_idx + 1 >= trainer.num_training_batches:
            self._end_epoch(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Select the next epoch if no batch did; add the epoch to :attr:`history`."""
        self._end_epoch(trainer, pl_module)
        assert self.pruner is not None
        self._records.record(int(self.pruner.history[-1]["epoch"]), trainer)
        if self.history_path is not None and trainer.is_global_zero:
            write_history(self.history_path, self.history)

    def _end_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.pruner is not None
        if self._epoch_ended == trainer.current_epoch:
            return
        self._epoch_ended = trainer.current_epoch
        self.pruner.end_epoch()
        log_scores(pl_module, self.pruner.history[-1])

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Pruner, reference, RNG state and loop facts, saved in Lightning checkpoints."""
        state: dict[str, Any] = {"rng": capture_rng(), "history": self._records.state_dict()}
        if self.pruner is not None:
            state["pruner"] = self.pruner.state_dict()
        if self._reference is not None:
            state["reference"] = self._reference.ema.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (applied once the pruner exists)."""
        self._restored = dict(state_dict)
        self._records.load_state_dict(self._restored.pop("history", []))
        if self.pruner is not None and "pruner" in self._restored:
            self.pruner.load_state_dict(self._restored.pop("pruner"))
        if self._reference is not None and "reference" in self._restored:
            self._reference.ema.load_state_dict(self._restored.pop("reference"))
