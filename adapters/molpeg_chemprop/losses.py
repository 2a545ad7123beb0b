"""Per-molecule losses of a Chemprop ``MPNN``, from the model's own criterion.

One implementation, :func:`sample_loss`, serves both losses MolPeg scores with: the online
loss, computed inside the training step's criterion call on what that step computed, and
the reference loss of the full-model reference (:func:`per_sample_loss`, which runs the
forward itself). Chemprop is imported lazily, so loading the plugin never needs it.
"""

from __future__ import annotations

from typing import Any

import torch

from molpeg_chemprop.internals import criterion_unreduced_loss
from molpeg_plugins import masked_sample_loss
from molpeg_plugins.errors import ConfigError


def check_per_sample_criterion(criterion: Any) -> None:
    """Refuse a Chemprop loss that cannot be split into one value per molecule.

    Chemprop's per-sample losses (``bce``, ``mse``, ``ce``, ``mve``, ``evidential`` …) keep
    :class:`chemprop.nn.ChempropMetric`'s ``update``, which reduces a ``(batch, tasks)``
    tensor from ``_calc_unreduced_loss``. Losses that override ``update`` (the MCC losses
    accumulate confusion counts over the whole batch) have no per-sample value.

    Raises:
        ConfigError: the criterion is not a per-sample loss.
    """
    from chemprop.nn.metrics import ChempropMetric

    if not isinstance(criterion, ChempropMetric) or type(criterion).update is not (
        ChempropMetric.update
    ):
        name = type(criterion).__name__
        raise ConfigError(
            f"the Chemprop loss {name} is not a per-sample loss (it is computed over the "
            "whole batch), so molpeg cannot score molecules with it; train with a per-sample "
            "loss such as --loss-function bce (classification) or mse (regression)"
        )


def sample_loss(
    criterion: Any,
    preds: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
    lt_mask: torch.Tensor | None,
    gt_mask: torch.Tensor | None,
) -> torch.Tensor:
    """One loss per molecule from the arguments of a Chemprop criterion call.

    The criterion's per-task loss times its task weights, averaged over each molecule's
    labelled tasks (``mask``); a molecule without any label gets ``nan``.
    """
    raw = criterion_unreduced_loss(criterion, preds, targets, mask, weights, lt_mask, gt_mask)
    return masked_sample_loss(raw * criterion.task_weights, mask)


def eval_mode(model: Any) -> None:
    """Put an MPNN in inference mode the way Lightning validation does.

    ``MPNN.on_validation_model_eval`` keeps the input/output scaling transforms in training
    mode (the training data were already scaled in place), so the forward sees the same
    inputs as the training step.
    """
    model.eval()
    hook = getattr(model, "on_validation_model_eval", None)
    if callable(hook):
        hook()


def per_sample_loss(model: Any, batch: Any) -> torch.Tensor:
    """Per-molecule loss of the MPNN ``model`` on a Chemprop ``TrainingBatch``, without grad.

    Runs ``model`` as the reference: eval mode, ``torch.no_grad()``,
    ``predictor.train_step(fingerprint(bmg, V_d, X_d))`` (the training-space output, not
    ``forward``, which unscales or applies a sigmoid), then :func:`sample_loss` with the
    batch's targets, weights and bounds, exactly as the training step computes the loss.
    The model's training mode is restored afterwards.
    """
    check_per_sample_criterion(model.criterion)
    bmg, V_d, X_d, targets, weights, lt_mask, gt_mask = batch
    was_training = model.training
    eval_mode(model)
    with torch.no_grad():
        preds = model.predictor.train_step(model.fingerprint(bmg, V_d, X_d))
    model.train(was_training)
    mask = targets.isfinite()
    targets = targets.nan_to_num(nan=0.0)
    return sample_loss(model.criterion, preds.detach(), targets, mask, weights, lt_mask, gt_mask)
