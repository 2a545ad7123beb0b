"""The application layer: one ``molpeg prune`` run from a CSV file to its output folder.

The orchestration (:mod:`~molpeg_plugins.pipeline.run`), the backend contract and the training
driver (``backend``, ``training``, ``torch_training``, the built-in ``torch_backend``), the
molecule table and its CSV reader (``data``, ``csv_records``), checkpoint loading
(``checkpoints``), the outputs and their atomic writes (``report``, ``outputs``, ``atomic``) and
the checks of a run (``sanity``). It may import the engine (:mod:`molpeg_plugins.engine`) and
the top-level modules, never the command line, source pruning or scaling, and no framework but
torch; import-linter enforces it (``[tool.importlinter]`` in ``pyproject.toml``).
"""
