"""Where a MolPeg training step's time goes, and how large the kept molecules are.

The quiet CPU timing tier measured MolPeg's pruned epochs at ~1.5× the time of soft-random's
with the same number of batches, above the reference forward's expected share. This script
trains the default Chemprop D-MPNN with :class:`MolPegCallback` on an HIV subset, once per
strategy, and for every pruned epoch reports:

* the mean heavy-atom and bond count of the molecules the strategy kept (message passing cost
  grows with bonds);
* seconds per step spent in the whole training step, the reference forward (MolPeg only) and
  the EMA update, timed with ``time.perf_counter`` around the callback's own calls.

Results go to ``benchmarks/results/step_anatomy.csv`` and ``step_anatomy.md``.

Usage::

    python benchmarks/bench_step_anatomy.py --rows 8000 --epochs 4
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
SHARED = Path(os.environ.get("MOLPEG_SHARED", Path(__file__).resolve().parents[1] / "../shared"))


def molecules(rows: int) -> tuple[list[str], list[float]]:
    """``rows`` random RDKit-valid HIV molecules and labels (seeded)."""
    import pandas as pd

    from molpeg_plugins.pipeline.data import parse_smiles

    frame = pd.read_csv(SHARED / "data/moleculenet/HIV.csv").sample(frac=1.0, random_state=0)
    smiles, labels = [], []
    for smi, y in zip(frame.smiles, frame.HIV_active, strict=True):
        if parse_smiles(smi)[0] is not None:
            smiles.append(smi)
            labels.append(float(y))
        if len(smiles) == rows:
            break
    return smiles, labels


def run(strategy: str, smiles: list[str], labels: list[float], epochs: int) -> list[dict]:
    """Train once with ``strategy`` at 60% pruned; one row per epoch."""
    import lightning.pytorch as pl
    import numpy as np
    import torch
    from chemprop import data as cdata
    from chemprop import featurizers, models, nn
    from rdkit import Chem

    from molpeg_chemprop.callback import MolPegCallback
    from molpeg_chemprop.reference import ChempropReference

    mols = [Chem.MolFromSmiles(s) for s in smiles]
    atoms = np.array([m.GetNumAtoms() for m in mols], dtype=float)
    bonds = np.array([m.GetNumBonds() for m in mols], dtype=float)
    points = [cdata.MoleculeDatapoint(m, [y]) for m, y in zip(mols, labels, strict=True)]
    dataset = cdata.MoleculeDataset(points, featurizers.SimpleMoleculeMolGraphFeaturizer())
    dataset.cache = True
    torch.manual_seed(0)
    model = models.MPNN(nn.BondMessagePassing(), nn.MeanAggregation(), nn.BinaryClassificationFFN())
    molpeg = MolPegCallback(prune_ratio=0.6, strategy=strategy, warmup_epochs=1)
    clock: dict[str, float] = {"step": 0.0, "reference": 0.0, "ema": 0.0, "steps": 0}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            clock[name] += time.perf_counter() - start
            return out

        return wrapper

    class Anatomy(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if molpeg.reference is not None:  # instance attributes shadow the methods
                molpeg.reference.update = timed("ema", molpeg.reference.update)
            self.model_loss = ChempropReference.model_loss  # the model-reference forward
            ChempropReference.model_loss = timed("reference", self.model_loss)

        def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            ChempropReference.model_loss = self.model_loss

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            clock.update(step=0.0, reference=0.0, ema=0.0, steps=0)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
            self.step_start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
            clock["step"] += time.perf_counter() - self.step_start
            clock["steps"] += 1
            if batch_idx == 0:  # the epoch's kept indices, as MolPegCallback ordered them
                self.kept = molpeg.loader.order.numpy()

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            steps = max(1, clock["steps"])
            rows.append(
                {
                    "strategy": strategy,
                    "epoch": trainer.current_epoch,
                    "molecules": len(self.kept),
                    "steps": int(clock["steps"]),
                    "mean_atoms": round(float(atoms[self.kept].mean()), 2),
                    "mean_bonds": round(float(bonds[self.kept].mean()), 2),
                    "ms_per_step": round(1000 * clock["step"] / steps, 1),
                    "ms_reference": round(1000 * clock["reference"] / steps, 1),
                    "ms_ema": round(1000 * clock["ema"] / steps, 2),
                }
            )

    rows: list[dict] = []
    # MolPegCallback first so that its batch start (reference forward) falls inside the step.
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Anatomy(), molpeg],
    )
    trainer.fit(model, cdata.build_dataloader(dataset, batch_size=64, seed=0))
    return rows


def main() -> None:
    """Profile MolPeg and soft random and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000, help="HIV training molecules")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    import chemprop
    import pandas as pd
    import torch

    from molpeg_plugins.pipeline.atomic import atomic_write

    smiles, labels = molecules(args.rows)
    rows = []
    for strategy in ("soft-random", "molpeg"):
        rows += run(strategy, smiles, labels, args.epochs)
    frame = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write(
        RESULTS / "step_anatomy.csv", lambda fh: frame.to_csv(fh, index=False), binary=False
    )
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU; torch {torch.__version__}, "
        f"chemprop {chemprop.__version__}"
    )
    table = "\n".join(
        ["| " + " | ".join(frame.columns) + " |", "|---" * len(frame.columns) + "|"]
        + ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    )
    markdown = f"""### Anatomy of a pruned step (Chemprop, CPU)

Machine: {machine}. {args.rows} random HIV molecules, default D-MPNN, batch 64, 60% pruned
after one full warm-up epoch (epoch 0), {args.epochs} epochs per strategy.

Command: `python benchmarks/bench_step_anatomy.py --rows {args.rows} --epochs {args.epochs}`

{table}

`ms_per_step` is the whole training step (reference forward, forward, backward, optimizer, score
recording, EMA update); `ms_reference` and `ms_ema` are its MolPeg parts.
"""
    atomic_write(RESULTS / "step_anatomy.md", lambda fh: fh.write(markdown), binary=False)
    print(markdown)


if __name__ == "__main__":
    main()
