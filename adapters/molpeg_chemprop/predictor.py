"""What a Chemprop ``MPNN``'s predictor says about the task and its outputs."""

from __future__ import annotations

from typing import Any

import torch


def task_of(model: Any) -> str | None:
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


def probabilities(model: Any, preds: torch.Tensor) -> torch.Tensor:
    """The training step's predictions ``preds`` as strategies read them.

    Binary classifiers: P(class 1) (a sigmoid of the logits); multiclass: the class
    probabilities; regression: the predicted values (the mean, for mean-variance heads).
    """
    from chemprop.nn.predictors import BinaryClassificationFFNBase, MulticlassClassificationFFN

    predictor = model.predictor
    if isinstance(predictor, BinaryClassificationFFNBase):
        return preds.sigmoid() if preds.ndim == 2 else preds
    if isinstance(predictor, MulticlassClassificationFFN):
        return preds.softmax(-1)
    return preds[..., 0] if preds.ndim == 3 else preds
