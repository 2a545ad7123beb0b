"""Does descriptor pretraining on a MOSES source set transfer to MoleculeNet? (the gate)

Before source-set pruning can be compared, pretraining on the source set has to help at all.
This benchmark pretrains a Chemprop MPNN on RDKit 2D descriptors of a MOSES sample
(``molpeg_plugins.source.pretext``) and fine-tunes it on six MoleculeNet sets, against the
same model trained from scratch:

1. source: ``--num-source`` MOSES molecules (seeded sample), minus every molecule that also
   occurs in any of the six downstream sets (``find_target_overlap``, canonical isomeric
   SMILES), counted per set;
2. pretext: the ~200 RDKit descriptors of the source, quantile-clipped and z-scored
   (``DescriptorScaling``), cached under ``--work``;
3. pretraining, once per arm that has a source (``chemprop train --task-type regression`` on
   the pretext targets), cached per arm;
4. fine-tuning on each downstream set (scaffold split 80/10/10, data seed = seed) from scratch
   (arm ``scratch``) or from the pretrained encoder (``--from-foundation``);
5. the test metric computed from chemprop's ``model_0/test_predictions.csv`` and the test rows
   of its ``splits.json``: ROC-AUC per task with scikit-learn, averaged over the tasks that
   have both classes in the test set (macro), or RMSE in the set's units.

An arm is a name in ``ARMS`` mapping to the source rows it pretrains on (``None``: no
pretraining), so pruned-source arms are added there without changing the rest. One CSV row per
finished fine-tune is appended to ``--results``; finished rows are skipped on restart, as are
cached pretrained models. ``--report`` rewrites the markdown snippet after every run.

    nice -n 10 python benchmarks/source_transfer.py --jobs 2 --threads 1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import RDLogger

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from run import append, chemprop_executable, git_commit, test_truth  # noqa: E402  benchmarks/run.py

from molpeg_plugins.pipeline.atomic import atomic_path, write_text  # noqa: E402
from molpeg_plugins.source.overlap import canonical_key, find_target_overlap  # noqa: E402
from molpeg_plugins.source.pretext import DescriptorScaling, compute_descriptors  # noqa: E402

SHARED = Path(os.environ.get("MOLPEG_SHARED", ROOT.parent / "shared"))
MOLECULENET = SHARED / "data/moleculenet"
MOSES = SHARED / "data/pretrain/moses_train_250k_seed0.csv.gz"
RESULTS = ROOT / "benchmarks/results/source_transfer.csv"
SNIPPET = ROOT / "benchmarks/results/source_transfer.md"
LOAD_EVERY_S = 5.0


@dataclass(frozen=True)
class Downstream:
    """A MoleculeNet set: its file, label columns (``None``: all but the named ones) and task."""

    name: str
    file: str
    task: str  # "classification" or "regression"
    epochs: int  # default fine-tuning epochs: fewer for the larger sets, similar step counts
    targets: tuple[str, ...] | None = None
    not_targets: tuple[str, ...] = ("smiles",)

    @property
    def metric(self) -> str:
        """``roc`` (macro ROC-AUC over tasks) or ``rmse``."""
        return "roc" if self.task == "classification" else "rmse"


DOWNSTREAM = [
    Downstream("BBBP", "BBBP.csv", "classification", 25, ("p_np",)),
    Downstream("Tox21", "tox21.csv", "classification", 8, None, ("smiles", "mol_id")),
    Downstream("SIDER", "sider.csv", "classification", 25),
    Downstream(
        "ESOL", "delaney-processed.csv", "regression", 30,
        ("measured log solubility in mols per litre",),
    ),
    Downstream("FreeSolv", "SAMPL.csv", "regression", 30, ("expt",)),
    Downstream("Lipophilicity", "Lipophilicity.csv", "regression", 12, ("exp",)),
]  # fmt: skip


def finetune_epochs(data: Downstream, args: argparse.Namespace) -> int:
    """``--finetune-epochs`` if given, else the set's own default."""
    return args.finetune_epochs or data.epochs


# arm -> the rows of the (overlap-free) source it pretrains on, from the number of source
# molecules and the seed; None: no pretraining. Pruned-source arms (feature mapping, random
# at keep 0.2 / 0.5) go here.
ARMS: dict[str, Callable[[int, int], np.ndarray] | None] = {
    "scratch": None,
    "full-source": lambda n, seed: np.arange(n),
}

FIELDS = [
    "arm", "dataset", "seed", "metric_name", "metric", "test_label_sd", "tasks_scored",
    "finetune_epochs", "finetune_wall_s", "finetune_cpu_s", "num_source", "pretrain_epochs",
    "pretrain_wall_s", "pretrain_cpu_s", "threads", "load_1min", "machine", "commit",
    "finished", "command",
]  # fmt: skip


def log(message: str) -> None:
    """Print a timestamped progress line."""
    print(f"{datetime.now():%H:%M:%S} {message}", flush=True)


def machine() -> str:
    """The machine, in words."""
    return f"{os.cpu_count()}-core {platform.machine()} CPU"


# --- data -------------------------------------------------------------------------------------


def prepare_downstream(data: Downstream, work: Path) -> tuple[Path, dict[str, int]]:
    """``smiles,task_0,…`` of the set without unparsable rows; and the row counts."""
    out = work / "data" / f"{data.name}.csv"
    info_path = out.with_suffix(".json")
    if out.exists() and info_path.exists():
        return out, json.loads(info_path.read_text())
    frame = pd.read_csv(MOLECULENET / data.file)
    targets = list(data.targets or [c for c in frame.columns if c not in data.not_targets])
    smiles = frame["smiles"].astype(str).str.strip()
    valid = np.array([canonical_key(s) is not None for s in smiles])
    table = pd.DataFrame({"smiles": smiles[valid]})
    for i, column in enumerate(targets):
        table[f"task_{i}"] = frame.loc[valid, column].to_numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    info = {"rows": len(frame), "unparsable": int((~valid).sum()), "tasks": len(targets)}
    write_text(info_path, json.dumps(info) + "\n")
    return out, info


def prepare_source(num_source: int, seed: int, work: Path, sets: dict[str, Path]) -> dict:
    """The overlap-free source sample (``source.csv``) and its overlap counts (``source.json``)."""
    info_path = work / "source.json"
    if info_path.exists():
        return json.loads(info_path.read_text())
    log(f"source: sampling {num_source:,} MOSES molecules (seed {seed})")
    smiles = pd.read_csv(MOSES)["smiles"].sample(n=num_source, random_state=seed).tolist()
    leaked = np.zeros(len(smiles), dtype=bool)
    per_set = {}
    for name, path in sets.items():
        overlap = find_target_overlap(smiles, pd.read_csv(path)["smiles"].tolist())
        per_set[name] = len(overlap)
        leaked |= overlap.mask(len(smiles))
    kept = [s for s, bad in zip(smiles, leaked, strict=True) if not bad]
    write_text(work / "source.csv", "smiles\n" + "".join(f"{s}\n" for s in kept))
    info = {
        "sampled": num_source, "seed": seed, "removed_per_set": per_set,
        "removed_total": int(leaked.sum()), "kept": len(kept),
    }  # fmt: skip
    write_text(info_path, json.dumps(info, indent=2) + "\n")
    log(f"source: {len(kept):,} kept, {int(leaked.sum())} removed as downstream molecules")
    return info


def source_descriptors(work: Path, workers: int) -> tuple[list[str], np.ndarray]:
    """The source SMILES and their raw descriptors (computed once, cached as ``.npy``)."""
    smiles = pd.read_csv(work / "source.csv")["smiles"].tolist()
    cache = work / "source_descriptors.npy"
    if cache.exists():
        return smiles, np.load(cache)
    log(f"descriptors of {len(smiles):,} source molecules ({workers} worker(s))")
    t0 = time.perf_counter()
    raw = compute_descriptors(smiles, workers=workers)
    with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
        np.save(fh, raw)
    log(f"descriptors: {time.perf_counter() - t0:.0f} s")
    return smiles, raw


# --- running chemprop -------------------------------------------------------------------------


def run_measured(cmd: list[str], log_path: Path, threads: int) -> tuple[float, float, float]:
    """Run ``cmd``; its wall seconds, CPU seconds (user + system) and mean 1-minute load."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    loads = []
    with log_path.open("w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=fh, env=env)
        while True:
            loads.append(os.getloadavg()[0])
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(LOAD_EVERY_S)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd[:2])} failed (exit {proc.returncode}); see {log_path}")
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, float(np.mean(loads))


def model_args(args: argparse.Namespace) -> list[str]:
    """Settings shared by pretraining and fine-tuning (CPU, one process)."""
    return ["--num-workers", "0", "--accelerator", "cpu", "--devices", "1"]


def pretrain(arm: str, args: argparse.Namespace) -> dict:
    """Pretrain the arm's model on its source rows (cached); its model path and costs."""
    out = args.work / "pretrain" / f"{arm}-{args.pretrain_epochs}ep"
    info_path = out / "pretrain.json"
    if info_path.exists():
        return json.loads(info_path.read_text())
    smiles, raw = source_descriptors(args.work, args.descriptor_workers)
    rows = ARMS[arm](len(smiles), args.source_seed)
    rows = rows[~np.isnan(raw[rows]).all(axis=1)]
    scaling = DescriptorScaling.fit(raw[rows], quantile=args.clip_quantile)
    targets = scaling.transform(raw[rows])
    pretext = out / "pretext.csv"
    frame = pd.DataFrame(targets, columns=list(scaling.names))
    frame.insert(0, "smiles", [smiles[i] for i in rows])
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(pretext) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.5g")
    write_text(out / "scaling.json", json.dumps(scaling.to_dict()) + "\n")
    cmd = [
        chemprop_executable(), "train", "--data-path", str(pretext), "--task-type", "regression",
        "--smiles-columns", "smiles", "--epochs", str(args.pretrain_epochs),
        "--split-sizes", "0.95", "0.05", "0.0", "--data-seed", "0", "--pytorch-seed", "0",
        "--output-dir", str(out / "chemprop"), *model_args(args),
    ]  # fmt: skip
    log(f"pretraining {arm}: {len(rows):,} molecules × {len(scaling.names)} descriptors")
    wall, cpu, load = run_measured(cmd, out / "pretrain.log", args.threads)
    model = next((out / "chemprop").rglob("best*.pt"))
    info = {
        "arm": arm, "molecules": len(rows), "descriptors": len(scaling.names),
        "epochs": args.pretrain_epochs, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "load_1min": round(load, 2), "model": str(model), "command": shlex.join(cmd),
    }  # fmt: skip
    write_text(info_path, json.dumps(info, indent=2) + "\n")
    log(f"pretrained {arm}: {wall:.0f} s wall, {cpu:.0f} s CPU")
    return info


def test_score(data: Downstream, data_path: Path, out_dir: Path) -> tuple[float, float, int]:
    """Test metric from chemprop's test predictions; the test labels' sd; tasks scored.

    Macro ROC-AUC over the tasks with both classes among their labelled test molecules, or
    RMSE over all labelled test values (single-task regression).
    """
    from sklearn.metrics import roc_auc_score

    truth, predictions = test_truth(data_path, out_dir)
    scores, labels = [], []
    for task in [c for c in truth.columns if c != "smiles"]:
        known = truth[task].notna().to_numpy()
        y, p = truth[task].to_numpy(float)[known], predictions[task].to_numpy(float)[known]
        labels.append(y)
        if data.task == "regression":
            scores.append(float(np.sqrt(np.mean((y - p) ** 2))))
        elif 0 < y.sum() < y.size:
            scores.append(float(roc_auc_score(y, p)))
    sd = float(np.std(np.concatenate(labels))) if data.task == "regression" else float("nan")
    return float(np.mean(scores)), sd, len(scores)


def finetune(arm: str, data: Downstream, seed: int, args: argparse.Namespace, pre: dict | None):
    """Fine-tune one (arm, set, seed) and return its CSV row."""
    data_path, _ = prepare_downstream(data, args.work)
    out = args.work / "finetune" / f"{arm}-{data.name}-{seed}"
    epochs = finetune_epochs(data, args)
    cmd = [
        chemprop_executable(), "train", "--data-path", str(data_path), "--task-type", data.task,
        "--smiles-columns", "smiles", "--split-type", "scaffold_balanced",
        "--split-sizes", "0.8", "0.1", "0.1", "--data-seed", str(seed),
        "--pytorch-seed", str(seed), "--epochs", str(epochs), "--metrics", data.metric,
        "--output-dir", str(out), *model_args(args),
    ]  # fmt: skip
    if pre is not None:
        cmd += ["--from-foundation", pre["model"]]
    wall, cpu, load = run_measured(cmd, out.with_suffix(".log"), args.threads)
    metric, sd, tasks = test_score(data, data_path, out)
    return {
        "arm": arm, "dataset": data.name, "seed": str(seed), "metric_name": data.metric,
        "metric": f"{metric:.4f}", "test_label_sd": "" if np.isnan(sd) else f"{sd:.4f}",
        "tasks_scored": str(tasks), "finetune_epochs": str(epochs),
        "finetune_wall_s": f"{wall:.1f}", "finetune_cpu_s": f"{cpu:.1f}",
        "num_source": str(pre["molecules"]) if pre else "0",
        "pretrain_epochs": str(pre["epochs"]) if pre else "0",
        "pretrain_wall_s": str(pre["wall_s"]) if pre else "0",
        "pretrain_cpu_s": str(pre["cpu_s"]) if pre else "0",
        "threads": str(args.threads), "load_1min": f"{load:.2f}", "machine": machine(),
        "commit": git_commit(), "finished": datetime.now().isoformat(timespec="seconds"),
        "command": args.command,
    }  # fmt: skip


# --- the report -------------------------------------------------------------------------------


def column_label(arm: str, pretrain_epochs: int) -> str:
    """A table column: the arm, with its pretraining epochs when it has a source."""
    return arm if ARMS[arm] is None else f"{arm}, {pretrain_epochs} ep"


def write_report(args: argparse.Namespace) -> None:
    """The markdown snippet: the gate table, pretraining cost, overlap counts, the command."""
    if not args.results.exists():
        return
    rows = pd.read_csv(args.results)
    wanted = {d.name: finetune_epochs(d, args) for d in DOWNSTREAM}
    rows = rows[rows.finetune_epochs == rows.dataset.map(wanted)].copy()
    rows["column"] = [
        column_label(a, e) for a, e in zip(rows.arm, rows.pretrain_epochs, strict=True)
    ]
    source = json.loads((args.work / "source.json").read_text())
    order = {arm: i for i, arm in enumerate(ARMS)}
    arms = sorted(
        set(zip(rows.arm, rows.pretrain_epochs, strict=True)), key=lambda a: (order[a[0]], a[1])
    )  # scratch first, then each source arm by pretraining epochs
    columns = [column_label(arm, epochs) for arm, epochs in arms]
    pretrained = [c for c in columns if c != "scratch"]
    lines = [
        "# Does descriptor pretraining transfer? The source-set gate",
        "",
        "Before pruning a pretraining (source) set can be judged, pretraining on the whole",
        "source has to beat training from scratch. A Chemprop MPNN (default size) is pretrained",
        "on RDKit 2D descriptors of MOSES molecules (`molpeg_plugins.source.pretext`:",
        "quantile-clipped, z-scored) for the stated number of epochs (ep) and fine-tuned with",
        "`--from-foundation` on six MoleculeNet sets, against the same model trained from",
        "scratch. Scaffold split 80/10/10 (data seed = seed), seeds "
        f"{', '.join(str(s) for s in sorted(set(rows.seed)))}; fine-tuning epochs",
        "per set in the table (fewer for the larger sets). Test metric computed from chemprop's",
        "`test_predictions.csv`: ROC-AUC macro over the tasks with both classes in the test set",
        "(higher is better), RMSE in the set's units (lower is better). Mean ± sd over seeds;",
        "n = number of seeds where fewer than three finished. A Δ column is the mean over seeds",
        "of pretrained − scratch on the same split, ± its sd over seeds.",
        "",
        "| set | metric | epochs | " + " | ".join(columns)
        + "".join(f" | Δ {c}" for c in pretrained) + " | test label sd |",
        "|---|---|---|" + "---|" * (len(columns) + len(pretrained)) + "---|",
    ]  # fmt: skip
    wins = dict.fromkeys(pretrained, 0)
    compared = dict.fromkeys(pretrained, 0)
    learned_sets: list[str] = []
    weak_sets: list[str] = []
    for data in DOWNSTREAM:
        sub = rows[rows.dataset == data.name]
        if sub.empty:
            continue
        cells = []
        for column in columns:
            values = sub[sub.column == column].metric
            if values.empty:
                cells.append("–")
                continue
            spread = f" ± {values.std():.3f}" if len(values) > 1 else ""
            count = f" (n={len(values)})" if len(values) < 3 else ""
            cells.append(f"{values.mean():.3f}{spread}{count}")
        paired = sub.pivot_table(index="seed", columns="column", values="metric")
        for column in pretrained:
            if not {"scratch", column} <= set(paired.columns):
                cells.append("–")
                continue
            delta = (paired[column] - paired["scratch"]).dropna()  # same split, same seed
            if delta.empty:
                cells.append("–")
                continue
            diff = delta.mean()
            better = diff > 0 if data.metric == "roc" else diff < 0
            wins[column] += better
            compared[column] += 1
            spread = f" ± {delta.std():.3f}" if len(delta) > 1 else ""
            cells.append(f"{diff:+.3f}{spread} ({'better' if better else 'worse'})")
        sd = sub.test_label_sd.dropna()
        label_sd = f"{sd.mean():.2f}" if len(sd) else ""
        scratch = sub[sub.arm == "scratch"].metric
        if len(scratch):
            learned = (
                scratch.mean() >= 0.6 if data.metric == "roc" else scratch.mean() < 0.8 * sd.mean()
            )
            (learned_sets if learned else weak_sets).append(data.name)
        metric = "ROC-AUC" if data.metric == "roc" else "RMSE"
        lines.append(
            f"| {data.name} | {metric} | {wanted[data.name]} | " + " | ".join(cells)
            + f" | {label_sd} |"
        )  # fmt: skip
    lines.append("")
    for column in pretrained:
        lines.append(
            f"Pretraining ({column}) is better than scratch on {wins[column]} of "
            f"{compared[column]} sets."
        )
    lines += [
        "Scratch learns (mean ROC-AUC ≥ 0.6, or RMSE below 0.8 × the test label sd) on "
        f"{', '.join(learned_sets) or 'no set'}"
        + (f"; not on {', '.join(weak_sets)}." if weak_sets else "."),
        "",
        "Source and pretraining:",
        "",
    ]
    removed = ", ".join(f"{k} {v}" for k, v in source["removed_per_set"].items())
    lines.append(
        f"- source: {source['sampled']:,} MOSES molecules sampled (seed {source['seed']}) from "
        f"`moses_train_250k_seed0.csv.gz`; {source['removed_total']} removed because they occur "
        f"in a downstream set ({removed}); {source['kept']:,} kept."
    )
    for data in DOWNSTREAM:
        info_path = args.work / "data" / f"{data.name}.json"
        if info_path.exists():
            info = json.loads(info_path.read_text())
            lines.append(
                f"- {data.name}: {info['rows']:,} rows, {info['unparsable']} unparsable dropped, "
                f"{info['tasks']} task(s)."
            )
    for column in pretrained:
        pre = rows[rows.column == column].iloc[0]
        lines.append(
            f"- pretraining ({column}): {int(pre.num_source):,} molecules, "
            f"{pre.pretrain_wall_s:.0f} s wall, {pre.pretrain_cpu_s:.0f} s CPU."
        )
    loads = rows.load_1min
    lines += [
        f"- fine-tuning: {rows.finetune_cpu_s.sum() / 3600:.2f} CPU hours for {len(rows)} runs; "
        f"mean 1-minute load during them {loads.mean():.1f} (min {loads.min():.1f}, "
        f"max {loads.max():.1f}) on a {rows.machine.iloc[0]}, "
        f"{int(rows.threads.iloc[0])} torch thread(s) per run.",
        f"- commit {', '.join(sorted(set(rows.commit.astype(str))))}. "
        "Raw rows: `benchmarks/results/source_transfer.csv`.",
        "",
        "Commands (run with `nice -n 10 nohup … &`):",
        "",
        "```",
        *sorted(set(rows.command)),
        "```",
    ]
    infos = [json.loads(f.read_text()) for f in (args.work / "pretrain").glob("*/pretrain.json")]
    if infos:
        lines += ["", "Pretraining commands (paths under the work folder):", "", "```"]
        for pre in sorted(infos, key=lambda info: (order[info["arm"]], info["epochs"])):
            command = pre["command"].replace(str(args.work), "WORK")
            lines.append(command.replace(chemprop_executable(), "chemprop"))
        lines.append("```")
    write_text(args.snippet, "\n".join(lines) + "\n")


# --- main -------------------------------------------------------------------------------------


def run_key(arm: str, dataset: str, seed: int | str, finetune: int | str, pretrain: int | str):
    """What makes a fine-tune distinct: arm, set, seed, fine-tuning and pretraining epochs."""
    return (arm, dataset, str(seed), str(finetune), str(pretrain) if ARMS[arm] else "0")


def done_keys(path: Path) -> set[tuple[str, str, str, str, str]]:
    """The :func:`run_key` of every finished row."""
    if not path.exists():
        return set()
    with path.open() as fh:
        return {
            run_key(r["arm"], r["dataset"], r["seed"], r["finetune_epochs"], r["pretrain_epochs"])
            for r in csv.DictReader(fh)
        }


def main() -> None:
    """Prepare, pretrain each arm once, fine-tune every (arm, set, seed), report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", nargs="+", default=["scratch", "full-source"], choices=list(ARMS))
    p.add_argument("--sets", nargs="+", default=[d.name for d in DOWNSTREAM])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-source", type=int, default=50_000)
    p.add_argument("--source-seed", type=int, default=0)
    p.add_argument("--clip-quantile", type=float, default=0.005)
    p.add_argument("--pretrain-epochs", type=int, default=20)  # 5 did not pass the gate
    p.add_argument(
        "--finetune-epochs", type=int, help="fine-tuning epochs of every set (default: per set)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per chemprop run")
    p.add_argument("--jobs", type=int, default=1, help="chemprop runs at once")
    p.add_argument("--descriptor-workers", type=int, default=1)
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks/work/source_transfer")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--snippet", type=Path, default=SNIPPET)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    RDLogger.DisableLog("rdApp.*")
    args.work = args.work.resolve()
    args.command = "python benchmarks/source_transfer.py " + shlex.join(sys.argv[1:])
    unknown = set(args.sets) - {d.name for d in DOWNSTREAM}
    if unknown:
        raise SystemExit(f"unknown set(s) {sorted(unknown)}: use {[d.name for d in DOWNSTREAM]}")
    if args.report_only:
        write_report(args)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    sets = [d for d in DOWNSTREAM if d.name in args.sets]
    paths = {d.name: prepare_downstream(d, args.work)[0] for d in DOWNSTREAM}
    prepare_source(args.num_source, args.source_seed, args.work, paths)
    done = done_keys(args.results)
    todo = [
        (arm, d, seed)
        for seed in args.seeds
        for d in sets
        for arm in args.arms
        if run_key(arm, d.name, seed, finetune_epochs(d, args), args.pretrain_epochs) not in done
    ]
    # runs without pretraining first, so they fill the other lane while pretraining runs
    todo.sort(key=lambda t: ARMS[t[0]] is not None)
    log(f"{len(todo)} fine-tunes to run ({len(done)} finished rows skipped)")
    failed = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        pretrained: dict[str, Future] = {
            arm: pool.submit(pretrain, arm, args)
            for arm in args.arms
            if ARMS[arm] is not None and any(t[0] == arm for t in todo)
        }

        def one(arm: str, data: Downstream, seed: int) -> dict[str, str]:
            pre = pretrained[arm].result() if arm in pretrained else None
            row = finetune(arm, data, seed, args, pre)
            append(args.results, [row], FIELDS)
            write_report(args)
            return row

        futures = {pool.submit(one, *t): t for t in todo}
        for future, (arm, data, seed) in futures.items():
            try:
                row = future.result()
            except Exception as err:  # one failed run must not stop the others
                failed += 1
                log(f"{arm} {data.name} seed {seed} FAILED: {err}")
                continue
            log(f"{arm} {data.name} seed {seed}: {row['metric_name']}={row['metric']} "
                f"({row['finetune_wall_s']} s)")  # fmt: skip
    write_report(args)
    if failed:
        raise SystemExit(f"{failed} run(s) failed; rerun to retry them")


if __name__ == "__main__":
    main()
