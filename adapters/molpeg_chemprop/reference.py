"""The reference model of a Chemprop run: an EMA of the whole MPNN or of its predictor.

With ``reference="head"`` (what ``"auto"``, the default, is for classification) the
reference is an EMA of the predictor (FFN) only, run
under ``no_grad`` on the fingerprint the training step computed, so no second
message-passing pass runs. With ``reference="model"`` (the paper's rule) it is an EMA of
the whole MPNN with its own eval-mode forward per batch. Either follows the online model
after every optimizer step; with ``reference_every=k`` it is run on every k-th batch of a
pruned epoch only (:meth:`molpeg_plugins.Pruner.reference_due`).
"""

from __future__ import annotations

from typing import Any

import torch

from molpeg_chemprop.losses import per_sample_loss
from molpeg_plugins import EMAReference, Pruner


class ChempropReference:
    """The :class:`~molpeg_plugins.EMAReference` of a Chemprop MPNN, and how it is run.

    Args:
        pl_module: the online MPNN (its current weights start the average).
        mode: ``"head"`` (average the predictor only) or ``"model"`` (the whole MPNN).
        momentum: the EMA momentum.
        parameters: regular expression on parameter names the EMA averages (default all).
        plugin_manager: where ``molpeg_create_reference`` / ``molpeg_update_reference`` go.
    """

    def __init__(
        self,
        pl_module: Any,
        mode: str,
        momentum: float,
        parameters: str | None,
        plugin_manager: Any,
    ) -> None:
        self.head = mode == "head"
        self.ema = EMAReference(
            self.source(pl_module), momentum, parameters=parameters, plugin_manager=plugin_manager
        )

    def source(self, pl_module: Any) -> torch.nn.Module:
        """What the EMA averages: the whole MPNN, or its predictor (head mode)."""
        return pl_module.predictor if self.head else pl_module

    def due(self, pruner: Pruner, batch_idx: int) -> bool:
        """Whether the reference runs on training batch ``batch_idx`` of the epoch."""
        return pruner.reference_due(batch_idx, self.ema)

    def model_loss(self, batch: Any) -> torch.Tensor:
        """Per-molecule loss of the full-model reference on ``batch`` (its own forward)."""
        return per_sample_loss(self.ema.module, batch)

    def head_output(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The reference predictor's training-space output on the online fingerprints."""
        head = self.ema.module
        head.train(self.ema.train_mode)
        with torch.no_grad():
            return head.train_step(embeddings)

    def follow(self, pl_module: Any) -> None:
        """Move the average towards the online model (after an optimizer step)."""
        self.ema.update(self.source(pl_module))
