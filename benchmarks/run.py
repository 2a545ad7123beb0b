"""The MolPeg benchmark: accuracy and cost of pruning strategies through `chemprop train`.

Every run goes through the real product path, ``chemprop train --plugin molpeg …`` (plain
``chemprop train`` for the full-data baseline), fine-tuning a pretrained encoder loaded with
``--from-foundation``. One CSV row per run is appended to ``benchmarks/results/<tier>.csv`` as
soon as the run ends, so an interrupted grid resumes where it stopped (finished rows are
skipped). ``--report`` regenerates ``docs/benchmarks.md`` and the plots from the CSVs.

    python benchmarks/run.py --tier quick            # CPU sanity table, ~30 min on 2 cores
    python benchmarks/run.py --tier timing           # full vs molpeg vs soft-random cost only
    python benchmarks/run.py --tier gpu-timing       # the same on full HIV, one run at a time
    python benchmarks/run.py --tier own              # from our own pretrained encoder
    python benchmarks/run.py --tier investigate      # MolPeg at 90%: annealing and β (CPU)
    python benchmarks/run.py --tier reference --jobs 2 --threads 1  # cheaper references (CPU)
    python benchmarks/run.py --tier equal-time       # full data for 3, 4 and 6 epochs (CPU)
    python benchmarks/run.py --tier staleness --jobs 2 --threads 1  # MolPeg at 80-90% (CPU)
    python benchmarks/run.py --tier sparse --jobs 1 --threads 1  # ToxCast and MUV (CPU)
    python benchmarks/run.py --tier paper --jobs 12  # the full grid (GPU; resumable)
    python benchmarks/run.py --report                # tables + plots only

Tiers:
    quick  HIV subsample (10,000 molecules, seeded), scaffold split 80/10/10, 6 epochs, seed 0;
           Lipophilicity (4,200 molecules) as the regression set.
    paper  full HIV (41,127) and Lipophilicity, 10 epochs, pruned fractions 0.4/0.6/0.8/0.9,
           seeds 0, 1, 2; ordered so that a cut-off run leaves whole seeds of the 0.6 column
           first. ``--jobs N`` runs N grid points at once (one GPU is shared; each run gets
           ``--threads`` CPU threads). ``benchmarks/gpu_session.sh`` drives it on a lent GPU.
    sparse ToxCast (617 tasks, 3 seeds, 10 epochs) and MUV (93k molecules, 17 tasks, 1 seed,
           5 epochs), full data vs MolPeg (default head reference) at 40/60% pruned; every
           task is also scored on its own (``sparse_tasks.csv``; ``benchmarks/sparse.py``
           writes the report snippet and runs the ``molpeg prune --backend torch`` half).

Environment: ``MOLPEG_SHARED`` overrides where ``../shared`` (data and models) is read from, and
``MOLPEG_COMMIT`` names the commit when the tree has no ``.git`` (a copied working tree).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from molpeg_chemprop.runs import ChempropRunError, chemprop_executable, run_logged

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOLPEG_SHARED", ROOT / "../shared"))
WORK = ROOT / "benchmarks/work"
RESULTS = ROOT / "benchmarks/results"
THREADS: int | None = None  # CPU threads per chemprop run (--threads; None: torch default)
ADMET_AI = SHARED / "models/admet_ai_v2_classification_model_0.pt"
OWN_FOUNDATION = WORK / "pretrain/chemprop/model_0/best.pt"

FIELDS = [
    "tier", "dataset", "method", "ratio", "seed", "metric_name", "metric", "wall_seconds",
    "fit_seconds", "epochs", "seconds_per_epoch", "peak_rss_mb", "foundation", "device",
    "commit", "finished", "load_1min", "cpu_seconds",
]  # fmt: skip
# One row per task of a multitask run (``<tier>_tasks.csv``); empty metrics: the task lacks
# a class among its labelled test molecules.
TASK_FIELDS = [
    "tier", "dataset", "method", "ratio", "seed", "epochs", "task", "test_labels",
    "test_positives", "roc", "prc", "commit",
]  # fmt: skip
LOAD_EVERY_S = 30.0  # how often the 1-minute load average is sampled during a run


@dataclass(frozen=True)
class Dataset:
    """A benchmark target set.

    ``targets`` are the label columns (``None``: every column but ``smiles``, chemprop's own
    default when ``--target-columns`` is omitted); ``metrics`` are chemprop metric names, the
    first one logged as ``test/<metric>`` in the row; ``tracking`` is chemprop's
    ``--tracking-metric`` (``None``: the first metric). A multitask set's runs are also
    scored task by task (:func:`task_scores`).
    """

    name: str
    source: Path
    task: str
    targets: tuple[str, ...] | None
    metrics: tuple[str, ...]
    subsample: int | None = None
    tracking: str | None = None

    @property
    def metric(self) -> str:
        """The metric of the row's ``metric`` column."""
        return self.metrics[0]

    @property
    def multitask(self) -> bool:
        """Whether the set has several label columns (scored per task as well)."""
        return self.targets is None or len(self.targets) > 1


@dataclass(frozen=True)
class Run:
    """One training run of the grid."""

    dataset: Dataset
    method: str  # "full" or a molpeg strategy name
    ratio: float
    seed: int
    epochs: int
    foundation: Path

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (
            self.dataset.name,
            self.method,
            f"{self.ratio:.2f}",
            str(self.seed),
            str(self.epochs),
        )

    @property
    def name(self) -> str:
        """The run's folder and log name under ``<work>/<tier>/``."""
        return "-".join(self.key).replace(".", "")


HIV = Dataset(
    "HIV", SHARED / "data/moleculenet/HIV.csv", "classification", ("HIV_active",), ("roc",)
)
LIPO = Dataset(
    "Lipophilicity", SHARED / "data/moleculenet/Lipophilicity.csv", "regression", ("exp",),
    ("rmse",),
)  # fmt: skip
# Sparse multitask sets: every non-SMILES column is a task (most labels missing).
TOXCAST = Dataset(
    "ToxCast", SHARED / "data/moleculenet/toxcast.csv.gz", "classification", None, ("roc", "prc")
)
# MUV: ~0.2% positives, so PRC-AUC is the metric; checkpoints are chosen on the validation
# loss (a validation task holds only a few positives, too few for a stable PRC-AUC).
MUV = Dataset(
    "MUV", SHARED / "data/moleculenet/muv.csv.gz", "classification", None, ("prc", "roc"),
    tracking="val_loss",
)  # fmt: skip
TIERS = [
    "quick", "timing", "gpu-timing", "own", "investigate", "reference", "equal-time", "staleness",
    "sparse", "paper",
]  # fmt: skip
METHODS = ["molpeg", "infobatch", "soft-random", "hard-random", "el2n"]


def molpeg_variant(reference: str, *options: str) -> tuple[str, list[str]]:
    """MolPeg with the given ``--prune-reference`` and ``key=value`` strategy options."""
    extra = [arg for option in options for arg in ("--prune-strategy-option", option)]
    return "molpeg", ["--prune-reference", reference, *extra]


# Method variants of the `investigate` tier: name → (strategy, extra chemprop options).
VARIANTS = {
    "molpeg+anneal1": ("molpeg", ["--prune-anneal-epochs", "1"]),
    "molpeg+beta0.9": ("molpeg", ["--ema-momentum", "0.9"]),
    "molpeg+beta0.99": ("molpeg", ["--ema-momentum", "0.99"]),
    # cheaper references (the `reference` tier)
    "molpeg+head": ("molpeg", ["--prune-reference", "head"]),
    "molpeg+every4": ("molpeg", ["--prune-reference-every", "4"]),
    # exploration outside the top-k against stale scores (the `staleness` tier; head reference)
    **{
        f"molpeg+head+explore{share}{pick}": molpeg_variant(
            "head", f"explore={share}", f"explore_from={pick or 'stalest'}"
        )
        for share in ("0.2", "0.5")
        for pick in ("", "random")
    },
    "molpeg+head+hard0.5": molpeg_variant("head", "explore=0.5", "explore_from=loss"),
    # the paper's full-model reference with half the budget on the highest-loss molecules
    # outside the top-k (Lipophilicity, where the head reference is the weaker one)
    "molpeg+hard0.5": molpeg_variant("model", "explore=0.5", "explore_from=loss"),
    "molpeg+head+calibrated": molpeg_variant(
        "head", "explore=0.2", "explore_from=random", "calibrate=true"
    ),
}


def grid(tier: str, foundation: Path) -> list[Run]:
    """The runs of a tier, cheapest first within each dataset."""
    runs: list[Run] = []
    if tier == "quick":
        hiv = Dataset(**{**HIV.__dict__, "name": "HIV-10k", "subsample": 10_000})
        runs.append(Run(hiv, "full", 0.0, 0, 6, foundation))
        runs += [Run(hiv, m, 0.6, 0, 6, foundation) for m in METHODS]
        runs += [
            Run(hiv, m, r, 0, 6, foundation) for r in (0.4, 0.8) for m in ("molpeg", "soft-random")
        ]
        runs.append(Run(LIPO, "full", 0.0, 0, 6, foundation))
        runs += [
            Run(LIPO, m, 0.6, 0, 6, foundation) for m in ("molpeg", "soft-random", "infobatch")
        ]
    elif tier == "timing":
        # Cost only: the three runs of the speed comparison back to back on a quiet machine.
        hiv = Dataset(**{**HIV.__dict__, "name": "HIV-10k", "subsample": 10_000})
        runs.append(Run(hiv, "full", 0.0, 0, 6, foundation))
        runs += [Run(hiv, m, 0.6, 0, 6, foundation) for m in ("molpeg", "soft-random")]
    elif tier == "gpu-timing":
        # Cost only, on a GPU: full HIV, the three runs back to back (use --jobs 1).
        runs.append(Run(HIV, "full", 0.0, 0, 10, foundation))
        runs += [Run(HIV, m, 0.6, 0, 10, foundation) for m in ("molpeg", "soft-random")]
    elif tier == "investigate":
        # What moves MolPeg at 90% pruned (where it lost to InfoBatch in the paper tier):
        # annealing (InfoBatch's last full epoch) and the EMA momentum β. HIV-10k, 10 epochs.
        hiv = Dataset(**{**HIV.__dict__, "name": "HIV-10k", "subsample": 10_000})
        first = ["molpeg", "molpeg+anneal1", "infobatch"]
        then = ["molpeg+beta0.9", "molpeg+beta0.99", "soft-random"]
        for methods in (first, then):
            runs += [Run(hiv, m, 0.9, s, 10, foundation) for s in (0, 1, 2) for m in methods]
        runs += [Run(hiv, "full", 0.0, s, 10, foundation) for s in (0, 1, 2)]
    elif tier == "reference":
        # Quality of the cheaper references against the paper's full-model EMA reference:
        # HIV-10k, 10 epochs, 40/60/80% pruned, 3 seeds (the 60% column first).
        hiv = Dataset(**{**HIV.__dict__, "name": "HIV-10k", "subsample": 10_000})
        for methods in (["molpeg", "molpeg+head"], ["molpeg+every4"]):
            runs += [
                Run(hiv, m, r, s, 10, foundation)
                for r in (0.6, 0.8, 0.4)
                for s in (0, 1, 2)
                for m in methods
            ]
    elif tier == "equal-time":
        # Full data trained for fewer epochs (Chemprop sizes its Noam schedule to the run's own
        # epochs), to set against pruned 10-epoch runs of the same wall time (HIV-10k).
        hiv = Dataset(**{**HIV.__dict__, "name": "HIV-10k", "subsample": 10_000})
        runs += [Run(hiv, "full", 0.0, s, e, foundation) for e in (4, 6, 3) for s in (0, 1, 2)]
        # the baselines at 60% (then 40%) pruned, 10 epochs (accuracy; their quiet wall times
        # come from bench_run_anatomy.py; 80% is in the `staleness` tier)
        runs += [
            Run(hiv, m, r, s, 10, foundation)
            for r in (0.6, 0.4)
            for s in (0, 1, 2)
            for m in ("soft-random", "infobatch")
        ]
    elif tier == "staleness":
        # MolPeg at high pruning ratios, where stale scores decide the keep set: exploration
        # outside the top-k against the plain top-k and the baselines (HIV-10k, 10 epochs,
        # 3 seeds; 90% first). Faithful MolPeg, InfoBatch and soft random at 90% and full data
        # are in the `investigate` tier, the head reference at 40-80% in `reference`.
        hiv = Dataset(**{**HIV.__dict__, "name": "HIV-10k", "subsample": 10_000})
        random_ = ["molpeg+head+explore0.2random", "molpeg+head+calibrated"]
        plan = [
            (0.9, ["molpeg+head", "molpeg+head+hard0.5"]),
            (0.8, ["molpeg+head+hard0.5", "infobatch"]),
            (0.6, ["molpeg+head+hard0.5"]),
        ]
        for ratio, methods in plan:
            runs += [Run(hiv, m, ratio, s, 10, foundation) for s in (0, 1, 2) for m in methods]
        # Lipophilicity (regression), where InfoBatch led at 80/90% in the paper tier
        runs += [
            Run(LIPO, m, r, s, 10, foundation)
            for r in (0.9, 0.8)
            for s in (0, 1, 2)
            for m in ("molpeg+head", "molpeg+head+hard0.5", "infobatch")
        ]
        # the head reference against the paper's full-model reference on regression
        runs += [
            Run(LIPO, m, r, s, 10, foundation)
            for r in (0.8, 0.6)
            for s in (0, 1, 2)
            for m in ("molpeg", "molpeg+head")
            if (m, r) != ("molpeg+head", 0.8)
        ]
        plan = [
            (0.9, random_),
            (0.8, random_),
            (0.9, ["molpeg+head+explore0.2", "el2n"]),
            (0.8, ["el2n", "soft-random"]),
            (0.6, ["el2n"]),
        ]
        for ratio, methods in plan:
            runs += [Run(hiv, m, ratio, s, 10, foundation) for s in (0, 1, 2) for m in methods]
        # Lipophilicity at 90% with the full-model reference (the regression default), plain
        # and with loss-driven exploration, against InfoBatch's 0.770
        for ratio, methods in [(0.9, ["molpeg", "molpeg+hard0.5"]), (0.8, ["molpeg+hard0.5"])]:
            runs += [Run(LIPO, m, ratio, s, 10, foundation) for s in (0, 1, 2) for m in methods]
    elif tier == "sparse":
        # Sparse multitask at scale with the library's default reference (auto = head for
        # classification): ToxCast (617 tasks) for 3 seeds first, then MUV (93k molecules,
        # 17 tasks), one seed, 5 epochs.
        arms = [("full", 0.0), ("molpeg+head", 0.4), ("molpeg+head", 0.6)]
        runs += [Run(TOXCAST, m, r, s, 10, foundation) for s in (0, 1, 2) for m, r in arms]
        runs += [Run(MUV, m, r, 0, 5, foundation) for m, r in arms]
    elif tier == "own":
        # Fine-tuning from our own descriptor-pretrained encoder (pretrain_descriptors.py).
        hiv = Dataset(**{**HIV.__dict__, "name": "HIV-10k", "subsample": 10_000})
        runs.append(Run(hiv, "full", 0.0, 0, 6, foundation))
        runs += [Run(hiv, m, 0.6, 0, 6, foundation) for m in ("molpeg", "soft-random")]
    elif tier == "paper":
        # Priority order: whole seeds of the 0.4/0.6/0.8 columns first, 0.9 last.
        for seed in (0, 1, 2):
            for data in (HIV, LIPO):
                runs.append(Run(data, "full", 0.0, seed, 10, foundation))
                runs += [
                    Run(data, m, r, seed, 10, foundation) for r in (0.6, 0.4, 0.8) for m in METHODS
                ]
        runs += [
            Run(data, m, 0.9, seed, 10, foundation)
            for seed in (0, 1, 2)
            for data in (HIV, LIPO)
            for m in METHODS
        ]
    else:
        raise SystemExit(f"unknown tier {tier!r}: use one of {', '.join(TIERS)}")
    return runs


def prepare(data: Dataset) -> Path:
    """The CSV chemprop reads: the source without the rows RDKit rejects, seeded-subsampled.

    ``chemprop train`` aborts on the first SMILES RDKit cannot sanitise (full HIV has a few
    hypervalent-metal complexes), so they are dropped here and listed, by source row, in
    ``<name>.skipped.txt`` beside the prepared file. Rows are otherwise kept verbatim.
    """
    import pandas as pd

    from molpeg_plugins.pipeline.atomic import atomic_path, write_text
    from molpeg_plugins.pipeline.data import parse_smiles

    out = WORK / f"{data.name}.csv"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(data.source)
    if data.subsample is not None:
        frame = frame.sample(n=data.subsample, random_state=0).sort_index()
    reasons = {i: parse_smiles(str(s))[1] for i, s in frame.smiles.items()}
    bad = [i for i, reason in reasons.items() if reason]
    skipped = "".join(f"row {i + 2}: {reasons[i]}\n" for i in bad)  # +2: header, 1-based
    write_text(WORK / f"{data.name}.skipped.txt", skipped)
    with atomic_path(out) as tmp:
        frame.drop(index=bad).to_csv(tmp, index=False)
    print(f"{data.name}: {len(frame) - len(bad)} molecules, {len(bad)} skipped ({out})", flush=True)
    return out


def command(run: Run, data_path: Path, out_dir: Path) -> list[str]:
    """The chemprop command line of a run."""
    data = run.dataset
    targets = ["--target-columns", *data.targets] if data.targets else []
    cmd = [
        chemprop_executable(), "train", "--data-path", str(data_path), "--task-type", data.task,
        "--smiles-columns", "smiles", *targets,
        "--split-type", "scaffold_balanced", "--split-sizes", "0.8", "0.1", "0.1",
        "--epochs", str(run.epochs), "--metrics", *data.metrics,
        "--tracking-metric", data.tracking or data.metric,
        "--data-seed", "0", "--pytorch-seed", str(run.seed), "--num-workers", "0",
        "--output-dir", str(out_dir), "--from-foundation", str(run.foundation),
    ]  # fmt: skip
    if run.method != "full":
        strategy, extra = VARIANTS.get(run.method, (run.method, []))
        if strategy == "molpeg" and "--prune-reference" not in extra:
            extra = ["--prune-reference", "model", *extra]  # `molpeg` rows: the paper's rule
        cmd += [
            "--plugin", "molpeg", "--prune-ratio", str(run.ratio), "--prune-strategy", strategy,
            *extra,
        ]  # fmt: skip
    return cmd


class LoadSampler:
    """The machine's 1-minute load average, sampled every ``every_s`` seconds while a run goes
    on: pass it as ``run_logged(..., on_poll=sampler)``, then read :attr:`mean`."""

    def __init__(self, every_s: float = LOAD_EVERY_S) -> None:
        self.every_s = every_s
        self.samples: list[float] = []
        self._next = time.monotonic()

    def __call__(self) -> None:
        """Take a sample if ``every_s`` has passed since the last one."""
        now = time.monotonic()
        if now >= self._next:
            self.samples.append(os.getloadavg()[0])
            self._next = now + self.every_s

    @property
    def mean(self) -> float:
        """The mean of the samples (the current load if none was taken)."""
        return sum(self.samples) / len(self.samples) if self.samples else os.getloadavg()[0]


def _stamp(line: str) -> float:
    return datetime.fromisoformat(line[:19]).timestamp()


def execute(run: Run, tier: str) -> dict[str, str]:
    """Run one grid point and return its CSV row."""
    data_path = prepare(run.dataset)
    name = run.name
    out_dir = WORK / tier / name
    log_path = WORK / tier / f"{name}.log"
    cmd = command(run, data_path, out_dir)
    env = dict(os.environ)
    if THREADS is not None:
        env.update(OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    load = LoadSampler()
    cost = run_logged(cmd, log_path, env=env, on_poll=load)
    text = log_path.read_text()
    metric = re.search(rf"test/{run.dataset.metric}: ([-\d.eE]+)", text)
    start = re.search(r"^(\S+) - INFO:chemprop.cli.train - train/val/test", text, re.M)
    end = re.search(r"^(\S+) - INFO:chemprop.cli.train - Test Set results", text, re.M)
    fit = _stamp(end.group(1)) - _stamp(start.group(1)) if start and end else float("nan")
    return {
        "tier": tier,
        "dataset": run.dataset.name,
        "method": run.method,
        "ratio": f"{run.ratio:.2f}",
        "seed": str(run.seed),
        "metric_name": run.dataset.metric,
        "metric": metric.group(1) if metric else "nan",
        "wall_seconds": f"{cost.wall_s:.1f}",
        "fit_seconds": f"{fit:.0f}",
        "epochs": str(run.epochs),
        "seconds_per_epoch": f"{fit / run.epochs:.1f}",
        "peak_rss_mb": f"{cost.peak_rss_mib:.0f}",
        "foundation": run.foundation.name,
        "device": device_name() + (f", {JOBS} runs at once" if JOBS > 1 else ""),
        "commit": git_commit(),
        "finished": datetime.now().isoformat(timespec="seconds"),
        "load_1min": f"{load.mean:.2f}",
        "cpu_seconds": f"{cost.cpu_s:.0f}",  # on a shared machine the cost to compare
    }


def test_truth(data_path: Path, out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labelled test rows of a prepared CSV and chemprop's test predictions, row-aligned.

    The test molecules are the rows at the test indices of chemprop's ``splits.json``; they
    must come in the order of ``model_0/test_predictions.csv`` (checked by SMILES).
    """
    import json

    import pandas as pd

    frame = pd.read_csv(data_path)
    test = json.loads((out_dir / "splits.json").read_text())[0]["test"]
    predictions = pd.read_csv(out_dir / "model_0/test_predictions.csv")
    truth = frame.iloc[test].reset_index(drop=True)
    if len(truth) != len(predictions) or not (truth.smiles == predictions.smiles).all():
        raise RuntimeError(f"{out_dir}: test predictions are not in the order of splits.json")
    return truth, predictions


def task_scores(run: Run, data_path: Path, out_dir: Path, tier: str) -> list[dict[str, str]]:
    """Test ROC-AUC and PRC-AUC of every task of a finished multitask run, one row per task.

    The test molecules are the rows of the prepared CSV at the test indices of chemprop's
    ``splits.json``, in the order of ``model_0/test_predictions.csv`` (checked by SMILES).
    Each task is scored on its labelled test molecules (missing labels are left out) with
    scikit-learn's ``roc_auc_score`` and ``average_precision_score``; a task without both
    classes among them keeps its row with empty metrics (``test_positives`` says why).
    """
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth, predictions = test_truth(data_path, out_dir)
    tasks = list(run.dataset.targets or [c for c in truth.columns if c != "smiles"])
    commit = git_commit()
    rows = []
    for task in tasks:
        labelled = truth[task].notna().to_numpy()
        y = truth[task].to_numpy(float)[labelled]
        p = predictions[task].to_numpy(float)[labelled]
        both = 0 < y.sum() < y.size
        rows.append(
            {
                "tier": tier, "dataset": run.dataset.name, "method": run.method,
                "ratio": f"{run.ratio:.2f}", "seed": str(run.seed), "epochs": str(run.epochs),
                "task": task, "test_labels": str(int(y.size)),
                "test_positives": str(int(np.sum(y == 1))),
                "roc": f"{roc_auc_score(y, p):.4f}" if both else "",
                "prc": f"{average_precision_score(y, p):.4f}" if both else "",
                "commit": commit,
            }
        )  # fmt: skip
    return rows


def device_name() -> str:
    """Human-readable description of the training device."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def git_commit() -> str:
    """Short hash of the checked-out commit (``MOLPEG_COMMIT`` when there is no ``.git``)."""
    if os.environ.get("MOLPEG_COMMIT"):
        return os.environ["MOLPEG_COMMIT"]
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    return out.stdout.strip() or "unknown"


def done_keys(path: Path) -> set[tuple[str, str, str, str, str]]:
    """Grid points already in a results CSV."""
    if not path.exists():
        return set()
    with path.open() as f:
        return {
            (r["dataset"], r["method"], r["ratio"], r["seed"], r["epochs"])
            for r in csv.DictReader(f)
        }


_APPEND_LOCK = threading.Lock()
JOBS = 1  # runs at once (set by --jobs)


def append(path: Path, rows: list[dict[str, str]], fields: list[str] = FIELDS) -> None:
    """Append rows (writing the header ``fields`` first if the file is new), flushed to disk.

    A file that already exists keeps its own header: columns it lacks (``load_1min`` in the
    CSVs of earlier runs) are left out of its rows.
    """
    with _APPEND_LOCK, path.open("a+", newline="") as f:
        f.seek(0)
        header = next(csv.reader(f), None)
        writer = csv.DictWriter(f, fieldnames=header or fields, extrasaction="ignore")
        if header is None:
            writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def run_grid(todo: list[Run], tier: str, results: Path, jobs: int) -> int:
    """Run the grid points, ``jobs`` at a time; returns how many failed (the rest are kept)."""
    failed = 0
    for data in {run.dataset for run in todo}:
        prepare(data)  # once, before the runs that read it start in parallel

    def one(run: Run) -> dict[str, str]:
        row = execute(run, tier)
        if run.dataset.multitask:  # before the row, so a finished row has its tasks
            tasks = task_scores(run, prepare(run.dataset), WORK / tier / run.name, tier)
            append(results.with_name(f"{tier}_tasks.csv"), tasks, TASK_FIELDS)
        append(results, [row])
        return row

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one, run): run for run in todo}
        for i, future in enumerate(as_completed(futures), 1):
            run = futures[future]
            try:
                row = future.result()
            except ChempropRunError as err:  # one failed run must not stop the others
                failed += 1
                print(f"[{i}/{len(todo)}] {run.key} FAILED: {err}", flush=True)
                continue
            print(
                f"[{i}/{len(todo)}] {run.key} {row['metric_name']}={row['metric']} "
                f"wall={row['wall_seconds']}s",
                flush=True,
            )
    return failed


def main() -> None:
    global WORK, THREADS, JOBS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=TIERS)
    parser.add_argument(
        "--foundation", type=Path, help="model for --from-foundation (default: ADMET-AI)"
    )
    parser.add_argument("--report", action="store_true", help="only regenerate docs/benchmarks.md")
    parser.add_argument("--no-report", action="store_true", help="do not regenerate the docs")
    parser.add_argument("--only", help="comma-separated methods to run (default: all of the tier)")
    parser.add_argument("--jobs", type=int, default=1, help="grid points run at once")
    parser.add_argument("--threads", type=int, help="CPU threads per run (default: torch's)")
    parser.add_argument("--work", type=Path, default=WORK, help="scratch folder for run outputs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the CSVs")
    args = parser.parse_args()
    WORK, THREADS, JOBS = args.work.resolve(), args.threads, args.jobs
    failed = 0
    if args.tier:
        default = OWN_FOUNDATION if args.tier == "own" else ADMET_AI
        foundation = (args.foundation or default).resolve()
        results = args.results / f"{args.tier}.csv"
        results.parent.mkdir(parents=True, exist_ok=True)
        finished = done_keys(results)
        todo = [r for r in grid(args.tier, foundation) if r.key not in finished]
        if args.only:
            todo = [r for r in todo if r.method in args.only.split(",")]
        failed = run_grid(todo, args.tier, results, args.jobs)
    if not args.no_report:
        from report import write_report  # benchmarks/report.py

        write_report()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
