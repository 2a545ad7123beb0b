"""Pretrain our own Chemprop MPNN on a MOSES subset with a supervised descriptor pretext.

Builds a source set of ``--n`` molecules from MOSES (ZINC clean leads, `shared/data/pretrain`),
computes the RDKit 2D descriptors, quantile-clipped and z-scored
(``molpeg_plugins.source.pretext``), as multitask regression targets (the way
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

from molpeg_plugins.source.pretext import DescriptorScaling, compute_descriptors

ROOT = Path(__file__).resolve().parents[1]
MOSES = ROOT / "../shared/data/pretrain/moses_train_250k_seed0.csv.gz"


def build_source(n: int, seed: int, path: Path) -> None:
    """Write ``n`` MOSES molecules with standardised descriptor targets to ``path``."""
    smiles = pd.read_csv(MOSES)["smiles"].sample(n=n, random_state=seed).tolist()
    raw = compute_descriptors(smiles)
    parsed = ~np.isnan(raw).all(axis=1)
    scaling = DescriptorScaling.fit(raw[parsed])
    frame = pd.DataFrame(scaling.transform(raw[parsed]), columns=list(scaling.names))
    frame.insert(0, "smiles", [s for s, ok in zip(smiles, parsed, strict=True) if ok])
    frame.to_csv(path, index=False, float_format="%.5g")


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
        "--smiles-columns", "smiles",
        "--epochs", str(args.epochs), "--split-sizes", "0.95", "0.05", "0.0",
        "--batch-size", "64", "--data-seed", str(args.seed), "--pytorch-seed", str(args.seed),
        "--output-dir", str(args.out / "chemprop"), "--num-workers", "0",
    ]  # fmt: skip
    t1 = time.perf_counter()
    subprocess.run(command, check=True)
    t_train = time.perf_counter() - t1
    model = next((args.out / "chemprop").rglob("best*.pt"))
    table = pd.read_csv(source)
    result = {
        "molecules": int(table.shape[0]),
        "descriptors": [c for c in table.columns if c != "smiles"],
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
