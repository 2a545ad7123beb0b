"""The Python API: the engine's classes with the plugin manager filled in for you.

The engine (:class:`molpeg_plugins.engine.pruner.Pruner`, :class:`molpeg_plugins.engine.scoring.
EMAReference`) is handed its plugin manager and never looks one up. For a training loop of
your own, ``Pruner(len(train_set), prune_ratio=0.6)`` is enough: the classes below are the
engine's, with ``plugin_manager`` defaulting to the process-wide
:func:`~molpeg_plugins.plugins.get_plugin_manager` (built-ins and installed plugins). They
are what ``from molpeg_plugins import Pruner, EMAReference`` gives you.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from molpeg_plugins.engine import pruner, scoring
from molpeg_plugins.engine.config import PruneConfig
from molpeg_plugins.plugins import MolPegPluginManager, get_plugin_manager


class Pruner(pruner.Pruner):
    """:class:`molpeg_plugins.engine.pruner.Pruner` whose ``plugin_manager`` is optional.

    Without one, strategies are looked up in, and events sent to, the process-wide manager.
    All other arguments are the engine's.
    """

    def __init__(
        self,
        num_samples: int,
        config: PruneConfig | None = None,
        *,
        plugin_manager: MolPegPluginManager | None = None,
        **options: Any,
    ) -> None:
        pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
        super().__init__(num_samples, config, plugin_manager=pm, **options)


class EMAReference(scoring.EMAReference):
    """:class:`molpeg_plugins.engine.scoring.EMAReference` whose ``plugin_manager`` is optional.

    Without one, the reference is created and updated through the process-wide manager.
    All other arguments are the engine's.
    """

    def __init__(
        self,
        model: nn.Module,
        momentum: float = 0.5,
        *,
        plugin_manager: MolPegPluginManager | None = None,
        **options: Any,
    ) -> None:
        pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
        super().__init__(model, momentum, plugin_manager=pm, **options)
