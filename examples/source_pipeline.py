"""Source pruning → pretraining → fine-tuning, against random source pruning.

The pipeline, for each kept fraction and each way of pruning the source:

1. prune the source set (MOSES molecules) for the target set with ``molpeg prune-source``
   (feature mapping), or keep a seeded random subset of the same size (the baseline);
2. pretrain a small Chemprop model on the kept molecules with a supervised pretext task:
   the RDKit 2D descriptors as multitask regression targets, quantile-clipped and z-scored
   on the kept molecules (``molpeg_plugins.source.pretext``);
3. fine-tune on the target (BBBP, scaffold split) from the pretrained encoder with
   ``chemprop train --from-foundation … --plugin molpeg`` (MolPeg pruning during fine-tuning;
   plain ``chemprop train`` if the molpeg hook is not installed) and read the test ROC-AUC.

One CSV row per run is appended to ``--results`` as soon as it finishes, so the script can be
stopped and restarted (finished runs are skipped). Example (about half an hour on 2 cores)::

    python examples/source_pipeline.py \\
        --source ../shared/data/pretrain/moses_train_250k_seed0.csv.gz --num-source 50000 \\
        --target ../shared/data/moleculenet/BBBP.csv --target-column p_np \\
        --fractions 0.2 0.5 1.0 --work /tmp/source_pipeline
"""

from __future__ import annotations

import argparse
import csv
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from molpeg_plugins.pipeline.atomic import write_text
from molpeg_plugins.source import pruning as source_pruning
from molpeg_plugins.source.overlap import find_target_overlap
from molpeg_plugins.source.pretext import DescriptorScaling, compute_descriptors

FIELDS = [
    "method",
    "fraction",
    "seed",
    "num_pretrain",
    "prune_wall_s",
    "pretrain_wall_s",
    "pretrain_cpu_s",
    "finetune_wall_s",
    "test_roc_auc",
    "finetune_plugin",
]


def write_pretext(path: Path, smiles: list[str], desc: np.ndarray, rows: np.ndarray) -> None:
    """CSV of the kept molecules with their descriptors, standardised on them, as targets."""
    rows = np.array([i for i in rows if not np.isnan(desc[i]).all()], dtype=np.int64)
    scaling = DescriptorScaling.fit(desc[rows])
    z = scaling.transform(desc[rows])
    lines = ["smiles," + ",".join(scaling.names)]
    lines += [smiles[i] + "," + ",".join(f"{v:.5g}" for v in z[k]) for k, i in enumerate(rows)]
    write_text(path, "\n".join(lines) + "\n")


def run(cmd: list[str], log: Path) -> tuple[float, float, str]:
    """Run ``cmd``; return wall seconds, CPU seconds of the child and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    write_text(log, proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}); see {log}")
    return wall, cpu, proc.stdout + proc.stderr


def chemprop_model_args(args: argparse.Namespace) -> list[str]:
    """The small-model settings shared by pretraining and fine-tuning."""
    return [
        "--message-hidden-dim", str(args.hidden), "--ffn-hidden-dim", str(args.hidden),
        "--depth", "3", "--batch-size", "64", "--warmup-epochs", "1", "--num-workers", "0",
        "--accelerator", "cpu", "--devices", "1",
    ]  # fmt: skip


def pretrain(args: argparse.Namespace, pretext: Path, out: Path) -> tuple[float, float, Path]:
    """Pretrain on the descriptor pretext; return wall/CPU seconds and the model file."""
    cmd = [
        "chemprop", "train", "-i", str(pretext), "-s", "smiles", "--task-type", "regression",
        "--epochs", str(args.pretrain_epochs), "--split-sizes", "0.9", "0.05", "0.05",
        "--pytorch-seed", str(args.seed), "-o", str(out), *chemprop_model_args(args),
    ]  # fmt: skip
    wall, cpu, _ = run(cmd, out.with_suffix(".log"))
    return wall, cpu, out / "model_0" / "best.pt"


def finetune(
    args: argparse.Namespace, target: Path, foundation: Path | None, out: Path
) -> tuple[float, float, str]:
    """Fine-tune on the target; return wall seconds, test ROC-AUC and the plugin used."""
    cmd = [
        "chemprop", "train", "-i", str(target), "-s", "smiles", "--target-columns", "label",
        "--task-type", "classification", "--metrics", "roc", "--epochs",
        str(args.finetune_epochs), "--split-type", "scaffold_balanced", "--data-seed", "0",
        "--pytorch-seed", str(args.seed), "-o", str(out), *chemprop_model_args(args),
    ]  # fmt: skip
    if foundation is not None:
        cmd += ["--from-foundation", str(foundation)]
    plugin = ["--plugin", "molpeg", "--prune-ratio", str(args.finetune_prune_ratio)]
    try:
        wall, _, text = run(
            cmd + plugin if args.finetune_prune_ratio > 0 else cmd, out.with_suffix(".log")
        )
        used = "molpeg" if args.finetune_prune_ratio > 0 else "none"
    except RuntimeError:
        if args.finetune_prune_ratio <= 0:
            raise
        print("  chemprop --plugin molpeg unavailable; fine-tuning with plain chemprop")
        wall, _, text = run(cmd, out.with_suffix(".log"))
        used = "none"
    found = re.findall(r"test/roc: ([0-9.]+)", text)
    if not found:
        raise RuntimeError(f"no test/roc in the fine-tuning log {out.with_suffix('.log')}")
    return wall, float(found[-1]), used


def main() -> None:
    """Run the grid of (method, fraction) and append one result row per run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, required=True)
    p.add_argument("--num-source", type=int, default=50_000, help="Leading source rows used.")
    p.add_argument("--target", type=Path, required=True)
    p.add_argument("--target-column", default="p_np")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.5, 1.0])
    p.add_argument("--methods", nargs="+", default=["feature-mapping", "random"])
    p.add_argument("--groups", type=int, default=50)
    p.add_argument("--pretrain-epochs", type=int, default=3)
    p.add_argument("--finetune-epochs", type=int, default=15)
    p.add_argument("--finetune-prune-ratio", type=float, default=0.3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-scratch", action="store_true", help="Skip the fine-tune without pretraining."
    )
    p.add_argument("--work", type=Path, default=Path("/tmp/source_pipeline"))
    p.add_argument("--results", type=Path, default=None)
    args = p.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    results = args.results or work / "results.csv"

    # the cleaned target, and the source subset (leading rows, byte for byte) without the
    # molecules that are target molecules, so that no arm pretrains on the test set
    records, scol = source_pruning.read_records(args.source)
    n = min(args.num_source, len(records))
    target, tcol = source_pruning.read_records(args.target, None, [args.target_column])
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    target_csv = work / "target.csv"
    tgt_rows = [
        (s, y)
        for s, y in zip(target.values[tcol], target.values[args.target_column], strict=True)
        if Chem.MolFromSmiles(s) is not None
    ]
    write_text(target_csv, "smiles,label\n" + "".join(f"{s},{y}\n" for s, y in tgt_rows))
    source_smiles = records.values[scol]
    leaked = find_target_overlap(source_smiles[:n], [s for s, _ in tgt_rows], workers=2)
    rows = np.setdiff1d(np.arange(n), leaked.source_rows)
    source_csv = work / "source.csv"
    records.write_subset(source_csv, rows)
    smiles = [source_smiles[i] for i in rows]
    n = len(rows)
    print(
        f"source: {n:,} molecules ({len(leaked):,} target molecules removed) · "
        f"target: {len(tgt_rows):,} valid molecules"
    )
    t0 = time.perf_counter()
    desc = compute_descriptors(smiles, workers=2)
    print(f"descriptors: {time.perf_counter() - t0:.1f} s")

    done = set()
    if results.is_file():
        with open(results, newline="") as fh:
            done = {(r["method"], float(r["fraction"]), int(r["seed"])) for r in csv.DictReader(fh)}
    else:
        write_text(results, ",".join(FIELDS) + "\n")

    def record(row: dict[str, object]) -> None:
        with open(results, "a", encoding="utf-8") as fh:
            fh.write(",".join(str(row[f]) for f in FIELDS) + "\n")
        print("  " + "  ".join(f"{k}={row[k]}" for k in FIELDS))

    grid = [
        (m, f)
        for f in args.fractions
        for m in args.methods
        if not (f >= 1.0 and m != args.methods[0])
    ]
    for method, fraction in grid:
        name = "full" if fraction >= 1.0 else method
        if (name, fraction, args.seed) in done:
            continue
        print(f"{name} keep={fraction:g}")
        tag = f"{name}_{fraction:g}_s{args.seed}"
        t0 = time.perf_counter()
        if fraction >= 1.0:
            rows = np.arange(n)
        elif method == "random":
            rows = source_pruning.random_selection(n, fraction, seed=args.seed)
        else:
            out = work / f"prune_{tag}"
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from molpeg_plugins.cli import main; main()",
                    "prune-source",
                    str(source_csv),
                    "--target",
                    str(target_csv),
                    "--keep",
                    str(fraction),
                    "--groups",
                    str(args.groups),
                    "--seed",
                    str(args.seed),
                    "--output",
                    str(out),
                ],
                check=True,
                capture_output=True,
            )
            with open(out / "scores.csv", newline="") as fh:
                rows = np.array([int(r["row"]) for r in csv.DictReader(fh) if r["kept"] == "1"])
        prune_wall = time.perf_counter() - t0
        pretext = work / f"pretext_{tag}.csv"
        write_pretext(pretext, smiles, desc, rows)
        pre_wall, pre_cpu, model = pretrain(args, pretext, work / f"pre_{tag}")
        ft_wall, auc, used = finetune(args, target_csv, model, work / f"ft_{tag}")
        record(
            dict(
                zip(
                    FIELDS,
                    [name, fraction, args.seed, len(rows), round(prune_wall, 1), round(pre_wall, 1),
                     round(pre_cpu, 1), round(ft_wall, 1), round(auc, 4), used],
                    strict=True,
                )
            )
        )  # fmt: skip

    if not args.no_scratch and ("none", 0.0, args.seed) not in done:  # no pretraining at all
        wall, auc, used = finetune(args, target_csv, None, work / f"ft_none_s{args.seed}")
        record(
            dict(
                zip(
                    FIELDS,
                    ["none", 0.0, args.seed, 0, 0, 0, 0, round(wall, 1), round(auc, 4), used],
                    strict=True,
                )
            )
        )


if __name__ == "__main__":
    main()
