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
pretraining), so pruned-source arms are added there without changing the rest. The
``toxcast-…`` and ``label-mapping-…`` arms pretrain instead on ToxCast without the downstream
molecules, with its 617 assays as the pretext (multi-task classification); label mapping
ranks the assays with the model pretrained on all of it, toward each set on its own. One CSV row per
finished fine-tune is appended to ``--results``; finished rows are skipped on restart, as are
cached pretrained models. Each pretraining's cost and the data counts are kept beside the rows
(``PRETRAININGS``, ``DATA_INFO``), so the markdown snippet, rewritten after every run, can be
rebuilt from ``benchmarks/results/`` alone (``--report-only``) without the work folder.

    nice -n 10 python benchmarks/source_transfer.py --jobs 2 --threads 1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import RDLogger

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from run import LoadSampler, append, git_commit, test_truth  # noqa: E402  benchmarks/run.py

from molpeg_chemprop.runs import chemprop_executable, run_logged  # noqa: E402
from molpeg_plugins.pipeline.atomic import atomic_path, write_text  # noqa: E402
from molpeg_plugins.source.overlap import canonical_key, find_target_overlap  # noqa: E402
from molpeg_plugins.source.pretext import compute_descriptors, write_pretext  # noqa: E402
from molpeg_plugins.source.pruning import (  # noqa: E402
    feature_mapping,
    label_mapping,
    random_selection,
    read_records,
)

SHARED = Path(os.environ.get("MOLPEG_SHARED", ROOT.parent / "shared"))
MOLECULENET = SHARED / "data/moleculenet"
MOSES = SHARED / "data/pretrain/moses_train_250k_seed0.csv.gz"
TOXCAST = MOLECULENET / "toxcast.csv.gz"
RESULTS = ROOT / "benchmarks/results/source_transfer.csv"
SNIPPET = ROOT / "benchmarks/results/source_transfer.md"
# what the report needs besides the rows, kept with them (the work folder is a cache)
PRETRAININGS = ROOT / "benchmarks/results/source_transfer_pretraining.json"
DATA_INFO = ROOT / "benchmarks/results/source_transfer_data.json"
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


@dataclass(frozen=True)
class Arm:
    """One way to get a fine-tuned model: its source selection and its fine-tuning.

    ``corpus`` is the pretraining source: ``"moses"`` (the MOSES sample, pretrained on its
    RDKit descriptors) or ``"toxcast"`` (ToxCast's molecules, pretrained on their 617 assay
    labels). ``source`` is ``None`` (no pretraining: scratch), ``"full"``, ``"random"`` (a
    seeded random ``keep`` fraction of the source), ``"feature-mapping"`` (``molpeg
    prune-source``'s feature mapping toward the union of the six downstream sets, so one
    pretrained model serves them all) or ``"label-mapping"`` (label mapping toward each set
    on its own, ranked by the model pretrained on the full ToxCast source: ``per_set``).
    ``finetune_prune`` > 0 fine-tunes with ``--plugin molpeg`` at that pruned fraction (the
    paper's rule), the combined pipeline.
    """

    source: str | None
    keep: float = 1.0
    finetune_prune: float = 0.0
    corpus: str = "moses"
    per_set: bool = False
    score: str = "probability"  # label mapping's task score

    def pretraining(self, target: str | None = None) -> str | None:
        """The name of the pretrained model (arms with the same source share it); a per-set
        arm has one per downstream ``target``."""
        if self.source is None:
            return None
        prefix = "" if self.corpus == "moses" else f"{self.corpus}-"
        score = f"-{self.score}" if self.score != "probability" else ""
        kept = "full-source" if self.source == "full" else f"{self.source}{score}-{self.keep:g}"
        name = prefix + kept
        return f"{name}-{target}" if self.per_set else name

    @property
    def pretrainings(self) -> list[str]:
        """Every pretrained model the arm uses: one, or one per downstream set."""
        if self.source is None:
            return []
        if self.per_set:
            return [self.pretraining(d.name) for d in DOWNSTREAM]
        return [self.pretraining()]


ARMS: dict[str, Arm] = {
    "scratch": Arm(None),
    "full-source": Arm("full"),
    "feature-mapping-0.5": Arm("feature-mapping", 0.5),
    "random-0.5": Arm("random", 0.5),
    "feature-mapping-0.5+molpeg-0.6": Arm("feature-mapping", 0.5, finetune_prune=0.6),
    "feature-mapping-0.5+molpeg-0.3": Arm("feature-mapping", 0.5, finetune_prune=0.3),
    "feature-mapping-0.4": Arm("feature-mapping", 0.4),
    "feature-mapping-0.2": Arm("feature-mapping", 0.2),
    "random-0.2": Arm("random", 0.2),
    "toxcast-full-source": Arm("full", corpus="toxcast"),
    "label-mapping-0.5": Arm("label-mapping", 0.5, corpus="toxcast", per_set=True),
    "toxcast-random-0.5": Arm("random", 0.5, corpus="toxcast"),
    "label-mapping-lift-0.5": Arm(
        "label-mapping", 0.5, corpus="toxcast", per_set=True, score="lift"
    ),
    "label-mapping-0.2": Arm("label-mapping", 0.2, corpus="toxcast", per_set=True),
    "toxcast-random-0.2": Arm("random", 0.2, corpus="toxcast"),
}
FULL_SOURCE = {"moses": "full-source", "toxcast": "toxcast-full-source"}


def counterpart(arm: str, source: str) -> str | None:
    """The arm with the same corpus and kept fraction but another ``source`` (e.g. random)."""
    a = ARMS[arm]
    for name, b in ARMS.items():
        if (b.corpus, b.keep, b.source, b.finetune_prune) == (a.corpus, a.keep, source, 0.0):
            return name
    return None


SELECTION_LOCK = threading.Lock()


def source_rows(
    arm: Arm, smiles: list[str], args: argparse.Namespace, target: str | None = None
) -> tuple[np.ndarray, dict]:
    """The source rows the arm pretrains on, and how the selection went (its cost, groups)."""
    if arm.source == "full":
        return np.arange(len(smiles)), {}
    if arm.source == "random":
        return random_selection(len(smiles), arm.keep, seed=args.source_seed), {}
    ranking = None
    if arm.source == "label-mapping":  # the model it ranks with, before the clock starts
        ranking = pretrain(ARMS[FULL_SOURCE[arm.corpus]], args)
    with SELECTION_LOCK:  # one at a time: the process's CPU clock is the selection's alone
        return timed_selection(arm, smiles, args, target, ranking)


def timed_selection(
    arm: Arm,
    smiles: list[str],
    args: argparse.Namespace,
    target: str | None,
    ranking: dict | None,
) -> tuple[np.ndarray, dict]:
    """Feature or label mapping (ranked by the ``ranking`` pretraining), with its wall and CPU
    seconds."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if ranking is not None:
        targets = pd.read_csv(args.work / "data" / f"{target}.csv").smiles.tolist()
        records, smiles_col = read_records(args.work / "toxcast_source.csv", "smiles")
        selection = label_mapping(
            records, smiles_col, targets, arm.keep, checkpoint=ranking["model"],
            score=arm.score, seed=args.source_seed,
        )  # fmt: skip
        details = selection.details
        return selection.kept, {
            "selection_wall_s": round(time.perf_counter() - wall0, 1),
            "selection_cpu_s": round(time.process_time() - cpu0, 1),
            "target": target, "target_molecules": len(targets), "score": arm.score,
            "tasks": details["tasks"],
            "top_tasks": details["top_tasks"],
            "tasks_used": sum(u["kept"] > 0 for u in selection.units),
            "ranking_model": ranking["arm"],
        }  # fmt: skip
    targets = [
        s for d in DOWNSTREAM for s in pd.read_csv(args.work / "data" / f"{d.name}.csv").smiles
    ]
    selection = feature_mapping(
        smiles, targets, arm.keep, groups=args.groups, seed=args.source_seed,
        workers=args.descriptor_workers,
    )  # fmt: skip
    details = selection.details
    return selection.kept, {
        "selection_wall_s": round(time.perf_counter() - wall0, 1),
        "selection_cpu_s": round(time.process_time() - cpu0, 1),
        "target_molecules": len(targets), "groups": details["groups"],
        "groups_hit": details["groups_hit"], "groups_kept_whole": details["groups_kept_whole"],
        "target_molecules_in_kept_groups": details["target_molecules_in_kept_groups"],
    }  # fmt: skip


FIELDS = [
    "arm", "dataset", "seed", "metric_name", "metric", "test_label_sd", "tasks_scored",
    "finetune_epochs", "finetune_wall_s", "finetune_cpu_s", "num_source", "pretrain_epochs",
    "pretrain_wall_s", "pretrain_cpu_s", "selection_wall_s", "selection_cpu_s", "threads",
    "load_1min", "machine", "commit", "finished", "command",
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


def downstream_overlap(smiles: list[str], sets: dict[str, Path]) -> tuple[np.ndarray, dict]:
    """Which source molecules occur in any downstream set (a mask), and how many per set."""
    leaked = np.zeros(len(smiles), dtype=bool)
    per_set = {}
    for name, path in sets.items():
        overlap = find_target_overlap(smiles, pd.read_csv(path)["smiles"].tolist())
        per_set[name] = len(overlap)
        leaked |= overlap.mask(len(smiles))
    return leaked, per_set


def prepare_source(num_source: int, seed: int, work: Path, sets: dict[str, Path]) -> dict:
    """The overlap-free source sample (``source.csv``) and its overlap counts (``source.json``)."""
    info_path = work / "source.json"
    if info_path.exists():
        return json.loads(info_path.read_text())
    log(f"source: sampling {num_source:,} MOSES molecules (seed {seed})")
    smiles = pd.read_csv(MOSES)["smiles"].sample(n=num_source, random_state=seed).tolist()
    leaked, per_set = downstream_overlap(smiles, sets)
    kept = [s for s, bad in zip(smiles, leaked, strict=True) if not bad]
    write_text(work / "source.csv", "smiles\n" + "".join(f"{s}\n" for s in kept))
    info = {
        "sampled": num_source, "seed": seed, "removed_per_set": per_set,
        "removed_total": int(leaked.sum()), "kept": len(kept),
    }  # fmt: skip
    write_text(info_path, json.dumps(info, indent=2) + "\n")
    log(f"source: {len(kept):,} kept, {int(leaked.sum())} removed as downstream molecules")
    return info


def prepare_toxcast(work: Path, sets: dict[str, Path]) -> dict:
    """ToxCast without the downstream molecules (``toxcast_source.csv``), and its counts."""
    info_path = work / "toxcast_source.json"
    if info_path.exists():
        return json.loads(info_path.read_text())
    frame = pd.read_csv(TOXCAST)
    smiles = frame.smiles.tolist()
    leaked, per_set = downstream_overlap(smiles, sets)
    kept = frame[~leaked]
    with atomic_path(work / "toxcast_source.csv") as tmp:
        kept.to_csv(tmp, index=False)
    info = {
        "rows": len(frame), "assays": frame.shape[1] - 1, "removed_per_set": per_set,
        "removed_total": int(leaked.sum()), "kept": len(kept),
        "labels_kept": int(kept.drop(columns="smiles").notna().sum().sum()),
    }  # fmt: skip
    write_text(info_path, json.dumps(info, indent=2) + "\n")
    log(f"ToxCast: {len(kept):,} kept, {int(leaked.sum())} removed as downstream molecules")
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
    load = LoadSampler(LOAD_EVERY_S)
    cost = run_logged(cmd, log_path, env=env, on_poll=load)
    return cost.wall_s, cost.cpu_s, load.mean


def model_args(args: argparse.Namespace) -> list[str]:
    """Settings shared by pretraining and fine-tuning (CPU, one process)."""
    return ["--num-workers", "0", "--accelerator", "cpu", "--devices", "1"]


PRETRAIN_LOCKS: dict[str, threading.Lock] = defaultdict(threading.Lock)


def pretrain(arm: Arm, args: argparse.Namespace, target: str | None = None) -> dict:
    """Pretrain the arm's model on its source rows (cached per pretraining); its path and costs.

    A lock per pretraining lets label mapping wait for the full-source model it ranks with
    while that model is being trained in another lane.
    """
    name = arm.pretraining(target)
    out = args.work / "pretrain" / f"{name}-{args.pretrain_epochs}ep"
    info_path = out / "pretrain.json"
    with PRETRAIN_LOCKS[name]:
        if info_path.exists():
            return json.loads(info_path.read_text())
        pretext, molecules, task_type, described, selection = (
            toxcast_pretext(arm, args, out, target)
            if arm.corpus == "toxcast"
            else moses_pretext(arm, args, out)
        )
        cmd = [
            chemprop_executable(), "train", "--data-path", str(pretext), "--task-type", task_type,
            "--smiles-columns", "smiles", "--epochs", str(args.pretrain_epochs),
            "--split-sizes", "0.95", "0.05", "0.0", "--data-seed", "0", "--pytorch-seed", "0",
            "--output-dir", str(out / "chemprop"), *model_args(args),
        ]  # fmt: skip
        log(f"pretraining {name}: {described}")
        wall, cpu, load = run_measured(cmd, out / "pretrain.log", args.threads)
        model = next((out / "chemprop").rglob("best*.pt"))
        info = {
            "arm": name, "corpus": arm.corpus, "source": arm.source, "keep": arm.keep,
            "molecules": molecules, "pretext": described, "epochs": args.pretrain_epochs,
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_1min": round(load, 2),
            "selection": selection, "model": str(model), "command": shlex.join(cmd),
        }  # fmt: skip
        write_text(info_path, json.dumps(info, indent=2) + "\n")
        record_pretraining(info, args)
        log(f"pretrained {name}: {wall:.0f} s wall, {cpu:.0f} s CPU")
        return info


RECORD_LOCK = threading.Lock()


def record_pretraining(info: dict, args: argparse.Namespace) -> None:
    """Keep a pretraining's cost and command in ``--pretrainings`` (paths under the work
    folder written as ``WORK``).

    The first record of a pretraining (name and epochs) stays: the finished rows were
    fine-tuned from that run and the cost tables compare runs measured alongside each other.
    A pretraining run again because the work folder was lost is not recorded again; delete
    its record to measure it anew.
    """
    work = str(args.work)
    kept = {k: v for k, v in info.items() if k != "model"}
    kept["command"] = info["command"].replace(work, "WORK")
    with RECORD_LOCK:
        records = read_pretrainings(args.pretrainings)
        records.setdefault(f"{info['arm']}-{info['epochs']}ep", kept)
        write_text(args.pretrainings, json.dumps(records, indent=2, sort_keys=True) + "\n")


def read_pretrainings(path: Path) -> dict[str, dict]:
    """The recorded pretrainings, by ``{name}-{epochs}ep``."""
    return json.loads(path.read_text()) if path.exists() else {}


def moses_pretext(arm: Arm, args: argparse.Namespace, out: Path):
    """The MOSES pretext: the selected rows' scaled RDKit descriptors (``pretext.csv``)."""
    smiles, raw = source_descriptors(args.work, args.descriptor_workers)
    log(f"selecting the source of {arm.pretraining()}")
    rows, selection = source_rows(arm, smiles, args)
    pretext = out / "pretext.csv"
    molecules, scaling = write_pretext(pretext, smiles, raw, rows, quantile=args.clip_quantile)
    write_text(out / "scaling.json", json.dumps(scaling.to_dict()) + "\n")
    described = f"{molecules:,} molecules × {len(scaling.names)} descriptors"
    return pretext, molecules, "regression", described, selection


def toxcast_pretext(arm: Arm, args: argparse.Namespace, out: Path, target: str | None):
    """The ToxCast pretext: the selected rows and their assay labels (``pretext.csv``);
    assays left without a label are dropped."""
    source = pd.read_csv(args.work / "toxcast_source.csv")
    log(f"selecting the source of {arm.pretraining(target)}")
    rows, selection = source_rows(arm, source.smiles.tolist(), args, target)
    frame = source.iloc[np.sort(rows)]
    frame = frame.loc[:, frame.notna().any()]
    pretext = out / "pretext.csv"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(pretext) as tmp:
        frame.to_csv(tmp, index=False)
    described = f"{len(frame):,} molecules × {frame.shape[1] - 1} assays"
    return pretext, len(frame), "classification", described, selection


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
    prune = ARMS[arm].finetune_prune
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
    if prune:  # the paper's rule: the reference is an EMA of the whole model
        cmd += [
            "--plugin", "molpeg", "--prune-ratio", str(prune), "--prune-strategy", "molpeg",
            "--prune-reference", "model",
        ]  # fmt: skip
    log_path = out.parent / f"{out.name}.log"  # not with_suffix: "random-0.5-BBBP-0"
    wall, cpu, load = run_measured(cmd, log_path, args.threads)
    metric, sd, tasks = test_score(data, data_path, out)
    selection = pre.get("selection", {}) if pre else {}
    return {
        "arm": arm, "dataset": data.name, "seed": str(seed), "metric_name": data.metric,
        "metric": f"{metric:.4f}", "test_label_sd": "" if np.isnan(sd) else f"{sd:.4f}",
        "tasks_scored": str(tasks), "finetune_epochs": str(epochs),
        "finetune_wall_s": f"{wall:.1f}", "finetune_cpu_s": f"{cpu:.1f}",
        "num_source": str(pre["molecules"]) if pre else "0",
        "pretrain_epochs": str(pre["epochs"]) if pre else "0",
        "pretrain_wall_s": str(pre["wall_s"]) if pre else "0",
        "pretrain_cpu_s": str(pre["cpu_s"]) if pre else "0",
        "selection_wall_s": str(selection.get("selection_wall_s", 0)),
        "selection_cpu_s": str(selection.get("selection_cpu_s", 0)),
        "threads": str(args.threads), "load_1min": f"{load:.2f}", "machine": machine(),
        "commit": git_commit(), "finished": datetime.now().isoformat(timespec="seconds"),
        "command": args.command,
    }  # fmt: skip


# --- the report -------------------------------------------------------------------------------


def column_label(arm: str, pretrain_epochs: int) -> str:
    """A table column: the arm, with its pretraining epochs when it has a source."""
    return arm if ARMS[arm].source is None else f"{arm}, {pretrain_epochs} ep"


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
    data_info = json.loads(args.data_info.read_text())
    source = data_info["source"]
    order = {arm: i for i, arm in enumerate(ARMS)}
    everything, rows = rows, rows[rows.arm.isin(["scratch", *FULL_SOURCE.values()])]
    arms = sorted(
        set(zip(rows.arm, rows.pretrain_epochs, strict=True)), key=lambda a: (order[a[0]], a[1])
    )  # scratch first, then the full source by pretraining epochs
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
        "`toxcast-full-source` is pretrained instead on ToxCast's own 617 assays (multi-task",
        "classification, the label-mapping section below).",
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
            cells.append(mean_sd(values))
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
    toxcast = data_info.get("toxcast")
    if toxcast:
        removed = ", ".join(f"{k} {v}" for k, v in toxcast["removed_per_set"].items())
        lines.append(
            f"- ToxCast source (`toxcast-…` and `label-mapping-…` arms): {toxcast['rows']:,} "
            f"molecules × {toxcast['assays']} assays in `toxcast.csv.gz`; "
            f"{toxcast['removed_total']:,} removed because they occur in a downstream set "
            f"({removed}); {toxcast['kept']:,} kept, with {toxcast['labels_kept']:,} assay labels."
        )
    for data in DOWNSTREAM:
        info = data_info["sets"].get(data.name)
        if info:
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
    infos = list(read_pretrainings(args.pretrainings).values())
    lines += pruning_lines(everything, infos, args)
    pruned = everything[~everything.index.isin(rows.index)]
    if not pruned.empty:
        lines += [
            "",
            f"The pruning arms ran at commits {', '.join(sorted(set(pruned.commit.astype(str))))}"
            " with (besides the gate commands above):",
            "",
            "```",
            *sorted(set(pruned.command) - set(rows.command)),
            "```",
        ]
    if infos:
        lines += ["", "Pretraining commands (paths under the work folder):", "", "```"]
        for pre in sorted(infos, key=lambda info: (pretraining_order(info["arm"]), info["epochs"])):
            lines.append(shlex.join(["chemprop", *shlex.split(pre["command"])[1:]]))
        lines.append("```")
    write_text(args.snippet, "\n".join(lines) + "\n")


def pretraining_order(name: str) -> int:
    """Where a pretraining goes in a table: arm by arm, a per-set arm's sets in table order."""
    names = list(dict.fromkeys(n for arm in ARMS.values() for n in arm.pretrainings))
    return names.index(name) if name in names else len(names)


def mean_sd(values: pd.Series) -> str:
    """``mean ± sd`` over seeds, with ``(n=…)`` when fewer than three."""
    spread = f" ± {values.std():.3f}" if len(values) > 1 else ""
    count = f" (n={len(values)})" if len(values) < 3 else ""
    return f"{values.mean():.3f}{spread}{count}"


def relative_change(data: Downstream, pruned: float, full: float) -> float:
    """Pruned against full source, in the target's units: ROC-AUC points ×100, RMSE in %."""
    return 100 * (pruned - full) if data.metric == "roc" else 100 * (pruned - full) / full


def within_target(data: Downstream, change: float) -> bool:
    """At most 1 ROC-AUC point lower, or at most 2 % higher RMSE, than the full source."""
    return change >= -1.0 if data.metric == "roc" else change <= 2.0


INTRO = {
    "moses": [
        "",
        "## Pruning the source before pretraining",
        "",
        "The same pretraining ({epochs} epochs) on a part of the source. `feature-mapping-K`",
        "keeps the fraction K chosen by feature mapping (`molpeg prune-source`: Morgan",
        "fingerprints, {groups} k-means groups; the target is the union of the six sets,",
        "so one pretrained model serves them all); `random-K` keeps a seeded random fraction K.",
        "`+molpeg-R` also prunes the fraction R of the fine-tuning data with `--plugin molpeg`",
        "(the paper's rule). Each cell: mean ± sd over seeds, then Δ against the full source on",
        "the same split (ROC-AUC points ×100, or RMSE change in %), mean ± sd over seeds.",
    ],
    "toxcast": [
        "",
        "## Label mapping: pruning a labelled source (ToxCast)",
        "",
        "The source is ToxCast without every molecule of the six sets, and the pretext is its",
        "own assays (multi-task classification, {epochs} epochs). `label-mapping-K` keeps the",
        "fraction K chosen by label mapping toward each set on its own (`molpeg prune-source",
        "--method label-mapping`: the set's molecules are run through the model pretrained on",
        "the full ToxCast source, the assays are ranked by their summed predicted probability,",
        "and the molecules measured in the top assays are kept; `-lift-` ranks them by the",
        "set's mean predicted probability over the source's instead), so each set has its own",
        "pretrained model; `toxcast-random-K` keeps a seeded random fraction K. Cells as above,",
        "against `toxcast-full-source`.",
    ],
}


def pruning_lines(rows: pd.DataFrame, infos: list[dict], args: argparse.Namespace) -> list[str]:
    """The pruned-source comparisons, the pretraining costs and the combined pipeline."""
    rows = rows[rows.pretrain_epochs.isin([0, args.pretrain_epochs])]
    lines = []
    for corpus in FULL_SOURCE:
        lines += pruning_table(rows, corpus, args)
    if not lines:
        return []
    lines += pretraining_cost_lines(infos, args)
    lines += pipeline_lines(rows, infos, args)
    return lines


def pruning_table(rows: pd.DataFrame, corpus: str, args: argparse.Namespace) -> list[str]:
    """Each pruned-source arm of one corpus against that corpus's full source, per set."""
    full_arm = FULL_SOURCE[corpus]
    arms = [
        a for a in ARMS if ARMS[a].corpus == corpus and ARMS[a].keep < 1.0 and a in set(rows.arm)
    ]
    if not arms or full_arm not in set(rows.arm):
        return []
    lines = [line.format(epochs=args.pretrain_epochs, groups=args.groups) for line in INTRO[corpus]]
    lines += [
        "",
        f"| set | metric | {full_arm} | " + " | ".join(arms) + " |",
        "|---|---|---|" + "---|" * len(arms),
    ]
    near = dict.fromkeys(arms, 0)
    beats = dict.fromkeys(arms, 0)
    counted = dict.fromkeys(arms, 0)
    for data in DOWNSTREAM:
        sub = rows[rows.dataset == data.name]
        paired = sub.pivot_table(index="seed", columns="arm", values="metric")
        if full_arm not in paired:
            continue
        full = paired[full_arm].dropna()
        cells = [mean_sd(full)]
        for arm in arms:
            if arm not in paired or paired[arm].dropna().empty:
                cells.append("–")
                continue
            values = paired[arm].dropna()
            change = pd.Series(
                [relative_change(data, v, full[seed]) for seed, v in values.items() if seed in full]
            )
            if change.empty:
                cells.append(mean_sd(values))
                continue
            dspread = f" ± {change.std():.1f}" if len(change) > 1 else ""
            unit = "" if data.metric == "roc" else " %"
            cells.append(f"{mean_sd(values)}, Δ {change.mean():+.1f}{dspread}{unit}")
            near[arm] += within_target(data, change.mean())
            counted[arm] += 1
            baseline = counterpart(arm, "random")
            if ARMS[arm].source != "random" and baseline in paired:
                common = pd.concat([values, paired[baseline]], axis=1).dropna()
                if len(common):
                    diff = (common.iloc[:, 0] - common.iloc[:, 1]).mean()
                    beats[arm] += bool(diff > 0 if data.metric == "roc" else diff < 0)
        metric = "ROC-AUC" if data.metric == "roc" else "RMSE"
        lines.append(f"| {data.name} | {metric} | " + " | ".join(cells) + " |")
    lines.append("")
    for arm in arms:
        versus = ""
        baseline = counterpart(arm, "random")
        if ARMS[arm].source != "random" and baseline in arms:
            versus = f"; better than {baseline} on {beats[arm]} of them"
        lines.append(
            f"- {arm}: within 1 ROC-AUC point / 2 % RMSE of {full_arm} on {near[arm]} of "
            f"{counted[arm]} sets{versus}."
        )
    return lines


def pretraining_cost_lines(infos: list[dict], args: argparse.Namespace) -> list[str]:
    """What each pretraining cost, against the full source of its corpus."""
    infos = [i for i in infos if i["epochs"] == args.pretrain_epochs]
    full = {i.get("corpus", "moses"): i for i in infos if i["arm"] in FULL_SOURCE.values()}
    if "moses" not in full:
        return []
    lines = [
        "",
        f"Pretraining cost ({args.pretrain_epochs} epochs, 1 torch thread, two runs at a time "
        "on the 2 cores; the selection ran in the benchmark's own process):",
        "",
        "| pretraining | molecules | selection s (CPU) | wall s | CPU s | CPU vs full | "
        "mean load |",
        "|---|---|---|---|---|---|---|",
    ]
    for info in sorted(infos, key=lambda i: pretraining_order(i["arm"])):
        base = full.get(info.get("corpus", "moses"))
        if base is None:
            continue
        selection = info.get("selection", {}).get("selection_cpu_s", 0)
        ratio = (selection + info["cpu_s"]) / base["cpu_s"]
        lines.append(
            f"| {info['arm']} | {info['molecules']:,} | {selection:.0f} | {info['wall_s']:.0f} | "
            f"{info['cpu_s']:.0f} | {ratio:.2f}× | {info['load_1min']:.1f} |"
        )
    lines += [
        "",
        "The CPU ratio counts the selection with the pretraining, against the full source of",
        "the same corpus. The descriptors of the MOSES source (the pretext targets) were",
        "computed once for the whole sample; a pruned pipeline needs them only for the kept",
        "molecules. Label mapping ranks with the model pretrained on the full ToxCast source,",
        "so its selection presumes that model exists (its cost is the full-source row).",
    ]
    return lines


def pipeline_lines(rows: pd.DataFrame, infos: list[dict], args: argparse.Namespace) -> list[str]:
    """Each MOSES pipeline's total cost (pretraining + six fine-tunes) and metric change
    against the full source with full fine-tuning; only when a combined arm has run."""
    if not any(ARMS[a].finetune_prune for a in set(rows.arm)):
        return []
    by_name = {i["arm"]: i for i in infos if i["epochs"] == args.pretrain_epochs}
    # every pretrained MOSES arm, the full pipeline first: the combined arms beside the
    # pruned sources fine-tuned in full
    arms = [a for a in ARMS if ARMS[a].corpus == "moses" and ARMS[a].source is not None]
    sets = [d.name for d in DOWNSTREAM]
    lines = [
        "",
        "The combined pipeline: one pretraining, then one fine-tuning on each of the six sets",
        "(mean over seeds of the sum over sets); Δ metric is the mean over sets of the change",
        "against the full source (classification in ROC-AUC points, regression in % RMSE).",
        "",
        "| pipeline | pretraining wall s | fine-tuning wall s | total wall s | vs full | "
        "total CPU s | vs full | "
        f"Δ ROC-AUC ({sum(d.metric == 'roc' for d in DOWNSTREAM)} sets) | "
        f"Δ RMSE ({sum(d.metric == 'rmse' for d in DOWNSTREAM)} sets) | fine-tuning load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    totals: dict[str, tuple[float, float]] = {}
    full_metric = rows[rows.arm == "full-source"].groupby("dataset").metric.mean()
    for arm in arms:
        sub = rows[rows.arm == arm]
        if set(sub.dataset) != set(sets) or ARMS[arm].pretraining() not in by_name:
            continue
        pre = by_name[ARMS[arm].pretraining()]
        selection = pre.get("selection", {})
        per_seed = sub.groupby("seed").filter(lambda g: set(g.dataset) == set(sets))
        if per_seed.empty:
            continue
        fine = per_seed.groupby("seed")[["finetune_wall_s", "finetune_cpu_s"]].sum().mean()
        wall = selection.get("selection_wall_s", 0) + pre["wall_s"] + fine.finetune_wall_s
        cpu = selection.get("selection_cpu_s", 0) + pre["cpu_s"] + fine.finetune_cpu_s
        totals[arm] = (wall, cpu)
        full_wall, full_cpu = totals.get("full-source", (wall, cpu))
        metric = sub.groupby("dataset").metric.mean()
        roc = [
            relative_change(d, metric[d.name], full_metric[d.name])
            for d in DOWNSTREAM
            if d.metric == "roc"
        ]
        rmse = [
            relative_change(d, metric[d.name], full_metric[d.name])
            for d in DOWNSTREAM
            if d.metric == "rmse"
        ]
        seeds = per_seed.seed.nunique()
        lines.append(
            f"| {arm} ({seeds} seed{'s' if seeds > 1 else ''}) | {pre['wall_s']:.0f} | "
            f"{fine.finetune_wall_s:.0f} | {wall:.0f} | {wall / full_wall:.2f}× | {cpu:.0f} | "
            f"{cpu / full_cpu:.2f}× | {np.mean(roc):+.1f} | {np.mean(rmse):+.1f} % | "
            f"{per_seed.load_1min.mean():.1f} |"
        )
    if len(totals) < 2:
        return []
    return [
        *lines,
        "",
        "Fine-tuning load: the mean 1-minute load during the arm's fine-tunes. Two runs share",
        "the two cores, and at a higher load each run's CPU seconds grow too, so compare arms",
        "fine-tuned at similar loads.",
    ]


# --- main -------------------------------------------------------------------------------------


def run_key(arm: str, dataset: str, seed: int | str, finetune: int | str, pretrain: int | str):
    """What makes a fine-tune distinct: arm, set, seed, fine-tuning and pretraining epochs."""
    return (arm, dataset, str(seed), str(finetune), str(pretrain) if ARMS[arm].source else "0")


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
    p.add_argument("--by-seed", action="store_true", help="run seed by seed, not arm by arm")
    p.add_argument("--num-source", type=int, default=50_000)
    p.add_argument("--source-seed", type=int, default=0)
    p.add_argument("--clip-quantile", type=float, default=0.005)
    p.add_argument("--groups", type=int, default=100, help="feature-mapping k-means groups")
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
    p.add_argument("--pretrainings", type=Path, default=PRETRAININGS)
    p.add_argument("--data-info", type=Path, default=DATA_INFO)
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
    prepared = {d.name: prepare_downstream(d, args.work) for d in DOWNSTREAM}
    paths = {name: path for name, (path, _) in prepared.items()}
    data_info = json.loads(args.data_info.read_text()) if args.data_info.exists() else {}
    data_info["source"] = prepare_source(args.num_source, args.source_seed, args.work, paths)
    data_info["sets"] = {name: info for name, (_, info) in prepared.items()}
    if any(ARMS[arm].corpus == "toxcast" for arm in args.arms):
        data_info["toxcast"] = prepare_toxcast(args.work, paths)
    write_text(args.data_info, json.dumps(data_info, indent=2) + "\n")
    done = done_keys(args.results)
    todo = [
        (arm, d, seed)
        for seed in args.seeds
        for d in sets
        for arm in args.arms
        if run_key(arm, d.name, seed, finetune_epochs(d, args), args.pretrain_epochs) not in done
    ]
    # runs without pretraining first, so they fill the other lane while pretraining runs;
    # then arm by arm in the order asked for, so the first arms finish all their seeds first
    # (--by-seed: seed by seed, so every arm has as many seeds as the others when stopped)
    todo.sort(
        key=lambda t: (
            ARMS[t[0]].source is not None,
            t[2] if args.by_seed else 0,
            args.arms.index(t[0]),
        )
    )
    log(f"{len(todo)} fine-tunes to run ({len(done)} finished rows skipped)")
    failed = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        pretrained: dict[str, Future] = {}  # pretraining name -> its (shared) model
        for arm in args.arms:
            targets = [d.name for d in sets] if ARMS[arm].per_set else [None]
            for target in targets:
                name = ARMS[arm].pretraining(target)
                wanted = any(t[0] == arm and target in (None, t[1].name) for t in todo)
                if name and name not in pretrained and wanted:
                    pretrained[name] = pool.submit(pretrain, ARMS[arm], args, target)

        def one(arm: str, data: Downstream, seed: int) -> dict[str, str]:
            name = ARMS[arm].pretraining(data.name)
            pre = pretrained[name].result() if name in pretrained else None
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
