"""Scaling laws: fits of test error against the fraction of training data kept.

:mod:`~molpeg_plugins.scaling.laws` fits the curves of ``molpeg scaling`` and writes their
table and plot. It may import the application layer's atomic writes
(:mod:`molpeg_plugins.pipeline`), the engine and the top-level modules; never the command line
or source pruning, and no framework; import-linter enforces it (``[tool.importlinter]`` in
``pyproject.toml``).
"""
