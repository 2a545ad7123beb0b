"""Source-set pruning (DP4TL): choose the pretraining molecules that matter for a target task.

:mod:`~molpeg_plugins.source.pruning` scores a source set against a target set from a saved
model's embeddings or predictions (the ``molpeg_model_outputs`` hook) and writes the kept
subset. It may import the engine, the application layer's CSV reader and atomic writes
(:mod:`molpeg_plugins.pipeline`) and the top-level modules; never the command line or
scaling, and no framework; import-linter enforces it (``[tool.importlinter]`` in
``pyproject.toml``).
"""
