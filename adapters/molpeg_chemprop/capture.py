"""What the training step computes for one batch, caught without a second online forward.

:class:`BatchCapture` holds one training batch's molecules and what MolPeg learns about
them; :class:`TrainingStepTap` fills it from inside Chemprop's training step. The tap wraps
the criterion's ``update`` (an instance attribute torchmetrics itself sets and leaves out
of pickles, so checkpoints are unaffected), which receives exactly what the step computed
— predictions, targets, mask and weights — and, when fingerprints are needed, the
predictor's ``train_step``. The per-molecule loss is :func:`~molpeg_chemprop.losses.sample_loss`
on the detached predictions: an element-wise loss, no forward pass. The pruner's loss
weights (``--prune-rescale``, InfoBatch) are folded into the sample weights the criterion
already multiplies by.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from molpeg_chemprop.losses import sample_loss


@dataclass
class BatchCapture:
    """One training batch: its molecules and what the training step revealed about them.

    Attributes:
        indices: dataset indices of the batch's molecules (on the device).
        weights: the pruner's loss weight of each molecule, or ``None`` if all are 1.
        head_reference: run the head reference on the batch's fingerprints.
        reference: per-molecule reference loss (``None``: no reference ran on this batch).
        targets: targets with missing labels as 0, when the strategy reads them.
        mask: which targets are labelled, when the strategy reads it.
        embeddings: the fingerprints the training step computed, when needed.
        online: per-molecule online loss, once the training step's criterion ran.
        preds: the training step's detached predictions, once its criterion ran.
    """

    indices: torch.Tensor
    weights: torch.Tensor | None = None
    head_reference: bool = False
    reference: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None
    online: torch.Tensor | None = None
    preds: torch.Tensor | None = None


class TrainingStepTap:
    """Fills :attr:`current` from inside an MPNN's training step.

    Args:
        head_output: the head reference's predictions on fingerprints (head mode only).
    """

    def __init__(self, head_output: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        self.head_output = head_output
        self.current: BatchCapture | None = None
        self._patched: tuple[Any, Any] | None = None

    def attach(self, pl_module: Any, embeddings: bool) -> None:
        """Wrap ``pl_module``'s criterion (and, with ``embeddings``, its ``train_step``)."""
        criterion = pl_module.criterion
        if self._patched is not None and self._patched[0] is criterion:
            return
        original = criterion.update

        def update(preds, targets, mask=None, weights=None, lt_mask=None, gt_mask=None):  # type: ignore[no-untyped-def]
            batch = self.current
            if batch is not None and batch.online is None:
                mask = targets.isfinite() if mask is None else mask
                if weights is None:
                    weights = torch.ones(targets.shape[0], 1, device=targets.device)
                args = (targets, mask, weights, lt_mask, gt_mask)
                batch.online = sample_loss(criterion, preds.detach(), *args)
                batch.preds = preds.detach()
                if batch.head_reference:
                    assert self.head_output is not None and batch.embeddings is not None
                    batch.reference = sample_loss(
                        criterion, self.head_output(batch.embeddings), *args
                    )
                if batch.weights is not None:
                    weights = weights * batch.weights.to(weights.dtype).view(-1, 1)
            return original(preds, targets, mask, weights, lt_mask, gt_mask)

        criterion.update = update
        self._patched = (criterion, original)
        if embeddings:
            predictor = pl_module.predictor
            train_step = type(predictor).train_step

            def capture_train_step(Z):  # type: ignore[no-untyped-def]
                if self.current is not None and self.current.embeddings is None:
                    self.current.embeddings = Z.detach()
                return train_step(predictor, Z)

            predictor.train_step = capture_train_step

    def detach(self, pl_module: Any) -> None:
        """Give ``pl_module`` back its own criterion ``update`` and ``train_step``."""
        if self._patched is not None:
            criterion, original = self._patched
            criterion.update = original
            self._patched = None
        predictor = getattr(pl_module, "predictor", None)
        if predictor is not None:
            predictor.__dict__.pop("train_step", None)
