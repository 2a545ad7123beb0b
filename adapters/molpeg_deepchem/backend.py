"""The ``deepchem`` backend of ``molpeg prune``: ECFP + DeepChem multitask network, pruned.

Featurises the molecules with DeepChem's ``CircularFingerprint``, trains a
``MultitaskClassifier`` or ``MultitaskRegressor`` one epoch at a time through
:class:`~molpeg_deepchem.pruning.MolPegDeepChem` (DeepChem's own ``fit``). The epoch loop,
validation, model selection and resume are the training driver's
(:class:`~molpeg_plugins.pipeline.training.EpochBackend`).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from molpeg_plugins.errors import MolPegError
from molpeg_plugins.pipeline.backend import BATCH_PROGRESS, FitJob, FitResult
from molpeg_plugins.pipeline.training import (
    MODEL_FILE,
    EpochBackend,
    EpochModel,
    load_matching_weights,
)

if TYPE_CHECKING:
    from molpeg_plugins.engine.pruner import Pruner

MODEL_KIND = "molpeg-deepchem-multitask"
ECFP_SIZE = 2048
LAYER_SIZES = (1000,)
HEAD_LAYERS = ("output_layer", "uncertainty_layer")


@contextlib.contextmanager
def _quiet(logs: bool) -> Iterator[None]:
    """Hide DeepChem 2.8's own fit() tensor warning and, if ``logs``, its log lines."""
    log = logging.getLogger("deepchem")
    level = log.level
    if logs:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
            yield
    finally:
        log.setLevel(level)


def predict(model: Any, dataset: Any) -> np.ndarray:
    """``(n, tasks)`` predictions: P(active) for classifiers, values for regressors."""
    out = np.asarray(model.predict(dataset))
    if out.ndim == 3:
        out = out[..., 1] if out.shape[-1] == 2 else out[..., 0]
    return out.reshape(len(dataset), -1)


class MultitaskModel(EpochModel):
    """A DeepChem multitask network on ECFP for one job, pruned through ``MolPegDeepChem``.

    Args:
        job: the run.
        pruner: the run's pruner.
    """

    runs_pruner_epochs = True  # PrunedDataset and the fit() callback start and end epochs

    def __init__(self, job: FitJob, pruner: Pruner) -> None:
        import deepchem as dc
        import torch

        from molpeg_deepchem.featurize import ecfp
        from molpeg_deepchem.pruning import MolPegDeepChem

        self.job = job
        with job.progress("Featurising (ECFP)", total=len(job.smiles)) as adv:
            self.X = ecfp(job.smiles, size=ECFP_SIZE, advance=adv)
        self.targets = targets = np.asarray(job.targets, dtype=np.float64)
        self.smiles = np.asarray(job.smiles, dtype=object)
        # DeepChem wants a model_dir for its own checkpoints; molpeg writes its own files
        self.scratch = tempfile.TemporaryDirectory(prefix="molpeg-dc-")
        options = {
            "layer_sizes": list(LAYER_SIZES),
            "batch_size": job.batch_size,
            "learning_rate": job.learning_rate or 1e-3,
            "device": torch.device(job.device),
            "model_dir": self.scratch.name,
        }
        n_tasks = targets.shape[1]
        if job.task == "classification":
            self.model = dc.models.MultitaskClassifier(n_tasks, self.X.shape[1], **options)
        else:
            self.model = dc.models.MultitaskRegressor(n_tasks, self.X.shape[1], **options)
        if job.pretrained is not None:
            self._load_pretrained()
        self.pruning = MolPegDeepChem(
            self.model,
            self.dataset(job.train_idx),
            job.config,
            epochs=job.epochs,
            plugin_manager=job.plugin_manager,
            pruner=pruner,
        )
        self.model._ensure_built()

    def dataset(self, rows: np.ndarray) -> Any:
        """The DeepChem dataset of the molecules ``rows`` (features, labels, SMILES)."""
        from molpeg_deepchem.featurize import labelled_dataset

        rows = np.asarray(rows, dtype=np.int64)
        return labelled_dataset(self.X[rows], self.targets[rows], self.smiles[rows])

    def train_epoch(self, pruner: Pruner, epoch: int) -> float:
        """One ``model.fit(..., nb_epoch=1)`` on the pruned dataset; its mean loss."""
        pruning = self.pruning
        steps = -(-len(pruning.dataset) // self.job.batch_size)
        with self.job.progress(BATCH_PROGRESS, total=steps) as advance:
            self.model.fit(
                pruning.dataset,
                nb_epoch=1,
                loss=pruning.loss,
                callbacks=[pruning.callback, lambda model, step, **kw: advance(1)],
                checkpoint_interval=0,
            )
        return pruning.epoch_losses[-1]

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """P(active) or values of the molecules ``rows``."""
        return predict(self.model, self.dataset(rows))

    def weights(self) -> dict[str, Any]:
        """A CPU copy of the network's weights."""
        return {k: v.detach().cpu().clone() for k, v in self.model.model.state_dict().items()}

    def load_weights(self, weights: dict[str, Any]) -> None:
        """Load weights :meth:`weights` returned."""
        self.model.model.load_state_dict(weights)

    def state_dict(self) -> dict[str, Any]:
        """Network, optimizer, step counter, EMA reference and epoch losses."""
        reference = self.pruning.reference
        return {
            "model": self.model.model.state_dict(),
            "optimizer": self.model._pytorch_optimizer.state_dict(),
            "global_step": int(self.model._global_step),
            "reference": None if reference is None else reference.state_dict(),
            "epoch_losses": list(self.pruning.epoch_losses),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.model.model.load_state_dict(state["model"])
        self.model._pytorch_optimizer.load_state_dict(state["optimizer"])
        self.model._global_step = int(state["global_step"])
        if self.pruning.reference is not None and state["reference"] is not None:
            self.pruning.reference.load_state_dict(state["reference"])
        self.pruning.epoch_losses = [float(v) for v in state["epoch_losses"]]

    def save(self, path: Path) -> None:
        """Write the ``model.pt`` that ``--pretrained`` fine-tunes from."""
        from molpeg_plugins.pipeline.atomic import torch_save

        torch_save(
            path,
            {
                "kind": MODEL_KIND,
                "model_class": type(self.model).__name__,
                "n_features": int(self.X.shape[1]),
                "layer_sizes": list(LAYER_SIZES),
                "task": self.job.task,
                "target_names": list(self.job.target_names),
                "model_state_dict": self.weights(),
            },
        )

    def versions(self) -> dict[str, str]:
        """DeepChem, torch and RDKit."""
        import deepchem as dc
        import rdkit
        import torch

        return {"deepchem": dc.__version__, "torch": torch.__version__, "rdkit": rdkit.__version__}

    def teardown(self) -> None:
        """Detach the pruning hook from the network and delete DeepChem's scratch folder."""
        self.pruning.remove()
        self.scratch.cleanup()

    def _load_pretrained(self) -> None:
        from molpeg_plugins.pipeline.checkpoints import safe_load

        job, model = self.job, self.model
        ckpt = safe_load(
            job.pretrained, trust=job.trust_checkpoint, plugin_manager=job.plugin_manager
        )
        saved = ckpt.get("model_state_dict") if isinstance(ckpt, dict) else None
        if not isinstance(saved, dict):
            raise MolPegError(
                f"{job.pretrained}: not a DeepChem model; --backend deepchem fine-tunes the "
                f"{MODEL_FILE} of an earlier 'molpeg prune --backend deepchem' run or a DeepChem "
                "checkpoint (a file with 'model_state_dict')"
            )
        missing = load_matching_weights(model.model, saved, head=HEAD_LAYERS)
        if missing:
            raise MolPegError(
                f"{job.pretrained}: weights do not fit this model ({missing}); it must be a "
                f"{type(model).__name__} on {ECFP_SIZE}-bit ECFP with layers {list(LAYER_SIZES)}"
            )


class DeepChemBackend(EpochBackend):
    """Train a DeepChem ``MultitaskClassifier``/``MultitaskRegressor`` on ECFP with pruning.

    The model-selection metric is validation ROC-AUC (classification) or RMSE (regression);
    without validation molecules the last epoch is reported. ``--pretrained`` takes a
    ``model.pt`` written by an earlier ``--backend deepchem`` run (or a DeepChem checkpoint
    with a ``model_state_dict``); layers whose shapes match are loaded, so a model trained on
    other tasks gives its hidden layers and gets a new output layer.
    """

    name = "deepchem"
    description = "DeepChem MultitaskClassifier/Regressor on ECFP4 (2048 bits), trained by fit()."
    requires = ("deepchem", "torch")

    def fit(self, job: FitJob) -> FitResult:
        """Train with pruning, DeepChem's own log lines and warnings hidden when quiet."""
        with _quiet(job.quiet):
            return super().fit(job)

    def build(self, job: FitJob, pruner: Pruner) -> MultitaskModel:
        """A :class:`MultitaskModel` for ``job``."""
        return MultitaskModel(job, pruner)
