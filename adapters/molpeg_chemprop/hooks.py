"""molpeg hook implementations for Chemprop v2 ``MPNN`` models.

Chemprop is imported lazily inside each hook, so that loading the plugin (``molpeg
strategies``, ``molpeg backends``) never needs Chemprop installed.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from molpeg_plugins.errors import ConfigError
from molpeg_plugins.hookspecs import ModelOutputs, hookimpl
from molpeg_plugins.scoring import masked_sample_loss

if TYPE_CHECKING:
    import typer


def _is_mpnn(model: Any) -> bool:
    try:
        from chemprop.models import MPNN
    except ImportError:
        return False
    return isinstance(model, MPNN)


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


def unreduced_loss(
    model: Any, preds: torch.Tensor, batch: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(per-task loss × task weights, mask)`` of ``preds`` on a Chemprop ``TrainingBatch``.

    Uses the model's own criterion (``_calc_unreduced_loss``), exactly as its training step
    does, but without reducing over the batch.
    """
    _, _, _, targets, weights, lt_mask, gt_mask = batch
    mask = targets.isfinite()
    targets = targets.nan_to_num(nan=0.0)
    criterion = model.criterion
    raw = type(criterion)._calc_unreduced_loss(
        criterion, preds, targets, mask, weights, lt_mask, gt_mask
    )
    return raw * criterion.task_weights, mask


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


@hookimpl
def molpeg_per_sample_loss(model: Any, batch: Any, output: Any) -> torch.Tensor | None:
    """Per-molecule loss of a Chemprop MPNN on a ``TrainingBatch``.

    With ``output=None`` the model is run as the reference: eval mode, ``torch.no_grad()``,
    ``predictor.train_step(fingerprint(bmg, V_d, X_d))`` (the training-space output, not
    ``forward``, which unscales or applies a sigmoid). With ``output`` (the training step's
    ``train_step`` predictions) no forward pass is run. The loss is the mean over each
    molecule's labelled tasks; unlabelled molecules get ``nan``.
    """
    if not _is_mpnn(model):
        return None
    check_per_sample_criterion(model.criterion)
    if output is None:
        was_training = model.training
        eval_mode(model)
        bmg, V_d, X_d, *_ = batch
        with torch.no_grad():
            output = model.predictor.train_step(model.fingerprint(bmg, V_d, X_d))
        model.train(was_training)
    loss, mask = unreduced_loss(model, output.detach(), batch)
    return masked_sample_loss(loss, mask)


@hookimpl
def molpeg_create_reference(model: Any) -> torch.nn.Module | None:
    """Copy an MPNN without its Lightning trainer into a gradient-free, eval-mode reference."""
    if not _is_mpnn(model):
        return None
    trainer, fabric = model.__dict__.get("_trainer"), model.__dict__.get("_fabric")
    model._trainer, model._fabric = None, None
    try:
        reference = copy.deepcopy(model)
    finally:
        model._trainer, model._fabric = trainer, fabric
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
