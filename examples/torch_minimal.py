"""MolPeg in a plain PyTorch loop: an MLP on Morgan fingerprints of BBBP.

Run from the repository root::

    python examples/torch_minimal.py                      # ../shared/data BBBP, or the bundled copy
    python examples/torch_minimal.py path/to/BBBP.csv --prune-ratio 0.6 --epochs 12

Prints, per epoch, how many molecules were trained on and the validation ROC-AUC.
"""

from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rdkit import Chem, RDLogger
from rdkit.Chem import rdFingerprintGenerator
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from molpeg_plugins import EMAReference, IndexedDataset, Pruner

SHARED_BBBP = Path(__file__).resolve().parents[1] / "../shared/data/moleculenet/BBBP.csv"


def featurize(csv: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Morgan fingerprints (radius 2, 2048 bits) and labels of the parsable rows."""
    RDLogger.DisableLog("rdApp.*")
    frame = pd.read_csv(csv)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps, labels = [], []
    for smiles, label in zip(frame["smiles"], frame["p_np"], strict=True):
        mol = Chem.MolFromSmiles(smiles)
        if mol is not None:  # BBBP has 11 unparsable rows
            fps.append(generator.GetFingerprintAsNumPy(mol))
            labels.append(label)
    return torch.tensor(np.array(fps), dtype=torch.float32), torch.tensor(labels).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path)
    parser.add_argument("--prune-ratio", type=float, default=0.6)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    csv = args.csv or (
        SHARED_BBBP if SHARED_BBBP.exists() else files("molpeg_plugins") / "data/bbbp.csv"
    )

    torch.manual_seed(args.seed)
    x, y = featurize(Path(str(csv)))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(args.seed))
    n_val = len(y) // 5
    val, train = order[:n_val], order[n_val:]
    train_set = IndexedDataset(TensorDataset(x[train], y[train]))  # items become (index, (x, y))

    model = nn.Sequential(nn.Linear(2048, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.BCEWithLogitsLoss(reduction="none")  # per-sample losses
    reference = EMAReference(model, momentum=0.5)  # ξ ← β·ξ + (1−β)·θ after every step
    pruner = Pruner(len(train_set), prune_ratio=args.prune_ratio, total_epochs=args.epochs)
    loader = DataLoader(train_set, batch_size=64, sampler=pruner.sampler)

    print(f"{len(train)} training / {n_val} validation molecules, prune ratio {args.prune_ratio}")
    for epoch in range(args.epochs):
        model.train()
        for index, (xb, yb) in loader:
            online = criterion(model(xb).squeeze(1), yb)
            ref = criterion(reference(xb).squeeze(1), yb)
            loss = pruner.loss(index, online, ref)  # records scores, returns the mean loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            reference.update(model)
        kept = pruner.current.indices.numel()
        pruner.end_epoch()  # chooses the next epoch's molecules
        model.eval()
        with torch.no_grad():
            auc = roc_auc_score(y[val].numpy(), model(x[val]).squeeze(1).numpy())
        print(f"epoch {epoch:2d}  trained on {kept:4d} molecules  val ROC-AUC {auc:.3f}")


if __name__ == "__main__":
    main()
