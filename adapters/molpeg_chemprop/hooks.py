"""molpeg hook implementations for Chemprop v2 ``MPNN`` models.

Chemprop is imported lazily inside each hook, so that loading the plugin (``molpeg
strategies``, ``molpeg backends``) never needs Chemprop installed. The per-molecule loss is
no hook: the adapter calls :func:`molpeg_chemprop.losses.per_sample_loss` directly.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from molpeg_chemprop.internals import detached_from_trainer
from molpeg_chemprop.losses import eval_mode
from molpeg_plugins.hookspecs import ModelOutputs, hookimpl

if TYPE_CHECKING:
    import typer


def _is_mpnn(model: Any) -> bool:
    try:
        from chemprop.models import MPNN
    except ImportError:
        return False
    return isinstance(model, MPNN)


@hookimpl
def molpeg_create_reference(model: Any) -> torch.nn.Module | None:
    """Copy an MPNN without its Lightning trainer into a gradient-free, eval-mode reference."""
    if not _is_mpnn(model):
        return None
    with detached_from_trainer(model):
        reference = copy.deepcopy(model)
    reference.requires_grad_(False)
    eval_mode(reference)
    return reference


def _public_classes(module: Any, prefix: str) -> list[type]:
    return [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if obj.__module__.startswith(prefix)
    ]


@hookimpl
def molpeg_safe_globals() -> list[Any]:
    """Classes a Chemprop v2 model file or Lightning checkpoint may contain.

    Every class of :mod:`chemprop.nn` (message passing, aggregation, predictors, metrics,
    transforms), PyTorch's activation/identity/dropout modules and the torchmetrics helpers a
    pickled metric references. Lightning's ``AttributeDict`` (the hyper-parameters) is
    loaded as a plain ``dict`` (``(dict, name)`` pair), because the weights-only unpickler
    can only fill real dicts. Nothing that runs code on load.
    """
    try:
        import chemprop.nn
        import chemprop.nn.agg
        import chemprop.nn.ffn
        import chemprop.nn.message_passing
        import chemprop.nn.metrics
        import chemprop.nn.predictors
        import chemprop.nn.transforms
        import torchmetrics.metric
        import torchmetrics.utilities.data
        from lightning.fabric.utilities.data import AttributeDict
    except ImportError:
        return []
    allowed: list[Any] = []
    for module in (
        chemprop.nn,
        chemprop.nn.agg,
        chemprop.nn.ffn,
        chemprop.nn.message_passing,
        chemprop.nn.metrics,
        chemprop.nn.predictors,
        chemprop.nn.transforms,
    ):
        allowed += _public_classes(module, "chemprop.nn")
    allowed += _public_classes(torch.nn.modules.activation, "torch.nn.modules.activation")
    allowed += [torch.nn.Identity, torch.nn.Dropout, torch.nn.Linear, torch.nn.Sequential]
    allowed += [
        torchmetrics.utilities.data.dim_zero_cat,
        torchmetrics.utilities.data.dim_zero_sum,
        torchmetrics.utilities.data.dim_zero_mean,
        torchmetrics.metric.jit_distributed_available,
        (dict, f"{AttributeDict.__module__}.{AttributeDict.__qualname__}"),
    ]
    return allowed


@hookimpl
def molpeg_register_backends() -> list[Any]:
    """The ``chemprop`` backend of ``molpeg prune`` (Chemprop is imported only in ``fit``)."""
    from molpeg_chemprop.backend import ChempropBackend

    return [ChempropBackend()]


@hookimpl
def molpeg_model_outputs(
    path: Path,
    smiles: Sequence[str],
    kind: Literal["embedding", "prediction"],
    trust: bool,
    plugin_manager: Any,
    progress: Callable[[str, int, int], None] | None,
    stage: str,
) -> ModelOutputs | None:
    """Embeddings or predictions of a Chemprop model file (``None`` without Chemprop).

    The file is loaded by :func:`molpeg_chemprop.models.load_model` (the safe loader).
    """
    if importlib.util.find_spec("chemprop") is None:
        return None
    from molpeg_chemprop.models import load_model, model_outputs

    model = load_model(path, plugin_manager=plugin_manager, trust=trust)
    return model_outputs(model, smiles, kind=kind, progress=progress, stage=stage)


@hookimpl
def molpeg_cli_commands(app: typer.Typer) -> None:
    """Add ``molpeg chemprop train`` (Chemprop is imported only when the command runs)."""
    from molpeg_chemprop.commands import chemprop_app

    app.add_typer(chemprop_app, name="chemprop")
