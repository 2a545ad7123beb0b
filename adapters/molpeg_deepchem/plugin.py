"""molpeg plugin entry point for DeepChem (registered in the ``molpeg`` entry-point group).

Importing this module must not import deepchem: hook implementations import it lazily.
"""

from __future__ import annotations

from typing import Any

import torch

from molpeg_deepchem.losses import is_deepchem_model, loss_outputs, per_sample_loss
from molpeg_plugins import hookimpl
from molpeg_plugins.backend import Backend


@hookimpl
def molpeg_register_backends() -> list[Backend]:
    """Register the ``deepchem`` backend of ``molpeg prune`` (DeepChem is imported in ``fit``)."""
    from molpeg_deepchem.backend import DeepChemBackend

    return [DeepChemBackend()]


@hookimpl
def molpeg_per_sample_loss(model: Any, batch: Any, output: Any) -> torch.Tensor | None:
    """Per-sample loss of a DeepChem ``TorchModel`` from its own (unreduced) loss.

    ``batch`` is a prepared batch ``(inputs, labels, weights)`` as returned by
    ``model._prepare_batch``; ``output`` is the raw forward result of ``model.model`` on it,
    or ``None`` to run that forward here (no gradients, eval mode). Tasks whose DeepChem
    weight is 0 (missing labels) are left out of each sample's mean.
    """
    if not is_deepchem_model(model):
        return None
    inputs, labels, weights = batch
    if output is None:
        module = model.model
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                if isinstance(inputs, list) and len(inputs) == 1:
                    inputs = inputs[0]
                output = module(inputs)
        finally:
            module.train(was_training)
    return per_sample_loss(model, loss_outputs(model, output), labels, weights)


@hookimpl
def molpeg_safe_globals() -> list[Any]:
    """DeepChem checkpoints hold only state dicts and step counters: nothing to allow."""
    return []
