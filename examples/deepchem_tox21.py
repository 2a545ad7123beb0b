"""MolPeg pruning inside DeepChem's own ``model.fit`` (Tox21, 12 tasks with missing labels).

    python examples/deepchem_tox21.py [tox21.csv] [--epochs 10] [--prune-ratio 0.5]

Without a path it uses the 800-molecule Tox21 subset in ``tests/data``. The CSV is read
with molpeg's :func:`~molpeg_plugins.pipeline.data.load_molecules`, which skips the rows RDKit
cannot parse (eight in the full ``tox21.csv``, aluminium compounds) and lists them by row number on
standard error. The pruning itself is the two lines after the ``# molpeg`` comment: the rest
is an ordinary DeepChem script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import deepchem as dc
import numpy as np
import torch

from molpeg_deepchem import MolPegDeepChem
from molpeg_deepchem.featurize import ecfp, labelled_dataset
from molpeg_plugins.pipeline.data import load_molecules

DEFAULT = Path(__file__).resolve().parents[1] / "tests" / "data" / "tox21_800.csv"
TASKS = [
    "NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD",
    "NR-PPAR-gamma", "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53",
]  # fmt: skip


def main() -> None:
    """Train a MultitaskClassifier on 80% of the molecules, pruned; report validation ROC-AUC."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--prune-ratio", type=float, default=0.5)
    args = parser.parse_args()

    table = load_molecules(args.csv, target_columns=TASKS, task="classification")
    skipped = table.skip_report()
    if skipped:
        print(f"skipped {len(skipped)} of {table.num_rows} rows:", file=sys.stderr)
        for line in skipped:
            print(f"  {line}", file=sys.stderr)
    valid = table.valid_rows
    data = labelled_dataset(ecfp([table.smiles[i] for i in valid]), table.targets[valid])
    order = np.random.default_rng(0).permutation(len(data))
    cut = int(0.8 * len(data))
    train, valid = data.select(order[:cut]), data.select(order[cut:])

    torch.manual_seed(0)
    epochs = args.epochs
    model = dc.models.MultitaskClassifier(len(TASKS), 2048, layer_sizes=[1000], batch_size=64)
    # molpeg: wrap the training set, then hand the three pieces to DeepChem's own fit()
    pruning = MolPegDeepChem(model, train, prune_ratio=args.prune_ratio, epochs=epochs)
    model.fit(pruning.dataset, nb_epoch=epochs, loss=pruning.loss, callbacks=[pruning.callback])

    for row, loss in zip(pruning.pruner.history, pruning.epoch_losses, strict=True):
        kept = int(row["num_kept"])
        print(f"epoch {int(row['epoch']) + 1} trained on {kept} molecules  loss {loss:.4f}")
    metric = dc.metrics.Metric(dc.metrics.roc_auc_score, np.mean, mode="classification")
    auc = model.evaluate(valid, [metric])["mean-roc_auc_score"]
    print(f"validation ROC-AUC {auc:.3f} ({len(valid)} molecules)")


if __name__ == "__main__":
    main()
