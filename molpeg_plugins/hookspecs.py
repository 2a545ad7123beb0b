"""The molpeg plugin contract: pluggy hook specifications.

Every hook is prefixed ``molpeg_``. A plugin is any module or object carrying functions
decorated with :data:`hookimpl`; :func:`molpeg_plugins.plugins.make_plugin_manager` registers
it, either as a built-in or through an installed entry point of group ``molpeg``. The code
that calls a hook is handed the plugin manager explicitly (see ``docs/architecture.md``).

Framework hooks (reference creation and update) are *first-result* hooks:
an implementation that does not recognise the model it is given returns ``None`` and pluggy
moves on to the next one. This is how the Chemprop and DeepChem adapters coexist with the
generic PyTorch fallback, in the same way pytest dispatches collection hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pluggy

if TYPE_CHECKING:
    import torch
    import typer

    from molpeg_plugins.engine.pruner import EpochSelection, Pruner
    from molpeg_plugins.engine.strategies.base import Strategy
    from molpeg_plugins.pipeline.backend import Backend

PROJECT_NAME = "molpeg"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marker for hook specifications (used only in this module)."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker for hook implementations: decorate plugin functions with ``@hookimpl``."""


# --------------------------------------------------------------------------- registration


@hookspec
def molpeg_register_strategies() -> list[type[Strategy]]:
    """Return the pruning strategies this plugin provides.

    Called once, when the plugin manager builds its strategy registry (the first time a
    strategy is looked up by name or ``molpeg strategies`` runs).

    Returns:
        A list of :class:`~molpeg_plugins.engine.strategies.base.Strategy` subclasses. Each class
        must define a unique ``name`` (the string users pass as ``--strategy``) and a
        one-line ``description``. Two plugins registering the same name is an error.
    """


@hookspec
def molpeg_register_backends() -> list[Backend]:
    """Return the training backends this plugin provides.

    Called once, when the plugin manager builds its backend registry (``molpeg prune
    --backend NAME`` and ``molpeg backends``). Implementations must not import their
    framework at this point, so that listing backends works when a framework is missing.

    Returns:
        A list of :class:`~molpeg_plugins.pipeline.backend.Backend` instances with unique names.
    """


@hookspec
def molpeg_safe_globals() -> list[Any]:
    """Return the classes and functions a trusted checkpoint of your framework may contain.

    Called by :func:`molpeg_plugins.pipeline.checkpoints.safe_load` before it unpickles a checkpoint
    with ``torch.load(weights_only=True)``. The union of all returned objects is passed to
    ``torch.serialization.safe_globals``; anything else in the pickle is refused. Return
    only plain data/module classes (e.g. Chemprop's ``nn`` modules), never callables that
    run code on load.

    Returns:
        A list of classes or functions (may be empty).
    """


@hookspec
def molpeg_cli_commands(app: typer.Typer) -> None:
    """Add this plugin's commands to the ``molpeg`` command line.

    Called once, by :func:`molpeg_plugins.cli.app.add_plugin_commands` when the ``molpeg``
    application is built, with the root Typer ``app``; add sub-commands or groups with
    ``app.command()`` / ``app.add_typer()``. Like :func:`molpeg_register_backends`, an
    implementation must not import its framework here (only when its command runs), so
    that the other commands work when the framework is missing. Return value is ignored.
    """


# --------------------------------------------------------------------------- model hooks


@dataclass
class ModelOutputs:
    """What :func:`molpeg_model_outputs` returns: one row of outputs per molecule.

    Attributes:
        values: ``(n_molecules, dim)`` float32 array, rows in the order of the SMILES given.
        output_names: the name of each column of ``values`` if the model file stores them
            (e.g. the task columns a Chemprop model was trained on), else empty.
    """

    values: np.ndarray
    output_names: list[str] = field(default_factory=list)


@hookspec(firstresult=True)
def molpeg_model_outputs(
    path: Path,
    smiles: Sequence[str],
    kind: Literal["embedding", "prediction"],
    trust: bool,
    plugin_manager: pluggy.PluginManager,
    progress: Callable[[str, int, int], None] | None,
    stage: str,
) -> ModelOutputs | None:
    """Run the saved model in the file ``path`` over ``smiles``: embeddings or predictions.

    Called by source pruning (:mod:`molpeg_plugins.source.pruning`): ``feature_mapping`` with
    ``kind="embedding"`` groups molecules on the model's learned fingerprint,
    ``label_mapping`` with ``kind="prediction"`` maps target molecules to the tasks a
    model predicts. Every SMILES given parses with RDKit. The model file must be loaded with
    :func:`molpeg_plugins.pipeline.checkpoints.safe_load` and ``plugin_manager``'s allow-list
    (``trust=True``: the user passed ``--trust-checkpoint``). ``progress(stage, done,
    total)``, if given, is called as molecules are processed.

    Returns:
        The outputs, one row per SMILES (predictions: probabilities for classifiers), or
        ``None`` if this implementation does not handle this kind of model file, so that
        the next implementation is tried.
    """


@hookspec(firstresult=True)
def molpeg_create_reference(model: Any) -> torch.nn.Module | None:
    """Create the reference (EMA) copy of ``model``.

    Called once, before the first training step, with the online model in its
    pretrained state. The copy must not require gradients and must live on the same device.

    Returns:
        The reference module, or ``None`` to let the next implementation handle it. The
        built-in implementation deep-copies any ``torch.nn.Module``.
    """


@hookspec(firstresult=True)
def molpeg_update_reference(
    reference: torch.nn.Module, online: torch.nn.Module, momentum: float, parameter_names: Any
) -> bool | None:
    """Move the reference towards the online model: ``ξ ← β·ξ + (1−β)·θ``.

    Called after every optimizer step of the online model. ``momentum`` is β;
    ``parameter_names`` is ``None`` (all parameters) or a predicate ``str -> bool``
    choosing which named parameters get the moving average; the other parameters and all
    buffers are copied from the online model.

    Returns:
        ``True`` once handled, ``None`` to defer to the next implementation.
    """


# --------------------------------------------------------------------------- observer hooks


@hookspec
def molpeg_epoch_start(pruner: Pruner, epoch: int, num_kept: int) -> None:
    """Observe the start of a training epoch.

    Called by :meth:`Pruner.start_epoch` with the number of samples the epoch will visit.
    Return value is ignored.
    """


@hookspec
def molpeg_selection_made(pruner: Pruner, selection: EpochSelection) -> None:
    """Observe the keep set chosen for the next epoch.

    Called by :meth:`Pruner.end_epoch` right after the strategy has selected the samples
    of epoch ``selection.epoch``. Loggers and reports read ``selection.indices``,
    ``selection.weights`` and ``selection.stats`` here. Return value is ignored.
    """


@hookspec
def molpeg_validation_end(epoch: int, metrics: dict[str, float]) -> None:
    """Observe the validation metrics of an epoch.

    Called by backends (Chemprop, DeepChem, torch) after validating the model at the end
    of ``epoch``; ``metrics`` maps names such as ``"val_roc_auc"`` or ``"val_rmse"`` to values.
    Return value is ignored.
    """


@hookspec
def molpeg_epoch_end(pruner: Pruner, epoch: int, stats: dict[str, float]) -> None:
    """Observe the end of a training epoch.

    Called by :meth:`Pruner.end_epoch` after the epoch's scores were folded into the score
    table (and gathered across ranks), before selection. ``stats`` holds the epoch's score
    statistics (``score_mean``, ``score_std``, ``score_min``, ``score_max``,
    ``num_scored``). Return value is ignored.
    """
