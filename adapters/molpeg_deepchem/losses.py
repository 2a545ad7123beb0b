"""Per-sample losses of a DeepChem ``TorchModel``, from the model's own loss.

DeepChem's standard loss (``_StandardLoss``) evaluates an *unreduced* criterion (one value per
sample and task), multiplies it by the dataset weights ``w`` and averages everything. A weight
of 0 marks a missing label. molpeg keeps the unreduced values and reduces each sample over its
labelled tasks (``w != 0``), so a molecule's loss does not depend on how many of its labels are
missing.

Only torch is imported at module level; DeepChem objects are passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from molpeg_plugins import MolPegError, masked_sample_loss


def criterion(model: Any) -> Any:
    """The unreduced criterion ``f(output, labels) -> (batch, tasks…)`` of a DeepChem model.

    Raises:
        MolPegError: the model was built with a custom loss function instead of a
            ``dc.models.losses.Loss``, so no unreduced form exists.
    """
    standard = getattr(model, "_loss_fn", None)
    found = getattr(standard, "criterion", None)
    if found is not None:
        return found
    loss = getattr(model, "loss", None)
    if hasattr(loss, "_create_pytorch_loss"):
        return loss._create_pytorch_loss()
    raise MolPegError(
        f"{type(model).__name__} uses a custom loss function ({type(loss).__name__}); molpeg "
        "needs a dc.models.losses.Loss (e.g. L2Loss, SoftmaxCrossEntropy) to get per-sample "
        "losses: pass loss=<a dc.models.losses.Loss> when building the model"
    )


def as_list(outputs: Any) -> list[Any]:
    """A model's raw forward result as a list, the way ``fit_generator`` sees it."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def loss_outputs(model: Any, outputs: Any) -> list[Any]:
    """The outputs the loss is computed on (``model._loss_outputs``), from the raw forward."""
    outputs = as_list(outputs)
    chosen = getattr(model, "_loss_outputs", None)
    return outputs if chosen is None else [outputs[i] for i in chosen]


def expand_weights(weights: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """``weights`` with trailing singleton dims so that it broadcasts against ``losses``."""
    w = weights
    if w.ndim < losses.ndim:
        w = w.reshape(tuple(w.shape) + (1,) * (losses.ndim - w.ndim))
    return w


def unreduced_loss(model: Any, outputs: Sequence[Any], labels: Sequence[Any]) -> torch.Tensor:
    """The model's criterion on (loss-)``outputs`` and ``labels``, without any reduction."""
    if len(outputs) != 1 or len(labels) != 1:
        raise MolPegError(
            f"{type(model).__name__} has {len(outputs)} loss outputs and {len(labels)} label "
            "arrays; molpeg supports DeepChem models with exactly one of each"
        )
    return criterion(model)(outputs[0], labels[0])


def reduce_per_sample(unreduced: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """One loss per sample: the mean of ``unreduced`` over the sample's labelled tasks.

    A task is labelled where its DeepChem weight is non-zero; a sample without any label
    gets ``nan``.
    """
    mask = expand_weights(weights, unreduced) != 0
    return masked_sample_loss(unreduced, mask.expand_as(unreduced))


def per_sample_loss(
    model: Any, outputs: Sequence[Any], labels: Sequence[Any], weights: Sequence[Any]
) -> torch.Tensor:
    """Per-sample loss of a DeepChem model from its loss outputs, labels and weights.

    Args:
        model: the DeepChem ``TorchModel`` whose loss is used.
        outputs: the loss outputs (``[outputs[i] for i in model._loss_outputs]``).
        labels, weights: the prepared label and weight tensors (lists of one tensor).

    Returns:
        A 1-D tensor with one loss per row of the batch (padding rows included).
    """
    return reduce_per_sample(unreduced_loss(model, outputs, labels), weights[0])


def named_output(model: Any, outputs: Any, kind: str) -> torch.Tensor | None:
    """The raw forward output of type ``kind`` (``"prediction"``, ``"embedding"``) or ``None``."""
    types = list(getattr(model, "output_types", None) or [])
    outputs = as_list(outputs)
    if kind in types and types.index(kind) < len(outputs):
        return outputs[types.index(kind)]
    if kind == "prediction" and not types and len(outputs) == 1:
        return outputs[0]
    return None


def predictions(model: Any, outputs: Any) -> torch.Tensor | None:
    """Per-task predictions ``(batch, tasks)``: P(class 1) for binary classifiers.

    DeepChem classifiers return class probabilities ``(batch, tasks, classes)``; for two
    classes the positive-class column is returned, otherwise the full probability tensor.
    """
    pred = named_output(model, outputs, "prediction")
    if pred is None:
        return None
    pred = pred.detach()
    if pred.ndim == 3 and pred.shape[-1] == 2 and is_classifier(model):
        return pred[..., 1]
    if pred.ndim == 3 and pred.shape[-1] == 1:
        return pred[..., 0]
    return pred


def is_classifier(model: Any) -> bool:
    """Whether a DeepChem model classifies (a cross-entropy loss, or ``mode`` classification)."""
    loss = getattr(model, "loss", None)
    name = type(loss).__name__
    return "CrossEntropy" in name or getattr(model, "mode", None) == "classification"
