"""Chemprop model files: the one way molpeg loads a saved ``MPNN``, and running it on SMILES.

:func:`load_model` reads the file with molpeg's safe loader (``torch.load(weights_only=True)``
and the plugins' allow-list, :func:`molpeg_plugins.pipeline.checkpoints.safe_load`) and then
builds the model with Chemprop's public :meth:`chemprop.models.MPNN.load_from_file`. The ``molpeg
prune --backend chemprop --pretrained`` backend and the ``molpeg_model_outputs`` hook
(source pruning on embeddings or predictions) both load through it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from molpeg_plugins.errors import ConfigError, MolPegError
from molpeg_plugins.hookspecs import ModelOutputs
from molpeg_plugins.pipeline.checkpoints import safe_load


def load_model(path: str | Path, *, plugin_manager: Any, trust: bool = False) -> Any:
    """A Chemprop ``MPNN`` from a model file saved by ``chemprop train`` (``model_0/best.pt``).

    The file is unpickled by :func:`~molpeg_plugins.pipeline.checkpoints.safe_load` (weights only,
    allow-list of ``plugin_manager``; ``trust=True`` skips the allow-list). The checkpoint
    objects it returned are handed to Chemprop's public ``MPNN.load_from_file`` as an
    in-memory file, so Chemprop rebuilds its metrics and sub-modules itself; that buffer holds
    only what the safe loader already accepted. The model is returned in the mode Chemprop
    leaves it (training); its ``output_columns`` attribute holds the names of its outputs
    (empty if the file stores none).

    Raises:
        MolPegError: the file is not a Chemprop v2 model file.
        UnsafeCheckpointError: it references a class outside the allow-list.
    """
    from chemprop.models import MPNN

    ckpt = safe_load(path, trust=trust, plugin_manager=plugin_manager)
    if not isinstance(ckpt, dict) or "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise MolPegError(
            f"{path}: not a Chemprop v2 model file (no hyper_parameters/state_dict); pass a "
            "model saved by `chemprop train` (model_0/best.pt)"
        )
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    buffer.seek(0)
    model = MPNN.load_from_file(buffer, map_location="cpu")
    model.output_columns = list(ckpt.get("output_columns") or [])
    return model


def _graph_batches(model: Any, smiles: Sequence[str], batch_size: int) -> Iterator[tuple[int, Any]]:
    """Yield ``(number done, BatchMolGraph)`` over ``smiles``, ``batch_size`` at a time."""
    from chemprop.data import BatchMolGraph
    from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer
    from rdkit import Chem

    if getattr(model, "X_d_transform", None) is not None and not isinstance(
        model.X_d_transform, torch.nn.Identity
    ):
        raise ConfigError("models that need extra molecule descriptors (X_d) are not supported")
    featurizer = SimpleMoleculeMolGraphFeaturizer()
    for start in range(0, len(smiles), batch_size):
        batch = smiles[start : start + batch_size]
        graphs = [featurizer(Chem.MolFromSmiles(smi)) for smi in batch]
        yield start + len(batch), BatchMolGraph(graphs)


def model_outputs(
    model: Any,
    smiles: Sequence[str],
    *,
    kind: Literal["embedding", "prediction"],
    batch_size: int = 256,
    progress: Callable[[str, int, int], None] | None = None,
    stage: str = "model",
) -> ModelOutputs:
    """Run ``model`` (in eval mode) over ``smiles`` (all parseable by RDKit).

    ``kind="embedding"`` returns the learned fingerprints, ``kind="prediction"`` the model's
    ``forward`` output (probabilities for classifiers; for multiclass/Dirichlet heads, the
    probability of the last class) with the model's output names.
    """
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    model.eval()
    blocks = []
    with torch.inference_mode():
        for done, bmg in _graph_batches(model, smiles, batch_size):
            if kind == "embedding":
                y = model.fingerprint(bmg)
            else:
                y = model(bmg)
                if y.ndim == 3:  # multiclass / dirichlet heads: probability of the last class
                    y = y[..., -1]
            blocks.append(y.float().cpu().numpy())
            if progress:
                progress(stage, done, len(smiles))
    values = np.concatenate(blocks).astype(np.float32, copy=False)
    names = list(model.output_columns) if kind == "prediction" else []
    return ModelOutputs(values=values, output_names=names)
