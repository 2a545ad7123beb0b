"""The built-in ``torch`` backend: an MLP on Morgan fingerprints, trained in plain PyTorch.

It needs no chemistry framework besides RDKit, trains in seconds on a CPU, and exercises the
whole pruning engine (:class:`~molpeg_plugins.engine.pruner.Pruner`,
:class:`~molpeg_plugins.engine.scoring.EMAReference`), so ``molpeg prune`` works and can be
tested without Chemprop or DeepChem.

Training, model selection and resume are the driver's
(:class:`~molpeg_plugins.pipeline.training.EpochBackend`); this module supplies the model: features,
one epoch of training, predictions and the ``model.pt`` file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from molpeg_plugins.engine.pruner import Pruner
from molpeg_plugins.engine.scoring import EMAReference, masked_sample_loss
from molpeg_plugins.errors import MolPegError
from molpeg_plugins.hookspecs import hookimpl
from molpeg_plugins.pipeline.atomic import torch_save
from molpeg_plugins.pipeline.backend import Backend, FitJob
from molpeg_plugins.pipeline.checkpoints import safe_load
from molpeg_plugins.pipeline.torch_training import TorchEpochModel, batches, unreduced_loss
from molpeg_plugins.pipeline.training import MODEL_FILE, EpochBackend, load_matching_weights

MODEL_KIND = "molpeg-torch-mlp"

FINGERPRINT_BITS = 2048
"""Length of the torch backend's Morgan fingerprints."""


def packed_morgan_fingerprints(
    smiles: Sequence[str], *, radius: int = 2, bits: int = FINGERPRINT_BITS, advance: Any = None
) -> np.ndarray:
    """``(n, ⌈bits / 8⌉)`` uint8 Morgan (ECFP-like) bit vectors of valid SMILES, 8 bits a byte.

    Bit ``j`` of molecule ``i`` is bit ``7 - j % 8`` of byte ``j // 8`` (:func:`numpy.packbits`
    order; a last byte is padded with zeros): a 32nd of the memory of the float matrix
    :func:`morgan_fingerprints` returns, which :func:`unpack_bits` (or
    :func:`numpy.unpackbits`) restores.

    Raises:
        MolPegError: a SMILES that RDKit cannot parse.
    """
    from rdkit import Chem, rdBase
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    out = np.zeros((len(smiles), -(-bits // 8)), dtype=np.uint8)
    quiet_rdkit = rdBase.BlockLogs()
    try:
        for i, smi in enumerate(smiles):
            mol = Chem.MolFromSmiles(smi)
            if mol is None:
                raise MolPegError(f"molecule {i}: RDKit cannot parse {smi!r}")
            out[i] = np.packbits(generator.GetFingerprintAsNumPy(mol))
            if advance is not None and (i + 1) % 128 == 0:
                advance(128)
    finally:
        del quiet_rdkit
    if advance is not None and len(smiles) % 128:
        advance(len(smiles) % 128)
    return out


def morgan_fingerprints(
    smiles: Sequence[str], *, radius: int = 2, bits: int = FINGERPRINT_BITS, advance: Any = None
) -> np.ndarray:
    """``(n, bits)`` float32 Morgan (ECFP-like) bit vectors of valid SMILES.

    The unpacked :func:`packed_morgan_fingerprints`, 4 bytes a bit: for small sets (the torch
    backend itself keeps them packed).
    """
    packed = packed_morgan_fingerprints(smiles, radius=radius, bits=bits, advance=advance)
    return np.unpackbits(packed, axis=1, count=bits).astype(np.float32)


_BIT_SHIFTS = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor) -> torch.Tensor:
    """``(n, 8 * bytes)`` float32 0/1 bits of the ``(n, bytes)`` uint8 ``packed`` rows, on
    ``packed``'s device (the inverse of :func:`packed_morgan_fingerprints`' packing)."""
    shifts = _BIT_SHIFTS.to(packed.device)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(packed.shape[0], -1).to(torch.float32)


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


class FingerprintMLPModel(TorchEpochModel):
    """A :class:`FingerprintMLP` for one job: features, optimizer and EMA reference.

    The fingerprints are kept packed (:func:`packed_morgan_fingerprints`, 256 bytes a
    molecule) on the device and unpacked one batch at a time (:meth:`features`).

    Args:
        job: the run.
        pruner: the run's pruner (whether it needs a reference, and its device).
    """

    def __init__(self, job: FitJob, pruner: Pruner) -> None:
        self.job = job
        self.device = device = torch.device(job.device)
        with job.progress("Featurising", total=len(job.smiles)) as adv:
            packed = packed_morgan_fingerprints(job.smiles, advance=adv)
        self.packed = torch.from_numpy(packed).to(device)
        self.y = torch.as_tensor(job.targets, dtype=torch.float32, device=device)
        self.train_rows = torch.as_tensor(job.train_idx, dtype=torch.long, device=device)
        self.net = FingerprintMLP(8 * self.packed.shape[1], self.y.shape[1])
        if job.pretrained is not None:
            _load_pretrained(self.net, job)
        self.net.to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=job.learning_rate or 1e-3)
        self.head_only = pruner.reference == "head"
        self.reference = (
            EMAReference(
                self._reference_source(), job.config.ema_momentum, plugin_manager=pruner.pm
            )
            if pruner.strategy.needs_reference
            else None
        )

    def _reference_source(self) -> nn.Module:
        return self.net.head if self.head_only else self.net

    def train_epoch(self, pruner: Pruner, epoch: int) -> float:
        """One pass over the pruner's selection in batches; the mean training loss."""
        job, model, reference = self.job, self.net, self.reference
        model.train()
        order = pruner.sampler.indices().to(self.device)
        total, count = 0.0, 0
        for batch, idx in enumerate(batches(order, job.batch_size, job.progress)):
            rows = self.train_rows[idx]
            x, y = self.features(rows), self.y[rows]
            mask = torch.isfinite(y)
            z = model.embed(x)
            out = model.head(z)
            online = masked_sample_loss(unreduced_loss(job.task, out, y), mask)
            ref = None
            if reference is not None and pruner.reference_due(batch, reference):
                ref_out = reference(z.detach()) if self.head_only else reference(x)
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
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if reference is not None:
                reference.update(self._reference_source())
            total += float(loss.detach()) * idx.numel()
            count += idx.numel()
        return total / max(count, 1)

    def features(self, rows: torch.Tensor) -> torch.Tensor:
        """The unpacked ``(len(rows), bits)`` float32 fingerprints of the molecules ``rows``."""
        return unpack_bits(self.packed[rows])

    def inputs(self, rows: np.ndarray) -> torch.Tensor:
        """The fingerprints of the molecules ``rows``."""
        return self.features(torch.as_tensor(rows, dtype=torch.long, device=self.device))

    def save(self, path: Path) -> None:
        """Write the ``model.pt`` that ``--pretrained`` fine-tunes from."""
        torch_save(
            path,
            {
                "kind": MODEL_KIND,
                "hparams": self.net.hparams,
                "task": self.job.task,
                "target_names": list(self.job.target_names),
                "state_dict": {k: v.cpu() for k, v in self.net.state_dict().items()},
            },
        )

    def versions(self) -> dict[str, str]:
        """torch and RDKit."""
        import rdkit

        return {"torch": torch.__version__, "rdkit": rdkit.__version__}


def _load_pretrained(model: FingerprintMLP, job: FitJob) -> None:
    ckpt = safe_load(job.pretrained, trust=job.trust_checkpoint, plugin_manager=job.plugin_manager)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != MODEL_KIND:
        raise MolPegError(
            f"{job.pretrained}: not a model of the torch backend; --backend torch "
            f"fine-tunes the {MODEL_FILE} written by an earlier 'molpeg prune --backend torch'"
        )
    if ckpt["hparams"]["in_features"] != model.hparams["in_features"]:
        raise MolPegError(f"{job.pretrained}: fingerprint length differs from this model")
    missing = load_matching_weights(model, ckpt["state_dict"], head=("head.",))
    if missing:
        raise MolPegError(f"{job.pretrained}: encoder weights do not fit this model ({missing})")


class TorchBackend(EpochBackend):
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

    def build(self, job: FitJob, pruner: Pruner) -> FingerprintMLPModel:
        """A :class:`FingerprintMLPModel` for ``job``."""
        return FingerprintMLPModel(job, pruner)


@hookimpl
def molpeg_register_backends() -> list[Backend]:
    """Register the built-in ``torch`` backend."""
    return [TorchBackend()]
