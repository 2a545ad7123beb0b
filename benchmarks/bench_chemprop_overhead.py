"""Wall time of ``chemprop train --plugin molpeg`` vs plain ``chemprop train`` (one run each).

Two measurements on the same HIV subset (default Chemprop model, same seed and epochs):

1. **End to end**: the user's ``chemprop`` executable, plain and with
   ``--plugin molpeg --prune-ratio 0.6`` (one warm-up epoch on all molecules, then 40 % of
   them per epoch). Ratio = molpeg / plain; target ≤ 0.55×.
2. **Per kept sample**: in one Python process, the time of a training step (forward,
   backward, optimizer, plus — with molpeg — the reference forward, score recording and the
   EMA update) per molecule, in the second epoch of a plain run and of a pruned run.
   Ratio = molpeg / plain; target ≤ 1.30×.

Results go to ``benchmarks/results/chemprop_overhead.csv`` and ``chemprop_overhead.md``.

Usage::

    python benchmarks/bench_chemprop_overhead.py --rows 6000 --epochs 5
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIV = Path("/work/shared/data/moleculenet/HIV.csv")
RESULTS = Path(__file__).parent / "results"


def hiv_subset(rows: int, seed: int, out: Path) -> Path:
    """``rows`` random valid HIV molecules (Chemprop would crash on an invalid one)."""
    import pandas as pd
    from chemprop.utils import make_mol
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    frame = pd.read_csv(HIV).sample(frac=1.0, random_state=seed)
    keep = []
    for i, smi in zip(frame.index, frame.smiles, strict=True):
        try:
            make_mol(smi)
        except Exception:
            continue
        keep.append(i)
        if len(keep) == rows:
            break
    frame.loc[keep, ["smiles", "HIV_active"]].to_csv(out, index=False)
    return out


def chemprop_wall(data: Path, out: Path, epochs: int, extra: list[str]) -> float:
    """Wall seconds of one ``chemprop train`` process."""
    exe = shutil.which("chemprop") or str(Path(sys.executable).parent / "chemprop")
    cmd = [
        exe, "train", "-i", str(data), "-s", "smiles", "--target-columns", "HIV_active",
        "-t", "classification", "-o", str(out), "--epochs", str(epochs),
        "--pytorch-seed", "0", "-q", *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("MOLPEG_DISABLE_CHEMPROP_HOOK", None)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall


def step_times(data: Path, rows: int, prune: bool) -> float:
    """Seconds per molecule of the training steps of epoch 1 (pruned with molpeg)."""
    import lightning.pytorch as pl
    import pandas as pd
    import torch
    from chemprop import data as cdata
    from chemprop import featurizers, models, nn

    from molpeg_chemprop.callback import MolPegCallback

    frame = pd.read_csv(data).head(rows)
    feat = featurizers.SimpleMoleculeMolGraphFeaturizer()
    points = [
        cdata.MoleculeDatapoint.from_smi(s, [y])
        for s, y in zip(frame.smiles, frame.HIV_active, strict=True)
    ]
    train = cdata.MoleculeDataset(points, feat)
    train.cache = True
    torch.manual_seed(0)
    model = models.MPNN(nn.BondMessagePassing(), nn.MeanAggregation(), nn.BinaryClassificationFFN())
    clock: dict[str, float] = {"t": 0.0, "n": 0, "start": 0.0}

    class Start(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            clock["start"] = time.perf_counter()

    class End(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1:
                clock["t"] += time.perf_counter() - clock["start"]
                clock["n"] += len(batch[0])

    callbacks: list = [Start()]
    if prune:
        callbacks.append(MolPegCallback(prune_ratio=0.6, warmup_epochs=1))
    callbacks.append(End())
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(model, cdata.build_dataloader(train, batch_size=64, seed=0))
    return clock["t"] / max(1, clock["n"])


def write_results(rows: list[dict[str, str]], markdown: str) -> None:
    """Atomically write the CSV and the markdown snippet."""
    from molpeg_plugins.pipeline.atomic import atomic_write

    RESULTS.mkdir(parents=True, exist_ok=True)

    def write_csv(fh) -> None:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(RESULTS / "chemprop_overhead.csv", write_csv, binary=False)
    atomic_write(RESULTS / "chemprop_overhead.md", lambda fh: fh.write(markdown), binary=False)


def main() -> None:
    """Run both measurements and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000, help="HIV molecules (80% train)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--step-rows", type=int, default=3000, help="molecules, step timing")
    args = parser.parse_args()

    import chemprop
    import torch

    with tempfile.TemporaryDirectory(prefix="bench-chemprop-") as tmp:
        work = Path(tmp)
        data = hiv_subset(args.rows, 0, work / "hiv.csv")
        plain = chemprop_wall(data, work / "plain", args.epochs, [])
        pruned = chemprop_wall(
            data, work / "molpeg", args.epochs, ["--plugin", "molpeg", "--prune-ratio", "0.6"]
        )
        step_plain = step_times(data, args.step_rows, prune=False)
        step_molpeg = step_times(data, args.step_rows, prune=True)

    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU; "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"chemprop {chemprop.__version__}"
    )
    command = (
        f"chemprop train -i hiv{args.rows}.csv -s smiles --target-columns HIV_active "
        f"-t classification --epochs {args.epochs} --pytorch-seed 0 [--plugin molpeg "
        "--prune-ratio 0.6]"
    )
    wall_ratio = pruned / plain
    step_ratio = step_molpeg / step_plain
    rows = [
        {
            "measurement": "chemprop train wall time (s)",
            "plain": f"{plain:.1f}",
            "molpeg": f"{pruned:.1f}",
            "ratio": f"{wall_ratio:.3f}",
            "target": "<= 0.55",
        },
        {
            "measurement": "training step time per kept molecule (ms)",
            "plain": f"{1000 * step_plain:.3f}",
            "molpeg": f"{1000 * step_molpeg:.3f}",
            "ratio": f"{step_ratio:.3f}",
            "target": "<= 1.30",
        },
    ]
    table = "\n".join(
        f"| {r['measurement']} | {r['plain']} | {r['molpeg']} | {float(r['ratio']):.2f}× "
        f"| {r['target'].replace('<=', '≤')}× |"
        for r in rows
    )
    markdown = f"""### Chemprop: `chemprop train --plugin molpeg` overhead

Machine: {machine}.
Data: {args.rows} random valid molecules of MoleculeNet HIV (80/10/10 random split), default
Chemprop D-MPNN (hidden 300, depth 3), batch 64, {args.epochs} epochs, one run each.

Command: `{command}`

| measurement | plain | molpeg (r = 0.6) | ratio | target |
|---|---|---|---|---|
{table}

The wall time includes start-up, featurisation, validation, testing and the full-data
warm-up epoch, which pruning does not shorten; the step time ({args.step_rows} molecules,
epoch 2) includes the reference forward pass, score recording and the EMA update.
"""
    write_results(rows, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
