"""MolPeg inside Chemprop's own Lightning training loop: :class:`MolPegCallback`.

Add the callback to any ``lightning.pytorch.Trainer`` that fits a Chemprop ``MPNN``::

    trainer = pl.Trainer(max_epochs=30, callbacks=[MolPegCallback(prune_ratio=0.6)])
    trainer.fit(model, train_loader, val_loader)

What it does, per piece of the training loop:

* **Data.** When Lightning asks for the training loader, the callback serves a copy of it
  whose sampler is the pruner's mutable :class:`~molpeg_plugins.PruningSampler` (same
  dataset, batch size, collate function and workers). ``reload_dataloaders_every_n_epochs``
  is forced to 1, so ``len(loader)`` — and with it validation and checkpointing — follows the
  pruned epoch length.
* **Which molecules are in a batch.** The loader iterates the sampler's order of the epoch
  in consecutive chunks of ``batch_size`` and returns batches in order, so batch ``k`` holds
  the dataset indices ``order[k*B:(k+1)*B]``. The callback snapshots that order when the
  epoch starts and checks each batch's size against its slice.
* **Online loss.** The criterion's ``update`` is wrapped (instance attribute, nothing else
  changes) so that the ``(batch, tasks)`` loss the training step computes anyway is kept as
  one value per molecule — no second online forward.
* **Reference loss.** By default (``reference="head"``) the reference is an EMA of the
  predictor (FFN) only, run under ``no_grad`` on the fingerprint the training step computed,
  so no second message-passing pass runs. With ``reference="model"`` (the paper's rule) it
  is an EMA of the whole MPNN with its own eval-mode forward per batch. Either follows the
  online model after every optimizer step; with ``reference_every=k`` it is run on every
  k-th batch of a pruned epoch only.
* **Selection.** After the last training batch of an epoch (before validation and
  checkpointing, so checkpoints hold the next epoch's keep set) the pruner folds in the
  scores and chooses the next epoch's molecules.
* **Learning rate.** Chemprop's Noam schedule is sized from the batches of the first epoch;
  it is re-sized to the real number of optimizer steps of the pruned run.
* **Logging.** ``molpeg/num_kept`` and ``molpeg/score_*`` go to the Lightning logger once
  per epoch.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from molpeg_chemprop.hooks import check_per_sample_criterion
from molpeg_plugins import EMAReference, PruneConfig, Pruner, masked_sample_loss
from molpeg_plugins.errors import MolPegError
from molpeg_plugins.plugins import get_plugin_manager

log = logging.getLogger(__name__)


class NoamSchedule:
    """Chemprop's Noam-like learning-rate factor over an explicit number of steps.

    Linear warm-up from ``init_lr`` to ``max_lr`` over ``warmup_steps``, then exponential
    decay to ``final_lr`` over ``cooldown_steps``, then constant. Returns the factor relative
    to ``init_lr`` (what ``LambdaLR`` multiplies the base rate by). A callable object rather
    than a closure, so that ``LambdaLR.state_dict`` saves and restores it.
    """

    def __init__(
        self, warmup_steps: int, cooldown_steps: int, init_lr: float, max_lr: float, final_lr: float
    ) -> None:
        self.warmup_steps = int(warmup_steps)
        self.cooldown_steps = int(cooldown_steps)
        self.init_lr, self.max_lr, self.final_lr = float(init_lr), float(max_lr), float(final_lr)

    def __call__(self, step: int) -> float:
        """Learning-rate factor at optimizer step ``step``."""
        if step < self.warmup_steps:
            return 1.0 + step * (self.max_lr - self.init_lr) / self.warmup_steps / self.init_lr
        if step < self.warmup_steps + self.cooldown_steps:
            decay = (self.final_lr / self.max_lr) ** (
                (step - self.warmup_steps) / self.cooldown_steps
            )
            return self.max_lr * decay / self.init_lr
        return self.final_lr / self.init_lr


def _task_of(model: Any) -> str | None:
    """``"classification"`` or ``"regression"`` from a Chemprop MPNN's predictor (else None)."""
    from chemprop.nn.predictors import (
        BinaryClassificationFFNBase,
        MulticlassClassificationFFN,
        RegressionFFN,
    )

    predictor = getattr(model, "predictor", None)
    if isinstance(predictor, (BinaryClassificationFFNBase, MulticlassClassificationFFN)):
        return "classification"
    if isinstance(predictor, RegressionFFN):
        return "regression"
    return None


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
        reference: the :class:`~molpeg_plugins.EMAReference` (``None`` if the strategy does
            not need one).
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
        self.history: list[dict[str, float]] = []
        self.pruner: Pruner | None = None
        self.reference: EMAReference | None = None
        self._loaders: dict[int, DataLoader] = {}
        self._stash: dict[str, Any] = {}
        self._order: torch.Tensor | None = None
        self._order_device: torch.Tensor | None = None
        self._batch_size = 1
        self._drop_last = False
        self._epoch_ended = -1
        self._weighted = False
        self._batch: dict[str, Any] | None = None
        self._step_before = 0
        self._criterion_patched: Any = None
        self._task: str | None = None

    @property
    def state_key(self) -> str:
        """Key of this callback's state in Lightning checkpoints."""
        return "MolPegCallback"

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
        self._task = _task_of(pl_module)
        if trainer.reload_dataloaders_every_n_epochs != 1:
            trainer.reload_dataloaders_every_n_epochs = 1
        # the pruning sampler shards itself across ranks; Lightning must not wrap it
        trainer._accelerator_connector.use_distributed_sampler = False
        source = trainer.fit_loop._data_source
        request = source.dataloader
        if getattr(request, "_molpeg", False):
            return

        def serve() -> Any:
            return self.install(request(), trainer)

        serve._molpeg = True  # type: ignore[attr-defined]
        source.dataloader = serve

    def install(self, loader: Any, trainer: pl.Trainer | None = None) -> DataLoader:
        """Return ``loader`` rebuilt around the pruner's sampler (creates the pruner once).

        Called by Lightning whenever it (re)loads the training data; you may also call it
        yourself on a ``DataLoader`` you pass to ``trainer.fit``.
        """
        if not isinstance(loader, DataLoader) or loader.batch_size is None:
            raise MolPegError(
                "MolPegCallback needs a torch DataLoader built with batch_size (e.g. chemprop's "
                f"build_dataloader); got {type(loader).__name__}"
            )
        if id(loader) in self._loaders:
            return self._loaders[id(loader)]
        if any(served is loader for served in self._loaders.values()):
            return loader
        if self.pruner is None:
            self._build_pruner(len(loader.dataset), trainer)
        assert self.pruner is not None
        generator = torch.Generator().manual_seed(self.config.seed)
        served = DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=self.pruner.sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            drop_last=loader.drop_last,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            persistent_workers=loader.persistent_workers,
            prefetch_factor=loader.prefetch_factor if loader.num_workers else None,
            generator=generator,
        )
        self._batch_size = int(loader.batch_size)
        self._drop_last = bool(loader.drop_last)
        self._loaders[id(loader)] = served
        return served

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
        if "pruner" in self._stash:
            self.pruner.load_state_dict(self._stash.pop("pruner"))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Snapshot the (pretrained) model as the reference and wrap the criterion."""
        if self.pruner is None:
            # Lightning has not requested the data yet: do it now, the pruner needs N
            trainer.fit_loop.setup_data()
        assert self.pruner is not None
        if self.pruner.strategy.needs_reference and self.reference is None:
            self.reference = EMAReference(
                self._reference_source(pl_module),
                self.config.ema_momentum,
                parameters=self.reference_parameters,
                plugin_manager=self.pm,
            )
            if "reference" in self._stash:
                self.reference.load_state_dict(self._stash.pop("reference"))
        self._wrap_criterion(pl_module)

    def _reference_source(self, pl_module: pl.LightningModule) -> torch.nn.Module:
        """What the EMA reference averages: the whole MPNN, or its predictor (head mode)."""
        return pl_module.predictor if self.config.reference == "head" else pl_module

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Re-size Chemprop's Noam schedule to the pruned step count; restore RNG on resume."""
        self._resize_noam(trainer, pl_module)
        if "rng" in self._stash:
            _set_rng_state(self._stash.pop("rng"))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Give the model back its own criterion."""
        self._unwrap_criterion(pl_module)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Give the model back its own criterion when training fails."""
        self._unwrap_criterion(pl_module)

    # ------------------------------------------------------------------ learning rate

    def planned_steps(self, trainer: pl.Trainer) -> list[int]:
        """Optimizer steps of each epoch of the run, on this rank, given the pruning schedule."""
        assert self.pruner is not None
        world = self.pruner.sampler.num_replicas
        accumulate = max(1, int(trainer.accumulate_grad_batches))
        steps = []
        for epoch in range(trainer.max_epochs or 0):
            n = (
                self.pruner.num_kept
                if self.pruner.is_pruned_epoch(epoch)
                else self.pruner.num_samples
            )
            local = math.ceil(n / world)
            b = self._batch_size
            batches = local // b if self._drop_last else math.ceil(local / b)
            steps.append(math.ceil(batches / accumulate))
        return steps

    def _resize_noam(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        needed = ("warmup_epochs", "init_lr", "max_lr", "final_lr")
        if not all(hasattr(pl_module, k) for k in needed) or not trainer.max_epochs:
            return
        if trainer.max_epochs < 0:
            return
        steps = self.planned_steps(trainer)
        warmup_epochs = int(pl_module.warmup_epochs)
        schedule = NoamSchedule(
            sum(steps[:warmup_epochs]),
            sum(steps[warmup_epochs:]),
            pl_module.init_lr,
            pl_module.max_lr,
            pl_module.final_lr,
        )
        for config in trainer.lr_scheduler_configs:
            sched = config.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                sched.lr_lambdas = [schedule for _ in sched.lr_lambdas]
                for group, base in zip(sched.optimizer.param_groups, sched.base_lrs, strict=True):
                    group["lr"] = base * schedule(sched.last_epoch)
                log.info(
                    "molpeg: Noam schedule re-sized to %d warm-up + %d decay steps",
                    schedule.warmup_steps,
                    schedule.cooldown_steps,
                )

    # ------------------------------------------------------------------ criterion capture

    def _wrap_criterion(self, pl_module: pl.LightningModule) -> None:
        """Wrap the criterion's ``update`` so that each training call also yields per-sample losses.

        ``update`` (an instance attribute torchmetrics itself sets and leaves out of pickles,
        so checkpoints are unaffected) receives exactly what the training step computed:
        predictions, targets, mask and weights. The per-molecule loss is the criterion's own
        ``_calc_unreduced_loss`` on the detached predictions — an element-wise loss, no
        forward pass. Pruner loss weights (``--prune-rescale``, InfoBatch) are folded into
        the sample weights the criterion already multiplies by.
        """
        criterion = pl_module.criterion
        if self._criterion_patched is not None and self._criterion_patched[0] is criterion:
            return
        original = criterion.update

        def update(preds, targets, mask=None, weights=None, lt_mask=None, gt_mask=None):  # type: ignore[no-untyped-def]
            batch = self._batch
            if batch is not None and batch.get("online") is None:
                mask = targets.isfinite() if mask is None else mask
                if weights is None:
                    weights = torch.ones(targets.shape[0], 1, device=targets.device)
                raw = type(criterion)._calc_unreduced_loss(
                    criterion, preds.detach(), targets, mask, weights, lt_mask, gt_mask
                )
                batch["online"] = masked_sample_loss(raw * criterion.task_weights, mask)
                batch["preds"] = preds.detach()
                if batch.get("head_reference"):
                    ref_preds = self._head_reference(batch["embeddings"])
                    raw_ref = type(criterion)._calc_unreduced_loss(
                        criterion, ref_preds, targets, mask, weights, lt_mask, gt_mask
                    )
                    batch["reference"] = masked_sample_loss(raw_ref * criterion.task_weights, mask)
                if self._weighted:
                    weights = weights * batch["weights"].to(weights.dtype).view(-1, 1)
            return original(preds, targets, mask, weights, lt_mask, gt_mask)

        criterion.update = update
        self._criterion_patched = (criterion, original)
        predictor = pl_module.predictor
        head_mode = self.reference is not None and self.config.reference == "head"
        if head_mode or (self.pruner is not None and self.pruner.wants("embeddings")):
            train_step = type(predictor).train_step

            def capture_train_step(Z):  # type: ignore[no-untyped-def]
                if self._batch is not None and "embeddings" not in self._batch:
                    self._batch["embeddings"] = Z.detach()
                return train_step(predictor, Z)

            predictor.train_step = capture_train_step

    def _head_reference(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The reference predictor's training-space output on the online fingerprints."""
        assert self.reference is not None
        head = self.reference.module
        head.train(self.reference.train_mode)
        with torch.no_grad():
            return head.train_step(embeddings)

    def _unwrap_criterion(self, pl_module: pl.LightningModule) -> None:
        if self._criterion_patched is not None:
            criterion, original = self._criterion_patched
            criterion.update = original
            self._criterion_patched = None
        predictor = getattr(pl_module, "predictor", None)
        if predictor is not None:
            predictor.__dict__.pop("train_step", None)

    # ------------------------------------------------------------------ epochs and batches

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Snapshot this rank's order of dataset indices for the epoch."""
        assert self.pruner is not None
        selection = self.pruner.start_epoch()
        self._order = torch.as_tensor(list(iter(self.pruner.sampler)), dtype=torch.long)
        self._order_device = self._order.to(pl_module.device)
        self._weighted = bool(selection.pruned) and not bool(
            torch.all(selection.weights == 1).item()
        )
        self._epoch_ended = -1

    def batch_indices(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Dataset indices of the molecules in training batch ``batch_idx`` (on the device)."""
        assert self._order is not None and self._order_device is not None
        start = batch_idx * self._batch_size
        size = len(batch[0])
        if start + size > self._order.numel():
            raise RuntimeError(
                f"molpeg: training batch {batch_idx} of {size} molecules does not fit the "
                f"epoch's order of {self._order.numel()} indices; the training loader is not "
                "the one MolPegCallback installed"
            )
        return self._order_device[start : start + size]

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Find the batch's dataset indices and run the reference forward on it."""
        assert self.pruner is not None
        indices = self.batch_indices(batch, batch_idx)
        state: dict[str, Any] = {"indices": indices, "online": None}
        if self._weighted:
            state["weights"] = self.pruner.weights(indices)
        if self.reference is not None and self.pruner.reference_due(batch_idx, self.reference):
            if self.config.reference == "head":  # computed on the fingerprints, in update()
                state["head_reference"] = True
            else:
                state["reference"] = self.pm.hook.molpeg_per_sample_loss(
                    model=self.reference.module, batch=batch, output=None
                )
        if self.pruner.wants("targets") or self.pruner.wants("mask"):
            targets = batch[3]
            state["targets"] = targets.nan_to_num(nan=0.0)
            state["mask"] = targets.isfinite()
        self._batch = state
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
        state, self._batch = self._batch, None
        if state is not None and state.get("online") is not None:
            self.pruner.record(state["indices"], state["online"], state.get("reference"))
            if self.pruner.strategy.signals:
                self.pruner.observe(
                    state["indices"],
                    predictions=self._probabilities(pl_module, state["preds"]),
                    targets=state.get("targets"),
                    mask=state.get("mask"),
                    embeddings=state.get("embeddings"),
                )
        if self.reference is not None and trainer.global_step != self._step_before:
            self.reference.update(self._reference_source(pl_module))
        if batch_idx + 1 >= trainer.num_training_batches:
            self._end_epoch(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Select the next epoch if no batch did; add the epoch to :attr:`history`."""
        self._end_epoch(trainer, pl_module)
        assert self.pruner is not None
        row = {k: float(v) for k, v in self.pruner.history[-1].items()}
        row["num_batches"] = float(trainer.num_training_batches)
        row["global_step"] = float(trainer.global_step)
        if trainer.optimizers:
            row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        for name, value in trainer.callback_metrics.items():
            if name.startswith("val") and value.numel() == 1:
                row[name] = float(value)
        self.history = [h for h in self.history if h["epoch"] != row["epoch"]] + [row]
        if self.history_path is not None and trainer.is_global_zero:
            self._write_history()

    def _write_history(self) -> None:
        import csv

        from molpeg_plugins.atomic import atomic_write

        assert self.history_path is not None
        columns: list[str] = []
        for row in self.history:
            columns += [k for k in row if k not in columns]

        def write(handle: Any) -> None:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.history)

        atomic_write(self.history_path, write, binary=False)

    def _end_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.pruner is not None
        if self._epoch_ended == trainer.current_epoch:
            return
        self._epoch_ended = trainer.current_epoch
        self.pruner.end_epoch()
        stats = self.pruner.history[-1]
        for key, value in stats.items():
            if key == "epoch" or not math.isfinite(value):
                continue
            pl_module.log(f"molpeg/{key}", float(value), on_step=False, on_epoch=True, batch_size=1)

    @staticmethod
    def _probabilities(pl_module: pl.LightningModule, preds: torch.Tensor) -> torch.Tensor:
        from chemprop.nn.predictors import BinaryClassificationFFNBase, MulticlassClassificationFFN

        predictor = pl_module.predictor
        if isinstance(predictor, BinaryClassificationFFNBase):
            return preds.sigmoid() if preds.ndim == 2 else preds
        if isinstance(predictor, MulticlassClassificationFFN):
            return preds.softmax(-1)
        return preds[..., 0] if preds.ndim == 3 else preds

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Pruner, reference and RNG state, saved in Lightning checkpoints for exact resume."""
        state: dict[str, Any] = {"rng": _rng_state(), "history": list(self.history)}
        if self.pruner is not None:
            state["pruner"] = self.pruner.state_dict()
        if self.reference is not None:
            state["reference"] = self.reference.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (applied once the pruner exists)."""
        self._stash = dict(state_dict)
        self.history = list(self._stash.pop("history", []))
        if self.pruner is not None and "pruner" in self._stash:
            self.pruner.load_state_dict(self._stash.pop("pruner"))
        if self.reference is not None and "reference" in self._stash:
            self.reference.load_state_dict(self._stash.pop("reference"))
