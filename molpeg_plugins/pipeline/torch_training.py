"""The :class:`~molpeg_plugins.pipeline.training.EpochModel` of a ``torch.nn.Module``.

:class:`TorchEpochModel` trains any module that maps per-molecule input tensors to one
output per task (logits for classification, values for regression) with the training
driver: a subclass supplies the module and its inputs, the rest (the epoch's batches, the
loss, the EMA reference, predictions, the resume state and the model file) is here.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from molpeg_plugins.engine.scoring import masked_sample_loss
from molpeg_plugins.pipeline.atomic import torch_save
from molpeg_plugins.pipeline.backend import BATCH_PROGRESS, FitJob
from molpeg_plugins.pipeline.training import EpochModel

if TYPE_CHECKING:
    from molpeg_plugins.engine.pruner import Pruner

PREDICT_CHUNK = 8192
"""Molecules per forward pass in :meth:`TorchEpochModel.predict`."""


def unreduced_loss(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(batch, tasks)`` loss: BCE-with-logits or squared error; missing labels give 0."""
    filled = torch.nan_to_num(target, nan=0.0)
    if task == "classification":
        return nn.functional.binary_cross_entropy_with_logits(output, filled, reduction="none")
    return (output - filled) ** 2


def batches(order: torch.Tensor, batch_size: int, progress: Any) -> Iterator[torch.Tensor]:
    """The epoch's ``order`` in batches, each reported to ``progress`` once it is trained."""
    with progress(BATCH_PROGRESS, total=-(-order.numel() // batch_size)) as advance:
        for start in range(0, order.numel(), batch_size):
            yield order[start : start + batch_size]
            advance(1)


class TorchEpochModel(EpochModel):
    """An :class:`~molpeg_plugins.pipeline.training.EpochModel` of a ``torch.nn.Module``.

    A subclass sets, in its ``__init__``, ``job``, ``net`` (the module), ``optimizer`` and, for
    a strategy that needs one (MolPeg's), ``reference`` (an
    :class:`~molpeg_plugins.engine.scoring.EMAReference` of ``net``), and implements :meth:`inputs`.
    The model file is ``{"state_dict": net's weights}``.
    """

    job: FitJob
    net: nn.Module
    optimizer: torch.optim.Optimizer
    reference: Any = None

    @abstractmethod
    def inputs(self, rows: np.ndarray) -> torch.Tensor:
        """``net``'s input for the molecules ``rows`` (positions into ``job.smiles``)."""

    def losses(self, net: Any, rows: np.ndarray) -> torch.Tensor:
        """Per-molecule loss of ``net`` (the model or its reference) on the molecules ``rows``."""
        out = net(self.inputs(rows))
        target = torch.as_tensor(self.job.targets[rows], dtype=out.dtype, device=out.device)
        return masked_sample_loss(unreduced_loss(self.job.task, out, target), target.isfinite())

    def train_epoch(self, pruner: Pruner, epoch: int) -> float:
        """Batches of the pruner's selection: loss, optimizer step, EMA update."""
        self.net.train()
        order = pruner.sampler.indices()
        train_idx = np.asarray(self.job.train_idx)
        total, count = 0.0, 0
        for batch, idx in enumerate(batches(order, self.job.batch_size, self.job.progress)):
            rows = train_idx[idx.numpy()]
            reference = None
            if self.reference is not None and pruner.reference_due(batch, self.reference):
                reference = self.losses(self.reference, rows)
            loss = pruner.loss(idx.to(pruner.device), self.losses(self.net, rows), reference)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.reference is not None:
                self.reference.update(self.net)
            total += float(loss.detach()) * idx.numel()
            count += idx.numel()
        return total / max(count, 1)

    @torch.no_grad()
    def predict(self, rows: np.ndarray) -> np.ndarray:
        """``net``'s output in eval mode: probabilities (sigmoid) or values.

        The molecules go through ``net`` in chunks of :data:`PREDICT_CHUNK`, so that the
        inputs of a large split are never all in memory at once.
        """
        was_training = self.net.training
        self.net.eval()
        rows = np.asarray(rows, dtype=np.int64)
        chunks = []
        for start in range(0, len(rows), PREDICT_CHUNK):
            out = self.net(self.inputs(rows[start : start + PREDICT_CHUNK])).float()
            if self.job.task == "classification":
                out = out.sigmoid()
            chunks.append(out.cpu().numpy())
        self.net.train(was_training)
        if not chunks:
            return np.zeros((0, len(self.job.target_names)), dtype=np.float32)
        return np.concatenate(chunks)

    def weights(self) -> dict[str, Any]:
        """A detached copy of ``net``'s weights."""
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def load_weights(self, weights: dict[str, Any]) -> None:
        """Load weights :meth:`weights` returned into ``net``."""
        self.net.load_state_dict(weights)

    def state_dict(self) -> dict[str, Any]:
        """``net``, ``optimizer`` and ``reference``."""
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "reference": None if self.reference is None else self.reference.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.reference is not None:
            self.reference.load_state_dict(state["reference"])

    def save(self, path: Path) -> None:
        """Write ``{"state_dict": net's weights on the CPU}`` to ``path``."""
        torch_save(path, {"state_dict": {k: v.cpu() for k, v in self.net.state_dict().items()}})
