"""Fit time of DeepChem's own ``model.fit`` with and without MolPeg pruning.

Same data (Tox21, random 80/20 split, seed 0, ECFP4 2048 bits), same model
(``MultitaskClassifier``, one 1000-unit layer, batch 64), same number of epochs; the only
difference is the three MolPeg pieces handed to ``fit``. Runs alternate (full, molpeg,
soft-random, full, …) so that load on a shared machine hits every configuration alike; wall
and CPU time of the ``fit`` call alone are recorded (featurisation is shared and excluded).

    python benchmarks/bench_deepchem_fit.py                   # full Tox21 from ../shared
    python benchmarks/bench_deepchem_fit.py tests/data/tox21_800.csv --epochs 5 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import deepchem as dc
import numpy as np
import pandas as pd
import torch
from rdkit import Chem, RDLogger

from molpeg_deepchem import MolPegDeepChem
from molpeg_deepchem.featurize import ecfp, labelled_dataset

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "../shared/data/moleculenet/tox21.csv"
TASKS = 12


def fit_once(train: Any, valid: Any, epochs: int, strategy: str | None, ratio: float) -> dict:
    """Train one model; return wall/CPU seconds of ``fit`` and validation ROC-AUC."""
    torch.manual_seed(0)
    model = dc.models.MultitaskClassifier(TASKS, 2048, layer_sizes=[1000], batch_size=64)
    kwargs: dict[str, Any] = {"nb_epoch": epochs, "checkpoint_interval": 0}
    pruning = None
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if strategy is not None:
        pruning = MolPegDeepChem(model, train, prune_ratio=ratio, epochs=epochs, strategy=strategy)
        kwargs.update(loss=pruning.loss, callbacks=[pruning.callback])
        model.fit(pruning.dataset, **kwargs)
    else:
        model.fit(train, **kwargs)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    metric = dc.metrics.Metric(dc.metrics.roc_auc_score, np.mean, mode="classification")
    auc = model.evaluate(valid, [metric])["mean-roc_auc_score"]
    seen = (
        sum(int(h["num_kept"]) for h in pruning.pruner.history) if pruning else epochs * len(train)
    )
    return {"wall": wall, "cpu": cpu, "auc": auc, "samples": seen}


def main() -> None:
    """Run the comparison and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--prune-ratio", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")

    frame = pd.read_csv(args.csv)
    RDLogger.DisableLog("rdApp.*")
    valid_rows = [Chem.MolFromSmiles(smi) is not None for smi in frame["smiles"]]
    dropped = len(frame) - sum(valid_rows)
    frame = frame[valid_rows].reset_index(drop=True)
    names = list(frame.columns[:TASKS])
    t0 = time.perf_counter()
    data = labelled_dataset(ecfp(frame["smiles"].tolist()), frame[names].to_numpy(float))
    featurise = time.perf_counter() - t0
    order = np.random.default_rng(0).permutation(len(data))
    cut = int(0.8 * len(data))
    train, valid = data.select(order[:cut]), data.select(order[cut:])

    fit_once(train.select(np.arange(256)), valid, 1, None, 0.0)  # warm-up, not measured
    configs = {"full data": None, "molpeg": "molpeg", "soft-random": "soft-random"}
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, strategy in configs.items():
            runs[name].append(fit_once(train, valid, args.epochs, strategy, args.prune_ratio))
            print(name, runs[name][-1], flush=True)

    base = min(r["wall"] for r in runs["full data"])
    base_cpu = min(r["cpu"] for r in runs["full data"])
    print()
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"deepchem {dc.__version__}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"data: {args.csv.name} ({dropped} unparsable SMILES dropped), "
        f"train {len(train)} / valid {len(valid)}, {args.epochs} epochs, "
        f"prune ratio {args.prune_ratio}; featurisation {featurise:.1f} s (excluded)"
    )
    print()
    print("| run | samples visited | fit wall s (each repeat) | wall / full | "
          "fit CPU s (min) | CPU / full | val ROC-AUC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        wall = min(r["wall"] for r in rs)
        cpu = min(r["cpu"] for r in rs)
        walls = ", ".join(f"{r['wall']:.1f}" for r in rs)
        print(
            f"| {name} | {rs[0]['samples']} | {walls} | {wall / base:.2f} | {cpu:.1f} | "
            f"{cpu / base_cpu:.2f} | {rs[0]['auc']:.3f} |"
        )


if __name__ == "__main__":
    main()
