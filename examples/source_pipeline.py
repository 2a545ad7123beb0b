"""Source pruning → pretraining → fine-tuning, in one resumable command.

For one downstream (target) task and a large unlabelled source set, the pipeline answers:
does pretraining on a pruned source transfer as well as pretraining on all of it, and what
does it save? For each kept fraction and each way of choosing the source rows it

1. drops every source molecule that is also a target molecule (canonical isomeric SMILES;
   the count goes into the report), so no arm pretrains on the test set;
2. chooses the source rows: all of them (``full``), feature mapping toward the target
   (``molpeg prune-source``'s :func:`~molpeg_plugins.source.pruning.feature_mapping`) or a
   seeded random subset of the same size (``random``, the baseline);
3. pretrains a Chemprop MPNN on the chosen rows with a supervised pretext task: about 200
   RDKit 2D descriptors as multitask regression targets, quantile-clipped and z-scored on the
   chosen rows (:mod:`molpeg_plugins.source.pretext`);
4. fine-tunes on the target from each pretrained encoder, and from scratch, for every seed
   (``chemprop train --from-foundation …``, scaffold split, data seed = seed), optionally with
   MolPeg pruning of the fine-tuning data (``--finetune-prune-ratio``: ``--plugin molpeg``);
5. writes ``results.csv`` (one row per fine-tune, with the pretraining cost), ``results.md``
   (mean ± sd over seeds) and ``results.png`` (test metric against the kept fraction).

Every step keeps its output under ``--work``; a rerun skips what is finished (descriptors,
selections, pretrained models, fine-tunes), so an interrupted run resumes where it stopped.
The benchmark behind the documented results, on six MoleculeNet sets at once, is
``benchmarks/source_transfer.py``. Example (BBBP; about 3 CPU hours on 2 cores)::

    python examples/source_pipeline.py \\
        --source ../shared/data/pretrain/moses_train_250k_seed0.csv.gz --num-source 50000 \\
        --target ../shared/data/moleculenet/BBBP.csv --target-column p_np \\
        --keep 0.2 0.5 --seeds 0 1 2 --work runs/source_bbbp
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import RDLogger

from molpeg_chemprop.runs import chemprop_executable, run_logged
from molpeg_plugins.errors import MolPegError
from molpeg_plugins.pipeline.atomic import atomic_path, write_text
from molpeg_plugins.source.overlap import canonical_key, find_target_overlap
from molpeg_plugins.source.pretext import compute_descriptors, write_pretext
from molpeg_plugins.source.pruning import feature_mapping, random_selection

FIELDS = [
    "arm", "method", "keep", "seed", "metric_name", "metric", "num_pretrain",
    "selection_wall_s", "pretrain_wall_s", "pretrain_cpu_s", "finetune_wall_s",
    "finetune_cpu_s", "finetune_prune_ratio",
]  # fmt: skip


def run(cmd: list[str], log: Path) -> tuple[float, float, str]:
    """Run ``cmd`` with its output in ``log``; its wall seconds, CPU seconds and output."""
    cost = run_logged(cmd, log)
    return cost.wall_s, cost.cpu_s, log.read_text()


def prepare(args: argparse.Namespace) -> tuple[list[str], np.ndarray]:
    """The overlap-free source (``source.csv``), the clean target (``target.csv``) and the
    descriptors of the source (``descriptors.npy``), each computed once."""
    work: Path = args.work
    info_path = work / "data.json"
    if not info_path.exists():
        target = pd.read_csv(args.target)
        labels = list(args.target_column)
        missing = [c for c in [args.target_smiles_column, *labels] if c not in target.columns]
        if missing:
            raise SystemExit(f"{args.target}: no column {missing}; it has {list(target.columns)}")
        smiles = target[args.target_smiles_column].astype(str).str.strip()
        valid = np.array([canonical_key(s) is not None for s in smiles])
        clean = pd.DataFrame({"smiles": smiles[valid]})
        for column in labels:
            clean[column] = target.loc[valid, column].to_numpy()
        with atomic_path(work / "target.csv") as tmp:
            clean.to_csv(tmp, index=False)
        source = pd.read_csv(args.source, nrows=args.num_source)
        column = args.source_smiles_column or next(
            c for c in source.columns if c.lower() == "smiles"
        )
        source_smiles = source[column].astype(str).str.strip().tolist()
        overlap = find_target_overlap(source_smiles, clean.smiles.tolist())
        kept = np.setdiff1d(np.arange(len(source_smiles)), overlap.source_rows)
        usable = [source_smiles[i] for i in kept if canonical_key(source_smiles[i]) is not None]
        write_text(work / "source.csv", "smiles\n" + "".join(f"{s}\n" for s in usable))
        info = {
            "target_rows": len(target), "target_unparsable": int((~valid).sum()),
            "source_rows": len(source_smiles), "source_target_molecules": len(overlap),
            "source_unparsable": len(kept) - len(usable), "source_kept": len(usable),
        }  # fmt: skip
        write_text(info_path, json.dumps(info, indent=2) + "\n")
        print(
            f"source: {len(usable):,} molecules ({len(overlap):,} target molecules removed) · "
            f"target: {int(valid.sum()):,} valid molecules"
        )
    smiles = pd.read_csv(work / "source.csv").smiles.tolist()
    cache = work / "descriptors.npy"
    if not cache.exists():
        print(f"descriptors of {len(smiles):,} source molecules")
        raw = compute_descriptors(smiles, workers=args.workers)
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.save(fh, raw)
    return smiles, np.load(cache)


def select(method: str, keep: float, smiles: list[str], args: argparse.Namespace):
    """The source rows of one arm and the seconds the choice took (cached as ``rows.npy``)."""
    out = args.work / f"select-{method}-{keep:g}"
    rows_path = out / "rows.npy"
    if rows_path.exists():
        return np.load(rows_path), json.loads((out / "select.json").read_text())["wall_s"]
    start = time.perf_counter()
    if method == "full":
        rows = np.arange(len(smiles))
    elif method == "random":
        rows = random_selection(len(smiles), keep, seed=args.source_seed)
    else:
        target = pd.read_csv(args.work / "target.csv").smiles.tolist()
        rows = feature_mapping(
            smiles, target, keep, groups=args.groups, seed=args.source_seed, workers=args.workers
        ).kept
    wall = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(rows_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, rows)
    write_text(out / "select.json", json.dumps({"rows": len(rows), "wall_s": wall}) + "\n")
    return rows, wall


def pretrain(name: str, rows: np.ndarray, smiles, raw, args: argparse.Namespace) -> dict:
    """Pretrain on the descriptors of ``rows`` (cached as ``pretrain-NAME/pretrain.json``)."""
    out = args.work / f"pretrain-{name}"
    info_path = out / "pretrain.json"
    if info_path.exists():
        return json.loads(info_path.read_text())
    molecules, scaling = write_pretext(out / "pretext.csv", smiles, raw, rows)
    cmd = [
        chemprop_executable(), "train", "--data-path", str(out / "pretext.csv"), "--task-type",
        "regression", "--smiles-columns", "smiles", "--epochs", str(args.pretrain_epochs),
        "--split-sizes", "0.95", "0.05", "0.0", "--data-seed", "0", "--pytorch-seed", "0",
        "--output-dir", str(out / "chemprop"), *args.chemprop_args,
    ]  # fmt: skip
    print(f"pretraining {name}: {molecules:,} molecules × {len(scaling.names)} descriptors")
    wall, cpu, _ = run(cmd, out / "pretrain.log")
    info = {
        "molecules": molecules, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "model": str(next((out / "chemprop").rglob("best*.pt"))),
    }  # fmt: skip
    write_text(info_path, json.dumps(info, indent=2) + "\n")
    return info


def finetune(arm: str, seed: int, pre: dict | None, args: argparse.Namespace) -> dict:
    """Fine-tune on the target from ``pre``'s model (``None``: scratch); the metric, costs."""
    out = args.work / f"finetune-{arm}-{seed}"
    shutil.rmtree(out, ignore_errors=True)  # an unfinished earlier try (it has no row)
    metric = "roc" if args.task_type == "classification" else "rmse"
    cmd = [
        chemprop_executable(), "train", "--data-path", str(args.work / "target.csv"), "--task-type",
        args.task_type, "--smiles-columns", "smiles", "--target-columns",
        *args.target_column, "--split-type", "scaffold_balanced", "--split-sizes", "0.8",
        "0.1", "0.1", "--data-seed", str(seed), "--pytorch-seed", str(seed), "--epochs",
        str(args.finetune_epochs), "--metrics", metric, "--output-dir", str(out),
        *args.chemprop_args,
    ]  # fmt: skip
    if pre is not None:
        cmd += ["--from-foundation", pre["model"]]
    if args.finetune_prune_ratio > 0:
        cmd += ["--plugin", "molpeg", "--prune-ratio", str(args.finetune_prune_ratio)]
    log = out.parent / f"{out.name}.log"  # not with_suffix: "feature-mapping-0.5-0"
    wall, cpu, text = run(cmd, log)
    found = re.findall(rf"test/{metric}: ([0-9.eE+-]+)", text)
    if not found:
        raise RuntimeError(f"no test/{metric} in {log}")
    return {"metric_name": metric, "metric": round(float(found[-1]), 4),
            "finetune_wall_s": round(wall, 1), "finetune_cpu_s": round(cpu, 1)}  # fmt: skip


def finished(results: Path) -> set[tuple[str, int]]:
    """(arm, seed) of every row already in ``results``."""
    if not results.exists():
        return set()
    with results.open(newline="") as fh:
        return {(r["arm"], int(r["seed"])) for r in csv.DictReader(fh)}


def append(results: Path, row: dict) -> None:
    """Append one row, with the header first if the file is new."""
    frame = pd.DataFrame([row], columns=FIELDS)
    frame.to_csv(results, mode="a", header=not results.exists(), index=False)


def report(results: Path, info: dict) -> None:
    """``results.md`` (mean ± sd per arm) and ``results.png`` (metric against kept fraction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = pd.read_csv(results)
    name = {"roc": "ROC-AUC", "rmse": "RMSE"}[rows.metric_name.iloc[0]]
    table = rows.groupby("arm", sort=False).agg(
        method=("method", "first"), keep=("keep", "first"), seeds=("seed", "nunique"),
        mean=("metric", "mean"), sd=("metric", "std"), molecules=("num_pretrain", "first"),
        pretrain_cpu_s=("pretrain_cpu_s", "first"), finetune_cpu_s=("finetune_cpu_s", "mean"),
    )  # fmt: skip
    lines = [
        f"# Source pruning: test {name} on the target",
        "",
        f"Source: {info['source_kept']:,} molecules after removing "
        f"{info['source_target_molecules']} target molecules. Mean ± sd over seeds.",
        "",
        f"| arm | kept | seeds | test {name} | pretraining molecules | pretraining CPU s | "
        "fine-tuning CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, r in table.iterrows():
        sd = "" if np.isnan(r.sd) else f" ± {r.sd:.3f}"
        lines.append(
            f"| {arm} | {r.keep:g} | {r.seeds} | {r['mean']:.3f}{sd} | {r.molecules:,} | "
            f"{r.pretrain_cpu_s:.0f} | {r.finetune_cpu_s:.0f} |"
        )
    write_text(results.with_suffix(".md"), "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, colour in (("feature-mapping", "C0"), ("random", "C1")):
        sub = table[table.method.isin([method, "full"])].sort_values("keep")
        if (sub.method == method).any():
            ax.errorbar(sub.keep, sub["mean"], yerr=sub.sd.fillna(0), marker="o", capsize=3,
                        color=colour, label=method)  # fmt: skip
    if "scratch" in table.index:
        ax.axhline(table.loc["scratch", "mean"], color="grey", linestyle="--", label="scratch")
    ax.set_xlabel("fraction of the source pretrained on")
    ax.set_ylabel(f"test {name}")
    ax.legend()
    fig.tight_layout()
    with atomic_path(results.with_suffix(".png")) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Prepare, select, pretrain and fine-tune every arm and seed not yet finished; report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, required=True, help="source CSV (gzip is fine)")
    p.add_argument("--source-smiles-column", help="default: the column named smiles/SMILES")
    p.add_argument("--num-source", type=int, default=50_000, help="leading source rows used")
    p.add_argument("--target", type=Path, required=True, help="the downstream CSV")
    p.add_argument("--target-smiles-column", default="smiles")
    p.add_argument("--target-column", nargs="+", required=True, help="label column(s)")
    p.add_argument("--task-type", choices=["classification", "regression"],
                   default="classification")  # fmt: skip
    p.add_argument("--keep", type=float, nargs="+", default=[0.2, 0.5])
    p.add_argument("--methods", nargs="+", default=["feature-mapping", "random"],
                   choices=["feature-mapping", "random"])  # fmt: skip
    p.add_argument("--groups", type=int, default=100, help="feature-mapping k-means groups")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--source-seed", type=int, default=0)
    p.add_argument("--pretrain-epochs", type=int, default=20)
    p.add_argument("--finetune-epochs", type=int, default=25)
    p.add_argument(
        "--finetune-prune-ratio", type=float, default=0.0,
        help="prune this fraction of the fine-tuning data with MolPeg (0: off)",
    )  # fmt: skip
    p.add_argument("--no-scratch", action="store_true", help="skip the fine-tunes from scratch")
    p.add_argument("--workers", type=int, default=1, help="processes for RDKit work")
    p.add_argument("--chemprop-args", default="--num-workers 0 --accelerator cpu --devices 1",
                   help="extra chemprop train options of every run (one string)")  # fmt: skip
    p.add_argument("--work", type=Path, default=Path("runs/source_pipeline"))
    args = p.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    args.chemprop_args = shlex.split(args.chemprop_args)
    args.work.mkdir(parents=True, exist_ok=True)
    results = args.work / "results.csv"
    smiles, raw = prepare(args)
    done = finished(results)
    arms = [("full", "full", 1.0)] + [
        (f"{method}-{keep:g}", method, keep) for keep in args.keep for method in args.methods
    ]
    if not args.no_scratch:
        arms.insert(0, ("scratch", "none", 0.0))
    for arm, method, keep in arms:
        todo = [seed for seed in args.seeds if (arm, seed) not in done]
        if not todo:
            print(f"{arm}: finished")
            continue
        pre, selection_wall = None, 0.0
        if method != "none":
            rows, selection_wall = select(method, keep, smiles, args)
            pre = pretrain(arm, rows, smiles, raw, args)
        for seed in todo:
            print(f"{arm} seed {seed}: fine-tuning")
            row = {
                "arm": arm, "method": method, "keep": keep, "seed": seed,
                "num_pretrain": pre["molecules"] if pre else 0,
                "selection_wall_s": round(selection_wall, 1),
                "pretrain_wall_s": pre["wall_s"] if pre else 0,
                "pretrain_cpu_s": pre["cpu_s"] if pre else 0,
                "finetune_prune_ratio": args.finetune_prune_ratio,
                **finetune(arm, seed, pre, args),
            }  # fmt: skip
            append(results, row)
            print(f"{arm} seed {seed}: test {row['metric_name']} {row['metric']}")
    report(results, json.loads((args.work / "data.json").read_text()))
    print(f"results: {results}, {results.with_suffix('.md')}, {results.with_suffix('.png')}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # finished steps are kept; the same command continues
        print("interrupted: run the same command again to continue", file=sys.stderr)
        sys.exit(130)
    except MolPegError as err:  # e.g. a chemprop run failed: its log is named
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
