"""The MolPeg benchmark: accuracy and cost of pruning strategies through `chemprop train`.

Every run goes through the real product path, ``chemprop train --plugin molpeg …`` (plain
``chemprop train`` for the full-data baseline), fine-tuning a pretrained encoder loaded with
``--from-foundation``. One CSV row per run is appended to ``benchmarks/results/<tier>.csv`` as
soon as the run ends, so an interrupted grid resumes where it stopped (finished rows are
skipped). ``--report`` regenerates ``docs/benchmarks.md`` and the plots from the CSVs.

    python benchmarks/run.py --tier quick            # CPU sanity table, ~30 min on 2 cores
    python benchmarks/run.py --tier timing           # full vs molpeg vs soft-random cost only
    python benchmarks/run.py --tier own              # from our own pretrained encoder
    python benchmarks/run.py --tier paper            # the full grid (GPU; resumable)
    python benchmarks/run.py --report                # tables + plots only

Tiers:
    quick  HIV subsample (10,000 molecules, seeded), scaffold split 80/10/10, 6 epochs, seed 0;
           Lipophilicity (4,200 molecules) as the regression set.
    paper  full HIV (41,127) and Lipophilicity, 10 epochs, pruned fractions 0.4/0.6/0.8/0.9,
           seeds 0, 1, 2.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / "../shared"
WORK = ROOT / "benchmarks/work"
RESULTS = ROOT / "benchmarks/results"
ADMET_AI = SHARED / "models/admet_ai_v2_classification_model_0.pt"
OWN_FOUNDATION = WORK / "pretrain/chemprop/model_0/best.pt"

FIELDS = [
    "tier", "dataset", "method", "ratio", "seed", "metric_name", "metric", "wall_seconds",
    "fit_seconds", "epochs", "seconds_per_epoch", "peak_rss_mb", "foundation", "device",
    "commit", "finished",
]  # fmt: skip


@dataclass(frozen=True)
class Dataset:
    """A benchmark target set."""

    name: str
    source: Path
    task: str
    target: str
    metric: str  # chemprop metric name logged as test/<metric>
    subsample: int | None = None


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
    def key(self) -> tuple[str, str, str, str]:
        return (self.dataset.name, self.method, f"{self.ratio:.2f}", str(self.seed))


HIV = Dataset("HIV", SHARED / "data/moleculenet/HIV.csv", "classification", "HIV_active", "roc")
LIPO = Dataset(
    "Lipophilicity", SHARED / "data/moleculenet/Lipophilicity.csv", "regression", "exp", "rmse"
)
METHODS = ["molpeg", "infobatch", "soft-random", "hard-random", "el2n"]


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
    elif tier == "own":
        # Fine-tuning from our own descriptor-pretrained encoder (pretrain_descriptors.py).
        hiv = Dataset(**{**HIV.__dict__, "name": "HIV-10k", "subsample": 10_000})
        runs.append(Run(hiv, "full", 0.0, 0, 6, foundation))
        runs += [Run(hiv, m, 0.6, 0, 6, foundation) for m in ("molpeg", "soft-random")]
    elif tier == "paper":
        for seed in (0, 1, 2):
            for data in (HIV, LIPO):
                runs.append(Run(data, "full", 0.0, seed, 10, foundation))
                runs += [
                    Run(data, m, r, seed, 10, foundation)
                    for r in (0.4, 0.6, 0.8, 0.9)
                    for m in METHODS
                ]
    else:
        raise SystemExit(f"unknown tier {tier!r}: use quick, timing, own or paper")
    return runs


def prepare(data: Dataset) -> Path:
    """The CSV chemprop reads: the source, or a seeded subsample of it (rows kept verbatim)."""
    if data.subsample is None:
        return data.source
    import pandas as pd

    out = WORK / f"{data.name}.csv"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.read_csv(data.source)
        frame.sample(n=data.subsample, random_state=0).sort_index().to_csv(out, index=False)
    return out


def command(run: Run, data_path: Path, out_dir: Path) -> list[str]:
    """The chemprop command line of a run."""
    data = run.dataset
    cmd = [
        "chemprop", "train", "--data-path", str(data_path), "--task-type", data.task,
        "--smiles-columns", "smiles", "--target-columns", data.target,
        "--split-type", "scaffold_balanced", "--split-sizes", "0.8", "0.1", "0.1",
        "--epochs", str(run.epochs), "--metrics", data.metric, "--tracking-metric", data.metric,
        "--data-seed", "0", "--pytorch-seed", str(run.seed), "--num-workers", "0",
        "--output-dir", str(out_dir), "--from-foundation", str(run.foundation),
    ]  # fmt: skip
    if run.method != "full":
        cmd += [
            "--plugin", "molpeg", "--prune-ratio", str(run.ratio), "--prune-strategy", run.method,
        ]  # fmt: skip
    return cmd


MEASURE = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('MOLPEG_PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
    "file=sys.stderr); sys.exit(r.returncode)"
)


def _stamp(line: str) -> float:
    return datetime.fromisoformat(line[:19]).timestamp()


def execute(run: Run, tier: str) -> dict[str, str]:
    """Run one grid point and return its CSV row."""
    data_path = prepare(run.dataset)
    name = "-".join(run.key).replace(".", "")
    out_dir = WORK / tier / name
    log_path = WORK / tier / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = command(run, data_path, out_dir)
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], stdout=log, stderr=log)
    wall = time.perf_counter() - t0
    text = log_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"run {name} failed (exit {proc.returncode}); see {log_path}")
    metric = re.search(rf"test/{run.dataset.metric}: ([-\d.eE]+)", text)
    rss = re.search(r"MOLPEG_PEAK_RSS_KB (\d+)", text)
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
        "wall_seconds": f"{wall:.1f}",
        "fit_seconds": f"{fit:.0f}",
        "epochs": str(run.epochs),
        "seconds_per_epoch": f"{fit / run.epochs:.1f}",
        "peak_rss_mb": f"{int(rss.group(1)) / 1024:.0f}" if rss else "nan",
        "foundation": run.foundation.name,
        "device": device_name(),
        "commit": git_commit(),
        "finished": datetime.now().isoformat(timespec="seconds"),
    }


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
    """Short hash of the checked-out commit."""
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    return out.stdout.strip() or "unknown"


def done_keys(path: Path) -> set[tuple[str, str, str, str]]:
    """Grid points already in a results CSV."""
    if not path.exists():
        return set()
    with path.open() as f:
        return {(r["dataset"], r["method"], r["ratio"], r["seed"]) for r in csv.DictReader(f)}


def append(path: Path, row: dict[str, str]) -> None:
    """Append one row (writing the header first if the file is new), flushed to disk."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=["quick", "timing", "own", "paper"])
    parser.add_argument(
        "--foundation", type=Path, help="model for --from-foundation (default: ADMET-AI)"
    )
    parser.add_argument("--report", action="store_true", help="only regenerate docs/benchmarks.md")
    parser.add_argument("--only", help="comma-separated methods to run (default: all of the tier)")
    args = parser.parse_args()
    if args.tier:
        default = OWN_FOUNDATION if args.tier == "own" else ADMET_AI
        foundation = (args.foundation or default).resolve()
        results = RESULTS / f"{args.tier}.csv"
        results.parent.mkdir(parents=True, exist_ok=True)
        finished = done_keys(results)
        todo = [r for r in grid(args.tier, foundation) if r.key not in finished]
        if args.only:
            todo = [r for r in todo if r.method in args.only.split(",")]
        for i, run in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {run.key}", flush=True)
            row = execute(run, args.tier)
            append(results, row)
            print(
                f"    {row['metric_name']}={row['metric']} wall={row['wall_seconds']}s", flush=True
            )
    from report import write_report  # benchmarks/report.py

    write_report()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
