"""Real molecules and a tiny real model for the strategy tests.

Morgan fingerprints (RDKit) of the committed MoleculeNet subsets, and a two-layer MLP trained
on them for a few epochs through the core :class:`Pruner` API, the way an adapter drives it:
batches of dataset indices from ``pruner.sampler``, ``pruner.observe(...)`` with the signals,
``pruner.loss(...)`` to backpropagate, ``pruner.end_epoch()``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rdkit import Chem, RDLogger
from rdkit.Chem import rdFingerprintGenerator
from torch import nn

from molpeg_plugins import Pruner
from molpeg_plugins.engine.scoring import masked_sample_loss

DATA = Path(__file__).parent / "data"
FP_BITS = 1024


@dataclass
class Molecules:
    """Fingerprints and labels of one dataset (rows with unparsable SMILES dropped)."""

    name: str
    task: str
    features: torch.Tensor  # (N, FP_BITS) float32 in {0, 1}
    targets: torch.Tensor  # (N, T) float32, nan where missing
    smiles: list[str] = field(default_factory=list)

    @property
    def mask(self) -> torch.Tensor:
        """``True`` where a label exists."""
        return torch.isfinite(self.targets)

    def __len__(self) -> int:
        return self.features.shape[0]


@functools.cache
def molecules(name: str) -> Molecules:
    """``"bbbp"`` (binary), ``"tox21"`` (12 tasks, missing labels) or ``"esol"`` (regression)."""
    RDLogger.DisableLog("rdApp.*")
    if name == "bbbp":
        frame, columns, task = pd.read_csv(DATA / "bbbp_1k.csv"), ["p_np"], "classification"
    elif name == "tox21":
        frame = pd.read_csv(DATA / "tox21_800.csv")
        columns, task = list(frame.columns[:12]), "classification"
    elif name == "esol":
        frame = pd.read_csv(DATA / "esol_600.csv")
        columns, task = ["measured log solubility in mols per litre"], "regression"
    else:
        raise ValueError(name)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=FP_BITS)
    rows, fps = [], []
    for i, smi in enumerate(frame["smiles"].astype(str).str.strip()):
        mol = Chem.MolFromSmiles(smi)
        if mol is not None:
            rows.append(i)
            fps.append(generator.GetFingerprintAsNumPy(mol))
    targets = frame.iloc[rows][columns].to_numpy(dtype=np.float32, copy=True)
    if task == "regression":
        targets = (targets - targets.mean()) / targets.std()
    return Molecules(
        name,
        task,
        torch.from_numpy(np.stack(fps).astype(np.float32)),
        torch.from_numpy(targets),
        [frame["smiles"].iloc[i] for i in rows],
    )


class TinyNet(nn.Module):
    """Fingerprint → hidden embedding → one output per task."""

    def __init__(self, num_tasks: int, hidden: int = 32) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(FP_BITS, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_tasks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(outputs, embeddings)``."""
        h = self.encoder(x)
        return self.head(h), h


def outputs(model: TinyNet, data: Molecules, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Predictions (probabilities or raw values) and embeddings of ``model`` on ``x``."""
    out, h = model(x)
    pred = torch.sigmoid(out) if data.task == "classification" else out
    return {"predictions": pred, "embeddings": h}


def sample_loss(model: TinyNet, data: Molecules, idx: torch.Tensor) -> torch.Tensor:
    """Per-sample loss over labelled tasks (BCE with logits, or squared error)."""
    out, _ = model(data.features[idx])
    y, m = data.targets[idx], data.mask[idx]
    y0 = torch.nan_to_num(y, nan=0.0)
    if data.task == "classification":
        raw = nn.functional.binary_cross_entropy_with_logits(out, y0, reduction="none")
    else:
        raw = (out - y0).pow(2)
    return masked_sample_loss(raw, m)


@dataclass
class Run:
    """What :func:`train` returns: the pruner, the model, and the signals seen per epoch."""

    pruner: Pruner
    model: TinyNet
    data: Molecules
    seen: list[dict[str, torch.Tensor]]  # per epoch: signals stored by dataset index

    def kept(self) -> torch.Tensor:
        """Sorted dataset indices of the subset the strategy chose."""
        return self.pruner.final_selection().cpu()


def train(
    data: Molecules,
    strategy: Any,
    *,
    epochs: int = 3,
    warmup: int = 2,
    prune_ratio: float = 0.5,
    batch_size: int = 64,
    seed: int = 0,
    lr: float = 3e-3,
    **pruner_options: Any,
) -> Run:
    """Train :class:`TinyNet` on ``data`` under a :class:`Pruner` with a shuffled sampler."""
    torch.manual_seed(seed)
    model = TinyNet(data.targets.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    pruner = Pruner(
        len(data),
        strategy=strategy,
        warmup_epochs=warmup,
        total_epochs=epochs,
        prune_ratio=prune_ratio,
        seed=seed,
        **{"task": data.task, **pruner_options},
    )
    n = len(data)
    seen: list[dict[str, torch.Tensor]] = []
    for _ in range(epochs):
        pruner.start_epoch()
        record = {
            "predictions": torch.full(data.targets.shape, float("nan")),
            "embeddings": torch.full((n, model.head.in_features), float("nan")),
        }
        order = torch.tensor(list(pruner.sampler))
        for idx in order.split(batch_size):
            out, h = model(data.features[idx])
            pred = torch.sigmoid(out) if data.task == "classification" else out
            record["predictions"][idx] = pred.detach()
            record["embeddings"][idx] = h.detach()
            pruner.observe(
                idx,
                predictions=pred,
                targets=data.targets[idx],
                mask=data.mask[idx],
                embeddings=h,
                features=data.features[idx],
            )
            y0 = torch.nan_to_num(data.targets[idx], nan=0.0)
            if data.task == "classification":
                raw = nn.functional.binary_cross_entropy_with_logits(out, y0, reduction="none")
            else:
                raw = (out - y0).pow(2)
            loss = pruner.loss(idx, masked_sample_loss(raw, data.mask[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        seen.append(record)
        pruner.end_epoch()
    return Run(pruner, model, data, seen)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: the models here are so small that thread start-up and
    barrier costs dominate (badly so on a busy 2-core CI machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row mean over ``mask``; 0 for rows without any ``True``."""
    total = np.where(mask, values, 0.0).sum(axis=1)
    return total / np.maximum(mask.sum(axis=1), 1)


def ranks_apart(kept: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """``(min score of kept, max score of dropped)``: a top-k choice has the first ≥ second."""
    keep = np.zeros(score.size, dtype=bool)
    keep[kept] = True
    return float(score[keep].min()), float(score[~keep].max())
