"""MolPeg inside a user's own ``model.fit(...)``: dataset view, loss wrapper and callback.

DeepChem's ``TorchModel.fit`` has no epoch hooks and its loss sees no dataset indices, so
three small pieces cooperate (all created by :class:`MolPegDeepChem`):

* :attr:`MolPegDeepChem.dataset` (a :class:`~molpeg_deepchem.dataset.PrunedDataset`) yields
  each epoch's kept samples and remembers which dataset indices the current batch holds;
* :attr:`MolPegDeepChem.loss` computes the model's own loss once, returns DeepChem's usual
  scalar, and records the per-sample losses of the real (non-padding) rows; the reference
  model runs on the very inputs the online forward received (caught by a forward hook) — or,
  with ``reference="head"``, the reference ``output_layer`` runs on the online forward's
  ``embedding`` output;
* :attr:`MolPegDeepChem.callback` (called by DeepChem after every optimizer step) moves the
  EMA reference and ends the epoch after its last batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import deepchem as dc
import numpy as np
import torch

from molpeg_deepchem.dataset import BatchInfo, PrunedDataset
from molpeg_deepchem.losses import (
    as_list,
    expand_weights,
    is_classifier,
    loss_outputs,
    named_output,
    predictions,
    reduce_per_sample,
    unreduced_loss,
)
from molpeg_plugins import EMAReference, MolPegError, PruneConfig, Pruner
from molpeg_plugins.plugins import get_plugin_manager

SIGNALS = ("predictions", "embeddings", "targets", "mask", "features")


class MolPegDeepChem:
    """Dynamic data pruning for a DeepChem ``TorchModel`` trained with its own ``fit``.

    Example:
        >>> pruning = MolPegDeepChem(model, train, prune_ratio=0.5, epochs=10)
        >>> model.fit(pruning.dataset, nb_epoch=10, loss=pruning.loss,
        ...           callbacks=[pruning.callback])

    Args:
        model: the DeepChem ``TorchModel`` to train (its weights are the reference's start).
        dataset: the full training set (``NumpyDataset`` or ``DiskDataset``).
        config: pruning options; keyword ``overrides`` (``prune_ratio=0.5`` …) apply on top.
        epochs: number of epochs the run will train (needed for annealing only).
        reference_parameters: which parameters the reference averages (regex or predicate,
            see :func:`molpeg_plugins.engine.scoring.parameter_filter`); default all.
        reference_train_mode: run the reference with dropout on (the public code's choice).
        plugin_manager: where strategies and observers are looked up (default: global).
        pruner: the :class:`~molpeg_plugins.Pruner` to use (the ``deepchem`` backend's
            training driver makes it); by default one is made from ``config`` and ``overrides``.
        **overrides: :class:`~molpeg_plugins.PruneConfig` fields.
    """

    def __init__(
        self,
        model: dc.models.TorchModel,
        dataset: dc.data.Dataset,
        config: PruneConfig | None = None,
        *,
        epochs: int | None = None,
        reference_parameters: Any = None,
        reference_train_mode: bool = False,
        plugin_manager: Any = None,
        pruner: Pruner | None = None,
        **overrides: Any,
    ) -> None:
        if not isinstance(model, dc.models.TorchModel):
            raise MolPegError(
                f"MolPegDeepChem needs a DeepChem TorchModel, got {type(model).__name__}"
            )
        self.model = model
        self.pm = plugin_manager or (pruner.pm if pruner is not None else get_plugin_manager())
        self.pruner = pruner or Pruner(
            len(dataset),
            config,
            total_epochs=epochs,
            device=model.device,
            plugin_manager=self.pm,
            task="classification" if is_classifier(model) else "regression",
            **overrides,
        )
        self.reference: EMAReference | None = None
        self.head_only = self.pruner.reference == "head" and _has_head(model)
        if self.pruner.strategy.needs_reference:
            if self.pruner.reference == "head" and not self.head_only:
                warnings.warn(
                    f"{type(model).__name__} has no output_layer fed by an 'embedding' output "
                    "(as MultitaskClassifier/MultitaskRegressor have): MolPeg uses the "
                    "full-model reference (reference='model')",
                    stacklevel=2,
                )
            self.reference = EMAReference(
                self.reference_source(),
                self.pruner.config.ema_momentum,
                parameters=reference_parameters,
                train_mode=reference_train_mode,
                plugin_manager=self.pm,
            )
        self.dataset = PrunedDataset(dataset, self.pruner)
        self.loss = PruningLoss(self)
        self.callback = PruningCallback(self)
        self.epoch_losses: list[float] = []
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=model.device)
        self._loss_batches = 0
        self._forward: tuple[tuple[Any, ...], Any] | None = None
        self._hook = model.model.register_forward_hook(self._capture)

    # ------------------------------------------------------------------ plumbing

    def reference_source(self) -> torch.nn.Module:
        """What the EMA reference averages: the model, or its ``output_layer`` (head mode)."""
        return self.model.model.output_layer if self.head_only else self.model.model

    def _capture(self, module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
        """Forward hook: keep the inputs and raw outputs of the online model's last call."""
        self._forward = (args, output)

    def remove(self) -> None:
        """Detach from the model (remove the forward hook); the model trains normally after."""
        self._hook.remove()

    def _take_batch(self) -> BatchInfo:
        batch = self.dataset.batch
        if batch is None:
            raise MolPegError(
                "the loss was called before any batch of pruning.dataset: pass "
                "pruning.dataset (not the original dataset) to model.fit"
            )
        return batch

    def finish_epoch(self) -> None:
        """End the epoch: fold scores in, choose the next epoch's samples."""
        mean = self._loss_sum / max(1, self._loss_batches)
        self.epoch_losses.append(float(mean))
        self._loss_sum.zero_()
        self._loss_batches = 0
        self.dataset.batch = None
        self.pruner.end_epoch()

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """Pruner, reference and epoch losses, for resuming at an epoch boundary."""
        return {
            "pruner": self.pruner.state_dict(),
            "reference": None if self.reference is None else self.reference.state_dict(),
            "epoch_losses": list(self.epoch_losses),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.pruner.load_state_dict(state["pruner"])
        if self.reference is not None and state["reference"] is not None:
            self.reference.load_state_dict(state["reference"])
        self.epoch_losses = [float(v) for v in state["epoch_losses"]]


class PruningLoss:
    """A DeepChem loss function ``f(outputs, labels, weights)`` that also records scores.

    Returns exactly what DeepChem's standard loss returns (weighted mean of the model's
    unreduced loss plus regularisation), times the pruner's per-sample weights when a
    strategy or ``rescale`` sets them. The per-sample losses of the batch's real rows, and
    the reference's on the same inputs, go to :meth:`Pruner.record`.
    """

    def __init__(self, owner: MolPegDeepChem) -> None:
        self.owner = owner
        self.calls = 0

    def __call__(
        self, outputs: Sequence[torch.Tensor], labels: Sequence[Any], weights: Sequence[Any]
    ) -> torch.Tensor:
        """Compute the training loss of one batch and record its per-sample losses."""
        own = self.owner
        model, pruner = own.model, own.pruner
        batch = own._take_batch()
        n = len(batch.indices)
        losses = unreduced_loss(model, outputs, labels)
        if losses.shape[0] != len(batch.padded_indices):
            raise MolPegError(
                f"the loss got a batch of {losses.shape[0]} rows but pruning.dataset yielded "
                f"{len(batch.padded_indices)}: pass pruning.dataset to model.fit"
            )
        w = expand_weights(weights[0], losses)
        weighted = losses * w
        if pruner.current.pruned and not _all_ones(pruner.current.weights):
            rows = pruner.weights(batch.padded_indices).to(losses.device, losses.dtype)
            weighted = expand_weights(rows, weighted) * weighted
        total = weighted.mean()
        if model.regularization_loss is not None:
            total = total + model.regularization_loss()

        online = reduce_per_sample(losses[:n].detach(), weights[0][:n])
        reference = self._reference_loss(labels, weights, n, outputs[0])
        idx = torch.as_tensor(batch.indices, device=pruner.device)
        pruner.record(idx, online, reference)
        self._observe(idx, batch, n)
        own._loss_sum += total.detach().to(own._loss_sum.dtype)
        own._loss_batches += 1
        own._forward = None  # release the batch's tensors
        self.calls += 1
        return total

    def _online_forward(self, loss_output: torch.Tensor) -> tuple[tuple[Any, ...], Any]:
        own = self.owner
        forward = own._forward
        if forward is None or not any(o is loss_output for o in as_list(forward[1])):
            raise MolPegError(
                "could not match the loss to the model's forward pass; MolPegDeepChem supports "
                "TorchModels whose fit() calls model.model(inputs) once per batch"
            )
        return forward

    def _reference_loss(
        self, labels: Sequence[Any], weights: Sequence[Any], n: int, loss_output: torch.Tensor
    ) -> torch.Tensor | None:
        own = self.owner
        if own.reference is None or not own.pruner.reference_due(own._loss_batches, own.reference):
            return None
        args, raw = self._online_forward(loss_output)
        if own.head_only:
            embedding = named_output(own.model, raw, "embedding")
            ref_out = [own.reference(embedding.detach()).reshape(loss_output.shape)]
        else:
            ref_out = loss_outputs(own.model, own.reference(*args))
        ref_losses = unreduced_loss(own.model, ref_out, labels)
        return reduce_per_sample(ref_losses[:n], weights[0][:n])

    def _observe(self, idx: torch.Tensor, batch: BatchInfo, n: int) -> None:
        own = self.owner
        pruner = own.pruner
        if not any(pruner.wants(s) for s in SIGNALS):
            return
        _, raw = own._forward if own._forward is not None else ((), None)
        dev = pruner.device
        signals: dict[str, torch.Tensor | None] = {}
        if raw is not None and pruner.wants("predictions"):
            pred = predictions(own.model, raw)
            signals["predictions"] = None if pred is None else pred[:n]
        if raw is not None and pruner.wants("embeddings"):
            emb = named_output(own.model, raw, "embedding")
            signals["embeddings"] = None if emb is None else emb[:n].reshape(n, -1)
        if pruner.wants("targets"):
            signals["targets"] = torch.as_tensor(
                np.asarray(batch.y, dtype=np.float32), device=dev
            ).reshape(n, -1)
        if pruner.wants("mask"):
            signals["mask"] = torch.as_tensor(np.asarray(batch.w) != 0, device=dev).reshape(n, -1)
        if pruner.wants("features") and np.asarray(batch.X).dtype.kind in "fiub":
            signals["features"] = torch.as_tensor(
                np.asarray(batch.X, dtype=np.float32), device=dev
            ).reshape(n, -1)
        pruner.observe(idx, **signals)


def _has_head(model: Any) -> bool:
    """Whether ``model`` has an ``output_layer`` fed by an ``embedding`` output."""
    types = list(getattr(model, "output_types", None) or [])
    return hasattr(model.model, "output_layer") and "embedding" in types


def _all_ones(weights: torch.Tensor) -> bool:
    return bool((weights == 1).all())


class PruningCallback:
    """DeepChem callback ``f(model, step, **kwargs)``: EMA step and epoch boundaries.

    Accepts both the ``callback(model, step)`` form of DeepChem 2.8 and newer releases'
    ``callback(model, step, iteration_loss=…)``.
    """

    def __init__(self, owner: MolPegDeepChem) -> None:
        self.owner = owner
        self.steps = 0

    def __call__(self, model: Any, step: int, **kwargs: Any) -> None:
        """Run after every optimizer step of ``model.fit``."""
        own = self.owner
        self.steps += 1
        if own.loss.calls != self.steps:
            raise MolPegError(
                "the MolPeg callback ran without the MolPeg loss: call "
                "model.fit(pruning.dataset, ..., loss=pruning.loss, callbacks=[pruning.callback])"
            )
        if own.reference is not None:
            own.reference.update(own.reference_source())
        batch = own.dataset.batch
        if batch is not None and batch.last:
            own.finish_epoch()
