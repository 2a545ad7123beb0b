"""The pruning engine: what a training loop calls to prune its data, framework-free.

The schedule and keep sets (:mod:`~molpeg_plugins.engine.pruner`), per-sample scores by dataset
index (:mod:`~molpeg_plugins.engine.scorebook`), the sampler whose order changes per epoch
(:mod:`~molpeg_plugins.engine.sampler`), the EMA reference and per-sample losses
(:mod:`~molpeg_plugins.engine.scoring`), the pruning options
(:mod:`~molpeg_plugins.engine.config`), the strategies (:mod:`~molpeg_plugins.engine.strategies`)
and the built-in reference hooks (:mod:`~molpeg_plugins.engine.torch_hooks`). The engine may
import torch, the top-level modules ``errors``, ``hookspecs`` and ``plugins``, and nothing of
the application (``pipeline``, ``source``, ``scaling``, ``cli``, ``api``); import-linter
enforces it (``[tool.importlinter]`` in ``pyproject.toml``).
"""
