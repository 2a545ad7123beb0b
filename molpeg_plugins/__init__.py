"""molpeg: molecular data pruning (MolPeg and its baselines) for any training loop.

The core is framework-free: a pluggy contract (:mod:`molpeg_plugins.hookspecs`), the
pruning engine (:class:`Pruner`), the score (:class:`EMAReference`,
:func:`masked_sample_loss`) and a sampler whose index set changes per epoch
(:class:`PruningSampler`). Framework adapters live in ``molpeg_chemprop`` and
``molpeg_deepchem``. ``Pruner`` and ``EMAReference`` here are those of
:mod:`molpeg_plugins.api`: their plugin manager defaults to the process-wide one.
"""

from molpeg_plugins.api import EMAReference, Pruner
from molpeg_plugins.engine.config import PruneConfig, num_kept
from molpeg_plugins.engine.indexing import IndexedDataset
from molpeg_plugins.engine.pruner import EpochSelection
from molpeg_plugins.engine.sampler import PruningSampler
from molpeg_plugins.engine.scorebook import ScoreBook
from molpeg_plugins.engine.scoring import discrepancy, ema_update_, masked_sample_loss
from molpeg_plugins.engine.strategies.base import Selection, Strategy
from molpeg_plugins.errors import ConfigError, MolPegError, SamplerError, UnknownNameError
from molpeg_plugins.hookspecs import hookimpl
from molpeg_plugins.plugins import get_plugin_manager, make_plugin_manager

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "EMAReference",
    "EpochSelection",
    "IndexedDataset",
    "MolPegError",
    "PruneConfig",
    "Pruner",
    "PruningSampler",
    "SamplerError",
    "ScoreBook",
    "Selection",
    "Strategy",
    "UnknownNameError",
    "__version__",
    "discrepancy",
    "ema_update_",
    "get_plugin_manager",
    "hookimpl",
    "make_plugin_manager",
    "masked_sample_loss",
    "num_kept",
]
