"""The built-in ``torch`` backend: an MLP on Morgan fingerprints, trained in plain PyTorch.

It needs no chemistry framework besides RDKit, trains in seconds on a CPU, and exercises the
whole pruning engine (:class:`~molpeg_plugins.pruner.Pruner`, :class:`~molpeg_plugins.scoring.
EMAReference`), so ``molpeg prune`` works and can be tested without Chemprop or DeepChem.

Resume: after every epoch the complete training state (model, optimizer, EMA reference,
pruner, RNG, history, best model) is written atomically to ``resume.pt`` in the job's work
folder; ``job.resume`` continues from it and reproduces the uninterrupted run exactly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from molpeg_plugins.atomic import torch_save
from molpeg_plugins.backend import BATCH_PROGRESS, Backend, FitJob, FitResult, evaluate, improves
from molpeg_plugins.checkpoints import load_resume_state, safe_load
from molpeg_plugins.errors import ConfigError, MolPegError
from molpeg_plugins.hookspecs import hookimpl
from molpeg_plugins.pruner import Pruner
from molpeg_plugins.scoring import EMAReference, masked_sample_loss

MODEL_KIND = "molpeg-torch-mlp"
RESUME_FILE = "resume.pt"
MODEL_FILE = "model.pt"


def morgan_fingerprints(
    smiles: list[str], *, radius: int = 2, bits: int = 2048, advance: Any = None
) -> np.ndarray:
    """``(n, bits)`` float32 Morgan (ECFP-like) bit vectors of valid SMILES."""
    from rdkit import Chem, rdBase
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    out = np.zeros((len(smiles), bits), dtype=np.float32)
    quiet_rdkit = rdBase.BlockLogs()
    try:
        for i, smi in enumerate(smiles):
            mol = Chem.MolFromSmiles(smi)
            if mol is None:
                raise MolPegError(f"molecule {i}: RDKit cannot parse {smi!r}")
            out[i] = generator.GetFingerprintAsNumPy(mol)
            if advance is not None and (i + 1) % 128 == 0:
                advance(128)
    finally:
        del quiet_rdkit
    if advance is not None and len(smiles) % 128:
        advance(len(smiles) % 128)
    return out


class FingerprintMLP(nn.Module):
    """Two hidden ReLU layers with dropout on a fingerprint, then a linear head.

    Args:
        in_features: fingerprint length.
        num_tasks: number of outputs (one logit or value per task).
        hidden: width of the hidden layers.
        dropout: dropout probability after each hidden layer.
    """

    def __init__(
        self, in_features: int, num_tasks: int, hidden: int = 256, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.hparams = {
            "in_features": in_features,
            "num_tasks": num_tasks,
            "hidden": hidden,
            "dropout": dropout,
        }
        self.encoder = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(hidden, num_tasks)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation fed to the head."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (classification) or values (regression), ``(batch, num_tasks)``."""
        return self.head(self.encoder(x))


def unreduced_loss(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(batch, tasks)`` loss: BCE-with-logits or squared error; missing labels give 0."""
    filled = torch.nan_to_num(target, nan=0.0)
    if task == "classification":
        return nn.functional.binary_cross_entropy_with_logits(output, filled, reduction="none")
    return (output - filled) ** 2


def batches(order: torch.Tensor, batch_size: int, progress: Any) -> Iterator[torch.Tensor]:
    """The epoch's ``order`` in batches, each reported to ``progress`` once it is trained."""
    with progress(BATCH_PROGRESS, total=-(-order.numel() // batch_size)) as advance:
        for start in range(0, order.numel(), batch_size):
            yield order[start : start + batch_size]
            advance(1)


def _run_fingerprint(job: FitJob) -> str:
    """What a resume state must match: data, split, task and training options."""
    h = hashlib.sha256()
    for part in (
        "\n".join(job.smiles),
        job.train_idx.tobytes(),
        job.val_idx.tobytes(),
        np.nan_to_num(job.targets, nan=-999.0).tobytes(),
        f"{job.task}|{job.epochs}|{job.batch_size}|{job.learning_rate}|{job.seed}",
    ):
        h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()


class TorchBackend(Backend):
    """Fine-tune (or train from scratch) a fingerprint MLP with pruning, in plain PyTorch.

    The metric that picks the reported epoch is validation ROC-AUC (classification) or RMSE
    (regression); without validation molecules the last epoch is reported. ``--pretrained``
    takes a ``model.pt`` written by an earlier ``--backend torch`` run; its head is reused
    when the number of tasks matches, else a new head is trained.
    """

    name = "torch"
    description = (
        "MLP on RDKit Morgan fingerprints in plain PyTorch (built in, fast, no framework)."
    )
    requires = ("torch", "rdkit")

    def fit(self, job: FitJob) -> FitResult:
        """Train with pruning; see the class docstring."""
        pm = job.plugin_manager
        device = torch.device(job.device)
        work = Path(job.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        metric = "roc_auc" if job.task == "classification" else "rmse"
        higher_is_better = metric == "roc_auc"

        with job.progress("Featurising", total=len(job.smiles)) as adv:
            features = torch.from_numpy(morgan_fingerprints(job.smiles, advance=adv))
        x_all = features.to(device)
        y_all = torch.as_tensor(job.targets, dtype=torch.float32, device=device)
        train_idx = torch.as_tensor(job.train_idx, dtype=torch.long, device=device)

        torch.manual_seed(job.seed)
        model = FingerprintMLP(x_all.shape[1], y_all.shape[1])
        if job.pretrained is not None:
            self._load_pretrained(model, job)
        model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=job.learning_rate or 1e-3)
        pruner = Pruner(
            len(job.train_idx),
            job.config,
            total_epochs=job.epochs,
            device=device,
            plugin_manager=pm,
            task=job.task,
        )
        head_only = job.config.reference == "head"
        reference = (
            EMAReference(
                model.head if head_only else model, job.config.ema_momentum, plugin_manager=pm
            )
            if pruner.strategy.needs_reference
            else None
        )
        history: list[dict[str, float]] = []
        best = {"epoch": -1, "value": math.nan, "state": None}
        start_epoch = 0
        resume_path = work / RESUME_FILE
        fingerprint = _run_fingerprint(job)
        if job.resume and resume_path.is_file():
            state = load_resume_state(resume_path, map_location=device, plugin_manager=pm)
            if state.get("fingerprint") != fingerprint:
                raise ConfigError(
                    f"{resume_path}: cannot resume: the data, split or training options differ "
                    "from the interrupted run; rerun with --overwrite instead of --resume to start "
                    "over"
                )
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            pruner.load_state_dict(state["pruner"])
            if reference is not None:
                reference.load_state_dict(state["reference"])
            history = list(state["history"])
            best = dict(state["best"])
            start_epoch = int(state["epoch"])
            torch.set_rng_state(state["rng"])

        for epoch in range(start_epoch, job.epochs):
            selection = pruner.start_epoch()
            model.train()
            order = torch.as_tensor(list(pruner.sampler), dtype=torch.long, device=device)
            total, count = 0.0, 0
            for batch, idx in enumerate(batches(order, job.batch_size, job.progress)):
                rows = train_idx[idx]
                x, y = x_all[rows], y_all[rows]
                mask = torch.isfinite(y)
                z = model.embed(x)
                out = model.head(z)
                online = masked_sample_loss(unreduced_loss(job.task, out, y), mask)
                ref = None
                if reference is not None and pruner.reference_due(batch, reference):
                    ref_out = reference(z.detach()) if head_only else reference(x)
                    ref = masked_sample_loss(unreduced_loss(job.task, ref_out, y), mask)
                loss = pruner.loss(idx, online, ref)
                if pruner.strategy.signals:
                    pred = torch.sigmoid(out) if job.task == "classification" else out
                    pruner.observe(
                        idx,
                        predictions=pred,
                        targets=y,
                        mask=mask,
                        features=x,
                        embeddings=z if pruner.wants("embeddings") else None,
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if reference is not None:
                    reference.update(model.head if head_only else model)
                total += float(loss.detach()) * idx.numel()
                count += idx.numel()

            val = self._metrics(model, job, x_all, y_all, job.val_idx)
            pm.hook.molpeg_validation_end(
                epoch=epoch, metrics={f"val_{k}": v for k, v in val.items()}
            )
            pruner.end_epoch()
            row = {
                "epoch": float(epoch),
                "num_kept": float(selection.indices.numel()),
                "train_loss": total / max(count, 1),
                **{f"val_{k}": v for k, v in val.items()},
                **{k: v for k, v in pruner.history[-1].items() if k.startswith("score_")},
            }
            history.append(row)
            value = val.get(metric, math.nan)
            improved = best["state"] is None or improves(value, best["value"], higher_is_better)
            if improved or not len(job.val_idx):
                best = {
                    "epoch": epoch,
                    "value": value,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
                }
            torch_save(
                resume_path,
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "pruner": pruner.state_dict(),
                    "reference": None if reference is None else reference.state_dict(),
                    "history": history,
                    "best": best,
                    "rng": torch.get_rng_state(),
                },
            )

        final_kept = pruner.final_selection().cpu().numpy()
        model.load_state_dict(best["state"])
        with job.progress("Evaluating", total=2) as adv:
            val_metrics = self._metrics(model, job, x_all, y_all, job.val_idx)
            adv(1)
            test_metrics = self._metrics(model, job, x_all, y_all, job.test_idx)
            adv(1)
        model_path = job.model_folder / MODEL_FILE
        torch_save(
            model_path,
            {
                "kind": MODEL_KIND,
                "hparams": model.hparams,
                "task": job.task,
                "target_names": list(job.target_names),
                "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
            },
        )
        state = pruner.state_dict()
        if not job.keep_resume_state:
            resume_path.unlink(missing_ok=True)
        import rdkit

        return FitResult(
            metric_name=metric,
            best_epoch=int(best["epoch"]),
            val_metrics=val_metrics,
            test_metrics=test_metrics,
            history=history,
            pruner_state=state,
            final_kept=np.sort(final_kept),
            model_path=model_path,
            versions={"torch": torch.__version__, "rdkit": rdkit.__version__},
        )

    @staticmethod
    @torch.no_grad()
    def _metrics(
        model: nn.Module, job: FitJob, x: torch.Tensor, y: torch.Tensor, idx: np.ndarray
    ) -> dict[str, float]:
        if not len(idx):
            return {}
        was_training = model.training
        model.eval()
        rows = torch.as_tensor(idx, dtype=torch.long, device=x.device)
        out = model(x[rows]).float()
        model.train(was_training)
        if job.task == "classification":
            out = out.sigmoid()
        return evaluate(job.task, out.cpu().numpy(), y[rows].cpu().numpy())

    @staticmethod
    def _load_pretrained(model: FingerprintMLP, job: FitJob) -> None:
        ckpt = safe_load(
            job.pretrained, trust=job.trust_checkpoint, plugin_manager=job.plugin_manager
        )
        if not isinstance(ckpt, dict) or ckpt.get("kind") != MODEL_KIND:
            raise MolPegError(
                f"{job.pretrained}: not a model of the torch backend; --backend torch "
                f"fine-tunes the {MODEL_FILE} written by an earlier 'molpeg prune --backend torch'"
            )
        saved = ckpt["state_dict"]
        if ckpt["hparams"]["in_features"] != model.hparams["in_features"]:
            raise MolPegError(f"{job.pretrained}: fingerprint length differs from this model")
        own = model.state_dict()
        keep = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
        missing = [k for k in own if not k.startswith("head.") and k not in keep]
        if missing:
            raise MolPegError(
                f"{job.pretrained}: encoder weights do not fit this model ({missing[0]})"
            )
        model.load_state_dict(keep, strict=False)


@hookimpl
def molpeg_register_backends() -> list[Backend]:
    """Register the built-in ``torch`` backend."""
    return [TorchBackend()]
