"""The ``deepchem`` backend of ``molpeg prune``: ECFP + DeepChem multitask network, pruned.

Featurises the molecules with DeepChem's ``CircularFingerprint``, trains a
``MultitaskClassifier`` or ``MultitaskRegressor`` one epoch at a time through
:class:`~molpeg_deepchem.pruning.MolPegDeepChem` (DeepChem's own ``fit``), validates after
each epoch and reports the best-validation model.

Resume: after every epoch the complete training state (network, optimizer, step counter,
EMA reference, pruner, RNG, history, best model) is written atomically to ``resume.pt`` in
the job's work folder; ``job.resume`` continues from it and reproduces the uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from molpeg_plugins.backend import BATCH_PROGRESS, Backend, FitJob, FitResult, evaluate, improves
from molpeg_plugins.errors import ConfigError, MolPegError

MODEL_KIND = "molpeg-deepchem-multitask"
RESUME_FILE = "resume.pt"
MODEL_FILE = "model.pt"
ECFP_SIZE = 2048
LAYER_SIZES = (1000,)
HEAD_LAYERS = ("output_layer", "uncertainty_layer")


def _run_fingerprint(job: FitJob) -> str:
    """What a resume state must match: data, split, task and training options."""
    h = hashlib.sha256(b"deepchem")
    for part in (
        "\n".join(job.smiles),
        np.asarray(job.train_idx).tobytes(),
        np.asarray(job.val_idx).tobytes(),
        np.nan_to_num(job.targets, nan=-999.0).tobytes(),
        f"{job.task}|{job.epochs}|{job.batch_size}|{job.learning_rate}|{job.seed}",
    ):
        h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()


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


def _cpu_state(module: Any) -> dict[str, Any]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _cuda_rng() -> list[Any] | None:
    import torch

    return torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


def predict(model: Any, dataset: Any) -> np.ndarray:
    """``(n, tasks)`` predictions: P(active) for classifiers, values for regressors."""
    out = np.asarray(model.predict(dataset))
    if out.ndim == 3:
        out = out[..., 1] if out.shape[-1] == 2 else out[..., 0]
    return out.reshape(len(dataset), -1)


class DeepChemBackend(Backend):
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
        """Train with pruning; see the class docstring."""
        # DeepChem wants a model_dir for its own checkpoints; molpeg writes its own files
        with _quiet(job.quiet), tempfile.TemporaryDirectory(prefix="molpeg-dc-") as scratch:
            return self._fit(job, Path(scratch))

    def _fit(self, job: FitJob, scratch: Path) -> FitResult:
        import deepchem as dc
        import rdkit
        import torch

        from molpeg_deepchem.featurize import ecfp, labelled_dataset
        from molpeg_deepchem.pruning import MolPegDeepChem
        from molpeg_plugins.atomic import torch_save
        from molpeg_plugins.checkpoints import load_resume_state, safe_load

        pm = job.plugin_manager
        work = Path(job.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        metric = "roc_auc" if job.task == "classification" else "rmse"
        higher_is_better = metric == "roc_auc"

        with job.progress("Featurising (ECFP)", total=len(job.smiles)) as adv:
            X = ecfp(job.smiles, size=ECFP_SIZE, advance=adv)
        targets = np.asarray(job.targets, dtype=np.float64)
        smiles = np.asarray(job.smiles, dtype=object)

        def split(idx: np.ndarray) -> Any:
            idx = np.asarray(idx, dtype=np.int64)
            return labelled_dataset(X[idx], targets[idx], smiles[idx])

        train, val, test = split(job.train_idx), split(job.val_idx), split(job.test_idx)

        torch.manual_seed(job.seed)
        np.random.seed(job.seed)
        model = self._build(dc, job, X.shape[1], targets.shape[1], scratch)
        if job.pretrained is not None:
            self._load_pretrained(model, job, safe_load)
        pruning = MolPegDeepChem(
            model, train, job.config, epochs=job.epochs, plugin_manager=pm, task=job.task
        )

        history: list[dict[str, float]] = []
        best: dict[str, Any] = {"epoch": -1, "value": math.nan, "state": None}
        start_epoch = 0
        resume_path = work / RESUME_FILE
        fingerprint = _run_fingerprint(job)
        model._ensure_built()
        if job.resume and resume_path.is_file():
            state = load_resume_state(resume_path, map_location=model.device, plugin_manager=pm)
            if state.get("fingerprint") != fingerprint:
                raise ConfigError(
                    f"{resume_path}: cannot resume: the data, split or training options differ "
                    "from the interrupted run; rerun with --overwrite instead of --resume to start "
                    "over"
                )
            model.model.load_state_dict(state["model"])
            model._pytorch_optimizer.load_state_dict(state["optimizer"])
            model._global_step = int(state["global_step"])
            pruning.load_state_dict(state["pruning"])
            history = list(state["history"])
            best = dict(state["best"])
            start_epoch = int(state["epoch"])
            torch.set_rng_state(state["rng"])
            if state.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(list(state["cuda_rng"]))

        for epoch in range(start_epoch, job.epochs):
            steps = -(-len(pruning.dataset) // job.batch_size)
            with job.progress(BATCH_PROGRESS, total=steps) as advance:
                model.fit(
                    pruning.dataset,
                    nb_epoch=1,
                    loss=pruning.loss,
                    callbacks=[pruning.callback, lambda model, step, **kw: advance(1)],
                    checkpoint_interval=0,
                )
            stats = pruning.pruner.history[-1]
            val_metrics = self._metrics(model, job, val, targets[job.val_idx])
            named = {f"val_{k}": v for k, v in val_metrics.items()}
            pm.hook.molpeg_validation_end(epoch=epoch, metrics=named)
            history.append(
                {
                    "epoch": float(epoch),
                    "num_kept": float(stats["num_kept"]),
                    "train_loss": pruning.epoch_losses[-1],
                    **named,
                    **{k: v for k, v in stats.items() if k.startswith("score_")},
                }
            )
            value = val_metrics.get(metric, math.nan)
            improved = best["state"] is None or improves(value, best["value"], higher_is_better)
            if improved or not len(job.val_idx):
                best = {
                    "epoch": epoch,
                    "value": value,
                    "state": _cpu_state(model.model),
                }
            torch_save(
                resume_path,
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch + 1,
                    "model": model.model.state_dict(),
                    "optimizer": model._pytorch_optimizer.state_dict(),
                    "global_step": int(model._global_step),
                    "pruning": pruning.state_dict(),
                    "history": history,
                    "best": best,
                    "rng": torch.get_rng_state(),
                    "cuda_rng": _cuda_rng(),
                },
            )

        final_kept = pruning.pruner.final_selection().cpu().numpy()
        pruner_state = pruning.pruner.state_dict()
        pruning.remove()
        model.model.load_state_dict(best["state"])
        with job.progress("Scoring validation and test molecules", total=2) as adv:
            val_metrics = self._metrics(model, job, val, targets[job.val_idx])
            adv(1)
            test_metrics = self._metrics(model, job, test, targets[job.test_idx])
            adv(1)
        model_path = job.model_folder / MODEL_FILE
        torch_save(
            model_path,
            {
                "kind": MODEL_KIND,
                "model_class": type(model).__name__,
                "n_features": int(X.shape[1]),
                "layer_sizes": list(LAYER_SIZES),
                "task": job.task,
                "target_names": list(job.target_names),
                "model_state_dict": best["state"],
            },
        )
        if not job.keep_resume_state:
            resume_path.unlink(missing_ok=True)
        return FitResult(
            metric_name=metric,
            best_epoch=int(best["epoch"]),
            val_metrics=val_metrics,
            test_metrics=test_metrics,
            history=history,
            pruner_state=pruner_state,
            final_kept=np.sort(final_kept),
            model_path=model_path,
            versions={
                "deepchem": dc.__version__,
                "torch": torch.__version__,
                "rdkit": rdkit.__version__,
            },
        )

    @staticmethod
    def _build(dc: Any, job: FitJob, n_features: int, n_tasks: int, scratch: Path) -> Any:
        import torch

        options = {
            "layer_sizes": list(LAYER_SIZES),
            "batch_size": job.batch_size,
            "learning_rate": job.learning_rate or 1e-3,
            "device": torch.device(job.device),
            "model_dir": str(scratch),
        }
        if job.task == "classification":
            return dc.models.MultitaskClassifier(n_tasks, n_features, **options)
        return dc.models.MultitaskRegressor(n_tasks, n_features, **options)

    @staticmethod
    def _metrics(model: Any, job: FitJob, dataset: Any, target: np.ndarray) -> dict[str, float]:
        if not len(dataset):
            return {}
        return evaluate(job.task, predict(model, dataset), np.asarray(target, dtype=np.float64))

    @staticmethod
    def _load_pretrained(model: Any, job: FitJob, safe_load: Any) -> None:
        ckpt = safe_load(
            job.pretrained,
            trust=getattr(job, "trust_checkpoint", False),
            plugin_manager=job.plugin_manager,
        )
        saved = ckpt.get("model_state_dict") if isinstance(ckpt, dict) else None
        if not isinstance(saved, dict):
            raise MolPegError(
                f"{job.pretrained}: not a DeepChem model; --backend deepchem fine-tunes the "
                f"{MODEL_FILE} of an earlier 'molpeg prune --backend deepchem' run or a DeepChem "
                "checkpoint (a file with 'model_state_dict')"
            )
        own = model.model.state_dict()
        keep = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
        missing = [k for k in own if not k.startswith(HEAD_LAYERS) and k not in keep]
        if missing:
            raise MolPegError(
                f"{job.pretrained}: weights do not fit this model ({missing[0]}); it must be a "
                f"{type(model).__name__} on {ECFP_SIZE}-bit ECFP with layers {list(LAYER_SIZES)}"
            )
        model.model.load_state_dict(keep, strict=False)
