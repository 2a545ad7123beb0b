"""Pretrain our own Chemprop MPNN on a MOSES subset with a supervised descriptor pretext.

Builds a source set of ``--n`` molecules from MOSES (ZINC clean leads, `shared/data/pretrain`),
computes standardised RDKit 2D descriptors as multitask regression targets (the way
descriptor-pretrained foundation models are made), trains ``chemprop train`` on them and
leaves the model at ``OUT/model_0/best.pt`` for ``chemprop train --from-foundation``.

    python benchmarks/pretrain_descriptors.py --n 50000 --epochs 4 --out benchmarks/work/pretrain

Writes ``benchmarks/results/pretrain.json`` (time, sizes, command).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, RDLogger
from rdkit.Chem import Descriptors

ROOT = Path(__file__).resolve().parents[1]
MOSES = ROOT / "../shared/data/pretrain/moses_train_250k_seed0.csv.gz"
DESCRIPTORS = {
    "MolWt": Descriptors.MolWt,
    "MolLogP": Descriptors.MolLogP,
    "TPSA": Descriptors.TPSA,
    "NumHDonors": Descriptors.NumHDonors,
    "NumHAcceptors": Descriptors.NumHAcceptors,
    "NumRotatableBonds": Descriptors.NumRotatableBonds,
    "RingCount": Descriptors.RingCount,
    "FractionCSP3": Descriptors.FractionCSP3,
    "qed": Descriptors.qed,
}


def build_source(n: int, seed: int, path: Path) -> None:
    """Write ``n`` MOSES molecules with standardised descriptor targets to ``path``."""
    RDLogger.DisableLog("rdApp.*")
    smiles = pd.read_csv(MOSES)["smiles"].sample(n=n, random_state=seed).tolist()
    rows = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        if mol is not None:
            rows.append([s] + [f(mol) for f in DESCRIPTORS.values()])
    frame = pd.DataFrame(rows, columns=["smiles", *DESCRIPTORS])
    values = frame[list(DESCRIPTORS)].to_numpy(dtype=float)
    frame[list(DESCRIPTORS)] = (values - values.mean(0)) / np.where(
        values.std(0) > 0, values.std(0), 1
    )
    frame.to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/work/pretrain")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "moses_descriptors.csv"
    t0 = time.perf_counter()
    if not source.exists():
        build_source(args.n, args.seed, source)
    t_featurize = time.perf_counter() - t0
    command = [
        "chemprop", "train", "--data-path", str(source), "--task-type", "regression",
        "--smiles-columns", "smiles", "--target-columns", *DESCRIPTORS,
        "--epochs", str(args.epochs), "--split-sizes", "0.95", "0.05", "0.0",
        "--batch-size", "64", "--data-seed", str(args.seed), "--pytorch-seed", str(args.seed),
        "--output-dir", str(args.out / "chemprop"), "--num-workers", "0",
    ]  # fmt: skip
    t1 = time.perf_counter()
    subprocess.run(command, check=True)
    t_train = time.perf_counter() - t1
    model = next((args.out / "chemprop").rglob("best*.pt"))
    result = {
        "molecules": int(pd.read_csv(source).shape[0]),
        "descriptors": list(DESCRIPTORS),
        "epochs": args.epochs,
        "descriptor_seconds": round(t_featurize, 1),
        "train_seconds": round(t_train, 1),
        "model": str(model.relative_to(ROOT)),
        "machine": f"{os.cpu_count()}-core {platform.machine()} CPU",
        "command": " ".join(command),
    }
    out = ROOT / "benchmarks/results/pretrain.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
